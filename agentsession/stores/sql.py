"""SQL server store via SQLAlchemy 2: ``postgresql://`` (psycopg 3) and ``mysql://``/``mariadb://`` (PyMySQL).

Tables (prefix ``agentsession_`` by default, ``?table_prefix=`` to change): conversations,
messages (one row per message, primary key (session_id, seq)), leases and schema. One
transaction per turn; the version check in the ``UPDATE`` fences a writer whose lease was
lost. SQLAlchemy's sync engine runs in worker threads (``asyncio.to_thread``), with a
connection pool that drops dead connections and retries once, so the app reconnects by itself
after a server restart.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

from ..errors import ConflictError, MissingDependency, SessionNotFound, StoreUnavailable
from ..messages import Message
from .base import Conversation, SessionInfo, Store, take_url_options

try:
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_exc
    from sqlalchemy.dialects import mysql
    from sqlalchemy.engine import Connection
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise MissingDependency("sqlalchemy", "postgresql", "The SQL store") from exc

T = TypeVar("T")

SQL_SCHEMA_VERSION = 1
_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}


class SQLStore(Store):
    schemes = ("postgresql", "postgres", "mysql", "mariadb")

    def __init__(
        self,
        url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/test",
        *,
        table_prefix: str = "agentsession_",
        pool_size: int = 5,
        connect_timeout: float = 5.0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.table_prefix = table_prefix
        self._display = _without_password(url)
        connect_args = {"connect_timeout": int(max(1, connect_timeout))}
        self.engine = sa.create_engine(
            url,
            pool_size=pool_size,
            # no pre-ping round trip per checkout: a dead connection is retried once instead
            pool_pre_ping=False,
            # every use is inside engine.begin(), which commits or rolls back: a reset on
            # return to the pool would only add a ROLLBACK round trip to each call
            pool_reset_on_return=None,
            pool_recycle=1800,
            connect_args=connect_args,
        )
        self.dialect = self.engine.dialect.name
        metadata = sa.MetaData()
        text = sa.Text().with_variant(mysql.LONGTEXT(), "mysql")
        key = sa.String(128)
        self.conversations = sa.Table(
            f"{table_prefix}conversations",
            metadata,
            sa.Column("session_id", key, primary_key=True),
            sa.Column("version", sa.BigInteger, nullable=False),
            sa.Column("message_count", sa.BigInteger, nullable=False),
            sa.Column("metadata", text, nullable=False),
            sa.Column("created_at", sa.Float(53), nullable=False),
            sa.Column("updated_at", sa.Float(53), nullable=False, index=True),
        )
        self.messages = sa.Table(
            f"{table_prefix}messages",
            metadata,
            sa.Column("session_id", key, primary_key=True),
            sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("body", text, nullable=False),
        )
        self.leases = sa.Table(
            f"{table_prefix}leases",
            metadata,
            sa.Column("session_id", key, primary_key=True),
            sa.Column("token", sa.String(64), nullable=False),
            sa.Column("expires_at", sa.Float(53), nullable=False),
        )
        self.schema = sa.Table(
            f"{table_prefix}schema",
            metadata,
            sa.Column("name", sa.String(64), primary_key=True),
            sa.Column("version", sa.Integer, nullable=False),
        )
        self.metadata = metadata
        self._ready = False
        self._ready_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLStore:
        rest, own = take_url_options(url, ("table_prefix", "ttl"))
        parts = urlsplit(rest)
        scheme = parts.scheme if "+" in parts.scheme else _DRIVERS.get(parts.scheme, parts.scheme)
        return cls(urlunsplit(parts._replace(scheme=scheme)), **{**own, **options})

    # -- plumbing ------------------------------------------------------------------

    async def init(self) -> None:
        """Create the tables if they are missing (idempotent)."""
        await self._run(lambda conn: None)

    def _create_tables(self) -> None:
        with self._ready_lock:  # threads of one process
            if self._ready:
                return
            for attempt in range(5):
                try:
                    self.metadata.create_all(self.engine, checkfirst=True)
                    break
                except (sa_exc.IntegrityError, sa_exc.ProgrammingError, sa_exc.OperationalError):
                    # another process created them between the check and the CREATE
                    # (PostgreSQL: a unique violation on pg_type; MariaDB: 1050 table
                    # exists); checkfirst sees them on the next attempt
                    if attempt == 4:
                        raise
                    time.sleep(0.05 * (attempt + 1))
            version = sa.select(self.schema.c.version).where(self.schema.c.name == "store")
            try:
                with self.engine.begin() as conn:
                    if conn.execute(version).first() is None:
                        conn.execute(
                            sa.insert(self.schema).values(name="store", version=SQL_SCHEMA_VERSION)
                        )
            except sa_exc.IntegrityError:
                pass  # another process recorded it first
            self._ready = True

    async def _run(self, fn: Callable[[Connection], T]) -> T:
        return await asyncio.to_thread(self._call, fn)

    def _call(self, fn: Callable[[Connection], T]) -> T:
        attempts = 4
        for attempt in range(1, attempts + 1):
            try:
                if not self._ready:
                    self._create_tables()
                with self.engine.begin() as conn:
                    return fn(conn)
            except sa_exc.DBAPIError as exc:
                last = attempt == attempts
                # the transaction rolled back whole, so running it again is safe: a deadlock
                # victim (concurrent inserts take gap locks on MariaDB), or a pooled connection
                # that died with a server restart (the pool has dropped it). A retried write is
                # fenced by its version check.
                if _is_deadlock(exc) and not last:
                    time.sleep(0.01 * attempt)
                    continue
                if exc.connection_invalidated and attempt == 1:
                    continue
                if exc.connection_invalidated or isinstance(
                    exc, (sa_exc.OperationalError, sa_exc.InterfaceError)
                ):
                    raise StoreUnavailable(
                        f"{self.dialect} at {self._display} is unavailable: {exc.orig}"
                    ) from exc
                raise
        raise AssertionError("unreachable")

    def _cutoff(self) -> float:
        return 0.0 if self.ttl is None else time.time() - self.ttl  # MySQL has no -inf

    def _live(self, session_id: str) -> Any:
        c = self.conversations.c
        return sa.and_(c.session_id == session_id, c.updated_at >= self._cutoff())

    def _info(self, row: Any) -> SessionInfo:
        return SessionInfo(
            row.session_id,
            int(row.version),
            int(row.message_count),
            float(row.created_at),
            float(row.updated_at),
            self.codec.load_metadata(row.metadata, row.session_id),
        )

    # -- contract ------------------------------------------------------------------

    async def load(self, session_id: str) -> Conversation | None:
        def read(conn: Connection) -> tuple[Any, Sequence[Any]] | None:
            head = conn.execute(sa.select(self.conversations).where(self._live(session_id))).first()
            if head is None:
                return None
            rows = conn.execute(
                sa.select(self.messages.c.body)
                .where(self.messages.c.session_id == session_id)
                .order_by(self.messages.c.seq)
            ).all()
            return head, rows

        found = await self._run(read)
        if found is None:
            return None
        head, rows = found
        info = self._info(head)
        return Conversation(
            session_id=session_id,
            version=info.version,
            messages=[self.codec.load_message(body, session_id) for (body,) in rows],
            metadata=dict(info.metadata),
            created_at=info.created_at,
            updated_at=info.updated_at,
        )

    async def info(self, session_id: str) -> SessionInfo | None:
        row = await self._run(
            lambda conn: conn.execute(
                sa.select(self.conversations).where(self._live(session_id))
            ).first()
        )
        return None if row is None else self._info(row)

    async def version(self, session_id: str) -> int | None:
        value = await self._run(
            lambda conn: conn.execute(
                sa.select(self.conversations.c.version).where(self._live(session_id))
            ).scalar()
        )
        return None if value is None else int(value)

    async def create(self, session_id: str, metadata: Mapping[str, Any]) -> None:
        encoded = self.codec.dump_metadata(metadata)

        def write(conn: Connection) -> None:
            c = self.conversations.c
            stale = sa.and_(c.session_id == session_id, c.updated_at < self._cutoff())
            if conn.execute(sa.delete(self.conversations).where(stale)).rowcount:
                conn.execute(
                    sa.delete(self.messages).where(self.messages.c.session_id == session_id)
                )
            now = time.time()
            conn.execute(
                sa.insert(self.conversations).values(
                    session_id=session_id,
                    version=0,
                    message_count=0,
                    metadata=encoded,
                    created_at=now,
                    updated_at=now,
                )
            )

        try:
            await self._run(write)
        except sa_exc.IntegrityError:
            raise ConflictError(f"session {session_id!r} already exists") from None

    async def append(
        self, session_id: str, messages: Sequence[Message], expected_version: int
    ) -> int:
        bodies = [self.codec.dump_message(m) for m in messages]
        return await self._run(
            lambda conn: self._append_in(conn, session_id, bodies, expected_version)
        )

    async def finish_turn(
        self, session_id: str, messages: Sequence[Message], expected_version: int, token: str
    ) -> int:
        bodies = [self.codec.dump_message(m) for m in messages]

        def write(conn: Connection) -> int:
            version = self._append_in(conn, session_id, bodies, expected_version)
            self._release_in(conn, session_id, token)
            return version

        try:
            return await self._run(write)
        except BaseException:
            await self.release(session_id, token)  # the append rolled back, and the release with it
            raise

    def _append_in(
        self, conn: Connection, session_id: str, bodies: list[str], expected_version: int
    ) -> int:
        c = self.conversations.c
        # the row lock taken by this UPDATE serialises writers; the version check fences
        bump = (
            sa.update(self.conversations)
            .where(self._live(session_id), c.version == expected_version)
            .values(
                version=c.version + 1,
                message_count=c.message_count + len(bodies),
                updated_at=time.time(),
            )
        )
        if self.dialect == "postgresql":  # MariaDB has no UPDATE ... RETURNING
            returned = conn.execute(bump.returning(c.message_count)).scalar()
        elif conn.execute(bump).rowcount:
            returned = conn.execute(
                sa.select(c.message_count).where(c.session_id == session_id)
            ).scalar()
        else:
            returned = None
        if returned is None:
            self._raise_missing_or_conflict(conn, session_id, expected_version)
        count = int(returned)
        start = count - len(bodies)
        if bodies:
            conn.execute(
                sa.insert(self.messages),
                [
                    {"session_id": session_id, "seq": start + i, "body": b}
                    for i, b in enumerate(bodies)
                ],
            )
        return expected_version + 1

    def _raise_missing_or_conflict(
        self, conn: Connection, session_id: str, expected: int
    ) -> NoReturn:
        current = conn.execute(
            sa.select(self.conversations.c.version).where(self._live(session_id))
        ).scalar()
        if current is None:
            raise SessionNotFound(session_id)
        raise ConflictError(f"session {session_id!r} is at version {current}, expected {expected}")

    async def _bump(self, session_id: str, changes: Mapping[str, Any], clear: bool) -> int:
        def write(conn: Connection) -> int:
            c = self.conversations.c
            bumped = conn.execute(
                sa.update(self.conversations)
                .where(self._live(session_id))
                .values(version=c.version + 1, updated_at=time.time(), **changes)
            ).rowcount
            if not bumped:
                raise SessionNotFound(session_id)
            if clear:
                conn.execute(
                    sa.delete(self.messages).where(self.messages.c.session_id == session_id)
                )
            return int(
                conn.execute(sa.select(c.version).where(c.session_id == session_id)).scalar_one()
            )

        return await self._run(write)

    async def set_metadata(self, session_id: str, metadata: Mapping[str, Any]) -> int:
        return await self._bump(
            session_id, {"metadata": self.codec.dump_metadata(metadata)}, clear=False
        )

    async def reset(self, session_id: str) -> int:
        return await self._bump(session_id, {"message_count": 0}, clear=True)

    async def delete(self, session_id: str) -> bool:
        def write(conn: Connection) -> bool:
            gone = conn.execute(
                sa.delete(self.conversations).where(self.conversations.c.session_id == session_id)
            ).rowcount
            conn.execute(sa.delete(self.messages).where(self.messages.c.session_id == session_id))
            conn.execute(sa.delete(self.leases).where(self.leases.c.session_id == session_id))
            return bool(gone)

        return await self._run(write)

    async def rename(self, session_id: str, new_session_id: str) -> None:
        def write(conn: Connection) -> None:
            c = self.conversations.c
            if conn.execute(sa.select(c.version).where(c.session_id == new_session_id)).first():
                raise ConflictError(f"session {new_session_id!r} already exists")
            moved = conn.execute(
                sa.update(self.conversations)
                .where(self._live(session_id))
                .values(session_id=new_session_id, version=c.version + 1)
            ).rowcount
            if not moved:
                raise SessionNotFound(session_id)
            conn.execute(
                sa.update(self.messages)
                .where(self.messages.c.session_id == session_id)
                .values(session_id=new_session_id)
            )

        await self._run(write)

    async def list(self, limit: int = 100, offset: int = 0) -> list[SessionInfo]:
        c = self.conversations.c
        rows = await self._run(
            lambda conn: conn.execute(
                sa.select(self.conversations)
                .where(c.updated_at >= self._cutoff())
                .order_by(c.updated_at.desc())
                .limit(limit)
                .offset(offset)
            ).all()
        )
        return [self._info(row) for row in rows]

    async def gc(self, idle_seconds: float | None = None) -> int:
        idle = self.ttl if idle_seconds is None else idle_seconds
        if idle is None:
            return 0
        cutoff = time.time() - idle

        def write(conn: Connection) -> int:
            c = self.conversations.c
            stale = [
                sid for (sid,) in conn.execute(sa.select(c.session_id).where(c.updated_at < cutoff))
            ]
            for start in range(0, len(stale), 500):
                chunk = stale[start : start + 500]
                conn.execute(sa.delete(self.messages).where(self.messages.c.session_id.in_(chunk)))
                conn.execute(sa.delete(self.conversations).where(c.session_id.in_(chunk)))
            conn.execute(sa.delete(self.leases).where(self.leases.c.expires_at < time.time()))
            return len(stale)

        return await self._run(write)

    def _acquire_in(self, conn: Connection, session_id: str, token: str, ttl: float) -> bool:
        now = time.time()
        lease = self.leases.c
        if self.dialect == "postgresql":  # one statement: insert, or take over an expired lease
            from sqlalchemy.dialects.postgresql import insert

            upsert = (
                insert(self.leases)
                .values(session_id=session_id, token=token, expires_at=now + ttl)
                .on_conflict_do_update(
                    index_elements=[lease.session_id],
                    set_={"token": token, "expires_at": now + ttl},
                    where=lease.expires_at < now,
                )
                .returning(lease.token)
            )
            return bool(conn.execute(upsert).scalar() == token)
        taken = conn.execute(
            sa.update(self.leases)
            .where(lease.session_id == session_id, lease.expires_at < now)
            .values(token=token, expires_at=now + ttl)
        ).rowcount
        if taken:
            return True
        try:
            with conn.begin_nested():
                conn.execute(
                    sa.insert(self.leases).values(
                        session_id=session_id, token=token, expires_at=now + ttl
                    )
                )
        except sa_exc.IntegrityError:
            return False  # held by another, not yet expired
        return True

    def _release_in(self, conn: Connection, session_id: str, token: str) -> None:
        lease = self.leases.c
        conn.execute(
            sa.delete(self.leases).where(lease.session_id == session_id, lease.token == token)
        )

    async def acquire(self, session_id: str, ttl: float) -> str | None:
        token = secrets.token_hex(16)
        taken = await self._run(lambda conn: self._acquire_in(conn, session_id, token, ttl))
        return token if taken else None

    async def begin_turn(
        self, session_id: str, ttl: float
    ) -> tuple[str, SessionInfo | None] | None:
        token = secrets.token_hex(16)

        def write(conn: Connection) -> tuple[bool, Any]:
            if not self._acquire_in(conn, session_id, token, ttl):
                return False, None
            return True, conn.execute(
                sa.select(self.conversations).where(self._live(session_id))
            ).first()

        taken, row = await self._run(write)
        if not taken:
            return None
        return token, (None if row is None else self._info(row))

    async def release(self, session_id: str, token: str) -> None:
        await self._run(lambda conn: self._release_in(conn, session_id, token))

    async def ping(self) -> None:
        await self._run(lambda conn: conn.execute(sa.text("SELECT 1")).scalar())

    async def drop(self) -> None:
        """Drop this store's tables (tests and teardown)."""
        await asyncio.to_thread(self.metadata.drop_all, self.engine, checkfirst=True)
        self._ready = False

    async def close(self) -> None:
        await asyncio.to_thread(self.engine.dispose)


def _is_deadlock(exc: sa_exc.DBAPIError) -> bool:
    orig = exc.orig
    if getattr(orig, "sqlstate", None) in ("40P01", "40001"):  # PostgreSQL
        return True
    args: Any = getattr(orig, "args", ())
    return bool(args) and args[0] in (1213, 1205)  # MySQL/MariaDB: deadlock, lock wait timeout


def _without_password(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)
