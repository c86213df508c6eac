"""What keeps a turn safe: idempotency keys, one agent per conversation, short leases renewed
by a heartbeat (and fenced when lost), and recovery after a worker is killed mid-turn."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest
from conftest import family_installed

from agentsession import (
    AsyncSessionManager,
    IdempotencyKeyReused,
    InvalidInput,
    LeaseLost,
    OwnerMismatch,
    SessionBusy,
    SessionManager,
    SessionNotFound,
    SharedAgent,
)
from agentsession.offline import offline_agent_factory, user_messages_seen

TEAM_FAMILIES = ["legacy", "agentchat"]  # the families with teams


class Counting:
    """A factory that counts the turns its agents' model answered."""

    def __init__(self, family: str) -> None:
        self.build = offline_agent_factory(family)
        self.built = 0

    def __call__(self) -> Any:
        self.built += 1
        return self.build()


# -- idempotency ---------------------------------------------------------------------------


def test_a_retried_turn_returns_the_recorded_one(family: str, store_url: str) -> None:
    with SessionManager(offline_agent_factory(family), store_url) as manager:
        session = manager.session()
        first = session.run_turn("hello", idempotency_key="req-1")
        again = session.run_turn("hello", idempotency_key="req-1")  # the client timed out
        assert again.replayed and not first.replayed
        assert [m.content for m in again] == [m.content for m in first]
        assert again.reply == first.reply and user_messages_seen(again.reply) == 1
        assert len(session.history()) == 2  # the model ran once
        assert user_messages_seen(session.send("next", idempotency_key="req-2")) == 2
        with pytest.raises(IdempotencyKeyReused, match="another message"):
            session.send("something else", idempotency_key="req-1")
        assert len(session.history()) == 4


def test_a_retry_from_a_new_manager_finds_the_turn(family: str, durable_store_url: str) -> None:
    factory = Counting(family)
    with SessionManager(factory, durable_store_url) as manager:
        session_id = manager.session().id
        reply = manager.send(session_id, "hello", idempotency_key="k")
    with SessionManager(factory, durable_store_url) as other:  # another worker, say
        assert other.send(session_id, "hello", idempotency_key="k") == reply
        assert factory.built == 1  # no agent was even built for the replay
        assert len(other.history(session_id)) == 2


def test_idempotency_keys_are_checked(family: str) -> None:
    with SessionManager(offline_agent_factory(family), "memory://") as manager:
        session = manager.session()
        for bad in ("", "k" * 256):
            with pytest.raises(InvalidInput, match="idempotency key"):
                session.send("hello", idempotency_key=bad)
        assert session.history() == []


def test_a_replay_is_refused_to_another_owner(family: str) -> None:
    with SessionManager(offline_agent_factory(family), "memory://") as manager:
        session_id = manager.session().id
        manager.send(session_id, "secret", idempotency_key="k", owner="alice")
        with pytest.raises(OwnerMismatch):
            manager.send(session_id, "secret", idempotency_key="k", owner="bob")


# -- owner and create, in the engine -------------------------------------------------------


def test_the_engine_checks_the_owner_and_binds_an_anonymous_conversation(family: str) -> None:
    with SessionManager(offline_agent_factory(family), "memory://") as manager:
        session_id = manager.session().id
        manager.send(session_id, "anonymous start", owner=None)
        manager.send(session_id, "alice now", owner="alice")  # the first user binds it
        for intruder in ("bob", None):
            with pytest.raises(OwnerMismatch):
                manager.send(session_id, "let me in", owner=intruder)
            with pytest.raises(OwnerMismatch):
                manager.set_metadata(session_id, {"x": 1}, owner=intruder)
            with pytest.raises(OwnerMismatch):
                manager.reset(session_id, owner=intruder)
            with pytest.raises(OwnerMismatch):
                manager.delete(session_id, owner=intruder)
            with pytest.raises(OwnerMismatch):
                manager.rotate(session_id, owner=intruder)
        assert len(manager.history(session_id)) == 4
        manager.set_metadata(session_id, {"agentsession.owner": "bob"}, owner="alice")
        assert manager.metadata(session_id) == {"agentsession.owner": "alice"}


def test_create_false_never_creates(family: str) -> None:
    with SessionManager(offline_agent_factory(family), "memory://") as manager:
        session_id = manager.session().id
        with pytest.raises(SessionNotFound):
            manager.send(session_id, "hello", create=False)
        with pytest.raises(SessionNotFound):
            manager.set_metadata(session_id, {"a": 1}, create=False)
        assert not manager.exists(session_id)


# -- one agent per conversation ------------------------------------------------------------


def test_a_factory_returning_one_agent_for_every_conversation_is_refused(family: str) -> None:
    shared = offline_agent_factory(family)()  # the module-level agent of many tutorials
    with SessionManager(lambda: shared, "memory://") as manager:
        alice, bob = manager.session(), manager.session()
        alice.send("alice's secret is 1")
        with pytest.raises(SharedAgent, match="new agent"):
            bob.send("what did I say earlier?")
        assert bob.history() == []
        assert user_messages_seen(alice.send("still mine")) == 2


def test_a_model_context_shared_by_two_agents_is_refused() -> None:
    from autogen_core.model_context import BufferedChatCompletionContext

    from agentsession.offline.agentchat import build_agent

    context = BufferedChatCompletionContext(buffer_size=10)  # microsoft/autogen#6088
    with SessionManager(lambda: build_agent(model_context=context), "memory://") as manager:
        manager.session().send("alice here")
        with pytest.raises(SharedAgent):
            manager.session().send("bob here")


