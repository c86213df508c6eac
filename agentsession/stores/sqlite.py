"""Embedded store on the stdlib ``sqlite3``: ``sqlite:///relative.db`` or ``sqlite:////abs/path.db``.

WAL mode at ``synchronous=FULL`` (a committed turn survives a power cut; ``?synchronous=normal``
trades that for speed), one row per message, one short ``BEGIN IMMEDIATE`` transaction per
turn. Safe for several threads and several processes on one machine (not on a network file
system).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, TypeVar
from urllib.parse import parse_qs, quote, unquote, urlsplit

from ..errors import (
    ConfigurationError,
    ConflictError,
    LeaseLost,
    SessionNotFound,
    StoreNotFound,
    StoreUnavailable,
)
from ..messages import Message
from .base import (
    JOURNAL_TTL,
    TURN_KEY_TTL,
    TURN_KEYS_KEPT,
    Conversation,
    JournalPage,
    MessagePage,
    SessionInfo,
    Store,
    StoredTurn,
    TurnKey,
    page_bounds,
    seconds_option,
)

T = TypeVar("T")

SQLITE_SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS agentsession_schema (
    name TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS agentsession_conversations (
    session_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    message_count INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS agentsession_conversations_updated
    ON agentsession_conversations (updated_at);
CREATE TABLE IF NOT EXISTS agentsession_messages (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agentsession_leases (
    session_id TEXT PRIMARY KEY,
    token TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS agentsession_turn_keys (
    session_id TEXT NOT NULL,
    key TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    message_count INTEGER NOT NULL,
    digest TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (session_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agentsession_journal (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    turn_id TEXT NOT NULL,
    body TEXT NOT NULL,
    written_at REAL NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
"""

_SYNCHRONOUS = {"off", "normal", "full", "extra"}


