"""The agentchat team driver: one user turn through a ``RoundRobinGroupChat``,
``SelectorGroupChat``, ``Swarm`` or ``GraphFlow`` until its termination condition.

The stored conversation is the team's canonical log (every message with its speaker). AutoGen's
own team state is never stored: its layout changed at 0.4.9, it is not JSON in 0.6.x and it
grows with the conversation. Instead each participant's model context and the manager's thread
are rebuilt from the log, and the manager's few bounded fields (next speaker, current speaker,
a graph's ready queue) travel in the team record of each turn's last message.

A participant sees the thread as AutoGen gives it: the user's and the other members' chat
messages as ``UserMessage``s with their names, its own tool calls, results and replies as its
own. After each turn the part of every participant's context the turn added is rewritten to
exactly that (so a rebuilt team and a cached one hold the same thing), which also drops the
``SystemMessage``s that ``memory=`` injects each turn.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from packaging.version import Version

from ...errors import FamilyError, TeamMismatch, UnsupportedAgent
from ...messages import Image, Message, ToolCall
from ...turns import Emit, MessageEvent, TextDelta, Turn, Usage, ignore
from .._gates import AGENTCHAT_TEAM_STATE_REKEYED, at_least
from .._team import check_speakers, latest_record, renamed, renames, team_record, with_record
from ..base import Driver, refuse_images
from .agent import AgentChatDriver, _message_list
from .conversion import to_native

if TYPE_CHECKING:
    from autogen_agentchat.base import Team

logger = logging.getLogger("agentsession")

SUPPORTED_TEAMS = ("RoundRobinGroupChat", "SelectorGroupChat", "Swarm", "GraphFlow")
_MANAGER_FIELDS = {  # the manager's bounded state, derived from the log when no record fits
    "RoundRobinGroupChat": "next_speaker_index",
    "SelectorGroupChat": "previous_speaker",
    "Swarm": "current_speaker",
}


def team_kind(team: object) -> str | None:
    """The supported team class ``team`` is (or derives from), by name; None if none."""
    for cls in type(team).__mro__:
        if cls.__name__ in SUPPORTED_TEAMS and cls.__module__.startswith("autogen_agentchat."):
            return cls.__name__
    return None


class AgentChatTeamDriver(Driver):
    """Drives one agentchat team; every participant must be an ``AssistantAgent``."""

    agent: Team

    def __init__(self, team: Team, version: Version) -> None:
        from autogen_agentchat.agents import AssistantAgent

        kind = team_kind(team)
        if kind is None:
            raise UnsupportedAgent(
                f"the agent factory returned an autogen_agentchat {type(team).__qualname__}; "
                f"agentsession drives {', '.join(SUPPORTED_TEAMS)} teams (GraphFlow from 0.5) "
                "and single AssistantAgents. MagenticOneGroupChat is not supported: its "
                "orchestrator keeps a task ledger that agentsession does not persist"
            )
        # GraphFlow 0.5 adds its own stop agent, which keeps no conversation
        participants = [
            p for p in getattr(team, "_participants", ()) if type(p).__name__ != "_StopAgent"
        ]
        for participant in participants:
            if not isinstance(participant, AssistantAgent):
                raise UnsupportedAgent(
                    f"the {kind} participant {getattr(participant, 'name', '?')!r} is a "
                    f"{type(participant).__qualname__}; agentsession drives teams of "
                    "AssistantAgents (a nested team, UserProxyAgent or CodeExecutorAgent keeps "
                    "state it cannot rebuild). Give that role to an AssistantAgent with tools"
                )
        self.agent = team
        self.kind = kind
        self.version = version
        self.members = {p.name: AgentChatDriver(p, version) for p in participants}
        self._log: list[Message] = []
        # per member: the length of the log its model context holds (in AutoGen's form)
        self._covered = dict.fromkeys(self.members, 0)
        # the member whose latest handoff went to someone outside the team (the user), if any
        self._handed_to_user: str | None = None

    def parts(self) -> Iterable[object]:
        yield self.agent
        for member in self.members.values():
            yield from member.parts()
            yield member.model_context  # a shared context leaks text (microsoft/autogen#6088)
        condition = getattr(self.agent, "_termination_condition", None)
        if condition is not None:
            yield condition

    async def run_turn(
        self,
        text: str,
        sender: str = "user",
        emit: Emit = ignore,
        *,
        images: Sequence[Image] = (),
    ) -> Turn:
        refuse_images(images, self)
        from autogen_agentchat.base import TaskResult
        from autogen_agentchat.messages import TextMessage

        starts: dict[str, tuple[int, object]] = {}
        for name, member in self.members.items():
            await member._baseline()
            messages = _message_list(member.model_context)
            if messages is not None:
                starts[name] = (len(messages), messages[-1] if messages else None)
        if self.kind == "GraphFlow" and self._log:
            await self._restart_finished_graph()
        task: Any = TextMessage(content=text, source=sender)
        if self.kind == "Swarm" and self._handed_to_user is not None:
            from autogen_agentchat.messages import HandoffMessage

            # the swarm handed the conversation to the user (HandoffTermination): the answer
            # goes back to the agent that asked, as AutoGen requires of a resumed swarm
            task = HandoffMessage(content=text, source=sender, target=self._handed_to_user)
        added: list[Message] = []
        reader = _StreamReader(set(self.members), sender)
        stop_reason: str | None = None
        usage: Usage | None = None
        speaker = "the team"
        try:
            async for item in self.agent.run_stream(task=task):
                if isinstance(item, TaskResult):
                    stop_reason = item.stop_reason
                    continue
                speaker = str(getattr(item, "source", speaker))
                used = getattr(item, "models_usage", None)
                if used is not None:
                    counted = Usage(int(used.prompt_tokens), int(used.completion_tokens))
                    usage = counted if usage is None else usage + counted
                delta = reader.delta(item)
                if delta is not None:
                    emit(TextDelta(delta, speaker))
                    continue
                for message in reader.read(item):
                    if not added and message.role != "user":
                        # versions that do not echo the task: the user's message comes first
                        target = getattr(task, "target", None)
                        first = Message(
                            "user",
                            text,
                            name=sender,
                            metadata={"handoff": target} if target else {},
                        )
                        added.append(first)
                        emit(MessageEvent(first))
                    added.append(message)
                    emit(MessageEvent(message))
        except Exception as exc:
            failing = self._failing_member(starts) or f"the speaker after {speaker}"
            cause = str(exc).split("\nTraceback", 1)[0]  # AutoGen appends the whole traceback
            raise FamilyError(
                f"the {self.kind} turn failed while {failing!r} was speaking: "
                f"{type(exc).__name__}: {cause}"
            ) from exc
        if stop_reason is None:
            # a team only stops without a reason when a participant failed: 0.4.x logs the
            # error (logger autogen_core) and ends the run instead of raising it
            failing = self._failing_member(starts) or f"the speaker after {speaker}"
            raise FamilyError(
                f"the {self.kind} turn stopped with no stop reason while {failing!r} was "
                "speaking: the participant failed (its error is logged by autogen_core)"
            )
        if len(added) < 2:
            raise FamilyError(
                f"the {self.kind} turn ended before any participant spoke "
                f"(stop reason: {stop_reason!r}); check its termination condition and max_turns"
            )
        begin = len(self._log)
        self._log.extend(added)
        self._handed_to_user = _handed_to_user(added, set(self.members), self._handed_to_user)
        await self._settle_contexts(begin, starts)
        if self.kind == "GraphFlow":
            await self._forget_stop_messages()
        record = team_record(self.kind, await self._manager_state())
        recorded = with_record(added, record)
        self._log[-1] = recorded[-1]
        return Turn(recorded, stop_reason=stop_reason, usage=usage)

    def _failing_member(self, starts: Mapping[str, tuple[int, object]]) -> str | None:
        """The member that was about to answer when the turn failed: its context took the
        thread in (it grew) but ends with no reply of its own."""
        for name, member in self.members.items():
            messages = _message_list(member.model_context)
            start = starts.get(name, (0, None))[0]
            grew = messages is not None and len(messages) > start
            if grew and type(messages[-1]).__name__ in ("UserMessage", "SystemMessage"):  # type: ignore[index]
                return str(name)
        return None

    async def export_history(self) -> list[Message]:
        return list(self._log)

    async def import_history(self, messages: Sequence[Message]) -> None:
        log = renamed(self.agent, messages)
        check_speakers(log, list(self.members))
        # the manager first: loading a team state loads every participant's state too
        await self._load_manager(log)
        for name, member in self.members.items():
            await member.import_history(view_for(name, log))
        self._log = log
        self._covered = dict.fromkeys(self.members, len(log))
        self._handed_to_user = _handed_to_user(log, set(self.members), None)

    async def extend_history(self, messages: Sequence[Message]) -> bool:
        if not at_least(self.version, AGENTCHAT_TEAM_STATE_REKEYED):
            return False  # <= 0.4.8 creates its containers lazily: rebuilt instead
        if renames(self.agent):
            return False  # the log holds the new names: it is rebuilt from the stored ones
        # the team's log is at hand, so no store read: the team and each member reload
        await self.import_history([*self._log, *messages])
        return True

    async def close(self) -> None:
        for member in self.members.values():
            await member.close()

    async def _settle_contexts(self, begin: int, starts: Mapping[str, tuple[int, object]]) -> None:
        """Rewrite what this turn added to each speaker's model context to its view of the log.

        AutoGen keeps a tool-call summary or a handoff out of the speaker's own context and
        writes each turn's memory into it; the rewrite makes the live context what a rebuilt
        one holds. Only this turn's part is touched, so the cost follows the turn.
        """
        for name, member in self.members.items():
            end = _covered_until(name, self._log, begin)
            if end is None:
                continue  # did not speak: AutoGen still buffers the thread for it
            context = member.model_context
            messages = _message_list(context)
            start, anchor = starts.get(name, (0, None))
            if messages is None or (
                start and (len(messages) < start or messages[start - 1] is not anchor)
            ):
                logger.warning(
                    "the model context of team member %r was rewritten during a turn; "
                    "rebuilding it from the conversation",
                    name,
                )
                await member.import_history(view_for(name, self._log[:end]))
            else:
                view = view_for(name, self._log[self._covered[name] : end])
                messages[start:] = _llm_messages(to_native(view, self.version, name))
            self._covered[name] = end

    async def _forget_stop_messages(self) -> None:
        """GraphFlow 0.5 ends a graph by letting its stop agent speak; that stop message sits in
        every participant's buffer and would reach its model next turn. It is no conversation
        (a rebuilt team has none): drop it."""
        from autogen_core import AgentId

        team: Any = self.agent
        for participant, topic in zip(
            team._participants, team._participant_topic_types, strict=False
        ):
            if participant.name not in self.members:
                continue
            agent_id = AgentId(type=topic, key=team._team_id)
            container = await team._runtime.try_get_underlying_agent_instance(agent_id)
            buffer = getattr(container, "_message_buffer", None)
            if isinstance(buffer, list):
                buffer[:] = [
                    m
                    for m in buffer
                    if getattr(m, "source", None) in self.members
                    or type(m).__name__ != "StopMessage"
                ]

    async def _manager(self) -> Any:
        from autogen_core import AgentId

        team: Any = self.agent
        agent_id = AgentId(type=team._group_chat_manager_topic_type, key=team._team_id)
        return await team._runtime.try_get_underlying_agent_instance(agent_id)

    async def _manager_state(self) -> dict[str, Any]:
        """The manager's state without its message thread: bounded, read in O(1)."""
        manager = await self._manager()
        thread = manager._message_thread
        manager._message_thread = []
        try:
            state = dict(await manager.save_state())
        finally:
            manager._message_thread = thread
        for key in ("message_thread", "type", "version"):
            state.pop(key, None)
        return state

    async def _load_manager(self, log: Sequence[Message]) -> None:
        team: Any = self.agent
        record = latest_record(log, self.kind) or self._derived_state(log)
        if self.kind == "GraphFlow":
            record = self._repaired_graph_state(record)
        thread = _thread(log, set(self.members))
        if at_least(self.version, AGENTCHAT_TEAM_STATE_REKEYED):
            state = dict(await team.save_state())  # the fresh team: every key this version wants
            states = dict(state["agent_states"])
            for name in self.members:
                # a used team's containers still buffer messages its members have not seen;
                # the members' contexts are reloaded with their whole view below
                member_state = states.get(name)
                if isinstance(member_state, Mapping) and "message_buffer" in member_state:
                    states[name] = {**member_state, "message_buffer": []}
            manager_key = next(key for key in states if key not in self.members)
            states[manager_key] = {**states[manager_key], **record, "message_thread": thread}
            await team.load_state({**state, "agent_states": states})
        else:
            # <= 0.4.8 keys the state by agent id ("group_chat_manager/<team id>") and
            # instantiates agents lazily; only the manager needs loading
            manager_key = f"{team._group_chat_manager_topic_type}/{team._team_id}"
            manager_state = {**record, "message_thread": thread}
            await team.load_state(
                {"agent_states": {manager_key: manager_state}, "team_id": team._team_id}
            )

    def _derived_state(self, log: Sequence[Message]) -> dict[str, Any]:
        """The manager's bounded state for a log no record of this team type describes (the
        conversation comes from another team type, family or a single agent)."""
        field = _MANAGER_FIELDS.get(self.kind)
        names = list(self.members)
        last = next(
            (m.name for m in reversed(log) if m.role == "assistant" and m.name in self.members),
            None,
        )
        if field == "next_speaker_index":
            return {field: (names.index(last) + 1) % len(names) if last else 0, "current_turn": 0}
        if field == "previous_speaker":
            return {field: last, "current_turn": 0}
        if field == "current_speaker":
            target = next(
                (m.metadata.get("handoff") for m in reversed(log) if m.metadata.get("handoff")),
                None,
            )
            current = target if target in self.members else last
            return {field: current or names[0], "current_turn": 0}
        return {}

    def _repaired_graph_state(self, state: dict[str, Any]) -> dict[str, Any]:
        """Validate a GraphFlow manager state and restart a graph that cannot go on.

        From 0.6 an interrupted graph can save ``remaining`` work with an empty ``ready``
        queue and then resume by ending at once (microsoft/autogen#7043; the fix PRs #7220 and
        #7916 are unmerged): it is restarted at its start nodes. 0.5 never restarts a finished
        graph (nothing pending, nothing active), so its next task would end at once too: the
        same restart. Node names the graph lacks raise ``TeamMismatch``.
        """
        graph = getattr(self.agent, "_graph", None)
        if graph is None:
            return state
        nodes = set(graph.nodes)
        if "ready" in state:
            named = set(state.get("ready") or ()) | set(state.get("remaining") or {})
        else:
            named = set(state.get("pending_execution") or {}) | set(state.get("active_nodes") or ())
        unknown = sorted(str(n) for n in named - nodes)
        if unknown:
            raise TeamMismatch(unknown, sorted(nodes))
        starts = sorted(graph.get_start_nodes())
        if "ready" in state and not state["ready"]:
            logger.warning(
                "the GraphFlow state has no ready node (microsoft/autogen#7043); "
                "restarting the graph at its start nodes"
            )
            return {
                **state,
                "ready": starts,
                "remaining": {t: dict(g) for t, g in graph.get_remaining_map().items()},
                "enqueued_any": {
                    t: dict.fromkeys(g, False) for t, g in (state.get("enqueued_any") or {}).items()
                },
            }
        if (
            "pending_execution" in state
            and not state["pending_execution"]
            and not state.get("active_nodes")
        ):
            return {
                **state,
                "active_nodes": [],
                "pending_execution": {node: [] for node in starts},
                "active_node_count": dict.fromkeys(nodes, 0),
                "default_start_executed": False,
            }
        return state

    async def _restart_finished_graph(self) -> None:
        """Before a GraphFlow turn: a finished graph (0.5) starts again for the new task."""
        state = await self._manager_state()
        repaired = self._repaired_graph_state(state)
        if repaired is state:
            return
        manager = await self._manager()
        thread = manager._message_thread
        await manager.load_state({**repaired, "message_thread": []})
        manager._message_thread = thread


