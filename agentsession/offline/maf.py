"""The offline model for the maf family: an Agent Framework chat client that needs no API key.

Its reply is computed by :func:`agentsession.offline.compose_reply` from every message it is
sent, so it proves what an agent remembers::

    from agentsession.offline.maf import build_agent

    agent = build_agent(instructions="You are terse.", tools=[add])  # an agent_framework.Agent
    # "hello"                      -> "I have seen 1 user message. You said: 'hello'"
    # '/tool add {"a": 2, "b": 2}' -> calls the tool `add`, then "... Tool add returned: 4"
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

from agent_framework import (
    Agent,
    BaseChatClient,
    ChatResponse,
    ChatResponseUpdate,
    Content,
    FunctionInvocationLayer,
    Message,
    ResponseStream,
)

from ..families.maf import to_canonical
from . import compose_reply

MODEL = "agentsession-offline"


class OfflineChatClient(FunctionInvocationLayer[Any], BaseChatClient[Any]):
    """A deterministic chat client that reads the whole history it is sent.

    ``BaseChatClient`` with ``_inner_get_response`` (the framework's extension point for a
    client), under ``FunctionInvocationLayer`` so the agent runs the tools it calls, as the
    framework's own clients do. Usage counts words.
    """

    OTEL_PROVIDER_NAME: ClassVar[str] = "agentsession-offline"

    def _inner_get_response(
        self,
        *,
        messages: Sequence[Message],
        stream: bool,
        options: Mapping[str, Any],
        **kwargs: Any,
    ) -> Any:
        response = self._answer(messages, options)
        if not stream:

            async def answer() -> ChatResponse:
                return response

            return answer()

        async def updates() -> AsyncIterator[ChatResponseUpdate]:
            for message in response.messages:
                yield ChatResponseUpdate(
                    role="assistant",
                    contents=list(message.contents),
                    conversation_id=response.conversation_id,
                    model=MODEL,
                )

        return ResponseStream(updates(), finalizer=ChatResponse.from_updates)

    def _answer(self, messages: Sequence[Message], options: Mapping[str, Any]) -> ChatResponse:
        history = to_canonical(messages)
        reply = compose_reply(history)
        contents: list[Content]
        if reply.tool_call is not None:
            call = reply.tool_call
            contents = [Content.from_function_call(call.id, call.name, arguments=call.arguments)]
        else:
            contents = [Content.from_text(reply.text or "")]
        prompt = sum(len((m.content or "").split()) for m in history)
        completion = len((reply.text or "").split())
        stored = self.STORES_BY_DEFAULT and options.get("store") is not False
        return ChatResponse(
            messages=[Message("assistant", contents)],
            model=MODEL,
            conversation_id=f"offline-conversation-{len(history)}" if stored else None,
            usage_details={
                "input_token_count": prompt,
                "output_token_count": completion,
                "total_token_count": prompt + completion,
            },
        )


class ServiceStoredOfflineChatClient(OfflineChatClient):
    """The offline client as one that keeps history on its service (``STORES_BY_DEFAULT``, as
    the OpenAI Responses API does): it answers with a ``conversation_id`` unless it is run with
    ``store=False``. For testing how history that lives on a service is handled."""

    STORES_BY_DEFAULT: ClassVar[bool] = True


def build_agent(
    name: str = "assistant",
    instructions: str = "You are a helpful assistant.",
    tools: Iterable[Callable[..., Any]] = (),
    **kwargs: Any,
) -> Agent:
    """An ``agent_framework.Agent`` on the offline client; ``kwargs`` go to ``Agent``."""
    return Agent(
        client=OfflineChatClient(),
        name=name,
        instructions=instructions,
        tools=list(tools) or None,
        **kwargs,
    )


__all__ = ["MODEL", "OfflineChatClient", "ServiceStoredOfflineChatClient", "build_agent"]
