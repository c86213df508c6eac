"""AutoGen API families: detection of what is installed and the driver for each family.

Four families: ``legacy`` (``import autogen``), ``agentchat`` (``import autogen_agentchat``),
``maf`` (``import agent_framework``, Microsoft Agent Framework) and ``ag2`` (``import ag2``,
AG2 v1). The family is decided by the importable module and its ``__version__``, never by the
distribution name: ``autogen-agentchat`` 0.2.x ships the legacy ``import autogen``,
``pyautogen`` 0.10 installs the new API, the ``ag2`` distribution 0.x ships ``import autogen``
(legacy) and 1.x only ``import ag2``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from collections.abc import Mapping
from functools import cache

from ..errors import ClobberedInstall, FamilyError, UnsupportedAgent
from ._gates import AG2_MINIMUM, at_least, parse
from .base import Driver, Family, FamilyInfo

logger = logging.getLogger("agentsession")

# family name -> "module:Class", imported lazily (drivers import AutoGen only when used)
_FAMILIES: dict[str, str] = {
    "legacy": "agentsession.families.legacy:LegacyFamily",
    "agentchat": "agentsession.families.agentchat:AgentChatFamily",
    "maf": "agentsession.families.maf:MafFamily",
    "ag2": "agentsession.families.ag2:Ag2Family",
}


@cache
def get_family(name: str) -> Family:
    try:
        target = _FAMILIES[name]
    except KeyError:
        raise FamilyError(
            f"unknown AutoGen family {name!r}; known: {', '.join(_FAMILIES)}"
        ) from None
    module_name, _, class_name = target.partition(":")
    family: Family = getattr(importlib.import_module(module_name), class_name)()
    return family


def all_families() -> list[Family]:
    return [get_family(name) for name in _FAMILIES]


Distributions = Mapping[str, list[str]]
"""``importlib.metadata.packages_distributions()``: reading it scans every installed package."""


def owners(module: str, installed: Distributions | None = None) -> list[str]:
    """Distributions that installed files into the top-level package ``module``."""
    if installed is None:
        installed = importlib.metadata.packages_distributions()
    return sorted(set(installed.get(module, [])))


def check_clobbered(module: str = "autogen", installed: Distributions | None = None) -> None:
    """``ClobberedInstall`` if two distributions wrote into the same package folder."""
    dists = owners(module, installed)
    if len(dists) > 1:
        keep = dists[0]
        raise ClobberedInstall(
            f"the '{module}' package folder was installed by {len(dists)} distributions "
            f"({', '.join(dists)}); their files overwrite each other and the result is neither. "
            f"Keep one: pip uninstall -y {' '.join(dists)} && pip install {keep}"
        )


def detect() -> list[FamilyInfo]:
    """What is installed of every family (importable ones only)."""
    found = []
    installed = importlib.metadata.packages_distributions()  # read once, not per question
    for family in all_families():
        if not family.is_importable():
            continue
        dists = tuple(owners(family.module, installed))
        problem: str | None = None
        try:
            check_clobbered(family.module, installed)
        except ClobberedInstall as exc:
            problem = str(exc)
        try:
            raw = family.module_version()
        except Exception as exc:  # a broken install can fail on import in any way
            raw, problem = None, problem or f"'import {family.module}' failed: {exc!r}"
        supported, is_tested = False, False
        try:
            version = family.check_version(raw)
            supported, is_tested = True, family.is_tested(version)
        except FamilyError as exc:
            problem = problem or str(exc)
        found.append(
            FamilyInfo(
                family=family.name,
                module=family.module,
                version=raw or "?",
                distributions=dists,
                supported=supported and problem is None,
                tested=is_tested,
                problem=problem,
            )
        )
    return found


def ag2_name_hint(found: list[FamilyInfo]) -> str | None:
    """What the installed ``ag2`` distribution provides, when its name may mislead: 0.x ships
    ``import autogen`` (legacy), 1.x only ``import ag2`` (the ag2 family)."""
    try:
        version = importlib.metadata.version("ag2")
    except importlib.metadata.PackageNotFoundError:
        return None
    parsed = parse(version)
    families = {info.family for info in found}
    if parsed is not None and at_least(parsed, AG2_MINIMUM) and "legacy" not in families:
        return (
            f"the ag2 distribution {version} ships only `import ag2` (the ag2 family, AG2 v1); "
            "code that does `import autogen` needs pyautogen~=0.2.35, ag2<1.0 or autogen==0.14.1"
        )
    if parsed is not None and not at_least(parsed, AG2_MINIMUM) and "ag2" not in families:
        return (
            f"the ag2 distribution {version} ships `import autogen` (the legacy family); "
            "code that does `import ag2` (AG2 v1, Agent.ask) needs ag2>=1.0"
        )
    return None


def family_of(agent: object) -> Family:
    """The family whose driver can run ``agent``; ``UnsupportedAgent`` if none can."""
    for family in all_families():
        if family.owns(agent):
            return family
    kind = f"{type(agent).__module__}.{type(agent).__qualname__}"
    raise UnsupportedAgent(
        f"the agent factory returned a {kind}, which belongs to no supported AutoGen family. "
        "Return an autogen_agentchat agent (e.g. AssistantAgent), a legacy autogen "
        "ConversableAgent (or a (user_proxy, assistant) pair of them), a Microsoft Agent "
        "Framework agent_framework.Agent, or an AG2 v1 ag2.Agent (`import ag2`, ag2 >= 1.0; "
        "the ag2 0.x releases are `import autogen`, the legacy family)."
    )


@cache
def verify(name: str) -> str:
    """Check a family's install once per process: not clobbered, a supported version."""
    family = get_family(name)
    check_clobbered(family.module)
    version = family.check_version()
    if not family.is_tested(version):
        logger.warning(
            "%s %s is outside the versions agentsession is tested with (%s)",
            family.module,
            version,
            family.tested_range,
        )
    return str(version)


def driver_for(agent: object) -> Driver:
    """Recognise the agent's family, check the install (once) and drive the agent."""
    family = family_of(agent)
    verify(family.name)
    return family.drive(agent)


__all__ = [
    "Driver",
    "Family",
    "FamilyInfo",
    "ag2_name_hint",
    "all_families",
    "check_clobbered",
    "detect",
    "driver_for",
    "family_of",
    "get_family",
    "owners",
    "verify",
]
