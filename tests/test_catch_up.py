"""A worker's cached agent catches up with the turns other workers recorded, reading only those.

Behind a load balancer a conversation's turns alternate between workers: each worker's cached
agent is then a few turns behind the store. It must come up to date from the new messages
alone (no whole-history read) and behave exactly as an agent rebuilt from the store would;
anything but appends in between (a popped turn, a reset, new metadata) rebuilds it instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import families_required, family_installed

from agentsession import Message, SessionManager
from agentsession.offline import offline_agent_factory, offline_team_factory


class Reads:
    """Counts a manager's whole-conversation reads and tail reads of its real store."""

    def __init__(self, manager: SessionManager, monkeypatch: pytest.MonkeyPatch) -> None:
        self.loads = 0
        self.tails: list[int] = []
        store = manager.store
        load, read_messages = store.load, store.read_messages

        async def counting_load(session_id: str) -> Any:
            self.loads += 1
            return await load(session_id)

        async def counting_read(session_id: str, start: int = 0, stop: int | None = None) -> Any:
            page = await read_messages(session_id, start, stop)
            if page is not None:
                self.tails.append(len(page.messages))
            return page

        monkeypatch.setattr(store, "load", counting_load)
        monkeypatch.setattr(store, "read_messages", counting_read)


def shape(messages: list[Message]) -> list[tuple[str, str | None, str | None]]:
    return [(m.role, m.name, m.content) for m in messages]


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[[Callable[[], Any]], list[SessionManager]]]:
    opened: list[SessionManager] = []

    def make(factory: Callable[[], Any]) -> list[SessionManager]:
        url = f"sqlite:///{tmp_path / 'shared.db'}"
        managers = [SessionManager(factory, url), SessionManager(factory, url)]
        opened.extend(managers)
        return managers

    yield make
    for manager in opened:
        manager.close()


def check_catch_up(
    factory: Callable[[], Any],
    workers: Callable[[Callable[[], Any]], list[SessionManager]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    catches_up: bool = True,
) -> None:
    a, b = workers(factory)
    sid = "alternating"
    a.send(sid, "turn 0")  # a's agent is cached at this version
    known = len(a.history(sid))
    b.send(sid, "turn 1")
    b.send(sid, "turn 2")
    before = b.export(sid)
    reads = Reads(a, monkeypatch)
    reply = a.send(sid, "turn 3")
    if catches_up:
        assert reads.loads == 0, "the cached agent was rebuilt from the whole conversation"
        # it read the last message it knew and b's two turns after it, nothing more
        assert reads.tails[0] == len(before["messages"]) - known + 1
    else:  # this version's driver cannot: rebuilt, and still right
        assert reads.loads == 1

    # the caught-up agent answers as an agent rebuilt from the same stored conversation
    with SessionManager(factory, f"sqlite:///{tmp_path / 'rebuilt.db'}") as fresh:
        fresh.import_(before, sid)
        assert fresh.send(sid, "turn 3") == reply
        assert shape(fresh.history(sid)) == shape(a.history(sid))

    # anything but appends since its last turn: rebuilt from the store, still right
    for change in ("pop", "reset", "metadata"):
        a.send(sid, f"a before {change}")
        if change == "pop":
            b.pop_turn(sid)
            b.send(sid, "b after the pop")
        elif change == "reset":
            b.reset(sid)
            b.send(sid, "b after the reset")
        else:
            b.set_metadata(sid, {"plan": "pro"})
        loads = reads.loads
        stored = b.export(sid)
        reply = a.send(sid, f"a after {change}")
        assert reads.loads == loads + 1, change
        with SessionManager(factory, f"sqlite:///{tmp_path / f'{change}.db'}") as fresh:
            fresh.import_(stored, sid)
            assert fresh.send(sid, f"a after {change}") == reply, change


def test_a_cached_agent_catches_up_from_the_new_messages_only(
    family: str, workers: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    check_catch_up(offline_agent_factory(family), workers, monkeypatch, tmp_path)


@pytest.mark.parametrize("team_family", ["agentchat", "legacy"])
def test_a_cached_team_catches_up_from_the_new_messages_only(
    team_family: str, workers: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if not family_installed(team_family):
        if team_family in families_required():
            pytest.fail(f"the {team_family} AutoGen family is required but not installed")
        pytest.skip(f"the {team_family} AutoGen family is not installed in this environment")
    catches_up = True
    if team_family == "agentchat":  # before 0.4.9 a team's containers are made lazily
        import autogen_agentchat

        from agentsession.families._gates import AGENTCHAT_TEAM_STATE_REKEYED, at_least, parse

        version = parse(autogen_agentchat.__version__)
        catches_up = version is not None and at_least(version, AGENTCHAT_TEAM_STATE_REKEYED)
    factory = offline_team_factory(team_family)
    check_catch_up(factory, workers, monkeypatch, tmp_path, catches_up)
