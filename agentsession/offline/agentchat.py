"""The offline model for the agentchat family: a ``ChatCompletionClient`` that needs no API key.

Its reply is computed by :func:`agentsession.offline.compose_reply` from every message it is
sent, so it proves what an agent remembers::

    from agentsession.offline.agentchat import build_agent

    agent = build_agent(system_message="You are terse.")  # an AssistantAgent
    # "hello"                      -> "I have seen 1 user message. You said: 'hello'"
    # "what did I say earlier?"    -> "I have seen 2 user messages. Earlier you said: 'hello'"
    # '/tool add {"a": 2, "b": 2}' -> calls the agent's tool `add`, then reports its result
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from typing import Any, Literal

from autogen_agentchat.agents import AssistantAgent
from autogen_core import FunctionCall
from autogen_core.models import (
    ChatCompletionClient,
    CreateResult,
    LLMMessage,
    ModelCapabilities,
    ModelInfo,
    RequestUsage,
)
from autogen_core.tools import BaseTool

from ..families.agentchat import to_canonical
from ..messages import Message
from . import compose_reply

# The 4 keys of 0.4 plus structured_output (required from 0.5, warned about when missing) and
# multiple_system_messages (0.5+). function_calling must be True or tools are refused.
MODEL_INFO: ModelInfo = {
    "vision": True,  # takes MultiModalMessage images (agentchat replaces them by "<image>" otherwise)
    "function_calling": True,
    "json_output": False,
    "family": "unknown",
    "structured_output": False,
    "multiple_system_messages": True,
}

AgentTool = BaseTool[Any, Any] | Callable[..., Any] | Callable[..., Awaitable[Any]]


class OfflineChatCompletionClient(ChatCompletionClient):
    """A deterministic model that reads the whole history it is sent (see the module docstring).

    It implements every abstract member of ``ChatCompletionClient`` of autogen-core 0.4.2 …
    0.7.5; ``create`` takes any keyword (``tool_choice`` appeared in 0.6). Usage counts words.
    """

    def __init__(
        self,
        speaker: str | None = None,
        *,
        terminate: str | None = None,
        chunk_words: int = 3,
        chunk_delay: float = 0.0,
    ) -> None:
        """``speaker``: the team member this client speaks as (its replies then say so, see
        :func:`agentsession.offline.compose_reply`); ``terminate``: a word every text reply
        ends with, for a team's ``TextMentionTermination``; ``chunk_words``/``chunk_delay``:
        how ``create_stream`` hands out a text reply (for an agent built with
        ``model_client_stream=True``): that many words a chunk, that many seconds apart."""
        if chunk_words < 1:
            raise ValueError("chunk_words must be 1 or more")
        self.speaker = speaker
        self.terminate = terminate
        self.chunk_words = chunk_words
        self.chunk_delay = chunk_delay
        self._actual = RequestUsage(prompt_tokens=0, completion_tokens=0)
        self._total = RequestUsage(prompt_tokens=0, completion_tokens=0)

    async def create(self, messages: Sequence[LLMMessage], **kwargs: Any) -> CreateResult:
        history = _canonical(messages)
        tools = [_tool_name(tool) for tool in kwargs.get("tools") or ()]
        reply = compose_reply(history, self.speaker, tools=tools, terminate=self.terminate)
        content: str | list[FunctionCall]
        finish_reason: Literal["stop", "function_calls"]
        if reply.tool_call is not None:
            call = reply.tool_call
            content = [FunctionCall(id=call.id, arguments=call.arguments, name=call.name)]
            finish_reason = "function_calls"
        else:
            content = reply.text or ""
            finish_reason = "stop"
        usage = RequestUsage(
            prompt_tokens=_words(history), completion_tokens=len(str(content).split())
        )
        self._actual = usage
        self._total = RequestUsage(
            prompt_tokens=self._total.prompt_tokens + usage.prompt_tokens,
            completion_tokens=self._total.completion_tokens + usage.completion_tokens,
        )
        return CreateResult(finish_reason=finish_reason, content=content, usage=usage, cached=False)

    async def create_stream(
        self, messages: Sequence[LLMMessage], **kwargs: Any
    ) -> AsyncGenerator[str | CreateResult, None]:
        result = await self.create(messages, **kwargs)
        if isinstance(result.content, str):
            words = re.findall(r"\S+\s*", result.content)
            for i in range(0, len(words), self.chunk_words):
                if i and self.chunk_delay:
                    await asyncio.sleep(self.chunk_delay)
                yield "".join(words[i : i + self.chunk_words])
        yield result

    async def close(self) -> None:
        pass

    def actual_usage(self) -> RequestUsage:
        return self._actual

    def total_usage(self) -> RequestUsage:
        return self._total

    def count_tokens(self, messages: Sequence[LLMMessage], **kwargs: Any) -> int:
        return _words(_canonical(messages))

    def remaining_tokens(self, messages: Sequence[LLMMessage], **kwargs: Any) -> int:
        return max(0, 1_000_000 - self.count_tokens(messages))

    @property
    def capabilities(self) -> ModelCapabilities:  # deprecated upstream, still abstract
        return ModelCapabilities(
            vision=MODEL_INFO["vision"],
            function_calling=MODEL_INFO["function_calling"],
            json_output=MODEL_INFO["json_output"],
        )

    @property
    def model_info(self) -> ModelInfo:
        return MODEL_INFO.copy()


def build_agent(
    name: str = "assistant",
    system_message: str = "You are a helpful assistant.",
    tools: Iterable[AgentTool] = (),
    *,
    chunk_words: int = 3,
    chunk_delay: float = 0.0,
    **kwargs: Any,
) -> AssistantAgent:
    """An ``AssistantAgent`` on the offline model; ``kwargs`` go to ``AssistantAgent``
    (``model_client_stream=True`` streams its replies in chunks of ``chunk_words`` words,
    ``chunk_delay`` seconds apart)."""
    return AssistantAgent(
        name,
        model_client=OfflineChatCompletionClient(chunk_words=chunk_words, chunk_delay=chunk_delay),
        system_message=system_message,
        tools=list(tools) or None,
        **kwargs,
    )


def build_member(
    name: str,
    *,
    terminate: str | None = None,
    system_message: str | None = None,
    tools: Iterable[AgentTool] = (),
    **kwargs: Any,
) -> AssistantAgent:
    """A team member on the offline model: its replies name it and count what it has seen of
    the shared thread; ``terminate`` ends each of its text replies with that word."""
    return AssistantAgent(
        name,
        model_client=OfflineChatCompletionClient(name, terminate=terminate),
        system_message=system_message or f"You are {name}, one member of a team.",
        tools=list(tools) or None,
        **kwargs,
    )


def build_team(kind: str = "round_robin", *, termination_word: str = "TERMINATE") -> Any:
    """A small offline team: ``writer`` then ``critic``, who ends the turn with
    ``termination_word``. ``kind`` is ``"round_robin"``, ``"selector"`` (the offline model picks
    the speaker) or ``"swarm"`` (``/handoff critic`` in a message hands over to the critic)."""
    from autogen_agentchat.conditions import MaxMessageTermination, TextMentionTermination
    from autogen_agentchat.teams import RoundRobinGroupChat, SelectorGroupChat, Swarm

    stop = TextMentionTermination(termination_word) | MaxMessageTermination(12)
    if kind == "swarm":
        writer = build_member("writer", terminate=termination_word, handoffs=["critic"])
        critic = build_member("critic", terminate=termination_word, handoffs=["writer"])
        return Swarm([writer, critic], termination_condition=stop)
    writer = build_member("writer")
    critic = build_member("critic", terminate=termination_word)
    if kind == "selector":
        return SelectorGroupChat(
            [writer, critic], model_client=OfflineChatCompletionClient(), termination_condition=stop
        )
    if kind == "round_robin":
        return RoundRobinGroupChat([writer, critic], termination_condition=stop)
    raise ValueError(f"unknown team kind {kind!r}; use 'round_robin', 'selector' or 'swarm'")


def _tool_name(tool: Any) -> str:
    name = getattr(tool, "name", None)
    if name is None and isinstance(tool, dict):
        name = tool.get("name")
    return str(name)


def _canonical(messages: Sequence[LLMMessage]) -> list[Message]:
    return to_canonical(message.model_dump(mode="json") for message in messages)


def _words(history: Sequence[Message]) -> int:
    return sum(len((message.content or "").split()) for message in history)


__all__ = [
    "MODEL_INFO",
    "OfflineChatCompletionClient",
    "build_agent",
    "build_member",
    "build_team",
]
