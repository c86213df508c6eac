"""agentsession inside Microsoft Agent Framework, through the framework's own extension points.

For an app that calls its agent itself (``await agent.run(text, session=session)``) and wants
agentsession's stores, turn serialisation across processes, TTL, encryption and web adapters
without a ``SessionManager``::

    from agent_framework import Agent
    from agentsession.integrations.maf import AgentSessionHistoryProvider, AgentSessionStore

    history = AgentSessionHistoryProvider("sqlite:///agentsession.db")
    sessions = AgentSessionStore(history.store)              # session.state, same store
    agent = Agent(client=..., name="assistant", context_providers=[history])

    session = await sessions.get(conversation_id) or agent.create_session(session_id=conversation_id)
    reply = await agent.run("hello", session=session)      # history loaded, turn stored whole
    await sessions.set(conversation_id, session)           # provider state (JSON only)

``AgentSessionHistoryProvider`` is a ``HistoryProvider``: before a run it takes the
conversation's turn lease (the same lease a ``SessionManager`` takes, so the two serialise
against each other and across processes) and loads the history; after the run it appends the
run's input and response messages as one fenced turn and releases the lease. The history is
stored as canonical messages, so the conversation also continues under any other family.
``AgentSessionStore`` implements the framework's ``SessionStore`` protocol (``get``, ``set``,
``delete``) for ``AgentSession.state``, refusing anything that is not JSON.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from agent_framework import AgentSession, HistoryProvider
from agent_framework import Message as NativeMessage

from ..errors import UnserializableState, UnsupportedAgent
from ..families.maf.conversion import to_canonical, to_native
from ..messages import close_unanswered_tool_calls
from ..stores import Store, open_store
from ._turns import StoreTurns, TurnLease

SESSION_STATE_KEY = "agent_framework.session"
"""Where ``AgentSessionStore`` keeps a session's snapshot: this key of the conversation's
metadata (``Session.metadata()`` shows it; ``set_metadata`` of a manager replaces it)."""

SNAPSHOT_VERSION = 1
_PICKLE_MARKER = "__pickled__"  # the framework's workflow-checkpoint encoding (pickle in JSON)


class AgentSessionHistoryProvider(HistoryProvider):
    """An Agent Framework ``HistoryProvider`` on any agentsession store.

    ``store`` is a ``Store`` or a store URL (``sqlite:///agentsession.db``, ``redis://…``,
    ``postgresql://…``, ``mysql://…``; ``?ttl=`` and ``encryption_keys=`` as for any store).
    ``lock_timeout`` is how long a run waits for another run on the same session (then
    ``SessionBusy``), ``lease_ttl`` how long a crashed process's lease blocks the session (a
    running turn renews it every third of that). The
    flags (``load_messages``, ``store_inputs``, …) are the framework's own.

    The session id is the ``AgentSession.session_id``: create sessions with
    ``agent.create_session(session_id=conversation_id)``, not with a random id per request.
    """

    DEFAULT_SOURCE_ID: ClassVar[str] = "agentsession"

    def __init__(
        self,
        store: Store | str,
        *,
        source_id: str = DEFAULT_SOURCE_ID,
        lock_timeout: float = 30.0,
        lease_ttl: float = 6.0,
        load_messages: bool = True,
        store_inputs: bool = True,
        store_context_messages: bool = False,
        store_context_from: set[str] | None = None,
        store_outputs: bool = True,
    ) -> None:
        super().__init__(
            source_id,
            load_messages=load_messages,
            store_inputs=store_inputs,
            store_context_messages=store_context_messages,
            store_context_from=store_context_from,
            store_outputs=store_outputs,
        )
        self.store = open_store(store) if isinstance(store, str) else store
        self.turns = StoreTurns(self.store, lock_timeout=lock_timeout, lease_ttl=lease_ttl)
        self._runs: dict[int, tuple[TurnLease, weakref.finalize[Any, Any]]] = {}

    # -- the HistoryProvider contract ----------------------------------------------------

    async def get_messages(
        self, session_id: str | None, *, state: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[NativeMessage]:
        """The stored history of ``session_id`` (a plain read, no lease)."""
        if session_id is None:
            return []
        conversation = await self.store.load(session_id)
        if conversation is None:
            return []
        return to_native(close_unanswered_tool_calls(conversation.messages))

    async def save_messages(
        self,
        session_id: str | None,
        messages: Sequence[NativeMessage],
        *,
        state: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Append ``messages`` as one turn (under the lease) when no run holds one."""
        if session_id is None or not messages:
            return
        lease = await self.turns.begin(session_id, load=False)
        await self.turns.finish(lease, to_canonical(messages))

    # -- a run is one turn: lease and load before it, fenced append after it -----------

    async def before_run(self, *, agent: Any, session: Any, context: Any, state: Any) -> None:
        _refuse_service_history(agent, context)
        lease = await self.turns.begin(context.session_id)
        # the framework has no failure hook: a run that raises never reaches after_run, and
        # its context is dropped; the finalizer then gives the lease back at once
        self._runs[id(context)] = (
            lease,
            weakref.finalize(context, self._abandon, id(context)),
        )
        messages = lease.conversation.messages if lease.conversation is not None else []
        history = to_native(close_unanswered_tool_calls(messages))
        context.extend_messages(self, history)

    async def after_run(self, *, agent: Any, session: Any, context: Any, state: Any) -> None:
        run = self._runs.pop(id(context), None)
        if run is None:  # load_messages=False: no before_run, so no lease yet
            await super().after_run(agent=agent, session=session, context=context, state=state)
            return
        lease, finalizer = run
        finalizer.detach()
        try:
            added = self._messages_to_store(context)
        except BaseException:
            await self.turns.release(lease)
            raise
        await self.turns.finish(lease, to_canonical(added))

    def _messages_to_store(self, context: Any) -> list[NativeMessage]:
        """What the framework's own ``after_run`` would save: context (if asked), inputs,
        response messages."""
        messages: list[NativeMessage] = list(self._get_context_messages_to_store(context))
        if self.store_inputs:
            messages += context.input_messages
        response = context.response
        if self.store_outputs and response is not None and response.messages:
            messages += response.messages
        return messages

    def _abandon(self, key: int) -> None:
        run = self._runs.pop(key, None)
        if run is not None:
            self.turns.abandon(run[0])

    async def close(self) -> None:
        await self.store.close()


