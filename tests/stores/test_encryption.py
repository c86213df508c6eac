"""Encryption at rest on every store: no plaintext in the stored bytes, wrong keys fail clearly, rotation."""

from __future__ import annotations

import contextlib
import copy
import sqlite3
from typing import Any

import pytest
from cryptography.fernet import Fernet
from test_contract import run

from agentsession import Message
from agentsession.errors import ConfigurationError, DecryptionError
from agentsession.stores import RecordCodec, Store, open_store
from agentsession.stores.encryption import EncryptedCodec

SECRET = "the launch code is 0000 ✓"


def raw_records(kind: str, url: str, store: Any) -> list[str]:
    """Every stored message and metadata record, read with the backend's own client."""
    if kind == "memory":
        record = store._records["s1"]
        return [*record.messages, record.metadata]
    if kind == "sqlite":
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            rows = db.execute("SELECT body FROM agentsession_messages").fetchall()
            rows += db.execute("SELECT metadata FROM agentsession_conversations").fetchall()
        return [r[0] for r in rows]
    if kind == "redis":
        import redis

        meta_key, messages_key = store._keys("s1")
        client = redis.Redis.from_url(url.split("?")[0])
        try:
            raw: list[Any] = [
                *client.lrange(messages_key, 0, -1),
                client.hget(meta_key, "metadata"),
            ]
        finally:
            client.close()
        return [b.decode() for b in raw]
    import sqlalchemy as sa

    engine = sa.create_engine(store.engine.url)
    try:
        with engine.connect() as conn:
            bodies = [r[0] for r in conn.execute(sa.select(store.messages.c.body))]
            bodies += [r[0] for r in conn.execute(sa.select(store.conversations.c.metadata))]
    finally:
        engine.dispose()
    return bodies


def with_codec(store: Store, codec: RecordCodec) -> Store:
    """The same store (same connections, same memory) read through another codec."""
    twin = copy.copy(store)
    twin.codec = codec
    return twin


def test_encrypted_records_hold_no_plaintext_and_rotate(store_kind: str, store_url: str) -> None:
    old_key, new_key = Fernet.generate_key(), Fernet.generate_key()

    async def body(store: Store) -> list[str]:
        await store.create("s1", {"note": SECRET})
        await store.append("s1", [Message("user", SECRET, name="user")], 0)
        raw = raw_records(store_kind, store_url, store)
        # rotation: the new key first, the old one still decrypts; new records use the new key
        rotated = with_codec(store, EncryptedCodec([new_key, old_key.decode()]))
        conversation = await rotated.load("s1")
        assert conversation is not None and conversation.messages[0].content == SECRET
        assert conversation.metadata == {"note": SECRET}
        await rotated.append("s1", [Message("assistant", "noted", name="assistant")], 1)
        with pytest.raises(DecryptionError, match="s1"):
            await with_codec(store, EncryptedCodec([old_key])).load("s1")  # old key only
        # the record written after rotation is sealed with the new key, the others not yet
        new_only = EncryptedCodec([new_key])
        opened = []
        for record in raw_records(store_kind, store_url, store):
            with contextlib.suppress(DecryptionError):
                opened.append(new_only.load_message(record, "s1").content)
        assert opened == ["noted"]
        # a wrong key fails clearly, naming the session
        with pytest.raises(DecryptionError, match="s1"):
            await with_codec(store, EncryptedCodec([Fernet.generate_key()])).load("s1")
        with pytest.raises(DecryptionError, match="s1"):
            await with_codec(store, EncryptedCodec([Fernet.generate_key()])).info("s1")
        # without keys, a sealed record says so instead of looking corrupt
        with pytest.raises(DecryptionError, match="encryption_keys"):
            await with_codec(store, RecordCodec()).load("s1")
        return raw

    raw = run(store_url, body, encryption_keys=[old_key])
    assert len(raw) == 2
    for record in raw:
        assert SECRET not in record and "launch" not in record and '"enc": "fernet"' in record


def test_a_codec_object_works_as_well_as_keys(store_kind: str, store_url: str) -> None:
    key = Fernet.generate_key()

    async def body(store: Store) -> list[str]:
        await store.create("s1", {})
        await store.append("s1", [Message("user", SECRET)], 0)
        conversation = await store.load("s1")
        assert conversation is not None and conversation.messages[0].content == SECRET
        return raw_records(store_kind, store_url, store)

    raw = run(store_url, body, codec=EncryptedCodec([key]))
    assert raw and all(SECRET not in record for record in raw)


@pytest.mark.parametrize("keys", [[], ["not a key"], "a string, not a list"])
def test_bad_keys_are_a_configuration_error(keys: Any) -> None:
    with pytest.raises(ConfigurationError, match="Fernet") as caught:
        EncryptedCodec(keys)
    assert "not a key" not in str(caught.value)  # never echo key material


def test_store_option_turns_encryption_on() -> None:
    store = open_store("memory://", encryption_keys=[Fernet.generate_key()])
    assert isinstance(store.codec, EncryptedCodec)
    assert type(open_store("memory://").codec) is RecordCodec