def test_fresh_agents_per_call_are_never_refused_and_claims_do_not_pile_up(family: str) -> None:
    import gc

    with SessionManager(offline_agent_factory(family), "memory://", cache_size=2) as manager:
        sessions = [manager.session() for _ in range(12)]
        for _ in range(2):
            for session in sessions:
                session.send("hi")
        gc.collect()
        assert len(manager.engine._claims) <= 2 * 2 * 2  # parts of the cached agents only


# -- leases: renewed while a turn runs, fenced when lost -----------------------------------


def slow_factory(seconds: float) -> Any:
    """An agentchat agent whose tool takes ``seconds``: a long turn."""
    from agentsession.offline.agentchat import build_agent

    async def slow(n: int) -> int:
        await asyncio.sleep(seconds)
        return n

    return lambda: build_agent(tools=[slow])


def test_a_turn_longer_than_its_lease_keeps_it(durable_store_url: str) -> None:
    async def run() -> None:
        factory = slow_factory(1.5)
        async with (
            AsyncSessionManager(factory, durable_store_url, lease_ttl=0.4) as worker,
            AsyncSessionManager(factory, durable_store_url, lock_timeout=0.3) as other,
        ):
            session_id = worker.session().id
            await worker.send(session_id, "hello")
            long_turn = asyncio.ensure_future(worker.send(session_id, '/tool slow {"n": 7}'))
            await asyncio.sleep(0.9)  # more than twice the lease: renewed, not expired
            with pytest.raises(SessionBusy):
                await other.send(session_id, "me too")
            assert await long_turn == "7"  # the tool-call summary
            assert len(await other.history(session_id)) == 6

    asyncio.run(run())


def test_a_turn_whose_lease_was_taken_over_is_not_recorded(durable_store_url: str) -> None:
    async def run() -> None:
        factory = slow_factory(0.8)
        async with (
            AsyncSessionManager(factory, durable_store_url, lease_ttl=0.2) as frozen,
            AsyncSessionManager(factory, durable_store_url, lock_timeout=5) as other,
        ):

            async def no_heartbeat(*args: Any) -> bool:  # a process frozen past its lease
                return True

            frozen.store.renew = no_heartbeat  # type: ignore[method-assign]
            session_id = frozen.session().id
            stale = asyncio.ensure_future(frozen.send(session_id, '/tool slow {"n": 1}'))
            await asyncio.sleep(0.4)  # the frozen holder's lease expired; another takes it
            taking_over = asyncio.ensure_future(other.send(session_id, '/tool slow {"n": 2}'))
            with pytest.raises(LeaseLost):  # the old holder finishes while the new one runs
                await stale
            assert await taking_over == "2"
            contents = [m.content for m in await other.history(session_id)]
            assert contents[0] == '/tool slow {"n": 2}' and len(contents) == 4

    asyncio.run(run())


_HOLD = textwrap.dedent(
    """
    import asyncio, sys
    from agentsession import AsyncSessionManager
    from agentsession.offline.agentchat import build_agent

    async def slow(n: int) -> int:
        print("turn started", flush=True)
        await asyncio.sleep(600)
        return n

    async def main() -> None:
        async with AsyncSessionManager(lambda: build_agent(tools=[slow]), sys.argv[1]) as m:
            await m.send(sys.argv[2], '/tool slow {"n": 1}')

    asyncio.run(main())
    """
)


@pytest.mark.slow  # kills a worker process
def test_a_killed_workers_conversation_is_free_within_its_lease(durable_store_url: str) -> None:
    """kill -9 during a turn: the default lease (a few seconds) frees the conversation."""
    with SessionManager(offline_agent_factory("agentchat"), durable_store_url) as manager:
        session_id = manager.session().id
        manager.send(session_id, "before")
        worker = subprocess.Popen(
            [sys.executable, "-c", _HOLD, durable_store_url, session_id],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert worker.stdout is not None and "started" in worker.stdout.readline()
            worker.kill()
            worker.wait(10)
            started = time.monotonic()
            while True:  # what a client retrying on 409 does
                try:
                    reply = manager.send(session_id, "after the crash")
                    break
                except SessionBusy:
                    assert time.monotonic() - started < 120, "the lease never expired"
            assert user_messages_seen(reply) == 2  # the killed turn left nothing
            assert len(manager.history(session_id)) == 4
        finally:
            worker.kill()


@pytest.mark.parametrize("family", TEAM_FAMILIES)
def test_a_team_or_member_shared_by_two_conversations_is_refused(family: str) -> None:
    if not family_installed(family):
        pytest.skip(f"the {family} family is not installed")
    from agentsession.offline import offline_team_factory

    shared = offline_team_factory(family)()
    with SessionManager(lambda: shared, "memory://") as manager:
        manager.session().send("alice's plan")
        with pytest.raises(SharedAgent):
            manager.session().send("bob's plan")
    if family != "agentchat":
        return
    from autogen_agentchat.teams import RoundRobinGroupChat

    from agentsession.offline.agentchat import build_member

    writer = build_member("writer")  # one member object in every team the factory builds

    def teams() -> Any:
        return RoundRobinGroupChat([writer, build_member("critic")], max_turns=2)

    with SessionManager(teams, "memory://") as manager:
        manager.session().send("first")
        with pytest.raises(SharedAgent):
            manager.session().send("second")


@pytest.mark.parametrize("family", TEAM_FAMILIES)
def test_a_team_turn_past_max_messages_is_not_recorded(family: str) -> None:
    if not family_installed(family):
        pytest.skip(f"the {family} family is not installed")
    from agentsession import ConversationFull
    from agentsession.offline import offline_team_factory

    with SessionManager(offline_team_factory(family), "memory://", max_messages=2) as manager:
        session = manager.session()
        with pytest.raises(ConversationFull, match="not recorded"):
            session.send("a team answers with more than one message")
        assert session.history() == []