class AgentSessionStore:
    """The Agent Framework ``SessionStore`` protocol (``get``, ``set``, ``delete``) on an
    agentsession store: ``AgentSession`` snapshots (``session_id``, ``service_session_id``,
    ``state``) kept with the conversation of the same id.

    State is stored as the framework serialises it (``AgentSession.to_dict()``): JSON values,
    and custom types registered with ``agent_framework.register_state_type`` (restored by
    ``from_dict`` when the registering module is imported). Anything else — an unregistered
    object, a non-finite float, a workflow checkpoint (pickle in JSON) — raises
    ``UnserializableState`` naming where it is, and nothing is written: agentsession never
    pickles. Each write takes the conversation's turn lease, so it never interleaves with a
    turn of a ``SessionManager`` or an ``AgentSessionHistoryProvider``.

    ``delete`` removes the conversation: its history and its state.
    """

    def __init__(
        self, store: Store | str, *, lock_timeout: float = 30.0, lease_ttl: float = 6.0
    ) -> None:
        self.store = open_store(store) if isinstance(store, str) else store
        self.turns = StoreTurns(self.store, lock_timeout=lock_timeout, lease_ttl=lease_ttl)

    async def get(self, session_id: str) -> AgentSession | None:
        """The stored session; a conversation with history but no snapshot yet (its turns came
        from a manager or a history provider) gives a fresh ``AgentSession`` of that id."""
        info = await self.store.info(session_id)
        if info is None:
            return None
        snapshot = info.metadata.get(SESSION_STATE_KEY)
        if not isinstance(snapshot, Mapping):
            return AgentSession(session_id=session_id)
        return AgentSession.from_dict(
            {
                "type": "session",
                "session_id": snapshot.get("session_id") or session_id,
                "service_session_id": snapshot.get("service_session_id"),
                "state": dict(snapshot.get("state") or {}),
            }
        )

    async def set(self, session_id: str, session: AgentSession) -> None:
        """Store ``session``'s snapshot under ``session_id`` (replacing the previous one)."""
        data = session.to_dict()
        _check_json(data.get("state", {}), "state")
        snapshot = {
            "v": SNAPSHOT_VERSION,
            "session_id": data.get("session_id"),
            "service_session_id": data.get("service_session_id"),
            "state": data.get("state", {}),
        }
        lease = await self.turns.begin(session_id, load=False)
        try:
            if lease.info is None:
                await self.store.create(session_id, {SESSION_STATE_KEY: snapshot})
            else:
                metadata = {**lease.info.metadata, SESSION_STATE_KEY: snapshot}
                await self.store.set_metadata(session_id, metadata)
        finally:
            await self.turns.release(lease)

    async def delete(self, session_id: str) -> None:
        lease = await self.turns.begin(session_id, load=False)
        try:
            await self.store.delete(session_id)
        finally:
            await self.turns.release(lease)

    async def close(self) -> None:
        await self.store.close()


def _check_json(value: Any, path: str) -> None:
    """``UnserializableState`` naming the first value under ``path`` that is not plain JSON."""
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnserializableState(f"session state value at {path} is {value!r}, not JSON")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_json(item, f"{path}[{index}]")
        return
    if isinstance(value, Mapping):
        if _PICKLE_MARKER in value:
            raise UnserializableState(
                f"session state at {path} holds an Agent Framework workflow checkpoint value "
                "(pickle in JSON); agentsession never stores pickled data. Keep workflow "
                "checkpoints in the framework's own CheckpointStorage."
            )
        for key, item in value.items():
            if not isinstance(key, str):
                raise UnserializableState(f"session state at {path} has a non-text key {key!r}")
            _check_json(item, f"{path}.{key}")
        return
    raise UnserializableState(
        f"session state value at {path} has the type {type(value).__qualname__}, which is not "
        "JSON; "
        "agentsession never pickles. Store plain JSON values, or register the type with "
        "agent_framework.register_state_type(cls) (a to_dict()/from_dict() pair or a "
        "Pydantic model) at module import."
    )


def _refuse_service_history(agent: Any, context: Any) -> None:
    """A client that keeps the conversation on its service would get the history twice (its
    own and ours) and leave agentsession half of it: refused with the fix."""
    options = {**(getattr(agent, "default_options", None) or {}), **(context.options or {})}
    store = options.get("store")
    client = getattr(agent, "client", None)
    stores = store is True or (store is None and getattr(client, "STORES_BY_DEFAULT", False))
    if stores or context.service_session_id:
        raise UnsupportedAgent(
            f"agent {getattr(agent, 'name', '?')!r} keeps its conversation on the model "
            "service (store=True, a client that stores by default, or a service session id), "
            "so AgentSessionHistoryProvider cannot own its history. Run it with store=False "
            "(Agent(..., default_options={'store': False}))."
        )


__all__ = [
    "SESSION_STATE_KEY",
    "AgentSessionHistoryProvider",
    "AgentSessionStore",
]
