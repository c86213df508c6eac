"""Encryption at rest on every store: no plaintext in the stored bytes, wrong keys fail clearly, rotation."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from cryptography.fernet import Fernet
from test_contract import run

from agentsession import Message
from agentsession.errors import DecryptionError
from agentsession.stores import Store, open_store

SECRET = "the launch code is 0000"


def raw_records(kind: str, url: str, store: Store) -> list[str]:
    """Every stored message and metadata record as the backend holds it."""
    if kind == "memory":
        record = store._records["s1"]  # type: ignore[attr-defined]
        return [*record.messages, record.metadata]
    if kind == "sqlite":
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            rows = db.execute("SELECT body FROM agentsession_messages").fetchall()
            rows += db.execute("SELECT metadata FROM agentsession_conversations").fetchall()
        return [r[0] for r in rows]
    if kind == "redis":
        import redis

        keys = store._keys("s1")  # type: ignore[attr-defined]
        client = redis.Redis.from_url(url.split("?")[0])
        try:
            return [b.decode() for b in client.lrange(keys[1], 0, -1)] + [
                client.hget(keys[0], "metadata").decode()
            ]
        finally:
            client.close()
    import sqlalchemy as sa

    sql: Any = store
    with sql.engine.connect() as conn:
        bodies = [r[0] for r in conn.execute(sa.select(sql.messages.c.body))]
        bodies += [r[0] for r in conn.execute(sa.select(sql.conversations.c.metadata))]
    return bodies


def test_encrypted_records_hold_no_plaintext_and_rotate(store_kind: str, store_url: str) -> None:
    old_key, new_key = Fernet.generate_key(), Fernet.generate_key()

    async def write(store: Store) -> list[str]:
        await store.create("s1", {"note": SECRET})
        await store.append("s1", [Message("user", SECRET, name="user")], 0)
        raw = raw_records(store_kind, store_url, store)
        # rotation: the new key first, the old one still decrypts
        rotated = open_store(store_url, encryption_keys=[new_key, old_key])
        rotated.__dict__.update({k: v for k, v in store.__dict__.items() if k != "codec"})
        conversation = await rotated.load("s1")
        assert conversation is not None and conversation.messages[0].content == SECRET
        assert conversation.metadata == {"note": SECRET}
        await rotated.append("s1", [Message("assistant", "noted", name="assistant")], 1)
        # a wrong key fails clearly, naming the session
        wrong = open_store(store_url, encryption_keys=[Fernet.generate_key()])
        wrong.__dict__.update({k: v for k, v in store.__dict__.items() if k != "codec"})
        with pytest.raises(DecryptionError, match="s1"):
            await wrong.load("s1")
        # without keys, a sealed record says so instead of looking corrupt
        plain = open_store(store_url)
        plain.__dict__.update({k: v for k, v in store.__dict__.items() if k != "codec"})
        with pytest.raises(DecryptionError, match="encryption_keys"):
            await plain.load("s1")
        return raw

    raw = run(store_url, write, encryption_keys=[old_key])
    assert len(raw) == 2
    for record in raw:
        assert SECRET not in record and '"enc": "fernet"' in record
