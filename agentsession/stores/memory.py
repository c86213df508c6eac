"""In-process store for tests and demos: ``memory://``. Forgets everything when the process ends."""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConflictError, LeaseLost, SessionNotFound
from ..messages import Message
from .base import (
    TURN_KEY_TTL,
    TURN_KEYS_KEPT,
    Conversation,
    MessagePage,
    SessionInfo,
    Store,
    StoredTurn,
    TurnKey,
    page_bounds,
)


@dataclass(slots=True)
class _Record:
    metadata: str
    created_at: float
    updated_at: float
    version: int = 0
    # encoded, as other stores keep them, so the codec (and encryption) is exercised here too
    messages: list[str] = field(default_factory=list)
    # idempotency key -> (first message, message count, digest, recorded at), oldest first
    turn_keys: OrderedDict[str, tuple[int, int, str, float]] = field(default_factory=OrderedDict)


class MemoryStore(Store):
    schemes = ("memory",)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._records: dict[str, _Record] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self._mutex = threading.Lock()

    def _live(self, session_id: str) -> _Record | None:
        record = self._records.get(session_id)
        if record is not None and self.is_expired(record.updated_at):
            return None
        return record

    def _require(self, session_id: str) -> _Record:
        record = self._live(session_id)
        if record is None:
            raise SessionNotFound(session_id)
        return record

    async def load(self, session_id: str) -> Conversation | None:
        with self._mutex:
            record = self._live(session_id)
            if record is None:
                return None
            texts, version = list(record.messages), record.version
            metadata, created, updated = record.metadata, record.created_at, record.updated_at
        return Conversation(
            session_id=session_id,
            version=version,
            messages=self.codec.load_messages(texts, session_id),
            metadata=self.codec.load_metadata(metadata, session_id),
            created_at=created,
            updated_at=updated,
        )

    async def read_messages(
        self, session_id: str, start: int = 0, stop: int | None = None
    ) -> MessagePage | None:
        with self._mutex:
            record = self._live(session_id)
            if record is None:
                return None
            total, version = len(record.messages), record.version
            first, end = page_bounds(start, stop, total)
            texts = record.messages[first:end]
        return MessagePage(self.codec.load_messages(texts, session_id), first, total, version)

    async def truncate(self, session_id: str, keep: int, expected_version: int) -> int:
        with self._mutex:
            record = self._require(session_id)
            if record.version != expected_version:
                raise ConflictError(
                    f"session {session_id!r} is at version {record.version}, "
                    f"expected {expected_version}"
                )
            del record.messages[keep:]
            for key in [k for k, entry in record.turn_keys.items() if entry[0] >= keep]:
                del record.turn_keys[key]
            record.version += 1
            record.updated_at = time.time()
            return record.version

    async def info(self, session_id: str) -> SessionInfo | None:
        with self._mutex:
            record = self._live(session_id)
            if record is None:
                return None
            row = (record.version, len(record.messages), record.created_at, record.updated_at)
            metadata = record.metadata
        return SessionInfo(session_id, *row, self.codec.load_metadata(metadata, session_id))

    async def version(self, session_id: str) -> int | None:
        with self._mutex:
            record = self._live(session_id)
            return None if record is None else record.version

    async def create(self, session_id: str, metadata: Mapping[str, Any]) -> None:
        encoded = self.codec.dump_metadata(metadata)
        now = time.time()
        with self._mutex:
            if self._live(session_id) is not None:
                raise ConflictError(f"session {session_id!r} already exists")
            self._records[session_id] = _Record(encoded, now, now)

    async def append(
        self, session_id: str, messages: Sequence[Message], expected_version: int
    ) -> int:
        encoded = [self.codec.dump_message(m) for m in messages]
        with self._mutex:
            return self._append_locked(session_id, encoded, expected_version, None)

    def _append_locked(
        self,
        session_id: str,
        encoded: list[str],
        expected_version: int,
        turn_key: TurnKey | None,
    ) -> int:
        record = self._require(session_id)
        if record.version != expected_version:
            raise ConflictError(
                f"session {session_id!r} is at version {record.version}, "
                f"expected {expected_version}"
            )
        now = time.time()
        if turn_key is not None:
            keys = record.turn_keys
            keys.pop(turn_key.key, None)
            keys[turn_key.key] = (len(record.messages), len(encoded), turn_key.digest, now)
            while keys and (
                len(keys) > TURN_KEYS_KEPT or next(iter(keys.values()))[3] < now - TURN_KEY_TTL
            ):
                keys.popitem(last=False)
        record.messages.extend(encoded)
        record.version += 1
        record.updated_at = now
        return record.version

    async def finish_turn(
        self,
        session_id: str,
        messages: Sequence[Message],
        expected_version: int,
        token: str,
        *,
        turn_key: TurnKey | None = None,
    ) -> int:
        try:
            encoded = [self.codec.dump_message(m) for m in messages]
            with self._mutex:
                held = self._leases.get(session_id)
                if held is not None and held[0] != token:
                    raise LeaseLost(f"session {session_id!r}: another turn took over the lease")
                return self._append_locked(session_id, encoded, expected_version, turn_key)
        finally:
            await self.release(session_id, token)

    async def find_turn(self, session_id: str, key: str) -> StoredTurn | None:
        with self._mutex:
            record = self._live(session_id)
            found = None if record is None else record.turn_keys.get(key)
            if record is None or found is None or found[3] < time.time() - TURN_KEY_TTL:
                return None
            first, count, digest, _ = found
            texts = record.messages[first : first + count]
        return StoredTurn(self.codec.load_messages(texts, session_id), digest)

    async def set_metadata(self, session_id: str, metadata: Mapping[str, Any]) -> int:
        encoded = self.codec.dump_metadata(metadata)
        with self._mutex:
            record = self._require(session_id)
            record.metadata = encoded
            record.version += 1
            record.updated_at = time.time()
            return record.version

    async def reset(self, session_id: str) -> int:
        with self._mutex:
            record = self._require(session_id)
            record.messages.clear()
            record.turn_keys.clear()
            record.version += 1
            record.updated_at = time.time()
            return record.version

    async def delete(self, session_id: str) -> bool:
        with self._mutex:
            self._leases.pop(session_id, None)
            return self._records.pop(session_id, None) is not None

    async def rename(self, session_id: str, new_session_id: str) -> None:
        with self._mutex:
            record = self._require(session_id)
            if new_session_id in self._records:
                raise ConflictError(f"session {new_session_id!r} already exists")
            record.version += 1
            self._records[new_session_id] = self._records.pop(session_id)

    async def list(self, limit: int = 100, offset: int = 0) -> list[SessionInfo]:
        with self._mutex:
            rows = sorted(
                ((sid, r) for sid, r in self._records.items() if not self.is_expired(r.updated_at)),
                key=lambda item: item[1].updated_at,
                reverse=True,
            )[offset : offset + limit]
            snapshot = [
                (sid, r.version, len(r.messages), r.created_at, r.updated_at, r.metadata)
                for sid, r in rows
            ]
        return [
            SessionInfo(
                sid,
                version,
                count,
                created,
                updated,
                *self.codec.summary_metadata(meta, sid, listing=True),
            )
            for sid, version, count, created, updated, meta in snapshot
        ]

    async def gc(self, idle_seconds: float | None = None) -> int:
        idle = self.ttl if idle_seconds is None else idle_seconds
        if idle is None:
            return 0
        cutoff = time.time() - idle
        with self._mutex:
            stale = [sid for sid, r in self._records.items() if r.updated_at < cutoff]
            for sid in stale:
                del self._records[sid]
                self._leases.pop(sid, None)
        return len(stale)

    async def acquire(self, session_id: str, ttl: float) -> str | None:
        now = time.monotonic()
        with self._mutex:
            held = self._leases.get(session_id)
            if held is not None and held[1] > now:
                return None
            token = secrets.token_hex(16)
            self._leases[session_id] = (token, now + ttl)
            return token

    async def renew(self, session_id: str, token: str, ttl: float) -> bool:
        now = time.monotonic()
        with self._mutex:
            held = self._leases.get(session_id)
            if held is not None and held[0] != token:
                return False
            self._leases[session_id] = (token, now + ttl)
            return True

    async def release(self, session_id: str, token: str) -> None:
        with self._mutex:
            held = self._leases.get(session_id)
            if held is not None and held[0] == token:
                del self._leases[session_id]

    async def ping(self) -> None:
        return None