class _Busy(Exception):
    """Another connection holds the write lock; retry where waiting is allowed."""


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class SQLiteStore(Store):
    schemes = ("sqlite",)

    def __init__(
        self,
        path: str | os.PathLike[str] = "agentsession.db",
        *,
        synchronous: str = "full",
        busy_timeout: float = 30.0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if synchronous.lower() not in _SYNCHRONOUS:
            raise ConfigurationError(f"synchronous must be one of {sorted(_SYNCHRONOUS)}")
        self.path = os.fspath(path)
        if self.path == ":memory:":
            raise ConfigurationError(
                "an in-memory SQLite database is private to one connection; use memory:// instead"
            )
        self.synchronous = synchronous.upper()
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._schema_ready = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteStore:
        parts = urlsplit(url)
        # sqlite:///rel.db -> "rel.db"; sqlite:////abs.db -> "/abs.db" (SQLAlchemy's convention)
        path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        if not path:
            raise ConfigurationError(
                f"{url!r} names no database file; try sqlite:///agentsession.db"
            )
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if "synchronous" in query:
            options.setdefault("synchronous", query["synchronous"])
        for name in ("busy_timeout", "ttl"):
            if name in query:
                options.setdefault(name, seconds_option(name, query[name], url))
        return cls(path, **options)

    # -- connections ---------------------------------------------------------------
    #
    # Each thread has its own connections. On an event-loop thread they never wait for a
    # lock (busy timeout 0): a short transaction runs inline, and only when another writer
    # holds the database does the call move to a worker thread that may wait. Leases live on
    # a second connection at synchronous=OFF: a lease need not survive a power cut, a turn must.

    def _connect(self, lease: bool) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.__dict__.clear()
            local.pid = os.getpid()
        key = "lease" if lease else "main"
        conn: sqlite3.Connection | None = getattr(local, key, None)
        if conn is not None:
            return conn
        nowait = _on_event_loop()
        try:
            conn = sqlite3.connect(
                # without create_schema, a missing file is an error rather than a new database
                self.path if self.create_schema else f"file:{quote(self.path)}?mode=rw",
                timeout=0 if nowait else self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
                uri=not self.create_schema,
            )
            if not self._schema_ready and not self.create_schema:
                self._check_schema(conn)
            self._prepare(conn, lease, nowait)
        except StoreNotFound:
            if conn is not None:
                conn.close()
            raise
        except sqlite3.OperationalError as exc:
            if not self.create_schema and not os.path.exists(self.path):
                raise StoreNotFound(
                    f"no agentsession store at sqlite:///{self.path}: the file does not exist"
                ) from None
            if conn is not None:
                conn.close()
            if nowait and _is_busy(exc):
                raise _Busy from exc
            raise StoreUnavailable(f"cannot open SQLite database {self.path!r}: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite database {self.path!r}: {exc}") from exc
        setattr(local, key, conn)
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    def _prepare(self, conn: sqlite3.Connection, lease: bool, nowait: bool) -> None:
        """WAL mode, the connection's sync level and (once) the schema. Two processes opening a
        new database at once can find it locked while the other switches it to WAL, a moment
        SQLite's busy handler does not cover: off the loop, that is retried until busy_timeout."""
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.005
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(f"PRAGMA synchronous={'OFF' if lease else self.synchronous}")
                if not self._schema_ready:
                    if self.create_schema:
                        conn.executescript(_SCHEMA)
                        conn.execute(
                            "INSERT OR IGNORE INTO agentsession_schema (name, version)"
                            " VALUES ('store', ?)",
                            (SQLITE_SCHEMA_VERSION,),
                        )
                    self._schema_ready = True
                return
            except sqlite3.OperationalError as exc:
                if nowait or not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
                if conn.in_transaction:
                    conn.rollback()
                time.sleep(delay)
                delay = min(delay * 2, 0.1)

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        tables = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
            "('agentsession_conversations', 'agentsession_messages', 'agentsession_leases')"
        ).fetchone()[0]
        if tables != 3:
            raise StoreNotFound(
                f"no agentsession tables in sqlite:///{self.path}: is it the right file? "
                "('agentsession store init' creates them)"
            )

    def for_loop(self) -> SQLiteStore:
        return self  # a connection per thread; calls run inline or in worker threads

    async def _run(self, fn: Callable[[sqlite3.Connection], T], lease: bool = False) -> T:
        try:
            return self._call(fn, lease)
        except _Busy:
            return await asyncio.to_thread(self._call, fn, lease)

    def _call(self, fn: Callable[[sqlite3.Connection], T], lease: bool) -> T:
        conn = self._connect(lease)
        try:
            return fn(conn)
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.rollback()
            if _is_busy(exc) and _on_event_loop():
                raise _Busy from exc
            raise StoreUnavailable(f"SQLite database {self.path!r}: {exc}") from exc
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise

    def _cutoff(self) -> float:
        return float("-inf") if self.ttl is None else time.time() - self.ttl

    # -- contract ------------------------------------------------------------------

    async def load(self, session_id: str) -> Conversation | None:
        def read(conn: sqlite3.Connection) -> tuple[Any, list[Message]] | None:
            conn.execute("BEGIN")  # one snapshot for both reads
            try:
                head = conn.execute(
                    "SELECT version, metadata, created_at, updated_at FROM agentsession_conversations"
                    " WHERE session_id = ? AND updated_at >= ?",
                    (session_id, self._cutoff()),
                ).fetchone()
                if head is None:
                    return None
                return head, self._messages_in(conn, session_id)
            finally:
                conn.commit()

        found = await self._run(read)
        if found is None:
            return None
        (version, metadata, created, updated), messages = found
        return Conversation(
            session_id=session_id,
            version=version,
            messages=messages,
            metadata=self.codec.load_metadata(metadata, session_id),
            created_at=created,
            updated_at=updated,
        )

    async def read_messages(
        self, session_id: str, start: int = 0, stop: int | None = None
    ) -> MessagePage | None:
        def read(conn: sqlite3.Connection) -> MessagePage | None:
            conn.execute("BEGIN")  # one snapshot for both reads
            try:
                head = conn.execute(
                    "SELECT version, message_count FROM agentsession_conversations"
                    " WHERE session_id = ? AND updated_at >= ?",
                    (session_id, self._cutoff()),
                ).fetchone()
                if head is None:
                    return None
                version, total = head
                first, end = page_bounds(start, stop, total)
                messages = self._messages_in(conn, session_id, first, end)
                return MessagePage(messages, first, total, version)
            finally:
                conn.commit()

        return await self._run(read)

    async def truncate(self, session_id: str, keep: int, expected_version: int) -> int:
        def write(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(
                "UPDATE agentsession_conversations SET version = version + 1,"
                " message_count = MIN(message_count, ?), updated_at = ?"
                " WHERE session_id = ? AND version = ? AND updated_at >= ? RETURNING version",
                (keep, time.time(), session_id, expected_version, self._cutoff()),
            ).fetchone()
            if row is None:
                conn.rollback()
                self._raise_missing_or_conflict(conn, session_id, expected_version)
            conn.execute(
                "DELETE FROM agentsession_messages WHERE session_id = ? AND seq >= ?",
                (session_id, keep),
            )
            conn.execute(
                "DELETE FROM agentsession_turn_keys WHERE session_id = ? AND first_seq >= ?",
                (session_id, keep),
            )
            conn.commit()
            return int(row[0])

        return await self._run(write)

    def _info_in(self, conn: sqlite3.Connection, session_id: str) -> Any:
        return conn.execute(
            "SELECT version, message_count, created_at, updated_at, metadata"
            " FROM agentsession_conversations WHERE session_id = ? AND updated_at >= ?",
            (session_id, self._cutoff()),
        ).fetchone()

    def _to_info(self, session_id: str, row: Sequence[Any], listing: bool = False) -> SessionInfo:
        version, count, created, updated, text = row
        metadata, problem = self.codec.summary_metadata(text, session_id, listing)
        return SessionInfo(session_id, version, count, created, updated, metadata, problem)

    async def info(self, session_id: str) -> SessionInfo | None:
        row = await self._run(lambda conn: self._info_in(conn, session_id))
        return None if row is None else self._to_info(session_id, row)

    async def version(self, session_id: str) -> int | None:
        def read(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(
                "SELECT version FROM agentsession_conversations WHERE session_id = ? AND updated_at >= ?",
                (session_id, self._cutoff()),
            ).fetchone()
            return None if row is None else int(row[0])

        return await self._run(read)

    async def create(self, session_id: str, metadata: Mapping[str, Any]) -> None:
        encoded = self.codec.dump_metadata(metadata)

        def write(conn: sqlite3.Connection) -> None:
            now = time.time()
            conn.execute("BEGIN IMMEDIATE")
            # an expired conversation under the same id is dead: replace it
            for table in ("messages", "turn_keys"):
                conn.execute(
                    f"DELETE FROM agentsession_{table} WHERE session_id IN (SELECT session_id"
                    " FROM agentsession_conversations WHERE session_id = ? AND updated_at < ?)",
                    (session_id, self._cutoff()),
                )
            conn.execute(
                "DELETE FROM agentsession_conversations WHERE session_id = ? AND updated_at < ?",
                (session_id, self._cutoff()),
            )
            try:
                conn.execute(
                    "INSERT INTO agentsession_conversations VALUES (?, 0, 0, ?, ?, ?)",
                    (session_id, encoded, now, now),
                )
            except sqlite3.IntegrityError:
                conn.rollback()
                raise ConflictError(f"session {session_id!r} already exists") from None
            conn.commit()

        await self._run(write)

    async def append(
        self, session_id: str, messages: Sequence[Message], expected_version: int
    ) -> int:
        bodies = [self.codec.dump_message(m) for m in messages]
        return await self._run(
            lambda conn: self._write_turn(conn, session_id, bodies, expected_version)
        )

    async def finish_turn(
        self,
        session_id: str,
        messages: Sequence[Message],
        expected_version: int,
        token: str,
        *,
        turn_key: TurnKey | None = None,
    ) -> int:
        """The append and the lease release in one transaction, committed at the turn's level."""
        try:
            bodies = [self.codec.dump_message(m) for m in messages]
            return await self._run(
                lambda conn: self._write_turn(
                    conn, session_id, bodies, expected_version, token, turn_key
                )
            )
        except BaseException:
            # the transaction rolled back, the lease's deletion with it: release it on the
            # lease connection
            await self._release_quietly(session_id, token)
            raise

    def _write_turn(
        self,
        conn: sqlite3.Connection,
        session_id: str,
        bodies: Sequence[str],
        expected_version: int,
        token: str | None = None,
        turn_key: TurnKey | None = None,
    ) -> int:
        """One ``BEGIN IMMEDIATE`` transaction: the fenced append, and (with ``token``) the
        lease's release, refused if another holder has taken the lease over."""
        conn.execute("BEGIN IMMEDIATE")
        if (
            token is not None
            and not self._release_in(conn, session_id, token)
            and conn.execute(
                "SELECT 1 FROM agentsession_leases WHERE session_id = ?", (session_id,)
            ).fetchone()
        ):
            conn.rollback()
            raise LeaseLost(f"session {session_id!r}: another turn took over the lease")
        version = self._append_in(conn, session_id, bodies, expected_version)
        if turn_key is not None:
            self._record_key_in(conn, session_id, turn_key, len(bodies))
        conn.commit()
        return version

    def _record_key_in(
        self, conn: sqlite3.Connection, session_id: str, turn_key: TurnKey, count: int
    ) -> None:
        now = time.time()
        (total,) = conn.execute(
            "SELECT message_count FROM agentsession_conversations WHERE session_id = ?",
            (session_id,),
        ).fetchone()
        conn.execute(
            "INSERT OR REPLACE INTO agentsession_turn_keys VALUES (?, ?, ?, ?, ?, ?)",
            (session_id, turn_key.key, total - count, count, turn_key.digest, now),
        )
        conn.execute(
            "DELETE FROM agentsession_turn_keys WHERE session_id = ? AND (created_at < ? OR key"
            " NOT IN (SELECT key FROM agentsession_turn_keys WHERE session_id = ?"
            " ORDER BY created_at DESC LIMIT ?))",
            (session_id, now - TURN_KEY_TTL, session_id, TURN_KEYS_KEPT),
        )

    async def find_turn(self, session_id: str, key: str) -> StoredTurn | None:
        def read(conn: sqlite3.Connection) -> StoredTurn | None:
            conn.execute("BEGIN")
            try:
                row = conn.execute(
                    "SELECT k.first_seq, k.message_count, k.digest FROM agentsession_turn_keys k"
                    " JOIN agentsession_conversations c ON c.session_id = k.session_id"
                    " WHERE k.session_id = ? AND k.key = ? AND k.created_at >= ?"
                    " AND c.updated_at >= ?",
                    (session_id, key, time.time() - TURN_KEY_TTL, self._cutoff()),
                ).fetchone()
                if row is None:
                    return None
                first, count, digest = row
                return StoredTurn(self._messages_in(conn, session_id, first, first + count), digest)
            finally:
                conn.commit()

        return await self._run(read)

    def _messages_in(
        self, conn: sqlite3.Connection, session_id: str, first: int = 0, end: int = 2**62
    ) -> list[Message]:
        """Messages ``first`` to ``end`` of a conversation, inside ``conn``'s snapshot.

        SQLite joins the records into one JSON array (the clustered primary key hands them
        over in ``seq`` order), which costs less than a row object and a string per record;
        the codec decodes the array in one pass. A record that pass refuses (or an array too
        long for SQLite to build) is read again row by row, so the error names it.
        """
        sealed = self.codec.sealed  # each record must be opened on its own: no array
        messages = (
            None if sealed else self.codec.load_array(*self._joined(conn, session_id, first, end))
        )
        if messages is not None:
            return messages
        rows = conn.execute(
            "SELECT body FROM agentsession_messages WHERE session_id = ?"
            " AND seq >= ? AND seq < ? ORDER BY seq",
            (session_id, first, end),
        ).fetchall()
        return self.codec.load_messages([body for (body,) in rows], session_id)

    @staticmethod
    def _joined(
        conn: sqlite3.Connection, session_id: str, first: int, end: int
    ) -> tuple[str | None, int]:
        try:
            (array, count) = conn.execute(
                "SELECT '[' || group_concat(body, ',') || ']', count(*) FROM"
                " (SELECT body FROM agentsession_messages WHERE session_id = ?"
                " AND seq >= ? AND seq < ? ORDER BY seq)",
                (session_id, first, end),
            ).fetchone()
        except sqlite3.DataError:  # string or blob too big
            array, count = None, -1
        return array, count

    def _append_in(
        self,
        conn: sqlite3.Connection,
        session_id: str,
        bodies: Sequence[str],
        expected_version: int,
    ) -> int:
        row = conn.execute(
            "UPDATE agentsession_conversations SET version = version + 1,"
            " message_count = message_count + ?, updated_at = ?"
            " WHERE session_id = ? AND version = ? AND updated_at >= ?"
            " RETURNING version, message_count",
            (len(bodies), time.time(), session_id, expected_version, self._cutoff()),
        ).fetchone()
        if row is None:
            conn.rollback()
            self._raise_missing_or_conflict(conn, session_id, expected_version)
        version, count = row
        start = count - len(bodies)
        conn.executemany(
            "INSERT INTO agentsession_messages (session_id, seq, body) VALUES (?, ?, ?)",
            [(session_id, start + i, body) for i, body in enumerate(bodies)],
        )
        return int(version)

    def _raise_missing_or_conflict(
        self, conn: sqlite3.Connection, session_id: str, expected_version: int
    ) -> NoReturn:
        row = conn.execute(
            "SELECT version FROM agentsession_conversations WHERE session_id = ? AND updated_at >= ?",
            (session_id, self._cutoff()),
        ).fetchone()
        if row is None:
            raise SessionNotFound(session_id)
        raise ConflictError(
            f"session {session_id!r} is at version {row[0]}, expected {expected_version}"
        )

    async def _bump(self, session_id: str, sql: str, params: tuple[Any, ...]) -> int:
        def write(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            if sql:
                conn.execute(sql, params)
            row = conn.execute(
                "UPDATE agentsession_conversations SET version = version + 1, updated_at = ?"
                " WHERE session_id = ? AND updated_at >= ? RETURNING version",
                (time.time(), session_id, self._cutoff()),
            ).fetchone()
            if row is None:
                conn.rollback()
                raise SessionNotFound(session_id)
            conn.commit()
            return int(row[0])

        return await self._run(write)

    async def set_metadata(self, session_id: str, metadata: Mapping[str, Any]) -> int:
        encoded = self.codec.dump_metadata(metadata)
        return await self._bump(
            session_id,
            "UPDATE agentsession_conversations SET metadata = ? WHERE session_id = ?",
            (encoded, session_id),
        )

    async def reset(self, session_id: str) -> int:
        def write(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(
                "UPDATE agentsession_conversations SET version = version + 1, message_count = 0,"
                " updated_at = ? WHERE session_id = ? AND updated_at >= ? RETURNING version",
                (time.time(), session_id, self._cutoff()),
            ).fetchone()
            if row is None:
                conn.rollback()
                raise SessionNotFound(session_id)
            conn.execute("DELETE FROM agentsession_messages WHERE session_id = ?", (session_id,))
            conn.execute("DELETE FROM agentsession_turn_keys WHERE session_id = ?", (session_id,))
            conn.commit()
            return int(row[0])

        return await self._run(write)

    async def delete(self, session_id: str) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            conn.execute("BEGIN IMMEDIATE")
            gone = conn.execute(
                "DELETE FROM agentsession_conversations WHERE session_id = ?", (session_id,)
            ).rowcount
            for table in ("messages", "leases", "turn_keys", "journal"):
                conn.execute(
                    f"DELETE FROM agentsession_{table} WHERE session_id = ?", (session_id,)
                )
            conn.commit()
            return gone > 0

        return await self._run(write)

    async def rename(self, session_id: str, new_session_id: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            if conn.execute(
                "SELECT 1 FROM agentsession_conversations WHERE session_id = ?", (new_session_id,)
            ).fetchone():
                conn.rollback()
                raise ConflictError(f"session {new_session_id!r} already exists")
            moved = conn.execute(
                "UPDATE agentsession_conversations SET session_id = ?, version = version + 1"
                " WHERE session_id = ? AND updated_at >= ?",
                (new_session_id, session_id, self._cutoff()),
            ).rowcount
            if not moved:
                conn.rollback()
                raise SessionNotFound(session_id)
            for table in ("messages", "turn_keys"):
                conn.execute(
                    f"UPDATE agentsession_{table} SET session_id = ? WHERE session_id = ?",
                    (new_session_id, session_id),
                )
            conn.execute("DELETE FROM agentsession_journal WHERE session_id = ?", (session_id,))
            conn.commit()

        await self._run(write)

    async def list(self, limit: int = 100, offset: int = 0) -> list[SessionInfo]:
        def read(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(
                "SELECT session_id, version, message_count, created_at, updated_at, metadata"
                " FROM agentsession_conversations WHERE updated_at >= ?"
                " ORDER BY updated_at DESC LIMIT ? OFFSET ?",
                (self._cutoff(), limit, offset),
            ).fetchall()

        rows = await self._run(read)
        return [self._to_info(row[0], row[1:], listing=True) for row in rows]

    async def gc(self, idle_seconds: float | None = None) -> int:
        idle = self.ttl if idle_seconds is None else idle_seconds
        if idle is None:
            return 0
        cutoff = time.time() - idle

        def write(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            for table in ("messages", "turn_keys", "journal"):
                conn.execute(
                    f"DELETE FROM agentsession_{table} WHERE session_id IN (SELECT session_id"
                    " FROM agentsession_conversations WHERE updated_at < ?)",
                    (cutoff,),
                )
            conn.execute(
                "DELETE FROM agentsession_journal WHERE session_id IN (SELECT session_id FROM"
                " agentsession_journal GROUP BY session_id HAVING MAX(written_at) < ?)",
                (time.time() - JOURNAL_TTL,),
            )
            gone = conn.execute(
                "DELETE FROM agentsession_conversations WHERE updated_at < ?", (cutoff,)
            ).rowcount
            conn.execute("DELETE FROM agentsession_leases WHERE expires_at < ?", (time.time(),))
            conn.commit()
            return int(gone)

        return await self._run(write)

    def _acquire_in(
        self, conn: sqlite3.Connection, session_id: str, token: str, ttl: float
    ) -> bool:
        now = time.time()
        taken = conn.execute(
            "INSERT INTO agentsession_leases (session_id, token, expires_at) VALUES (?, ?, ?)"
            " ON CONFLICT (session_id) DO UPDATE SET token = excluded.token,"
            " expires_at = excluded.expires_at WHERE agentsession_leases.expires_at < ?",
            (session_id, token, now + ttl, now),
        ).rowcount
        return bool(taken)

    def _release_in(self, conn: sqlite3.Connection, session_id: str, token: str) -> bool:
        gone = conn.execute(
            "DELETE FROM agentsession_leases WHERE session_id = ? AND token = ?",
            (session_id, token),
        ).rowcount
        return bool(gone)

    async def acquire(self, session_id: str, ttl: float) -> str | None:
        token = secrets.token_hex(16)
        taken = await self._run(
            lambda conn: self._acquire_in(conn, session_id, token, ttl), lease=True
        )
        return token if taken else None

    async def release(self, session_id: str, token: str) -> None:
        await self._run(lambda conn: self._release_in(conn, session_id, token), lease=True)

    async def renew(self, session_id: str, token: str, ttl: float) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            expires = time.time() + ttl
            if conn.execute(
                "UPDATE agentsession_leases SET expires_at = ? WHERE session_id = ? AND token = ?",
                (expires, session_id, token),
            ).rowcount:
                return True
            # our lease was cleared by gc after it expired: take it again, unless someone has
            return bool(
                conn.execute(
                    "INSERT OR IGNORE INTO agentsession_leases VALUES (?, ?, ?)",
                    (session_id, token, expires),
                ).rowcount
            )

        return await self._run(write, lease=True)

    async def begin_turn(
        self, session_id: str, ttl: float
    ) -> tuple[str, SessionInfo | None] | None:
        """The lease and the summary in one transaction on the lease connection."""
        token = secrets.token_hex(16)

        def write(conn: sqlite3.Connection) -> tuple[bool, Any]:
            conn.execute("BEGIN IMMEDIATE")
            if not self._acquire_in(conn, session_id, token, ttl):
                conn.rollback()
                return False, None
            row = self._info_in(conn, session_id)
            conn.commit()
            return True, row

        taken, row = await self._run(write, lease=True)
        if not taken:
            return None
        try:
            return token, (None if row is None else self._to_info(session_id, row))
        except BaseException:  # e.g. CorruptRecord: the caller gets no token to release
            await self._release_quietly(session_id, token)
            raise

    # -- the streamed turn's journal: transient, so on the lease connection (no fsync) ----

    async def journal_write(
        self, session_id: str, turn_id: str, first_seq: int, events: Sequence[Mapping[str, Any]]
    ) -> None:
        bodies = [self.codec.dump_event(event) for event in events]

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            if first_seq == 0:
                conn.execute("DELETE FROM agentsession_journal WHERE session_id = ?", (session_id,))
            elif conn.execute(
                "SELECT turn_id FROM agentsession_journal WHERE session_id = ? AND seq = 0",
                (session_id,),
            ).fetchone() != (turn_id,):
                conn.rollback()  # a newer turn has replaced this one's journal
                return
            now = time.time()
            conn.executemany(
                "INSERT OR REPLACE INTO agentsession_journal VALUES (?, ?, ?, ?, ?)",
                [(session_id, first_seq + i, turn_id, b, now) for i, b in enumerate(bodies)],
            )
            conn.commit()

        await self._run(write, lease=True)

    async def journal_read(self, session_id: str, after: int = -1) -> JournalPage | None:
        def read(conn: sqlite3.Connection) -> tuple[str, list[Any], bool] | None:
            conn.execute("BEGIN")
            try:
                head = conn.execute(
                    "SELECT MIN(turn_id), MAX(written_at) FROM agentsession_journal"
                    " WHERE session_id = ? AND seq = 0",
                    (session_id,),
                ).fetchone()
                if head is None or head[0] is None:
                    return None
                latest = conn.execute(
                    "SELECT MAX(written_at) FROM agentsession_journal WHERE session_id = ?",
                    (session_id,),
                ).fetchone()[0]
                if latest < time.time() - JOURNAL_TTL:
                    return None
                rows = conn.execute(
                    "SELECT body FROM agentsession_journal WHERE session_id = ? AND seq > ?"
                    " ORDER BY seq",
                    (session_id, after),
                ).fetchall()
                writing = conn.execute(
                    "SELECT 1 FROM agentsession_leases WHERE session_id = ? AND expires_at > ?",
                    (session_id, time.time()),
                ).fetchone()
                return head[0], rows, writing is not None
            finally:
                conn.commit()

        found = await self._run(read, lease=True)
        if found is None:
            return None
        turn_id, rows, writing = found
        events = [self.codec.load_event(body, session_id) for (body,) in rows]
        return JournalPage(turn_id, events, writing)

    async def ping(self) -> None:
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()
