"""The offline model for the legacy family (``import autogen``): a custom ``ModelClient``.

    from agentsession.offline.legacy import build_assistant, build_pair

    assistant = build_assistant()                    # text only
    user_proxy, assistant = build_pair(tools=[add])  # tools run on the user proxy

Or wire it yourself: ``ConversableAgent(..., llm_config=offline_llm_config())``, register any
tools, and only then ``agent.register_model_client(model_client_cls=OfflineModelClient)``
(registering a tool rebuilds the agent's client and drops a custom one).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from types import SimpleNamespace
from typing import Any

from autogen import ConversableAgent, register_function

from ._openai import MODEL, answer, assistant_message


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

    def __init__(
        self,
        config: Mapping[str, Any],
        speaker: str | None = None,
        terminate: str | None = None,
        **kwargs: Any,
    ) -> None:
        """``speaker`` and ``terminate`` make it a group chat member (see
        :func:`agentsession.offline.compose_reply`); pass them to ``register_model_client``."""
        self.model = str(config.get("model", MODEL))
        self.speaker = speaker
        self.terminate = terminate

    def create(self, params: Mapping[str, Any]) -> SimpleNamespace:
        reply = answer(params, self.speaker, self.terminate)
        message = assistant_message(reply) if reply.tool_call is not None else reply.text or ""
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


def build_member(
    name: str,
    *,
    terminate: str | None = None,
    system_message: str | None = None,
    tools: Sequence[Callable[..., Any]] = (),
    executor: ConversableAgent | None = None,
) -> ConversableAgent:
    """A group chat member on the offline model: its replies name it and count what it has
    seen of the shared thread; ``terminate`` ends each of its replies with that word. Each tool
    is offered to its model and executed by ``executor`` (the group's user proxy)."""
    member = _offline_agent(name, system_message or f"You are {name}, one member of a group chat.")
    for tool in tools:
        if executor is None:
            raise ValueError("tools need an executor: the user proxy that runs them")
        description = (tool.__doc__ or tool.__name__).strip().splitlines()[0]
        register_function(tool, caller=member, executor=executor, description=description)
    _use_offline_client(member, speaker=name, terminate=terminate)
    return member


def build_group_chat(
    speaker_selection_method: str = "round_robin",
    *,
    tools: Sequence[Callable[..., Any]] = (),
    termination_word: str = "TERMINATE",
    max_round: int = 10,
    selector_base_url: str | None = None,
    **groupchat_options: Any,
) -> tuple[ConversableAgent, Any]:
    """``(user_proxy, manager)``: a group chat of a user proxy (it runs the tools), ``writer``
    (offered the tools) and ``critic`` (ends the turn with ``termination_word``), in that order.

    ``"auto"`` speaker selection asks the offline model. Where GroupChat has
    ``select_speaker_auto_model_client_cls`` (pyautogen 0.2.36+, autogen-agentchat 0.2.40,
    every ag2) the offline client is handed to it in-process, and ``selector_base_url`` is
    accepted but not used. pyautogen 0.2.35 lacks that option: its selector always calls the
    manager's ``llm_config`` through the OpenAI client, so pass the ``base_url`` of a running
    :class:`~agentsession.offline.openai_server.OfflineOpenAIServer` as ``selector_base_url``.
    """
    from autogen import GroupChat, GroupChatManager

    user = ConversableAgent(
        "user",
        llm_config=False,
        human_input_mode="NEVER",
        code_execution_config=False,
        description="The human user.",
    )
    writer = build_member("writer", tools=tools, executor=user)
    critic = build_member("critic", terminate=termination_word)
    options = dict(groupchat_options)
    manager_llm_config: dict[str, Any] | bool = False
    if speaker_selection_method == "auto":
        manager_llm_config = offline_llm_config()
        if "select_speaker_auto_model_client_cls" in {f.name for f in fields(GroupChat)}:
            options["select_speaker_auto_model_client_cls"] = OfflineModelClient
            options["select_speaker_auto_llm_config"] = offline_llm_config()
        elif selector_base_url is not None:
            # the selector is built from the manager's llm_config; the manager itself never
            # calls its model (run_chat is its reply), so this config is the selector's only
            manager_llm_config = server_llm_config(selector_base_url)
        else:
            raise ValueError(
                "'auto' speaker selection on the offline model needs GroupChat's "
                "select_speaker_auto_model_client_cls (pyautogen 0.2.36+, autogen-agentchat "
                "0.2.40, every ag2), which this autogen lacks: its selector calls the manager's "
                "llm_config through the OpenAI client. Pass selector_base_url= the base_url of "
                "an agentsession.offline.openai_server.OfflineOpenAIServer (the offline model "
                "behind a local OpenAI-compatible HTTP endpoint), e.g. "
                "`with OfflineOpenAIServer() as server: build_group_chat('auto', "
                "selector_base_url=server.base_url)`"
            )
    groupchat = GroupChat(
        [user, writer, critic],
        messages=[],
        max_round=max_round,
        speaker_selection_method=speaker_selection_method,
        **options,
    )
    manager = GroupChatManager(
        groupchat,
        llm_config=manager_llm_config,
        is_termination_msg=lambda message: termination_word in str(message.get("content") or ""),
    )
    return user, manager


def server_llm_config(base_url: str, model: str = MODEL) -> dict[str, Any]:
    """An OpenAI ``llm_config`` for an OpenAI-compatible server at ``base_url`` (an
    :class:`~agentsession.offline.openai_server.OfflineOpenAIServer`); ``price`` 0 keeps
    AutoGen from warning that it knows no price for the model."""
    return {
        "config_list": [
            {"model": model, "base_url": base_url, "api_key": "offline", "price": [0, 0]}
        ],
        "cache_seed": None,
    }


def _use_offline_client(agent: Any, **options: Any) -> None:
    # typed Any: AG2 classic annotates model_client_cls as an instance, not a class
    agent.register_model_client(model_client_cls=OfflineModelClient, **options)


def _offline_agent(name: str, system_message: str) -> ConversableAgent:
    return ConversableAgent(
        name,
        system_message=system_message,
        llm_config=offline_llm_config(),
        human_input_mode="NEVER",
        code_execution_config=False,
    )


__all__ = [
    "MODEL",
    "OfflineModelClient",
    "build_assistant",
    "build_group_chat",
    "build_member",
    "build_pair",
    "offline_llm_config",
    "server_llm_config",
]
