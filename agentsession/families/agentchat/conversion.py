"""AutoGen's LLM messages (``autogen_core.models``, as dicts) to canonical messages and back."""

from __future__ import annotations

import logging
from base64 import b64decode
from collections.abc import Iterable, Mapping
from typing import Any

from packaging.version import Version

from ...errors import FamilyError
from ...messages import Image, Message, ToolCall
from .._gates import AGENTCHAT_TOOL_RESULT_NAME, at_least

logger = logging.getLogger("agentsession")

NativeMessage = Mapping[str, Any]
"""An ``autogen_core.models.LLMMessage`` as a dict: an item of the agent state's
``llm_context.messages``, or ``message.model_dump(mode="json")``."""


def to_canonical(native: Iterable[NativeMessage]) -> list[Message]:
    """Canonical messages from LLM messages; only known fields are read, so any dump mode works."""
    messages: list[Message] = []
    call_names: dict[str, str] = {}
    for item in native:
        kind = item.get("type")
        if kind == "UserMessage":
            content = item.get("content")
            messages.append(
                Message(
                    role="user",
                    content=_text(content),
                    name=item.get("source"),
                    images=_images(content),
                )
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
            content: str | list[Any] = message.content or ""
            if message.images:  # a MultiModalMessage's parts: the text, then each image
                content = [message.content or "", *(native_image(i) for i in message.images)]
            native.append(
                {"type": "UserMessage", "content": content, "source": message.name or "user"}
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
    """A message's text; the text parts of a multimodal message joined (images go apart)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(part for part in content if isinstance(part, str))
    return "" if content is None else str(content)


def _images(content: object) -> tuple[Image, ...]:
    """The images of a multimodal message (autogen_core ``Image``, dumped as ``{"data": …}``)."""
    if not isinstance(content, list):
        return ()
    found = []
    for part in content:
        data = part.get("data") if isinstance(part, Mapping) else None
        if isinstance(data, str):
            found.append(Image("image/png", data=b64decode(data)))
        elif not isinstance(part, str):
            logger.warning("a part of a multimodal message that is not text or an image is dropped")
    return tuple(found)


def native_image(image: Image) -> dict[str, str]:
    """An image as autogen_core's ``Image`` dumps it: its bytes, base64 (it needs the bytes)."""
    data = image.base64
    if data is None and image.uri.startswith("data:"):
        data = image.uri.partition(",")[2]
    if data is None:
        raise FamilyError(
            "autogen_agentchat takes an image's bytes, not a link: fetch it and send "
            "Image(mime, data=...) instead of Image(url=...)"
        )
    return {"data": data}
