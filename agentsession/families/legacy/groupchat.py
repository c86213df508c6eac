"""The legacy group chat driver: one user turn through a ``GroupChatManager``.

A turn sends the user's message to the manager and runs ``manager.run_chat`` (AutoGen's own
loop: speaker selection, broadcast, tool execution, termination, ``max_round``) until it ends;
the messages it appended to ``GroupChat.messages`` are the turn. The stored form is the canonical
log (every message with its speaker). A fresh group chat built by the factory is rebuilt from it
directly: ``GroupChat.messages`` and each participant's ``chat_messages[manager]``, which is
what ``GroupChatManager.resume`` would do, except that pyautogen 0.2.35's ``resume`` leaves each
agent without its own messages, costs a broadcast per message and prints.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from packaging.version import Version

from ...errors import FamilyError
from ...messages import Image, Message, Role, ToolCall
from ...turns import Emit, MessageEvent, Turn, ignore
from .._team import check_speakers, renamed, renames, team_record, with_record
from ..base import Driver, refuse_images
from ._quirks import _quiet
from .conversion import FUNCTION_CALL_ID, _text, add_tool_result, native_tool_calls

logger = logging.getLogger("agentsession")


def is_group_chat_manager(obj: object) -> bool:
    """True for an ``autogen`` GroupChatManager (or subclass), decided without importing autogen."""
    return any(
        cls.__name__ == "GroupChatManager" and cls.__module__.startswith("autogen.")
        for cls in type(obj).__mro__
    )


class LegacyGroupChatDriver(Driver):
    """Drives one ``GroupChatManager`` and its ``GroupChat``.

    ``user`` is the user proxy the factory returned with the manager, when it is a member of the
    group (it then runs the tools the others call); otherwise the user's messages come from an
    agent outside the group, named after the turn's sender.
    """

    def __init__(self, manager: Any, user: Any | None, version: Version) -> None:
        self.agent = manager
        self.groupchat = manager.groupchat
        self.user = user
        self.version = version
        self._senders: dict[str, Any] = {}
        self._call_names: dict[str, str] = {}
        self._speaking: str | None = None

    def parts(self) -> Iterable[object]:
        yield self.agent
        yield self.groupchat
        yield from self.groupchat.agents
        if self.user is not None:
            yield self.user

    @property
    def names(self) -> list[str]:
        return [agent.name for agent in self.groupchat.agents]

    async def run_turn(
        self,
        text: str,
        sender: str = "user",
        emit: Emit = ignore,
        *,
        images: Sequence[Image] = (),
    ) -> Turn:
        refuse_images(images, self)
        # the legacy API is synchronous: the whole group chat turn runs in one worker thread
        messages, stop_reason = await asyncio.to_thread(self._run_turn, text, sender, emit)
        record = team_record("GroupChat", {"last_speaker": messages[-1].name})
        return Turn(with_record(messages, record), stop_reason=stop_reason)

    def _run_turn(self, text: str, sender: str, emit: Emit) -> tuple[list[Message], str]:
        groupchat, manager = self.groupchat, self.agent
        user = self.user or self._sender(sender)
        start = len(groupchat.messages)
        added: list[Message] = []
        append, select = groupchat.append, groupchat.select_speaker

        def appended(message: dict[str, Any], speaker: Any) -> None:
            append(message, speaker)
            for item in self._to_canonical(groupchat.messages[-1:], user.name):
                added.append(item)
                emit(MessageEvent(item))

        def selected(last_speaker: Any, selector: Any) -> Any:
            speaker = select(last_speaker, selector)
            self._speaking = getattr(speaker, "name", None)
            return speaker

        # instance attributes that shadow the methods, for this turn only: every message is
        # reported as the loop appends it, whatever the version's run_chat does around it
        groupchat.append, groupchat.select_speaker = appended, selected
        self._speaking = None
        for agent in [manager, user, *groupchat.agents]:
            agent.reset_consecutive_auto_reply_counter()
        try:
            with _quiet(self.version):
                user.send(
                    {"content": text, "name": user.name}, manager, request_reply=False, silent=True
                )
                manager.run_chat(sender=user, config=groupchat)
        except Exception as exc:
            where = (
                f"while {self._speaking!r} was speaking"
                if self._speaking
                else "selecting a speaker"
            )
            raise FamilyError(
                f"the group chat turn failed {where}: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            del groupchat.append, groupchat.select_speaker
            if self.user is None:
                user.clear_history()  # an outside sender keeps nothing between turns
        stop_reason = self._stop_reason(groupchat.messages[start:])
        if len(added) < 2:
            raise FamilyError(
                f"the group chat ended before any agent spoke ({stop_reason}); nothing was stored. "
                "Check max_round, the speaker selection and the agents' is_termination_msg"
            )
        return added, stop_reason

    def _stop_reason(self, turn: Sequence[Mapping[str, Any]]) -> str:
        last = turn[-1] if turn else {}
        if len(turn) > 1 and self.agent._is_termination_msg(last):
            return f"termination message from {last.get('name')!r}"
        if len(turn) >= self.groupchat.max_round:
            return f"max_round ({self.groupchat.max_round}) reached"
        if self._speaking is not None and last.get("name") != self._speaking:
            return f"agent {self._speaking!r} gave no reply"
        return "no eligible next speaker"

    def _sender(self, name: str) -> Any:
        from autogen import ConversableAgent

        if name not in self._senders:
            self._senders[name] = ConversableAgent(
                name, llm_config=False, human_input_mode="NEVER", code_execution_config=False
            )
        return self._senders[name]

    def _to_canonical(self, native: Sequence[Mapping[str, Any]], human: str) -> list[Message]:
        """Group chat messages (the manager's view: every text is role "user") to canonical:
        the user proxy's and outside senders' messages are the user's, the members' are
        assistant messages, tool calls and results keep their roles."""
        members = set(self.names) - {human}
        out: list[Message] = []
        for raw in native:
            name = raw.get("name")
            content = _text(raw.get("content"))
            if raw.get("tool_calls") or raw.get("function_call"):
                calls = [
                    ToolCall(
                        str(c.get("id")),
                        c["function"]["name"],
                        c["function"].get("arguments") or "{}",
                    )
                    for c in raw.get("tool_calls") or ()
                ]
                if raw.get("function_call"):
                    fc = raw["function_call"]
                    calls.append(
                        ToolCall(FUNCTION_CALL_ID, fc["name"], fc.get("arguments") or "{}")
                    )
                self._call_names.update((call.id, call.name) for call in calls)
                if content in ("", "None"):  # ag2 stores a call's missing text as "None"
                    content = None
                out.append(Message("assistant", content, name=name, tool_calls=tuple(calls)))
            elif raw.get("tool_responses") or raw.get("role") == "tool":
                for response in raw.get("tool_responses") or [raw]:
                    call_id = str(response.get("tool_call_id"))
                    out.append(
                        Message(
                            "tool",
                            _text(response.get("content")),
                            name=self._call_names.get(call_id),
                            tool_call_id=call_id,
                        )
                    )
            elif raw.get("role") == "function":
                out.append(Message("tool", content, name=name, tool_call_id=FUNCTION_CALL_ID))
            else:
                role: Role = "assistant" if name in members else "user"
                out.append(Message(role, content, name=name))
        return out

    async def export_history(self) -> list[Message]:
        human = self.user.name if self.user is not None else ""
        return self._to_canonical(self.groupchat.messages, human)

    async def extend_history(self, messages: Sequence[Message]) -> bool:
        if renames(self.agent):
            return False  # the log holds the new names: it is rebuilt from the stored ones
        # the group's log is at hand, so no store read: every participant's view is rebuilt
        await self.import_history([*await self.export_history(), *messages])
        return True

    async def import_history(self, messages: Sequence[Message]) -> None:
        log = renamed(self.agent, messages)
        check_speakers(log, self.names)
        group = self._to_group(log)
        manager = self.agent
        self.groupchat.messages.clear()
        self.groupchat.messages.extend(group)
        # chat_messages is each agent's live history dict in every version; each keeps the
        # thread keyed by the manager, its own messages as "assistant", the others' as "user"
        for agent in self.groupchat.agents:
            agent.chat_messages[manager] = [_view(message, agent.name) for message in group]

    def _to_group(self, log: Sequence[Message]) -> list[dict[str, Any]]:
        """Canonical messages to ``GroupChat.messages`` dicts (the manager's view)."""
        group: list[dict[str, Any]] = []
        for message in log:
            if message.role == "tool":
                add_tool_result(group, message, self._executor(message.name))
            elif message.tool_calls:
                group.append({**native_tool_calls(message), "name": message.name})
                self._call_names.update(
                    (c.id, c.name) for c in message.tool_calls if c.id != FUNCTION_CALL_ID
                )
            elif message.role in ("user", "assistant"):
                group.append(
                    {"content": message.content, "role": "user", "name": message.name or "user"}
                )
        return group

    def _executor(self, tool: str | None) -> str:
        """The member that runs ``tool``: the one whose function map has it, else the user proxy."""
        for agent in self.groupchat.agents:
            if tool and tool in (getattr(agent, "function_map", None) or {}):
                return str(agent.name)
        return str(self.user.name if self.user is not None else self.names[0])


def _view(message: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Participant ``name``'s copy of a group message: its own text is "assistant", the others'
    "user"; tool calls are "assistant" and results "tool" in every copy."""
    view = dict(message)
    if "tool_calls" in view or "function_call" in view:
        if view.get("name") == name:
            del view["name"]  # an agent's own call carries no name, as AutoGen keeps it
    elif view.get("role") == "user":
        view["role"] = "assistant" if view.get("name") == name else "user"
    return view
