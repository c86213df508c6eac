"""The legacy family: ``import autogen`` (pyautogen 0.2, autogen-agentchat 0.2.x, ag2 0.x, autogen 0.14).

History lives in ``assistant.chat_messages[peer]``, keyed by the peer *object*, as
OpenAI-style dicts; the system message is not part of it. The driver stores it by role and
name and re-keys it onto fresh agents. A turn is driven with public calls only (``send``,
``generate_reply``), never ``initiate_chat``, whose ``clear_history`` default wipes history.

``agent`` drives a (user proxy, assistant) pair, ``groupchat`` a ``GroupChatManager`` (alone
or with the user proxy that runs the group's tools), ``conversion`` maps AutoGen's message dicts to
canonical messages and back, ``_quirks`` holds the version-specific side effects (console
output, the reply cache). Nothing here imports AutoGen until a driver is built.
"""

from __future__ import annotations

from typing import Any

from ...errors import UnsupportedAgent
from .._gates import LEGACY_BELOW, LEGACY_MINIMUM, LEGACY_TESTED
from ..base import Family
from ._quirks import _llm_config, _offers_tools, _warn_once, reply_cache_problem
from .agent import MAX_TOOL_ROUNDS, LegacyDriver
from .conversion import to_canonical, to_native
from .groupchat import LegacyGroupChatDriver, is_group_chat_manager


def is_conversable(obj: object) -> bool:
    """True for an ``autogen`` ConversableAgent (or subclass), decided without importing autogen."""
    return any(
        cls.__name__ == "ConversableAgent" and cls.__module__.startswith("autogen.")
        for cls in type(obj).__mro__
    )


class LegacyFamily(Family):
    """The ``import autogen`` API: one assistant and the user proxy it talks to, or a group chat."""

    name = "legacy"
    module = "autogen"
    minimum = LEGACY_MINIMUM
    below = LEGACY_BELOW
    tested_range = LEGACY_TESTED
    install_hint = (
        "pip install 'pyautogen~=0.2.35'  (or 'ag2<1.0', or 'autogen==0.14.1'; "
        "ag2 >= 1.0 is `import ag2`, agentsession's ag2 family)"
    )

    def owns(self, agent: object) -> bool:
        if isinstance(agent, tuple):
            return len(agent) == 2 and all(is_conversable(part) for part in agent)
        return is_conversable(agent)

    def drive(self, agent: Any) -> LegacyDriver | LegacyGroupChatDriver:
        version = self.check_version()
        if is_group_chat_manager(agent):
            return LegacyGroupChatDriver(agent, None, version)
        if isinstance(agent, tuple) and is_group_chat_manager(agent[1]):
            return LegacyGroupChatDriver(agent[1], agent[0], version)
        if isinstance(agent, tuple) and is_group_chat_manager(agent[0]):
            raise UnsupportedAgent(
                f"the agent factory returned ({agent[0].name!r}, {agent[1].name!r}): return "
                "(user_proxy, manager), in that order"
            )
        if isinstance(agent, tuple):
            user, assistant = agent
            if assistant.llm_config is False and user.llm_config is not False:
                raise UnsupportedAgent(
                    f"the agent factory returned ({user.name!r}, {assistant.name!r}), but only "
                    f"{user.name!r} has an llm_config: return (user_proxy, assistant), in that order"
                )
        else:
            from autogen import ConversableAgent

            assistant = agent
            user = ConversableAgent(
                "user", llm_config=False, human_input_mode="NEVER", code_execution_config=False
            )
            if _offers_tools(assistant):
                _warn_once(
                    assistant,
                    "offers tools to its model, but the factory returned it alone, so nothing "
                    "executes them; return (user_proxy, assistant) with each tool registered "
                    "by autogen.register_function(f, caller=assistant, executor=user_proxy)",
                )
        problem = reply_cache_problem(_llm_config(assistant), version)
        if problem:
            _warn_once(assistant, problem)
        return LegacyDriver(assistant, user, version)


__all__ = [
    "MAX_TOOL_ROUNDS",
    "LegacyDriver",
    "LegacyFamily",
    "LegacyGroupChatDriver",
    "is_conversable",
    "reply_cache_problem",
    "to_canonical",
    "to_native",
]