def _handed_to_user(log: Sequence[Message], members: set[str], before: str | None) -> str | None:
    """The member whose latest handoff in ``log`` targets someone outside the team (the
    user), or None if the latest handoff stays inside it; ``before`` if ``log`` has none."""
    for message in reversed(log):
        target = message.metadata.get("handoff")
        if target is not None:
            return None if target in members else message.name
    return before


class _StreamReader:
    """Turns the items of ``team.run_stream()`` into canonical messages, in order."""

    def __init__(self, members: set[str], sender: str) -> None:
        self.members = members
        self.sender = sender
        self.thoughts: dict[str, str] = {}
        self.call_names: dict[str, str] = {}
        self.seen_task = False

    def delta(self, item: Any) -> str | None:
        if type(item).__name__ == "ModelClientStreamingChunkEvent":
            return str(item.content)
        return None

    def read(self, item: Any) -> list[Message]:
        kind = type(item).__name__
        source = str(getattr(item, "source", ""))
        if source not in self.members:
            if (
                not self.seen_task
                and kind in ("TextMessage", "HandoffMessage")
                and source == self.sender
            ):
                self.seen_task = True
                task = {"handoff": str(item.target)} if kind == "HandoffMessage" else {}
                return [Message("user", str(item.content), name=source, metadata=task)]
            return []  # the manager's events (speaker selection, stop messages)
        if kind == "ThoughtEvent":
            self.thoughts[source] = str(item.content)
            return []
        metadata: dict[str, Any] = {}
        thought = self.thoughts.pop(source, None) if kind != "ToolCallExecutionEvent" else None
        if thought:
            metadata["thought"] = thought
        if kind == "ToolCallRequestEvent":
            calls = tuple(ToolCall(str(c.id), str(c.name), str(c.arguments)) for c in item.content)
            self.call_names.update((call.id, call.name) for call in calls)
            return [Message("assistant", None, name=source, tool_calls=calls, metadata=metadata)]
        if kind == "ToolCallExecutionEvent":
            return [
                Message(
                    "tool",
                    str(result.content),
                    name=getattr(result, "name", None) or self.call_names.get(str(result.call_id)),
                    tool_call_id=str(result.call_id),
                    is_error=bool(getattr(result, "is_error", False)),
                )
                for result in item.content
            ]
        if kind == "HandoffMessage":
            metadata["handoff"] = str(item.target)
        elif _is_event(item):
            return []  # memory queries, code events, user-input requests: not the conversation
        return [Message("assistant", _chat_text(item), name=source, metadata=metadata)]


