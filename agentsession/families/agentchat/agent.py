"""The agentchat driver: one user turn through one ``AssistantAgent``."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from packaging.version import Version

from ...errors import FamilyError
from ...messages import Image, Message, close_unanswered_tool_calls
from ...turns import Emit, MessageEvent, TextDelta, Turn, Usage, ignore
from .._gates import AGENTCHAT_PUBLIC_MODEL_CONTEXT, at_least
from .._representable import require_representable
from ..base import Driver
from .conversion import NativeMessage, native_image, to_canonical, to_native

if TYPE_CHECKING:
    from autogen_agentchat.agents import AssistantAgent
    from autogen_core.model_context import ChatCompletionContext

logger = logging.getLogger("agentsession")

_MODULE = "autogen_agentchat"


class AgentChatDriver(Driver):
    """Drives one ``AssistantAgent``.

    Messages the factory put into the model context (``initial_messages``) are the agent's
    configuration, like its system message: they are left out of the exported history and
    kept in front of it on import, so a rebuilt agent sees what the cached one saw.
    """

    agent: AssistantAgent

    def __init__(self, agent: AssistantAgent, version: Version) -> None:
        self.agent = agent
        self.version = version
        self._template: dict[str, Any] | None = None
        self._preamble: list[NativeMessage] = []

    @property
    def model_context(self) -> ChatCompletionContext:
        # the public property arrived in 0.5.0; before it only the attribute behind it exists
        if at_least(self.version, AGENTCHAT_PUBLIC_MODEL_CONTEXT):
            return self.agent.model_context
        return self.agent._model_context

    def parts(self) -> tuple[object, ...]:
        # a model context shared by two agents leaks one conversation into the other
        # (microsoft/autogen#6088)
        return (self.agent, self.model_context)

    async def run_turn(
        self,
        text: str,
        sender: str = "user",
        emit: Emit = ignore,
        *,
        images: Sequence[Image] = (),
    ) -> Turn:
        from autogen_agentchat.base import Response
        from autogen_core import CancellationToken
        from autogen_core.models import AssistantMessage

        await self._baseline()
        context = self.model_context
        before = _message_list(context)
        start = len(before) if before is not None else len(await self._state_messages())
        anchor = before[-1] if before else None
        emitted: list[Message] = []
        seen = start
        injects = bool(getattr(self.agent, "_memory", None))  # see _forget_injections

        def report() -> None:
            # each message the context gained is emitted once it is there: the turn's tail is
            # converted whole (a tool result is named after its call), the new ones emitted
            nonlocal seen
            now = _message_list(context)
            if now is None or len(now) == seen:
                return
            seen = len(now)
            tail = to_canonical(
                message.model_dump(mode="json")
                for message in now[start:]
                if not (injects and type(message).__name__ == "SystemMessage")
            )
            for message in tail[len(emitted) :]:
                emitted.append(message)
                emit(MessageEvent(message))

        response: Any = None
        stream = self.agent.on_messages_stream(
            [_user_message(text, sender, images)], CancellationToken()
        )
        async for item in stream:
            if isinstance(item, Response):
                response = item
            elif type(item).__name__ == "ModelClientStreamingChunkEvent":
                report()  # the messages before the one being written come first
                emit(TextDelta(str(getattr(item, "content", "")), self.agent.name))
            report()
        if response is None:
            raise FamilyError(f"agent {self.agent.name!r} ended its turn without a response")

        added = await self._added_since(context, start, anchor)
        if injects:
            added = self._forget_injections(context, start, added)
        reply = getattr(response.chat_message, "content", None)
        if isinstance(reply, str) and not _ends_with_assistant_text(added):
            # Without reflect_on_tool_use (or on a handoff) the reply is a summary the model never
            # wrote, so AutoGen keeps it out of the context. Record it there, so the conversation
            # ends with what the user was told and a rebuilt agent matches the cached one.
            summary = AssistantMessage(content=reply, source=self.agent.name)
            await context.add_message(summary)
            added.append(summary.model_dump(mode="json"))
        converted = to_canonical(added)
        if [_shape(m) for m in converted[: len(emitted)]] != [_shape(m) for m in emitted]:
            logger.warning(
                "agent %r: the streamed messages differ from the turn's", self.agent.name
            )
        messages = [*emitted, *converted[len(emitted) :]]  # the very messages streamed
        for message in converted[len(emitted) :]:
            emit(MessageEvent(message))
        return Turn(tuple(messages), usage=_usage(response))

    def _forget_injections(
        self, context: ChatCompletionContext, start: int, added: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Drop the ``SystemMessage``s ``memory=`` injected this turn: the memory is the
        agent's configuration, queried again every turn, not conversation. AutoGen writes each
        turn's injection into the context, so without this a conversation would hold one copy
        per turn and a rebuilt agent would see them all."""
        live = _message_list(context)
        if live is not None and len(live) >= start:
            live[start:] = [m for m in live[start:] if type(m).__name__ != "SystemMessage"]
        return [m for m in added if m.get("type") != "SystemMessage"]

    async def export_history(self) -> list[Message]:
        await self._baseline()
        messages = await self._state_messages()
        return to_canonical(messages[len(self._preamble) :])

    async def import_history(self, messages: Sequence[Message]) -> None:
        require_representable(messages, "agentchat")
        template = await self._baseline()
        repaired = close_unanswered_tool_calls(messages)
        native = [*self._preamble, *to_native(repaired, self.version, self.agent.name)]
        state = {**template, "llm_context": {**template["llm_context"], "messages": native}}
        try:
            # a coroutine: calling it without await is a silent no-op (microsoft/autogen#5034)
            await self.agent.load_state(state)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise FamilyError(
                f"the stored conversation does not load into {_MODULE} {self.version}: {exc}"
            ) from exc

    async def extend_history(self, messages: Sequence[Message]) -> bool:
        from autogen_core.model_context import ChatCompletionContextState

        require_representable(messages, "agentchat")
        await self._baseline()
        native = to_native(close_unanswered_tool_calls(messages), self.version, self.agent.name)
        try:
            added = ChatCompletionContextState.model_validate({"messages": native}).messages
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise FamilyError(
                f"the stored conversation does not load into {_MODULE} {self.version}: {exc}"
            ) from exc
        context = self.model_context
        for message in added:
            await context.add_message(message)
        return True

    async def close(self) -> None:
        await self.agent.close()

    async def _baseline(self) -> dict[str, Any]:
        """The agent's state as the factory built it, read once before the driver changes it."""
        if self._template is None:
            state = dict(await self.agent.save_state())
            context = state.get("llm_context")
            if not isinstance(context, Mapping) or not isinstance(context.get("messages"), list):
                raise FamilyError(
                    f"{type(self.agent).__qualname__}.save_state() holds no llm_context messages; "
                    "agentsession cannot persist this agent"
                )
            self._preamble = list(context["messages"])
            self._template = state
        return self._template

    async def _state_messages(self) -> list[NativeMessage]:
        # save_state(), not model_context.get_messages(): a Buffered/HeadAndTail/TokenLimited
        # context returns only its window from get_messages(), its state holds every message
        state = await self.agent.save_state()
        return list(state["llm_context"]["messages"])

    async def _added_since(
        self, context: ChatCompletionContext, start: int, anchor: object
    ) -> list[dict[str, Any]]:
        after = _message_list(context)
        if after is not None and len(after) >= start and (start == 0 or after[start - 1] is anchor):
            return [message.model_dump(mode="json") for message in after[start:]]
        if after is not None:
            logger.warning(
                "the model context of agent %r was rewritten during a turn, not appended to; "
                "the stored conversation may differ from what the agent keeps",
                self.agent.name,
            )
        return [dict(message) for message in (await self._state_messages())[start:]]


