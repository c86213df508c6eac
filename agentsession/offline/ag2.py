"""The offline model for the ag2 family: an AG2 v1 model config whose client needs no API key.

Its reply is computed by :func:`agentsession.offline.compose_reply` from every event it is
sent, so it proves what an agent remembers::

    from agentsession.offline.ag2 import build_agent

    agent = build_agent(prompt="You are terse.", tools=[add])  # an ag2.Agent
    # "hello"                      -> "I have seen 1 user message. You said: 'hello'"
    # '/tool add {"a": 2, "b": 2}' -> calls the tool `add`, then "... Tool add returned: 4"
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ag2 import Agent
from ag2.config import ModelProvider
from ag2.events import BaseEvent, ModelMessage, ModelResponse, ToolCallEvent, ToolCallsEvent, Usage

from ..families.ag2 import to_canonical
from . import compose_reply

MODEL = "agentsession-offline"


class OfflineClient:
    """An AG2 v1 ``LLMClient``: called with the stream's history events, it answers with one
    ``ModelResponse`` (text, or one tool call). Usage counts words."""

    async def __call__(
        self, messages: Sequence[BaseEvent], context: Any, **kwargs: Any
    ) -> ModelResponse:
        history = to_canonical(messages)
        reply = compose_reply(history)
        prompt = sum(len((m.content or "").split()) for m in history)
        if reply.tool_call is not None:
            call = reply.tool_call
            request = ToolCallEvent(call.name, id=call.id, arguments=call.arguments)
            return ModelResponse(
                tool_calls=ToolCallsEvent([request]),
                usage=Usage(prompt_tokens=prompt, completion_tokens=0),
                model=MODEL,
            )
        text = reply.text or ""
        message = ModelMessage(text)
        await context.send(message)  # what a streaming provider publishes before its response
        return ModelResponse(
            message,
            usage=Usage(prompt_tokens=prompt, completion_tokens=len(text.split())),
            model=MODEL,
        )


class OfflineConfig:
    """An AG2 v1 ``ModelConfig`` for the offline client (``Agent(..., config=OfflineConfig())``)."""

    @property
    def provider(self) -> ModelProvider:
        raise NotImplementedError("the offline model belongs to no provider")

    @property
    def model(self) -> str:
        return MODEL

    def copy(self) -> OfflineConfig:
        return self

    def create(self) -> OfflineClient:
        return OfflineClient()

    def create_files_client(self) -> Any:
        raise NotImplementedError("the offline model has no Files API")


def build_agent(
    name: str = "assistant",
    prompt: str = "You are a helpful assistant.",
    tools: Iterable[Callable[..., Any]] = (),
    **kwargs: Any,
) -> Agent:
    """An ``ag2.Agent`` on the offline model; ``kwargs`` go to ``Agent``."""
    return Agent(name, prompt, config=OfflineConfig(), tools=list(tools), **kwargs)


__all__ = ["MODEL", "OfflineClient", "OfflineConfig", "build_agent"]
