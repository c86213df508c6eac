"""``begin_turn``/``finish_turn`` beyond the contract suite: the lease is never left behind."""

from __future__ import annotations

from typing import Any

import pytest
from test_contract import _FailsAt, corrupt, run, turn

from agentsession import ConflictError, CorruptRecord, SessionNotFound
from agentsession.stores import RecordCodec, Store, open_store


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
