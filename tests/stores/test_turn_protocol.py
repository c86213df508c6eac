"""The turn protocol beyond the contract suite: the lease is never left behind, a taken-over
lease is fenced, a renewed one is kept, and idempotency keys find their turns."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import sqlalchemy as sa
from test_contract import _FailsAt, corrupt, run, turn

from agentsession import ConflictError, CorruptRecord, LeaseLost, SessionNotFound
from agentsession.stores import RecordCodec, Store, TurnKey, open_store
from agentsession.stores.base import TURN_KEYS_KEPT


@pytest.mark.parametrize("failure", ["conflict", "deleted"])
def test_a_failed_finish_turn_releases_the_lease(store_url: str, failure: str) -> None:
    async def body(store: Store) -> None:
        await store.create("s1", {})
        begun = await store.begin_turn("s1", 30)
        assert begun is not None
        if failure == "conflict":
            await store.append("s1", turn(0), 0)  # another writer got in first
            with pytest.raises(ConflictError):
                await store.finish_turn("s1", turn(1), 0, begun[0])
        else:
            await store.delete("s1")
            await store.create("s1", {})  # not even a new conversation of the same id...
            await store.delete("s1")
            with pytest.raises(SessionNotFound):
                await store.finish_turn("s1", turn(1), 0, begun[0])
        again = await store.begin_turn("s1", 30)  # a 30 s lease, so released, not expired
        assert again is not None
        if failure == "conflict":
            info = again[1]
            assert info is not None and info.version == 1 and info.message_count == 2
        else:
            assert again[1] is None  # ...took the turn's messages

    run(store_url, body)


def test_begin_turn_refuses_while_another_token_holds_the_lease(store_url: str) -> None:
    async def body(store: Store) -> None:
        await store.create("s1", {})
        holder = await store.acquire("s1", 30)
        assert holder is not None
        assert await store.begin_turn("s1", 30) is None
        assert await store.begin_turn("s1", 30) is None  # a refusal takes nothing
        await store.release("s1", holder)
        begun = await store.begin_turn("s1", 30)
        assert begun is not None and begun[0] != holder
        await store.release("s1", holder)  # the old holder cannot release the new lease
        assert await store.acquire("s1", 30) is None
        assert await store.finish_turn("s1", turn(1), 0, begun[0]) == 1
        assert await store.acquire("s1", 30) is not None

    run(store_url, body)


def test_finish_turn_that_cannot_encode_releases_the_lease(store_url: str) -> None:

    async def body(store: Store) -> None:
        await store.create("s1", {})
        begun = await store.begin_turn("s1", 30)
        assert begun is not None
        store.codec = _FailsAt(2)
        with pytest.raises(RuntimeError):
            await store.finish_turn("s1", turn(1), 0, begun[0])
        store.codec = RecordCodec()
        again = await store.begin_turn("s1", 30)
        assert again is not None and again[1] is not None and again[1].message_count == 0

    run(store_url, body)


def test_begin_turn_on_a_corrupt_summary_releases_the_lease(
    store_kind: str, store_url: str
) -> None:

    async def body(store: Any) -> None:
        await store.create("s1", {})
        corrupt(store_kind, store_url, store, "s1", "{oops", "metadata")
        with pytest.raises(CorruptRecord) as caught:
            await store.begin_turn("s1", 30)
        assert caught.value.session_id == "s1"
        assert await store.acquire("s1", 30) is not None  # the lease was given back

    run(store_url, body)


@pytest.mark.parametrize("store_kind", ["postgresql", "mariadb"])
def test_a_load_never_straddles_a_turn(store_url: str) -> None:
    # the SQL store reads the summary, then the messages: a turn that commits in between must
    # not show up in the messages of a summary that predates it (one snapshot for both)
    other = open_store(store_url)

    async def body(store: Any) -> None:
        store._pipeline = False  # PostgreSQL's pipelined read: the test below
        await store.create("s1", {})
        await store.append("s1", turn(0), 0)
        read_head = store._head

        def head_then_a_turn_lands(conn: Any, session_id: str) -> Any:
            row = read_head(conn, session_id)
            bodies = [other.codec.dump_message(m) for m in turn(1)]
            other._call(lambda c: other._append_in(c, session_id, bodies, 1))
            return row

        store._head = head_then_a_turn_lands
        conversation = await store.load("s1")
        store._head = read_head
        assert conversation is not None and conversation.version == 1
        assert [m.content for m in conversation.messages] == [m.content for m in turn(0)]
        later = await store.load("s1")
        assert later is not None and later.version == 2 and len(later.messages) == 4
        await other.close()

    run(store_url, body)


@pytest.mark.parametrize("store_kind", ["postgresql"])
def test_a_pipelined_read_never_straddles_a_turn(store_url: str) -> None:
    # on PostgreSQL the summary and the messages go out in one pipeline: a turn that commits
    # while the summary's SELECT runs must not show up in the messages that follow it
    other = open_store(store_url)

    async def body(store: Any) -> None:
        assert store._pipeline
        await store.create("s1", {})
        await store.append("s1", turn(0), 0)
        sql = store._pipelined_sql
        # the summary's SELECT takes 0.5 s, and a turn commits 0.1 s into it
        store._pipelined_sql = sql._replace(head=sql.head + " AND (SELECT true FROM pg_sleep(0.5))")

        def a_turn_lands(version: int) -> None:
            time.sleep(0.1)
            bodies = [other.codec.dump_message(m) for m in turn(version)]
            other._call(lambda c: other._append_in(c, "s1", bodies, version))

        loop = asyncio.get_running_loop()
        for version, read in ((1, store.load), (2, lambda sid: store.read_messages(sid, 0))):
            lands = loop.run_in_executor(None, a_turn_lands, version)
            found = await read("s1")
            await lands
            assert found is not None and found.version == version
            expected = [m.content for v in range(version) for m in turn(v)]
            assert [m.content for m in found.messages] == expected
        store._pipelined_sql = sql
        later = await store.load("s1")
        assert later is not None and later.version == 3 and len(later.messages) == 6
        await other.close()

    run(store_url, body)


@pytest.mark.parametrize("store_kind", ["postgresql"])
def test_a_failed_pipelined_read_leaves_its_connection_usable(store_url: str) -> None:
    async def body(store: Any) -> None:
        await store.create("s1", {})
        await store.append("s1", turn(0), 0)
        sql = store._pipelined_sql
        store._pipelined_sql = sql._replace(messages=sql.messages.replace("body", "x_column", 1))
        connects: list[object] = []
        sa.event.listen(store.engine, "connect", lambda *args: connects.append(args))
        for _ in range(8):
            with pytest.raises(Exception, match="x_column"):
                await store.load("s1")
        store._pipelined_sql = sql
        for _ in range(8):
            found = await store.load("s1")
            assert found is not None and len(found.messages) == 2
        assert await store.append("s1", turn(1), 1) == 2
        # the failed transaction was rolled back, so its connection went back to the pool
        # (one it could not reset would be discarded, and a new one opened)
        assert connects == []

    run(store_url, body)


@pytest.mark.parametrize("store_kind", ["postgresql"])
def test_a_turn_costs_one_pipeline_each_way(store_url: str) -> None:
    # begin_turn and finish_turn each go out as one pipeline on PostgreSQL: what they leave
    # behind is what the statement-by-statement path leaves, lease and records alike
    async def body(store: Any) -> None:
        assert store._pipeline
        await store.create("s1", {"user": "ada"})
        for version in range(3):
            begun = await store.begin_turn("s1", 30)
            assert begun is not None
            token, info = begun
            assert info is not None and info.version == version
            assert info.message_count == 2 * version and info.metadata == {"user": "ada"}
            assert await store.begin_turn("s1", 30) is None  # the lease is held
            assert await store.finish_turn("s1", turn(version), version, token) == version + 1
        conversation = await store.load("s1")
        assert conversation is not None and conversation.version == 3
        expected = [m.content for v in range(3) for m in turn(v)]
        assert [m.content for m in conversation.messages] == expected
        page = await store.read_messages("s1", 4)
        assert page is not None and [m.content for m in page.messages] == expected[4:]
        assert await store.acquire("s1", 30) is not None  # the last finish released it
        # no conversation: no summary, and the lease is taken all the same (as elsewhere)
        missing = await store.begin_turn("nobody", 30)
        assert missing is not None and missing[1] is None
        with pytest.raises(SessionNotFound):
            await store.finish_turn("nobody", turn(0), 0, missing[0])
        assert await store.acquire("nobody", 30) is not None

    run(store_url, body)


@pytest.mark.parametrize("store_kind", ["postgresql"])
def test_a_retried_take_finds_its_own_lease(store_url: str) -> None:
    # begin_turn's pipeline is run again on a new connection when its connection is lost,
    # and the first one may have committed: the same token takes the lease again
    async def body(store: Any) -> None:
        await store.create("s1", {})

        def take(token: str) -> tuple[bool, Any]:
            result: tuple[bool, Any] = store._call(
                lambda conn: store._pipelined_begin(conn, "s1", token, 30), own=True
            )
            return result

        assert (await asyncio.to_thread(take, "a" * 32))[0]
        assert (await asyncio.to_thread(take, "a" * 32))[0]  # the retry: still ours
        assert not (await asyncio.to_thread(take, "b" * 32))[0]  # anyone else: busy
        assert await store.finish_turn("s1", turn(0), 0, "a" * 32) == 1

    run(store_url, body)


@pytest.mark.parametrize("store_kind", ["postgresql"])
def test_pooled_connections_the_server_closed_are_replaced_before_a_pipeline(
    store_url: str,
) -> None:
    # a pipeline sends its COMMIT with its first statement, so a dead pooled connection must
    # be found before it is used: every call after the backends were ended just works
    async def body(store: Any) -> None:
        await store.create("s1", {})
        assert await store.append("s1", turn(0), 0) == 1
        connects: list[object] = []
        sa.event.listen(store.engine, "connect", lambda *args: connects.append(args))

        async def end_the_backends() -> None:
            # warm several pooled connections, then end every one of them on the server
            await asyncio.gather(*(store.load("s1") for _ in range(4)))
            admin = sa.create_engine(store.engine.url)
            with admin.connect() as conn:
                ended = conn.execute(
                    sa.text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                        " AND application_name = '' AND state = 'idle'"
                    )
                ).scalar()
            admin.dispose()
            assert ended, "no pooled connection to end"
            await asyncio.sleep(0.2)  # the goodbyes have arrived

        version = 1
        for call in ("load", "read_messages", "begin_and_finish"):
            await end_the_backends()
            before = len(connects)
            if call == "load":
                found = await store.load("s1")
                assert found is not None and found.version == version
            elif call == "read_messages":
                page = await store.read_messages("s1", 0)
                assert page is not None and page.version == version
            else:
                begun = await store.begin_turn("s1", 30)
                assert begun is not None
                await end_the_backends()
                assert await store.finish_turn("s1", turn(version), version, begun[0]) == 2
                version = 2
            assert len(connects) > before  # a new connection replaced the dead one
        found = await store.load("s1")
        assert found is not None and len(found.messages) == 4

    run(store_url, body)


@pytest.mark.parametrize("store_kind", ["postgresql"])
def test_a_refused_pipelined_turn_releases_its_lease_in_its_one_round_trip(
    store_url: str,
) -> None:
    async def body(store: Any) -> None:
        releases: list[str] = []
        release = store._release_quietly

        async def counted(session_id: str, token: str) -> None:
            releases.append(session_id)
            await release(session_id, token)

        store._release_quietly = counted
        await store.create("s1", {})
        begun = await store.begin_turn("s1", 30)
        assert begun is not None
        with pytest.raises(ConflictError):  # a stale version
            await store.finish_turn("s1", turn(0), 5, begun[0])
        lease = await store.acquire("s1", 30)  # released by the refused statement
        assert lease is not None
        await store.release("s1", lease)
        await store.delete("s1")
        missing = await store.begin_turn("s1", 30)
        assert missing is not None
        with pytest.raises(SessionNotFound):
            await store.finish_turn("s1", turn(0), 0, missing[0])
        assert await store.acquire("s1", 30) is not None
        await store.create("s2", {})
        stale = await store.begin_turn("s2", 0.05)
        assert stale is not None
        await asyncio.sleep(0.1)
        rival = await store.begin_turn("s2", 30)  # the lease expired: another turn takes it
        assert rival is not None
        with pytest.raises(LeaseLost):
            await store.finish_turn("s2", turn(0), 0, stale[0])
        assert await store.begin_turn("s2", 30) is None  # the rival's lease stands
        assert releases == []  # no second round trip to release what the statement did

    run(store_url, body)


@pytest.mark.parametrize("store_kind", ["postgresql"])
def test_a_failed_pipelined_turn_leaves_its_connection_and_the_lease_usable(
    store_url: str,
) -> None:
    async def body(store: Any) -> None:
        await store.create("s1", {})
        sql = store._pipelined_sql
        store._pipelined_sql = sql._replace(finish=sql.finish.replace("t.body", "t.x_body", 1))
        connects: list[object] = []
        sa.event.listen(store.engine, "connect", lambda *args: connects.append(args))
        for _ in range(4):
            begun = await store.begin_turn("s1", 30)
            assert begun is not None  # the failed finish released the lease
            with pytest.raises(Exception, match="x_body"):
                await store.finish_turn("s1", turn(0), 0, begun[0])
        store._pipelined_sql = sql
        begun = await store.begin_turn("s1", 30)
        assert begun is not None
        assert await store.finish_turn("s1", turn(0), 0, begun[0]) == 1  # nothing half-landed
        found = await store.load("s1")
        assert found is not None and len(found.messages) == 2
        assert connects == []  # rolled back and pooled, not discarded

    run(store_url, body)


# -- short leases: renewed while a turn runs, fenced when taken over ----------------------


def test_a_lease_taken_over_refuses_its_old_holders_write(store_url: str) -> None:
    async def body(store: Store) -> None:
        await store.create("s1", {})
        stale = await store.begin_turn("s1", 0.05)
        assert stale is not None
        await asyncio.sleep(0.15)  # the holder froze past its lease...
        fresh = await store.begin_turn("s1", 30)  # ...and another worker took it over
        assert fresh is not None
        with pytest.raises(LeaseLost):
            await store.finish_turn("s1", turn(1), 0, stale[0])
        info = await store.info("s1")
        assert info is not None and info.version == 0 and info.message_count == 0
        assert await store.acquire("s1", 30) is None  # the refusal left the new holder's lease
        assert await store.finish_turn("s1", turn(2), 0, fresh[0]) == 1
        conversation = await store.load("s1")
        assert conversation is not None
        assert [m.content for m in conversation.messages] == ["question 2", "answer 2"]

    run(store_url, body)


def test_an_expired_lease_nobody_took_still_writes(store_url: str) -> None:
    async def body(store: Store) -> None:
        await store.create("s1", {})
        begun = await store.begin_turn("s1", 0.05)
        assert begun is not None
        await asyncio.sleep(0.15)
        assert await store.finish_turn("s1", turn(1), 0, begun[0]) == 1

    run(store_url, body)


def test_renew_keeps_the_lease_and_fails_once_it_is_taken_over(store_url: str) -> None:
    async def body(store: Store) -> None:
        await store.create("s1", {})
        begun = await store.begin_turn("s1", 0.3)
        assert begun is not None
        token = begun[0]
        for _ in range(4):  # 0.6 s in all, twice the lease: renewed, never lost
            await asyncio.sleep(0.15)
            assert await store.renew("s1", token, 0.3) is True
            assert await store.acquire("s1", 30) is None
        await store.release("s1", token)
        assert await store.renew("s1", token, 0.3) is True  # released: taken again
        await store.release("s1", token)
        other = await store.acquire("s1", 30)
        assert other is not None
        assert await store.renew("s1", token, 0.3) is False  # another holder has it
        assert await store.finish_turn("s1", turn(1), 0, other) == 1

    run(store_url, body)


# -- idempotency keys ----------------------------------------------------------------------


def test_a_keyed_turn_is_found_by_its_key(store_url: str) -> None:
    async def body(store: Store) -> None:
        await store.create("s1", {})
        begun = await store.begin_turn("s1", 30)
        assert begun is not None
        await store.finish_turn("s1", turn(0), 0, begun[0])  # unkeyed
        begun = await store.begin_turn("s1", 30)
        assert begun is not None
        await store.finish_turn("s1", turn(1), 1, begun[0], turn_key=TurnKey("k1", "d1"))
        found = await store.find_turn("s1", "k1")
        assert found is not None and found.digest == "d1"
        assert [m.content for m in found.messages] == ["question 1", "answer 1"]
        assert await store.find_turn("s1", "k2") is None
        assert await store.find_turn("nobody", "k1") is None
        await store.rename("s1", "s2")  # rotation keeps the conversation's keys
        moved = await store.find_turn("s2", "k1")
        assert moved is not None and moved.messages[0].content == "question 1"
        assert await store.find_turn("s1", "k1") is None
        await store.reset("s2")  # the turns are gone, so are their keys
        assert await store.find_turn("s2", "k1") is None

    run(store_url, body)


def test_a_refused_keyed_turn_records_no_key(store_url: str) -> None:
    async def body(store: Store) -> None:
        await store.create("s1", {})
        await store.append("s1", turn(0), 0)
        begun = await store.begin_turn("s1", 30)
        assert begun is not None
        with pytest.raises(ConflictError):
            await store.finish_turn("s1", turn(1), 0, begun[0], turn_key=TurnKey("k", "d"))
        assert await store.find_turn("s1", "k") is None

    run(store_url, body)


def test_only_the_newest_keys_are_kept(store_url: str) -> None:
    async def body(store: Store) -> None:
        await store.create("s1", {})
        for i in range(TURN_KEYS_KEPT + 2):
            begun = await store.begin_turn("s1", 30)
            assert begun is not None
            key = TurnKey(f"k{i}", f"d{i}")
            await store.finish_turn("s1", turn(i), i, begun[0], turn_key=key)
        assert await store.find_turn("s1", "k0") is None
        assert await store.find_turn("s1", "k1") is None
        newest = await store.find_turn("s1", f"k{TURN_KEYS_KEPT + 1}")
        assert newest is not None and newest.messages[0].content == f"question {TURN_KEYS_KEPT + 1}"
        kept = await store.find_turn("s1", "k2")
        assert kept is not None and kept.messages[1].content == "answer 2"

    run(store_url, body)


def test_deleting_a_conversation_forgets_its_keys(store_url: str) -> None:
    async def body(store: Store) -> None:
        await store.create("s1", {})
        begun = await store.begin_turn("s1", 30)
        assert begun is not None
        await store.finish_turn("s1", turn(0), 0, begun[0], turn_key=TurnKey("k", "d"))
        await store.delete("s1")
        await store.create("s1", {})
        assert await store.find_turn("s1", "k") is None

    run(store_url, body)