def _is_event(item: Any) -> bool:
    return any(cls.__name__ in ("BaseAgentEvent", "AgentEvent") for cls in type(item).__mro__) or (
        type(item).__name__.endswith("Event")
    )


def _chat_text(item: Any) -> str:
    to_text = getattr(item, "to_model_text", None)
    if callable(to_text):
        return str(to_text())
    content = getattr(item, "content", "")
    if isinstance(content, list):
        return "\n".join(part if isinstance(part, str) else "[image]" for part in content)
    return str(content)


def view_for(name: str, log: Sequence[Message]) -> list[Message]:
    """Participant ``name``'s view of the team log, as AutoGen builds its model context: the
    user's messages and the other members' chat messages as user messages carrying their
    names; its own tool calls, their results and its replies as they are; the other members'
    tool traffic and every system message (memory injections) left out."""
    view: list[Message] = []
    own_calls: set[str] = set()
    for message in log:
        if message.role == "system":
            continue
        if message.role == "tool":
            if message.tool_call_id in own_calls:
                view.append(message)
        elif message.role == "user":
            view.append(message)
        elif message.name == name:
            own_calls.update(call.id for call in message.tool_calls)
            view.append(message)
        elif not message.tool_calls:
            view.append(Message("user", message.content, name=message.name))
    return view


