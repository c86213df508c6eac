"""The offline model for the legacy family (``import autogen``): a custom ``ModelClient``.

    from agentsession.offline.legacy import build_assistant, build_pair

    assistant = build_assistant()                    # text only
    user_proxy, assistant = build_pair(tools=[add])  # tools run on the user proxy

Or wire it yourself: ``ConversableAgent(..., llm_config=offline_llm_config())``, register any
tools, and only then ``agent.register_model_client(model_client_cls=OfflineModelClient)``
(registering a tool rebuilds the agent's client and drops a custom one).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

from autogen import ConversableAgent, register_function

from ..messages import Message
from . import compose_reply

MODEL = "agentsession-offline"


class _ExpectedNotice(logging.Filter):
    """Drops AutoGen's notice that the offline client awaits ``register_model_client``:
    the helpers below always register it, and AG2 logs the notice at INFO to stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "OfflineModelClient" not in record.getMessage()


logging.getLogger("autogen.oai.client").addFilter(_ExpectedNotice())


def offline_llm_config(model: str = MODEL) -> dict[str, Any]:
    """An ``llm_config`` for the offline client; ``cache_seed=None`` keeps replies uncached."""
    return {
        "config_list": [{"model": model, "model_client_cls": OfflineModelClient.__name__}],
        "cache_seed": None,
    }


class OfflineModelClient:
    """A deterministic legacy ``ModelClient`` whose reply is derived from the whole history.

    It says how many user messages it has seen, quotes them when asked what was said
    earlier, and answers ``/tool NAME {"json": "args"}`` with a call to that tool.
    """

    def __init__(self, config: Mapping[str, Any], **kwargs: Any) -> None:
        self.model = str(config.get("model", MODEL))

    def create(self, params: Mapping[str, Any]) -> SimpleNamespace:
        reply = compose_reply(_canonical(params.get("messages", [])))
        message: str | dict[str, Any]
        if reply.tool_call is not None:
            call = reply.tool_call
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    }
                ],
            }
        else:
            message = reply.text or ""
        # AG2 classic (0.14) hands a response to message_retrieval() only if it has this
        # attribute; otherwise it reads choices[i].message.content and drops tool calls
        return SimpleNamespace(
            choices=[SimpleNamespace(message=message)],
            model=self.model,
            cost=0.0,
            message_retrieval_function=None,
        )

    def message_retrieval(self, response: Any) -> list[str | dict[str, Any]]:
        return [choice.message for choice in response.choices]

    def cost(self, response: Any) -> float:
        return 0.0

    @staticmethod
    def get_usage(response: Any) -> dict[str, Any]:
        return {
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
            "cost": 0.0,
            "model": response.model,
        }


def _canonical(messages: Sequence[Mapping[str, Any]]) -> list[Message]:
    """What the model was sent (system message first, tool results one per message)."""
    names: dict[str, str] = {}  # a tool result names its call only by id
    out = []
    for raw in messages:
        role = raw.get("role")
        for call in raw.get("tool_calls") or ():
            names[str(call.get("id"))] = call["function"]["name"]
        content = raw.get("content")
        text = content if isinstance(content, str) or content is None else json.dumps(content)
        if role in ("tool", "function"):
            call_id = str(raw.get("tool_call_id", ""))
            name = names.get(call_id) or raw.get("name")
            out.append(Message("tool", text, name=name, tool_call_id=call_id))
        elif role in ("user", "assistant", "system"):
            out.append(Message(role, text, name=raw.get("name")))
    return out


def build_assistant(
    name: str = "assistant", system_message: str = "You are a helpful assistant."
) -> ConversableAgent:
    """An offline assistant without tools; agentsession pairs it with a user proxy."""
    assistant = _offline_agent(name, system_message)
    _use_offline_client(assistant)
    return assistant


def build_pair(
    tools: Sequence[Callable[..., Any]] = (),
    name: str = "assistant",
    system_message: str = "You are a helpful assistant.",
    user_name: str = "user",
) -> tuple[ConversableAgent, ConversableAgent]:
    """``(user_proxy, assistant)``: each tool is offered to the assistant's model and
    executed by the user proxy."""
    assistant = _offline_agent(name, system_message)
    user = ConversableAgent(
        user_name, llm_config=False, human_input_mode="NEVER", code_execution_config=False
    )
    for tool in tools:
        description = (tool.__doc__ or tool.__name__).strip().splitlines()[0]
        register_function(tool, caller=assistant, executor=user, description=description)
    # after the tools: registering one rebuilds the assistant's client without custom ones
    _use_offline_client(assistant)
    return user, assistant


def _use_offline_client(agent: Any) -> None:
    # typed Any: AG2 classic annotates model_client_cls as an instance, not a class
    agent.register_model_client(model_client_cls=OfflineModelClient)


def _offline_agent(name: str, system_message: str) -> ConversableAgent:
    return ConversableAgent(
        name,
        system_message=system_message,
        llm_config=offline_llm_config(),
        human_input_mode="NEVER",
        code_execution_config=False,
    )


__all__ = ["MODEL", "OfflineModelClient", "build_assistant", "build_pair", "offline_llm_config"]
