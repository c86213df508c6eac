"""Team conversations move across versions and families: the stored form is the canonical log.

The fixtures are transcripts real AutoGen runs wrote (``fixtures/make_fixtures.py``):
``agentchat-0.4.2-…`` from autogen-agentchat 0.4.2, whose own team state no release from 0.4.9
can load; ``agentchat-0.7.5-…``; ``legacy-0.2.35-…`` from a pyautogen 0.2.35 GroupChat.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import family_installed
from team_support import assert_replies_saw_the_thread

from agentsession import SessionManager

FIXTURES = Path(__file__).parent / "fixtures"
AGENTCHAT_FIXTURES = sorted(p.name for p in FIXTURES.glob("agentchat-*.json"))
LEGACY_FIXTURES = sorted(p.name for p in FIXTURES.glob("legacy-*.json"))
agentchat_only = pytest.mark.skipif(
    not family_installed("agentchat"), reason="agentchat not installed"
)
legacy_only = pytest.mark.skipif(
    not family_installed("legacy"), reason="legacy AutoGen not installed"
)


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def agentchat_team() -> Any:
    from autogen_agentchat.conditions import TextMentionTermination
    from autogen_agentchat.teams import RoundRobinGroupChat

    from agentsession.offline.agentchat import build_member

    return RoundRobinGroupChat(
        [build_member("writer", tools=[add]), build_member("critic", terminate="TERMINATE")],
        termination_condition=TextMentionTermination("TERMINATE"),
    )


def legacy_group() -> Any:
    from agentsession.offline.legacy import build_group_chat

    return build_group_chat(tools=[add])


def continue_fixture(name: str, factory: Any, store_url: str) -> list[Any]:
    document = json.loads((FIXTURES / name).read_text())
    with SessionManager(factory, store_url) as manager:
        session_id = manager.import_(document, "migrated")
        turn = manager.session(session_id).run_turn("what now?")
        assert [m.name for m in turn] == ["user", "writer", "critic"]
        return manager.history(session_id)


@agentchat_only
@pytest.mark.parametrize("name", AGENTCHAT_FIXTURES)
def test_a_stored_agentchat_team_continues_on_the_installed_version(
    name: str, store_url: str
) -> None:
    log = continue_fixture(name, agentchat_team, store_url)
    assert len(log) == 14
    assert assert_replies_saw_the_thread(log) == 7


@agentchat_only
@pytest.mark.parametrize("name", LEGACY_FIXTURES)
def test_a_legacy_group_chat_continues_as_a_round_robin_team(name: str, store_url: str) -> None:
    log = continue_fixture(name, agentchat_team, store_url)
    assert assert_replies_saw_the_thread(log) == 8


@legacy_only
@pytest.mark.parametrize("name", AGENTCHAT_FIXTURES)
def test_an_agentchat_team_continues_as_a_legacy_group_chat(name: str, store_url: str) -> None:
    log = continue_fixture(name, legacy_group, store_url)
    assert assert_replies_saw_the_thread(log) == 7


@agentchat_only
@legacy_only
def test_a_conversation_moves_between_families_mid_way(durable_store_url: str) -> None:
    session_id = "moving"
    for factory in (legacy_group, agentchat_team, legacy_group, agentchat_team):
        with SessionManager(factory, durable_store_url) as manager:
            manager.session(session_id).send('/tool add {"a": 1, "b": 2}')
            manager.session(session_id).send("and?")
    with SessionManager(agentchat_team, durable_store_url) as manager:
        log = manager.history(session_id)
    assert [m.content for m in log if m.role == "user"] == [
        '/tool add {"a": 1, "b": 2}',
        "and?",
    ] * 4
    assert (
        assert_replies_saw_the_thread(log) == 14
    )  # an agentchat tool summary ("3") is no offline reply
