"""A streamed turn's journal, on every store: written in batches, read after any seq, replaced
by the next streamed turn, never mixed with another turn's events, sealed when encrypted."""

from __future__ import annotations

from typing import Any

from test_contract import run

from agentsession.stores import Store


def events(first: int, count: int, turn: str = "t1") -> list[dict[str, Any]]:
    return [
        {"type": "delta", "seq": first + i, "text": f"{turn}-{first + i}"} for i in range(count)
    ]


def test_events_are_read_after_any_seq(store_url: str) -> None:
    async def body(store: Store) -> None:
        assert await store.journal_read("s1") is None
        await store.journal_write("s1", "t1", 0, events(0, 3))
        await store.journal_write("s1", "t1", 3, events(3, 2))
        page = await store.journal_read("s1")
        assert page is not None and page.turn_id == "t1"
        assert [e["seq"] for e in page.events] == [0, 1, 2, 3, 4]
        assert page.events[4] == {"type": "delta", "seq": 4, "text": "t1-4"}
        after = await store.journal_read("s1", after=2)
        assert after is not None and [e["seq"] for e in after.events] == [3, 4]
        none_yet = await store.journal_read("s1", after=4)
        assert none_yet is not None and none_yet.events == []

    run(store_url, body)


def test_a_new_turn_replaces_the_journal_and_a_late_writer_is_ignored(store_url: str) -> None:
    async def body(store: Store) -> None:
        await store.journal_write("s1", "t1", 0, events(0, 3))
        await store.journal_write("s1", "t2", 0, events(0, 1, "t2"))
        await store.journal_write("s1", "t1", 3, events(3, 2))  # the old turn's late batch
        page = await store.journal_read("s1")
        assert page is not None and page.turn_id == "t2"
        assert [e["text"] for e in page.events] == ["t2-0"]

    run(store_url, body)


def test_the_journal_says_whether_a_turn_holds_the_lease(store_url: str) -> None:
    async def body(store: Store) -> None:
        await store.create("s1", {})
        token = await store.acquire("s1", 30)
        assert token is not None
        await store.journal_write("s1", "t1", 0, events(0, 1))
        page = await store.journal_read("s1")
        assert page is not None and page.writing
        await store.release("s1", token)
        page = await store.journal_read("s1")
        assert page is not None and not page.writing

    run(store_url, body)


def test_deleting_the_conversation_removes_its_journal(store_url: str) -> None:
    async def body(store: Store) -> None:
        await store.create("s1", {})
        await store.journal_write("s1", "t1", 0, events(0, 2))
        await store.delete("s1")
        assert await store.journal_read("s1") is None

    run(store_url, body)


def test_an_encrypted_journal_holds_no_plaintext(tmp_path: Any) -> None:
    import sqlite3

    from cryptography.fernet import Fernet

    url = f"sqlite:///{tmp_path / 'agents.db'}"

    async def body(store: Store) -> None:
        await store.journal_write("s1", "t1", 0, [{"type": "delta", "seq": 0, "text": "SECRET"}])
        page = await store.journal_read("s1")
        assert page is not None and page.events[0]["text"] == "SECRET"

    run(url, body, encryption_keys=[Fernet.generate_key()])
    raw = sqlite3.connect(tmp_path / "agents.db").execute("SELECT body FROM agentsession_journal")
    assert all("SECRET" not in body for (body,) in raw)
