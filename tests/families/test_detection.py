"""Family detection and version gates, against real installed packages and real version strings."""

from __future__ import annotations

import importlib.metadata

import pytest
from packaging.version import Version

from agentsession import ClobberedInstall, UnsupportedAgent, UnsupportedVersion
from agentsession.families import (
    check_clobbered,
    detect,
    driver_for,
    family_of,
    get_family,
    verify,
)
from agentsession.families._gates import (
    AGENTCHAT_TEAM_STATE_REKEYED,
    AGENTCHAT_TOOL_RESULT_NAME,
    at_least,
)
from agentsession.offline import offline_agent_factory


@pytest.mark.parametrize(
    "version, expected",
    [
        ("0.4.7", False),
        ("0.4.8", True),
        ("0.4.8.dev1", True),  # a pre-release of the gate counts as the gate
        ("0.4.8rc2", True),
        ("0.4.9.3", True),  # four-part releases
        ("0.5.0rc1", True),
        ("0.10.0", True),
    ],
)
def test_gates_read_real_version_strings(version: str, expected: bool) -> None:
    assert at_least(Version(version), AGENTCHAT_TOOL_RESULT_NAME) is expected


def test_team_state_gate_splits_0_4_8_and_0_4_9_3() -> None:
    assert not at_least(Version("0.4.8"), AGENTCHAT_TEAM_STATE_REKEYED)
    assert at_least(Version("0.4.9.3"), AGENTCHAT_TEAM_STATE_REKEYED)


@pytest.mark.parametrize(
    "family, version, fix",
    [
        ("legacy", "0.1.14", "pyautogen"),
        ("legacy", "1.0.0", "pyautogen"),
        ("agentchat", "0.2.40", "autogen-agentchat"),
        ("agentchat", "0.3.0", "autogen-agentchat"),
        ("agentchat", "not-a-version", "Reinstall"),
    ],
)
def test_unsupported_versions_name_the_fix(family: str, version: str, fix: str) -> None:
    with pytest.raises(UnsupportedVersion, match=fix):
        get_family(family).check_version(version)


def test_supported_versions_pass() -> None:
    assert get_family("legacy").check_version("0.2.35") == Version("0.2.35")
    assert get_family("legacy").check_version("0.14.1") == Version("0.14.1")
    assert get_family("agentchat").check_version("0.4.9.3") == Version("0.4.9.3")
    assert get_family("agentchat").check_version("0.7.5") == Version("0.7.5")


def test_detect_reports_what_is_importable(family: str) -> None:
    found = {info.family: info for info in detect()}
    info = found[family]
    assert info.supported and info.problem is None
    assert info.distributions  # e.g. ("pyautogen",) for legacy, ("autogen-agentchat",)
    assert Version(info.version)


def test_a_clobbered_autogen_folder_is_named_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    # the nox matrix has a cell with a really clobbered install; here the detection rule itself
    real = importlib.metadata.packages_distributions()
    clobbered = {**real, "autogen": ["pyautogen", "autogen-agentchat"]}
    monkeypatch.setattr(importlib.metadata, "packages_distributions", lambda: clobbered)
    with pytest.raises(ClobberedInstall) as caught:
        check_clobbered("autogen")
    message = str(caught.value)
    assert "pyautogen" in message and "autogen-agentchat" in message
    assert "pip uninstall" in message


def test_an_unsupported_installed_version_stops_the_driver(
    family: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = offline_agent_factory(family)()
    module = importlib.import_module(get_family(family).module)
    monkeypatch.setattr(module, "__version__", "0.1.0")
    verify.cache_clear()
    try:
        with pytest.raises(UnsupportedVersion, match="not supported"):
            driver_for(agent)
    finally:
        verify.cache_clear()


@pytest.mark.parametrize("thing", [object(), "assistant", 42, ("a", "b"), None])
def test_objects_of_no_family_are_refused(thing: object) -> None:
    with pytest.raises(UnsupportedAgent, match="no supported AutoGen family"):
        family_of(thing)


def test_agents_are_recognised_by_type(family: str) -> None:
    agent = offline_agent_factory(family)()
    assert family_of(agent).name == family


def test_the_offline_family_is_detected_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    import agentsession.families as families
    from agentsession.offline import installed_family, offline_agent_factory

    calls: list[int] = []
    real = families.detect

    def counted() -> list[families.FamilyInfo]:
        calls.append(1)
        return real()

    monkeypatch.setattr(families, "detect", counted)
    installed_family.cache_clear()
    try:
        first = offline_agent_factory()
        offline_agent_factory()
        assert len(calls) == 1 and first() is not None
    finally:
        installed_family.cache_clear()
