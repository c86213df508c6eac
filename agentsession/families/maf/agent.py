"""The maf driver: one user turn through one Agent Framework ``Agent``.

The driver gives the agent one ``AgentSession`` per conversation and keeps the history in it,
through the agent's ``InMemoryHistoryProvider`` (the one Agent Framework injects by itself
when an agent has no history provider), so a turn is exactly ``await agent.run(text,
session=session)``: the framework's own context-provider pipeline, middleware and function
invocation run as they would without agentsession.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from packaging.version import Version

from ...errors import FamilyError, UnsupportedAgent
from ...messages import Image, Message, close_unanswered_tool_calls
from ...turns import Emit, MessageEvent, TextDelta, Turn, Usage, ignore
from .._representable import require_representable
from ..base import Driver, refuse_images
from .conversion import to_canonical, to_native

if TYPE_CHECKING:
    from agent_framework import Agent, AgentSession, HistoryProvider


class MafDriver(Driver):
    """Drives one ``agent_framework.Agent``; its session's in-memory history is the conversation.

    A client that keeps history on its service (``STORES_BY_DEFAULT``, e.g. the OpenAI
    Responses API) is run with ``store=False``, so the whole conversation stays local and can be
    stored; an agent configured with ``store=True`` is refused, and a turn after which the
    service still reports a conversation of its own fails (nothing is recorded), because
    agentsession would hold only half of it.
    """

    agent: Agent

    def __init__(self, agent: Any, version: Version) -> None:
        self.agent = agent
        self.version = version
        self.history = _local_history(agent)
        self.options = _local_options(agent)
        self.session: AgentSession = agent.create_session()

    @property
    def _messages(self) -> list[Any]:
        state = self.session.state.setdefault(self.history.source_id, {})
        messages: list[Any] = state.setdefault("messages", [])
        return messages

    async def run_turn(
        self,
        text: str,
        sender: str = "user",
        emit: Emit = ignore,
        *,
        images: Sequence[Image] = (),
    ) -> Turn:
        refuse_images(images, self)
        from agent_framework import Message as NativeMessage

        start = len(self._messages)
        # a message id keeps the framework from taking a repeated text for a replay
        request = NativeMessage("user", [text], author_name=sender, message_id=uuid.uuid4().hex)
        run: Any = self.agent.run  # typed per options TypedDict; these options are plain
        options = {"options": self.options} if self.options else {}
        if emit is ignore:
            response = await run(request, session=self.session, **options)
        else:
            # streamed, so a reader sees the reply as the client writes it; the framework
            # stores the history when the stream is finalised, exactly as for a plain run
            stream = run(request, session=self.session, stream=True, **options)
            async for update in stream:
                text = update.text
                if text:
                    emit(TextDelta(text, speaker=self.agent.name))
            response = await stream.get_final_response()
        if self.session.service_session_id:
            service_id = self.session.service_session_id
            # the turn is not recorded, and the next one starts from the local history again
            self.session.service_session_id = None
            del self._messages[start:]
            raise FamilyError(
                f"the chat client of agent {self.agent.name!r} kept this conversation on its "
                f"service ({service_id!r}) instead of in the session, so agentsession cannot "
                "store it. Use a client that can be told store=False, or build the agent with "
                "default_options={'store': False}."
            )
        added = list(self._messages[start:])
        if not added or added[0] is not request:
            # a history provider rewrote the history instead of appending this turn
            raise FamilyError(
                f"the history of agent {self.agent.name!r} was rewritten during a turn "
                "(compaction?); agentsession records a turn as the messages it appended"
            )
        messages = to_canonical(added)
        for message in messages:
            emit(MessageEvent(message))
        return Turn(tuple(messages), usage=_usage(response))

    async def export_history(self) -> list[Message]:
        return to_canonical(self._messages)

    async def import_history(self, messages: Sequence[Message]) -> None:
        require_representable(messages, "maf")
        self._messages[:] = to_native(close_unanswered_tool_calls(messages))

    async def extend_history(self, messages: Sequence[Message]) -> bool:
        require_representable(messages, "maf")
        self._messages.extend(to_native(close_unanswered_tool_calls(messages)))
        return True

    async def close(self) -> None:
        close = getattr(self.agent, "close", None)
        if close is not None:
            await close()


def _local_history(agent: Agent) -> HistoryProvider:
    """The agent's in-memory history provider, added if it has no history provider.

    Any other provider that loads history (Redis, Cosmos, agentsession's own
    ``AgentSessionHistoryProvider``) would keep a second copy of the conversation that the
    manager cannot fence: refused.
    """
    from agent_framework import HistoryProvider, InMemoryHistoryProvider

    providers = [p for p in agent.context_providers if isinstance(p, HistoryProvider)]
    loading = [p for p in providers if p.load_messages]
    local = [p for p in loading if isinstance(p, InMemoryHistoryProvider)]
    if local and len(loading) == 1:
        return local[0]
    if loading:
        kinds = ", ".join(type(p).__name__ for p in loading)
        raise UnsupportedAgent(
            f"agent {agent.name!r} loads its history from {kinds}; with a SessionManager "
            "agentsession keeps the history itself. Build the Agent without a history "
            "provider, or keep your provider and use agentsession.integrations.maf "
            "(AgentSessionHistoryProvider) instead of a SessionManager."
        )
    provider = InMemoryHistoryProvider()
    agent.context_providers.append(provider)
    return provider


def _local_options(agent: Agent) -> dict[str, Any]:
    """Run options that keep the history local (``store=False`` for a storing client)."""
    store = (getattr(agent, "default_options", None) or {}).get("store")
    if store is True:
        raise UnsupportedAgent(
            f"agent {agent.name!r} is built with store=True: its client keeps the conversation "
            "on the service, which agentsession cannot store or move. Drop store=True (or set "
            "store=False) so the history stays in the session."
        )
    if store is None and getattr(agent.client, "STORES_BY_DEFAULT", False):
        return {"store": False}
    return {}


def _usage(response: Any) -> Usage | None:
    details = getattr(response, "usage_details", None) or {}
    prompt = details.get("input_token_count")
    completion = details.get("output_token_count")
    if prompt is None and completion is None:
        return None
    return Usage(int(prompt or 0), int(completion or 0))
