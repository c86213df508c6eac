"""Requests that race on one conversation: owner binding, deletion and rotation are checked
inside the turn's lease, so no interleaving lets a request write where it must not.

Each test interleaves two request sessions deterministically (one adopts, the other acts, the
first writes), on every store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from support import SECRET, factory

from agentsession import OWNER_KEY, AsyncSessionManager
from agentsession.adapters._session import AsyncRequestSession
from agentsession.adapters._tokens import Claim, TokenSigner
from agentsession.offline import user_messages_seen

SIGNER = TokenSigner(SECRET, None)


def request(
    manager: AsyncSessionManager, session_id: str | None = None, user: str | None = None
) -> AsyncRequestSession:
    owner: Callable[[], str | None] = lambda: user  # noqa: E731
    token = SIGNER.sign(session_id) if session_id else None
    return AsyncRequestSession(manager, Claim(token, False, SIGNER), owner)


def test_owner_binding_is_checked_where_the_turn_writes(store_url: str) -> None:
    async def run() -> None:
        async with AsyncSessionManager(factory(), store_url) as manager:
            anonymous = request(manager)
            await anonymous.send("hello from a shared device")
            shared = await anonymous.session_id()
            bob = request(manager, shared, "bob")
            assert len(await bob.history()) == 2  # Bob's request adopts the conversation...
            alice = request(manager, shared, "alice")
            await alice.send("ALICE PRIVATE")  # ...Alice's binds it to her and writes...
            reply = await bob.send("what did I say earlier?")  # ...then Bob's request writes
            assert "ALICE" not in reply and user_messages_seen(reply) == 1
            assert await bob.session_id() != shared  # in a conversation of his own
            assert (await manager.metadata(shared))[OWNER_KEY] == "alice"
            again = request(manager, shared, "alice")  # Alice is not locked out
            assert "ALICE PRIVATE" in await again.send("what did I say earlier?")
            history = [m.content for m in await manager.history(shared)]
            assert history.count("what did I say earlier?") == 1

    asyncio.run(run())


def test_an_anonymous_request_cannot_write_into_a_conversation_bound_meanwhile(
    store_url: str,
) -> None:
    async def run() -> None:
        async with AsyncSessionManager(factory(), store_url) as manager:
            first = request(manager)
            await first.send("before login")
            shared = await first.session_id()
            stale = request(manager, shared)  # anonymous, adopts
            assert len(await stale.history()) == 2
            await request(manager, shared, "carol").send("after login")  # carol claims it
            await stale.set_metadata({"topic": "mine"})
            assert await stale.session_id() != shared
            metadata = await manager.metadata(shared)
            assert metadata == {OWNER_KEY: "carol"}

    asyncio.run(run())


def test_a_deleted_conversation_is_not_recreated_by_a_request_that_adopted_it(
    store_url: str,
) -> None:
    async def run() -> None:
        async with AsyncSessionManager(factory(), store_url) as manager:
            first = request(manager)
            await first.send("hello")
            old = await first.session_id()
            adopted = request(manager, old)
            assert len(await adopted.history()) == 2
            assert await request(manager, old).delete() is True  # another tab deletes it
            reply = await adopted.send("hello again")
            assert user_messages_seen(reply) == 1
            assert await adopted.session_id() != old
            assert await manager.info(old) is None  # the deleted id did not come back

    asyncio.run(run())


def test_a_rotated_id_is_not_recreated_by_a_request_that_adopted_it(store_url: str) -> None:
    async def run() -> None:
        async with AsyncSessionManager(factory(), store_url) as manager:
            first = request(manager)
            await first.send("hello")
            old = await first.session_id()
            adopted = request(manager, old)
            assert await adopted.exists()
            login = request(manager, old, "dana")
            new = await login.rotate()  # login: moved and bound to dana
            assert (await manager.metadata(new))[OWNER_KEY] == "dana"
            await adopted.send("still there?")
            assert await manager.info(old) is None
            assert await adopted.session_id() not in (old, new)
            assert len(await manager.history(new)) == 2  # the rotated conversation is intact

    asyncio.run(run())


def test_rotating_at_login_locks_out_a_token_copied_before(store_url: str) -> None:
    async def run() -> None:
        async with AsyncSessionManager(factory(), store_url) as manager:
            victim = request(manager)
            await victim.send("my plans")
            before = await victim.session_id()  # the attacker copies this token
            at_login = request(manager, before, "erin")
            after = await at_login.rotate()
            attacker = request(manager, before)
            assert await attacker.history() == []
            assert await attacker.session_id() not in (before, after)
            thief = request(manager, after, "mallory")  # even with the new token
            assert await thief.history() == []
            assert user_messages_seen(await request(manager, after, "erin").send("hi")) == 2

    asyncio.run(run())