def _covered_until(name: str, log: Sequence[Message], begin: int) -> int | None:
    """One past the last message of ``log[begin:]`` that ``name`` spoke (or whose tool it
    ran), or None if it did not speak in that part."""
    own_calls = {
        call.id
        for m in log[begin:]
        if m.role == "assistant" and m.name == name
        for call in m.tool_calls
    }
    for index in range(len(log) - 1, begin - 1, -1):
        message = log[index]
        if (message.role == "assistant" and message.name == name) or (
            message.role == "tool" and message.tool_call_id in own_calls
        ):
            return index + 1
    return None


def _llm_messages(native: Sequence[Mapping[str, Any]]) -> list[Any]:
    from autogen_core import models

    return [getattr(models, str(item["type"])).model_validate(item) for item in native]


def _thread(log: Sequence[Message], members: set[str]) -> list[dict[str, Any]]:
    """The manager's message thread rebuilt from the log, as this version dumps it."""
    from autogen_agentchat import messages as chat
    from autogen_core import FunctionCall
    from autogen_core.models import FunctionExecutionResult

    thread: list[Any] = []
    callers: dict[str, str] = {}
    for message in log:
        source = message.name or "user"
        if message.role == "user" and message.metadata.get("handoff"):
            target = str(message.metadata["handoff"])
            thread.append(
                chat.HandoffMessage(content=message.content or "", source=source, target=target)
            )
        elif message.role == "user" or message.role == "system":
            if message.role == "user":
                thread.append(chat.TextMessage(content=message.content or "", source=source))
        elif message.role == "tool":
            result = FunctionExecutionResult.model_validate(
                {
                    "content": message.content or "",
                    "call_id": message.tool_call_id or "",
                    "name": message.name or "",
                    "is_error": message.is_error,
                }
            )
            caller = callers.get(message.tool_call_id or "", source)
            last: Any = thread[-1] if thread else None
            if type(last).__name__ == "ToolCallExecutionEvent" and last.source == caller:
                last.content.append(result)
            else:
                thread.append(chat.ToolCallExecutionEvent(content=[result], source=caller))
        elif message.tool_calls:
            calls = [
                FunctionCall(id=c.id, name=c.name, arguments=c.arguments)
                for c in message.tool_calls
            ]
            callers.update((c.id, source) for c in message.tool_calls)
            thread.append(chat.ToolCallRequestEvent(content=calls, source=source))
        elif message.metadata.get("handoff"):
            thread.append(
                chat.HandoffMessage(
                    content=message.content or "",
                    source=source,
                    target=str(message.metadata["handoff"]),
                )
            )
        else:
            thread.append(chat.TextMessage(content=message.content or "", source=source))
    return [item.model_dump() for item in thread]
