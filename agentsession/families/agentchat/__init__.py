"""The agentchat family: ``import autogen_agentchat`` (autogen-agentchat 0.4.2 … 0.7, pyautogen 0.10).

An ``AssistantAgent`` keeps its conversation in its model context as ``LLMMessage`` objects. A
turn's messages are read from the tail of that context; whole conversations move through the
agent's public ``save_state()`` / ``load_state()``. ``agent`` drives one ``AssistantAgent``, ``team``
a team of them, ``conversion`` maps LLM messages to canonical messages and back. Nothing here imports AutoGen
until a driver is built, so recognising agents costs nothing when the family is not installed.
"""

from __future__ import annotations

from typing import Any

from ...errors import UnsupportedAgent
from .._gates import AGENTCHAT_MINIMUM, AGENTCHAT_TESTED
from ..base import Family
from .agent import AgentChatDriver
from .conversion import NativeMessage, to_canonical, to_native
from .team import SUPPORTED_TEAMS, AgentChatTeamDriver

_MODULE = "autogen_agentchat"
# the interfaces every agentchat agent and team derives from (`autogen_agentchat.base`)
_INTERFACES = frozenset(("ChatAgent", "Team"))


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

    def drive(self, agent: Any) -> AgentChatDriver | AgentChatTeamDriver:
        from autogen_agentchat.agents import AssistantAgent

        if "Team" in _interfaces(agent):
            return AgentChatTeamDriver(agent, self.check_version())
        if not isinstance(agent, AssistantAgent):
            kind = type(agent).__qualname__
            raise UnsupportedAgent(
                f"the agent factory returned an autogen_agentchat agent ({kind}); agentsession "
                "drives one AssistantAgent (or a subclass of it) per conversation, or a team "
                f"({', '.join(SUPPORTED_TEAMS)}) of them. Other agent types are not supported: "
                "return an AssistantAgent configured with the model client, system message and "
                "tools the conversation needs."
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


__all__ = [
    "SUPPORTED_TEAMS",
    "AgentChatDriver",
    "AgentChatFamily",
    "AgentChatTeamDriver",
    "NativeMessage",
    "to_canonical",
    "to_native",
]
