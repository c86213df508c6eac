"""The agentchat family: ``import autogen_agentchat`` (autogen-agentchat 0.4.2 … 0.7, pyautogen 0.10).

An ``AssistantAgent`` keeps its conversation in its model context as ``LLMMessage`` objects. A
turn's messages are read from the tail of that context; whole conversations move through the
agent's public ``save_state()`` / ``load_state()``. This module imports AutoGen only when a
driver is used, so recognising agents costs nothing when the family is not installed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from packaging.version import Version

from ..errors import FamilyError, UnsupportedAgent
from ..messages import Message, ToolCall
from ._gates import (
    AGENTCHAT_MINIMUM,
    AGENTCHAT_PUBLIC_MODEL_CONTEXT,
    AGENTCHAT_TESTED,
    AGENTCHAT_TOOL_RESULT_NAME,
    at_least,
)
from .base import Driver, Family

if TYPE_CHECKING:
    from autogen_agentchat.agents import AssistantAgent
    from autogen_core.model_context import ChatCompletionContext

logger = logging.getLogger("agentsession")

_MODULE = "autogen_agentchat"
# the interfaces every agentchat agent and team derives from (`autogen_agentchat.base`)
_INTERFACES = frozenset(("ChatAgent", "Team"))

NativeMessage = Mapping[str, Any]
"""An ``autogen_core.models.LLMMessage`` as a dict: an item of the agent state's
``llm_context.messages``, or ``message.model_dump(mode="json")``."""


class AgentChatFamily(Family):
    """AutoGen's current API. The driver runs one ``AssistantAgent`` (or a subclass)."""

    name = "agentchat"
    module = _MODULE
    minimum = AGENTCHAT_MINIMUM
    tested_range = AGENTCHAT_TESTED
    install_hint = (
        "pip install 'autogen-agentchat>=0.4.2,<0.8' "
        "(autogen-agentchat 0.2.x is the legacy `import autogen` API)"
    )

    def owns(self, agent: object) -> bool:
        return bool(_interfaces(agent))

    def drive(self, agent: Any) -> AgentChatDriver:
        from autogen_agentchat.agents import AssistantAgent

        if not isinstance(agent, AssistantAgent):
            kind = type(agent).__qualname__
            what = "team" if "Team" in _interfaces(agent) else "agent"
            raise UnsupportedAgent(
                f"the agent factory returned an autogen_agentchat {what} ({kind}); agentsession "
                "drives one AssistantAgent (or a subclass of it) per conversation. Teams and "
                "other agent types are not supported yet: return an AssistantAgent configured "
                "with the model client, system message and tools the conversation needs."
            )
        return AgentChatDriver(agent, self.check_version())


def _interfaces(agent: object) -> set[str]:
    """The agentchat interfaces the object's class derives from.

    Read from the class ancestry, so recognising an agent never imports autogen_agentchat.
    """
    return {
        cls.__name__
        for cls in type(agent).__mro__
        if cls.__name__ in _INTERFACES and cls.__module__.partition(".")[0] == _MODULE
    }


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

    async def run_turn(self, text: str, sender: str = "user") -> list[Message]:
        from autogen_agentchat.messages import TextMessage
        from autogen_core import CancellationToken
        from autogen_core.models import AssistantMessage

        await self._baseline()
        context = self.model_context
        before = _message_list(context)
        start = len(before) if before is not None else len(await self._state_messages())
        anchor = before[-1] if before else None

        response = await self.agent.on_messages(
            [TextMessage(content=text, source=sender)], CancellationToken()
        )

        added = await self._added_since(context, start, anchor)
        reply = getattr(response.chat_message, "content", None)
        if isinstance(reply, str) and not _ends_with_assistant_text(added):
            # Without reflect_on_tool_use (or on a handoff) the reply is a summary the model never
            # wrote, so AutoGen keeps it out of the context. Record it there, so the conversation
            # ends with what the user was told and a rebuilt agent matches the cached one.
            summary = AssistantMessage(content=reply, source=self.agent.name)
            await context.add_message(summary)
            added.append(summary.model_dump(mode="json"))
        return to_canonical(added)

    async def export_history(self) -> list[Message]:
        await self._baseline()
        messages = await self._state_messages()
        return to_canonical(messages[len(self._preamble) :])

    async def import_history(self, messages: Sequence[Message]) -> None:
        template = await self._baseline()
        native = [*self._preamble, *to_native(messages, self.version, self.agent.name)]
        state = {**template, "llm_context": {**template["llm_context"], "messages": native}}
        try:
            # a coroutine: calling it without await is a silent no-op (microsoft/autogen#5034)
            await self.agent.load_state(state)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise FamilyError(
                f"the stored conversation does not load into {_MODULE} {self.version}: {exc}"
            ) from exc

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


