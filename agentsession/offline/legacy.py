"""The offline model for the legacy family (``import autogen``): a custom ``ModelClient``.

    from agentsession.offline.legacy import build_assistant

    assistant = build_assistant()                      # text only
    user_proxy, assistant = build_assistant(tools=[add])  # tools run on the user proxy

Or wire it yourself: ``ConversableAgent(..., llm_config=offline_llm_config())``, register any
tools, and only then ``agent.register_model_client(model_client_cls=OfflineModelClient)``
(registering a tool rebuilds the agent's client and would drop a custom one).
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
    """Drops AutoGen's INFO notice that the offline client must be registered: we always do."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "OfflineModelClient" not in record.getMessage()


logging.getLogger("autogen.oai.client").addFilter(_ExpectedNotice())


def offline_llm_config(model: str = MODEL) -> dict[str, Any]:
    """An ``llm_config`` for the offline client; ``cache_seed=None`` keeps AutoGen off the disk."""
    return {
        "config_list": [{"model": model, "model_client_cls": "OfflineModelClient"}],
        "cache_seed": None,
    }


def _canonical(messages: Sequence[Mapping[str, Any]]) -> list[Message]:
    """What the model was sent (system message first, tool responses flattened) as canonical."""
    names: dict[str, str] = {}
    out = []
    for raw in messages:
        role = raw.get("role")
        for call in raw.get("tool_calls") or ():
            names[str(call.get("id"))] = call["function"]["name"]
        content = raw.get("content")
        text = content if isinstance(content, str) or content is None else json.dumps(content)
        if role in ("tool", "function"):
            call_id = str(raw.get("tool_call_id", ""))
            out.append(
                Message(
                    "tool", text, name=names.get(call_id) or raw.get("name"), tool_call_id=call_id
                )
            )
        elif role in ("user", "assistant", "system"):
            out.append(Message(role, text, name=raw.get("name")))
    return out


class OfflineModelClient:
    """A deterministic legacy ``ModelClient`` whose reply is derived from the whole history.

    It says how many user messages it has seen, quotes them when asked what was said
    earlier, and answers ``/tool NAME {"json": "args"}`` with a call to that tool.
    """

    def __init__(self, config: Mapping[str, Any], **kwargs: Any) -> None:
        self.model = str(config.get("model", MODEL))

    def create(self, params: Mapping[str, Any]) -> SimpleNamespace:
        reply = compose_reply(_canonical(params.get("messages", [])))
        if reply.tool_call is not None:
            call = reply.tool_call
            message: Any = {
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
            message = reply.text
        # AG2 classic (0.14) hands the response to message_retrieval() only if it has this
        return SimpleNamespace(
            choices=[SimpleNamespace(message=message)],
            model=self.model,
            cost=0.0,
            message_retrieval_function=None,
        )

    def message_retrieval(self, response: Any) -> list[Any]:
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


def build_assistant(
    name: str = "assistant",
    system_message: str = "You are a helpful assistant.",
    tools: Sequence[Callable[..., Any]] = (),
    user_name: str = "user",
) -> Any:
    """An offline assistant, or a ``(user_proxy, assistant)`` pair when ``tools`` are given."""
    assistant = ConversableAgent(
        name,
        system_message=system_message,
        llm_config=offline_llm_config(),
        human_input_mode="NEVER",
        code_execution_config=False,
    )
    if not tools:
        assistant.register_model_client(model_client_cls=OfflineModelClient)
        return assistant
    user = ConversableAgent(
        user_name, llm_config=False, human_input_mode="NEVER", code_execution_config=False
    )
    for tool in tools:
        description = (tool.__doc__ or tool.__name__).strip().splitlines()[0]
        register_function(tool, caller=assistant, executor=user, description=description)
    assistant.register_model_client(model_client_cls=OfflineModelClient)  # after the tools
    return user, assistant
