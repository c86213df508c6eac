"""Stores that let the server join a conversation's records into one JSON array (SQLite,
MySQL/MariaDB) read the same messages when the server cannot build that array whole, and a
codec that must open each record (encryption) never takes that path."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import drop_store, make_store_url
from cryptography.fernet import Fernet

from agentsession import Message
from agentsession.stores import RecordCodec, open_store
from agentsession.stores.encryption import EncryptedCodec


class RowByRow(RecordCodec):
    """Counts the reads that fell back to decoding records one by one."""

    def __init__(self) -> None:
        self.fallbacks = 0

    def load_messages(self, texts: Any, session_id: str) -> list[Message]:
        self.fallbacks += 1
        return super().load_messages(texts, session_id)


MESSAGES = [Message("user" if i % 2 == 0 else "assistant", f"message {i} " * 8) for i in range(60)]


@pytest.mark.parametrize("kind", ["sqlite", "mariadb"])
def test_the_joined_array_is_the_usual_path(kind: str, tmp_path: Path) -> None:
    url = make_store_url(kind, tmp_path)
    codec = RowByRow()
    try:
        loaded, page = asyncio.run(_round_trip(url, codec=codec))
    finally:
        drop_store(kind, url)
    assert loaded == MESSAGES and page == MESSAGES[10:50]
    assert codec.fallbacks == 0


def test_load_array_takes_only_what_it_can_vouch_for() -> None:
    codec = RecordCodec()
    array = "[" + ",".join(m.to_json() for m in MESSAGES[:3]) + "]"
    assert codec.load_array(array, 3) == MESSAGES[:3]
    assert codec.load_array(array, 2) is None  # a record that held more than one value
    assert codec.load_array(None, 3) is None  # the server could not build the array
    assert codec.load_array(None, 0) == []
    assert codec.load_array(array[:-5], 3) is None  # truncated
    assert EncryptedCodec([Fernet.generate_key()]).load_array(array, 3) is None


async def _round_trip(
    url: str, adjust: Any = None, **options: Any
) -> tuple[list[Message], list[Message]]:
    store: Any = open_store(url, **options)
    if adjust is not None:
        adjust(store)
    try:
        await store.create("s1", {})
        for version, start in enumerate(range(0, len(MESSAGES), 20)):
            await store.append("s1", MESSAGES[start : start + 20], version)
        conversation = await store.load("s1")
        page = await store.read_messages("s1", 10, 50)
        assert conversation is not None and page is not None
        return conversation.messages, page.messages
    finally:
        await store.close()


def test_sqlite_reads_row_by_row_when_the_array_is_too_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentsession.stores.sqlite import SQLiteStore

    prepare = SQLiteStore._prepare

    def small_limit(self: Any, conn: sqlite3.Connection, *args: Any) -> None:
        prepare(self, conn, *args)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 4000)  # a record fits, the whole does not

    monkeypatch.setattr(SQLiteStore, "_prepare", small_limit)
    codec = RowByRow()
    loaded, page = asyncio.run(_round_trip(f"sqlite:///{tmp_path / 'small.db'}", codec=codec))
    assert loaded == MESSAGES and page == MESSAGES[10:50]
    assert codec.fallbacks == 2


def test_mariadb_reads_row_by_row_when_group_concat_is_cut_short(tmp_path: Path) -> None:
    import sqlalchemy as sa

    def cut(dbapi_connection: Any, record: Any) -> None:
        # after the store's own listener: the server truncates the joined records
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET SESSION group_concat_max_len = 500")

    def adjust(store: Any) -> None:
        sa.event.listen(store.engine, "connect", cut)
        store.engine.dispose()

    url = make_store_url("mariadb", tmp_path)
    codec = RowByRow()
    try:
        loaded, page = asyncio.run(_round_trip(url, adjust, codec=codec))
    finally:
        drop_store("mariadb", url)
    assert loaded == MESSAGES and page == MESSAGES[10:50]
    assert codec.fallbacks == 2


def test_an_encrypted_sqlite_store_never_asks_for_the_array(tmp_path: Path) -> None:
    seen: list[int] = []

    class Counting(EncryptedCodec):
        def load_array(self, array: Any, count: int) -> list[Message] | None:
            seen.append(count)
            return super().load_array(array, count)

    key = Fernet.generate_key()
    url = f"sqlite:///{tmp_path / 'sealed.db'}"
    loaded, page = asyncio.run(_round_trip(url, codec=Counting([key])))
    assert loaded == MESSAGES and page == MESSAGES[10:50]
    assert seen == []  # sealed records are read and opened row by row