def to_canonical(native: Iterable[NativeMessage]) -> list[Message]:
    """Canonical messages from LLM messages; only known fields are read, so any dump mode works."""
    messages: list[Message] = []
    call_names: dict[str, str] = {}
    for item in native:
        kind = item.get("type")
        if kind == "UserMessage":
            messages.append(
                Message(role="user", content=_text(item.get("content")), name=item.get("source"))
            )
        elif kind == "AssistantMessage":
            content = item.get("content")
            thought = item.get("thought")
            metadata = {"thought": thought} if thought else {}
            if isinstance(content, list):
                calls = tuple(
                    ToolCall(id=str(c["id"]), name=str(c["name"]), arguments=str(c["arguments"]))
                    for c in content
                )
                call_names.update((call.id, call.name) for call in calls)
                messages.append(
                    Message(
                        role="assistant",
                        content=None,
                        name=item.get("source"),
                        tool_calls=calls,
                        metadata=metadata,
                    )
                )
            else:
                messages.append(
                    Message(
                        role="assistant",
                        content=_text(content),
                        name=item.get("source"),
                        metadata=metadata,
                    )
                )
        elif kind == "FunctionExecutionResultMessage":
            for result in item.get("content") or ():
                call_id = str(result["call_id"])
                messages.append(
                    Message(
                        role="tool",
                        content=str(result["content"]),
                        # before 0.4.8 a result has no name: it is named after its call
                        name=result.get("name") or call_names.get(call_id),
                        tool_call_id=call_id,
                        is_error=bool(result.get("is_error")),
                    )
                )
        elif kind == "SystemMessage":
            messages.append(Message(role="system", content=_text(item.get("content"))))
        else:
            raise FamilyError(
                f"the agent's model context holds a message of unknown type {kind!r}; "
                "this agentsession does not know it. Upgrade agentsession."
            )
    return messages


def to_native(
    messages: Iterable[Message], version: Version, agent_name: str = "assistant"
) -> list[dict[str, Any]]:
    """LLM message dicts for ``load_state`` of ``autogen_agentchat`` ``version``."""
    named_results = at_least(version, AGENTCHAT_TOOL_RESULT_NAME)
    native: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    for message in messages:
        if message.role == "tool":
            call_id = message.tool_call_id or ""
            result: dict[str, Any] = {"content": message.content or "", "call_id": call_id}
            if named_results:
                # required from 0.4.8; history stored by older versions has neither field
                result["name"] = message.name or call_names.get(call_id, "")
                result["is_error"] = message.is_error
            if native and native[-1]["type"] == "FunctionExecutionResultMessage":
                # the results of one AssistantMessage's calls travel in one message
                native[-1]["content"].append(result)
            else:
                native.append({"type": "FunctionExecutionResultMessage", "content": [result]})
        elif message.role == "user":
            native.append(
                {
                    "type": "UserMessage",
                    "content": message.content or "",
                    "source": message.name or "user",
                }
            )
        elif message.role == "system":
            native.append({"type": "SystemMessage", "content": message.content or ""})
        else:
            native.append(_native_assistant(message, agent_name, call_names))
    return native


def _native_assistant(
    message: Message, agent_name: str, call_names: dict[str, str]
) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "AssistantMessage", "source": message.name or agent_name}
    thought = message.metadata.get("thought")
    if message.tool_calls:
        item["content"] = [
            {"id": call.id, "name": call.name, "arguments": call.arguments}
            for call in message.tool_calls
        ]
        call_names.update((call.id, call.name) for call in message.tool_calls)
        # AutoGen's AssistantMessage holds calls or text; text beside calls is a thought
        thought = thought or message.content
    else:
        item["content"] = message.content or ""
    if thought:
        # `thought` exists from 0.4.8; older versions ignore the unknown field
        item["thought"] = thought
    return item


def _text(content: object) -> str:
    """A message's text; the parts of a multimodal message are joined, images named."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        if any(not isinstance(part, str) for part in content):
            logger.warning("an image in a multimodal message is stored as the text '[image]'")
        return "\n".join(part if isinstance(part, str) else "[image]" for part in content)
    return "" if content is None else str(content)


__all__ = ["AgentChatDriver", "AgentChatFamily", "NativeMessage", "to_canonical", "to_native"]