def _message_list(context: object) -> list[Any] | None:
    """The context's own message list, or None for a context that keeps none.

    Every ``ChatCompletionContext`` of 0.4.2 … 0.7.5 appends to ``_messages`` and applies its
    window only in ``get_messages()``; reading the list's tail keeps a turn's cost independent
    of the conversation's length, where ``save_state()`` would copy all of it.
    """
    messages = getattr(context, "_messages", None)
    return messages if isinstance(messages, list) else None


def _ends_with_assistant_text(native: Sequence[NativeMessage]) -> bool:
    return (
        bool(native)
        and native[-1].get("type") == "AssistantMessage"
        and isinstance(native[-1].get("content"), str)
    )


def _user_message(text: str, sender: str, images: Sequence[Image]) -> Any:
    """The turn's message: a ``TextMessage``, or a ``MultiModalMessage`` with images."""
    from autogen_agentchat.messages import MultiModalMessage, TextMessage

    if not images:
        return TextMessage(content=text, source=sender)
    from autogen_core import Image as NativeImage

    parts = [NativeImage.from_base64(native_image(image)["data"]) for image in images]
    return MultiModalMessage(content=[text, *parts], source=sender)


def _shape(message: Message) -> tuple[Any, ...]:
    return (message.role, message.content, message.name, message.tool_calls, message.tool_call_id)


def _usage(response: Any) -> Usage | None:
    """The model usage of a response: its inner events' and its final message's ``models_usage``."""
    total: Usage | None = None
    for item in [*(getattr(response, "inner_messages", None) or ()), response.chat_message]:
        used = getattr(item, "models_usage", None)
        if used is not None:
            counted = Usage(int(used.prompt_tokens), int(used.completion_tokens))
            total = counted if total is None else total + counted
    return total
