"""The legacy driver: one user turn through a (user proxy, assistant) pair."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from packaging.version import Version

from ...errors import FamilyError
from ...messages import Image, Message, close_unanswered_tool_calls
from ...turns import Emit, MessageEvent, Turn, ignore
from .._representable import require_representable
from ..base import Driver
from ._quirks import _quiet
from .conversion import _calls_tools, _mirrored, content_parts, to_canonical, to_native

MAX_TOOL_ROUNDS = 10


class LegacyDriver(Driver):
    """Drives one (user proxy, assistant) pair; the assistant's view is the canonical history."""

    def __init__(self, assistant: Any, user: Any, version: Version) -> None:
        self.agent = assistant
        self.user = user
        self.version = version

    def parts(self) -> tuple[Any, ...]:
        return (self.agent, self.user)

    async def run_turn(
        self,
        text: str,
        sender: str = "user",
        emit: Emit = ignore,
        *,
        images: Sequence[Image] = (),
    ) -> Turn:
        # the legacy API is synchronous: the whole turn runs in one worker thread
        messages = await asyncio.to_thread(self._run_turn, text, sender, emit, images)
        return Turn(tuple(messages))

    def _run_turn(
        self, text: str, sender: str, emit: Emit, images: Sequence[Image] = ()
    ) -> list[Message]:
        assistant, user = self.agent, self.user
        start = len(assistant.chat_messages[user])
        emitted: list[Message] = []

        def report() -> None:
            # the turn's tail converted whole (a tool result is named after its call),
            # the messages not reported yet emitted
            turn = to_canonical(assistant.chat_messages[user][start:], assistant.name, user.name)
            for message in turn[len(emitted) :]:
                emitted.append(message)
                emit(MessageEvent(message))

        user.reset_consecutive_auto_reply_counter()
        assistant.reset_consecutive_auto_reply_counter()
        with _quiet(self.version):
            # a "name" in the message dict is kept by every version; without it AutoGen
            # would name the message after the user proxy
            user.send(
                {"content": content_parts(text, images) if images else text, "name": sender},
                assistant,
                request_reply=False,
                silent=True,
            )
            report()
            for rounds in range(MAX_TOOL_ROUNDS + 1):
                reply = assistant.generate_reply(sender=user)
                if reply is None:
                    raise FamilyError(
                        f"agent {assistant.name!r} gave no reply: its is_termination_msg or "
                        "max_consecutive_auto_reply stopped it"
                    )
                assistant.send(reply, user, request_reply=False, silent=True)
                report()
                if not _calls_tools(reply):
                    break
                if rounds == MAX_TOOL_ROUNDS:
                    raise FamilyError(
                        f"agent {assistant.name!r} kept calling tools: more than "
                        f"{MAX_TOOL_ROUNDS} tool rounds in one turn"
                    )
                result = user.generate_reply(sender=assistant)
                if result is None:
                    raise FamilyError(
                        f"the user proxy {user.name!r} did not answer {assistant.name!r}'s tool "
                        "call: its max_consecutive_auto_reply (0?) or is_termination_msg stopped "
                        "it. Build the proxy with human_input_mode='NEVER' and the default "
                        "max_consecutive_auto_reply"
                    )
                user.send(result, assistant, request_reply=False, silent=True)
                report()
        # only this turn's tail is converted: a turn costs the same however long the history
        return emitted

    async def export_history(self) -> list[Message]:
        return to_canonical(self.agent.chat_messages[self.user], self.agent.name, self.user.name)

    async def import_history(self, messages: Sequence[Message]) -> None:
        require_representable(messages, "legacy")
        repaired = close_unanswered_tool_calls(messages)
        native = to_native(repaired, self.agent.name, self.user.name)
        # chat_messages is the agents' live history dict in every version; the private
        # _append_oai_message changed its signature at ag2 0.10
        self.agent.chat_messages[self.user] = native
        self.user.chat_messages[self.agent] = [_mirrored(m) for m in native]

    async def extend_history(self, messages: Sequence[Message]) -> bool:
        require_representable(messages, "legacy")
        native = to_native(close_unanswered_tool_calls(messages), self.agent.name, self.user.name)
        self.agent.chat_messages[self.user].extend(native)
        self.user.chat_messages[self.agent].extend(_mirrored(m) for m in native)
        return True
