"""The maf family: ``import agent_framework`` (Microsoft Agent Framework, agent-framework-core 1.x).

An ``Agent`` keeps no history of its own: a conversation is an ``AgentSession`` whose history
a ``HistoryProvider`` loads before each run and saves after it. ``agent`` drives one
``Agent`` through ``await agent.run(text, session=...)``, ``conversion`` maps the framework's
``Message``/``Content`` to canonical messages and back. Nothing here imports the framework
until a driver is built. Apps that call their agent themselves use
``agentsession.integrations.maf`` instead (a ``HistoryProvider`` and a ``SessionStore`` on
agentsession's stores).
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

from packaging.version import Version

from ...errors import UnsupportedAgent, UnsupportedVersion
from .._gates import (
    MAF_BELOW,
    MAF_DISTRIBUTION,
    MAF_MINIMUM,
    MAF_TESTED,
    MAF_VERSION_PLACEHOLDER,
    parse,
)
from ..base import Family
from .agent import MafDriver
from .conversion import to_canonical, to_native

_MODULE = "agent_framework"
_AGENT_BASES = frozenset(("BaseAgent", "RawAgent", "Agent"))


class MafFamily(Family):
    """Microsoft Agent Framework 1.x. The driver runs one ``Agent`` (or ``RawAgent``)."""

    name = "maf"
    module = _MODULE
    minimum = MAF_MINIMUM
    below = MAF_BELOW
    tested_range = MAF_TESTED
    install_hint = (
        "pip install 'agent-framework-core>=1.0.0,<2'  (or 'agentsession-middleware[maf]')"
    )

    def module_version(self) -> str | None:
        """``agent_framework.__version__``, or the version of the distribution that installed
        the package when the module reports the placeholder ``0.0.0`` (1.0.0 … 1.12.1 look up
        a distribution name that does not exist; fixed in 1.13.0)."""
        raw = super().module_version()
        if raw is not None and raw != MAF_VERSION_PLACEHOLDER and parse(raw) is not None:
            return raw
        return _distribution_version() or raw

    def check_version(self, version: str | None = None) -> Version:
        parsed = super().check_version(version)
        if parsed.is_prerelease and Version(parsed.base_version) == MAF_MINIMUM:
            raise UnsupportedVersion(
                f"'{_MODULE}' {parsed} is a pre-release of Agent Framework 1.0, whose "
                "AgentThread / ChatMessageStore API was replaced by AgentSession and history "
                "providers (microsoft/agent-framework#3850); agentsession's maf family needs "
                f">={MAF_MINIMUM}. Install a supported version: {self.install_hint}"
            )
        return parsed

    def owns(self, agent: object) -> bool:
        return any(
            cls.__name__ in _AGENT_BASES and cls.__module__.partition(".")[0] == _MODULE
            for cls in type(agent).__mro__
        )

    def drive(self, agent: Any) -> MafDriver:
        version = self.check_version()
        import agent_framework

        if getattr(agent_framework, "AgentSession", None) is None:
            raise UnsupportedVersion(
                f"this '{_MODULE}' has no AgentSession (the pre-1.0 AgentThread API); "
                f"install a supported version: {self.install_hint}"
            )
        if not isinstance(agent, agent_framework.RawAgent):
            raise UnsupportedAgent(
                f"the agent factory returned an Agent Framework {type(agent).__qualname__}; "
                "agentsession drives one agent_framework.Agent (or RawAgent) per conversation. "
                "Workflows and other agents are not supported: their checkpoints are "
                "pickle-in-JSON, which agentsession never stores."
            )
        return MafDriver(agent, version)


def _distribution_version() -> str | None:
    owners = importlib.metadata.packages_distributions().get(_MODULE, [])
    name = MAF_DISTRIBUTION if MAF_DISTRIBUTION in owners or not owners else sorted(owners)[0]
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


__all__ = ["MafDriver", "MafFamily", "to_canonical", "to_native"]
