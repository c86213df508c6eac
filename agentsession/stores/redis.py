"""Redis store (``redis://``, ``rediss://``, ``unix://``) on ``redis.asyncio``.

Per conversation: a hash (version, count, metadata, timestamps) and a list of encoded
messages, both under one hash tag; a sorted set indexes conversations by last update for
``list`` and ``gc``. Every write is one Lua script, so a turn is atomic and checks the
version in the same round trip. Tested against a single Redis 7 node.

URL options: ``?prefix=agentsession:`` (key namespace), ``?ttl=SECONDS`` (idle expiry,
refreshed on every write), plus redis-py's own (``socket_timeout``, …).
"""

from __future__ import annotations

import builtins
import secrets
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, TypeVar

from ..errors import (
    ConfigurationError,
    ConflictError,
    MissingDependency,
    SessionNotFound,
    StoreUnavailable,
)
from ..messages import Message
from .base import Conversation, SessionInfo, Store, redact_url, take_url_options

try:
    import redis.asyncio as aioredis
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise MissingDependency("redis", "redis", "The Redis store") from exc

T = TypeVar("T")
Arg = str | int | float | bytes

# refreshes the idle TTL of a conversation's hash and list (KEYS[1], KEYS[2])
_EXPIRE = """
if tonumber({ttl}) > 0 then
    redis.call('PEXPIRE', KEYS[1], {ttl})
    redis.call('PEXPIRE', KEYS[2], {ttl})
end
"""

# KEYS: meta, messages, index, lease. ARGV: expected version, now, ttl ms, session id,
# lease token to release ('' for none), messages…  (the script is atomic: order is free)
_APPEND = (
    """
if ARGV[5] ~= '' and redis.call('GET', KEYS[4]) == ARGV[5] then redis.call('DEL', KEYS[4]) end
local version = redis.call('HGET', KEYS[1], 'version')
if not version then return {-1, 0} end
if tonumber(version) ~= tonumber(ARGV[1]) then return {-2, tonumber(version)} end
for i = 6, #ARGV, 1000 do
    redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
local new = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HINCRBY', KEYS[1], 'count', #ARGV - 5)
redis.call('HSET', KEYS[1], 'updated', ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[4])
"""
    + _EXPIRE.format(ttl="ARGV[3]")
    + """
return {new, 0}
"""
)

# KEYS: meta, messages, index. ARGV: now, ttl ms, session id, metadata
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'version', 0, 'count', 0, 'metadata', ARGV[4],
           'created', ARGV[1], 'updated', ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[3])
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""

# KEYS: meta, messages, index. ARGV: now, ttl ms, session id, mode ('metadata'|'reset'), metadata
_BUMP = (
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if ARGV[4] == 'metadata' then redis.call('HSET', KEYS[1], 'metadata', ARGV[5]) end
if ARGV[4] == 'reset' then
    redis.call('DEL', KEYS[2])
    redis.call('HSET', KEYS[1], 'count', 0)
end
local new = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'updated', ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[3])
"""
    + _EXPIRE.format(ttl="ARGV[2]")
    + """
return new
"""
)

# KEYS: meta, messages, new meta, new messages, index. ARGV: old id, new id
_RENAME = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('EXISTS', KEYS[3]) == 1 then return -2 end
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('RENAME', KEYS[1], KEYS[3])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('RENAME', KEYS[2], KEYS[4]) end
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZADD', KEYS[5], redis.call('HGET', KEYS[3], 'updated'), ARGV[2])
return 1
"""

# KEYS: meta, messages. The summary and the messages in one atomic call: cheaper for the client
# than a MULTI/EXEC pipeline of HGETALL and LRANGE (measured ~30 us a read)
_LOAD = """
return {redis.call('HGETALL', KEYS[1]), redis.call('LRANGE', KEYS[2], 0, -1)}
"""

# KEYS: index, then meta, messages, lease of each candidate. ARGV: cutoff, candidate ids…
# The score is checked again here: a turn that landed since the ZRANGEBYSCORE keeps its
# conversation.
_GC = """
local removed = 0
for i = 2, #ARGV do
    local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
    if score and tonumber(score) < tonumber(ARGV[1]) then
        local k = 2 + (i - 2) * 3
        redis.call('DEL', KEYS[k], KEYS[k + 1], KEYS[k + 2])
        redis.call('ZREM', KEYS[1], ARGV[i])
        removed = removed + 1
    end
end
return removed
"""

# KEYS: lease, meta. ARGV: token, lease ms
_BEGIN = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0} end
return {1, redis.call('HGETALL', KEYS[2])}
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisStore(Store):
    schemes = ("redis", "rediss", "unix")

    def __init__(
        self,
        url: str | None = None,
        *,
        prefix: str = "agentsession:",
        socket_timeout: float = 5.0,
        client: aioredis.Redis | None = None,
        **options: Any,
    ) -> None:
        """``url`` (default ``redis://127.0.0.1:6379/0``), or ``client``: a ``redis.asyncio.Redis``
        the application already has. The store uses that client as configured (its timeouts and
        retries) and leaves it open on ``close()``: whoever made it closes it."""
        super().__init__(**options)
        self.prefix = prefix
        if client is not None:
            if url is not None:
                raise ConfigurationError("give RedisStore a url or a client, not both")
            self._display = _describe(client)
            self.client = client
            self._owns_client = False
        else:
            url = url or "redis://127.0.0.1:6379/0"
            self._display = redact_url(url)
            self.client = aioredis.Redis.from_url(
                url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=min(socket_timeout, 2.0),
                health_check_interval=30,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
                retry_on_error=[RedisConnectionError, RedisTimeoutError],
            )
            self._owns_client = True
        self._append = self.client.register_script(_APPEND)
        self._create = self.client.register_script(_CREATE)
        self._bump_script = self.client.register_script(_BUMP)
        self._rename = self.client.register_script(_RENAME)
        self._release = self.client.register_script(_RELEASE)
        self._begin = self.client.register_script(_BEGIN)
        self._gc = self.client.register_script(_GC)
        self._load = self.client.register_script(_LOAD)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisStore:
        rest, own = take_url_options(url, ("prefix", "ttl"))
        return cls(rest, **{**own, **options})

    # -- keys and plumbing ---------------------------------------------------------

    def _keys(self, session_id: str) -> tuple[str, str]:
        # one hash tag per conversation keeps its keys in one slot
        return f"{self.prefix}{{{session_id}}}:meta", f"{self.prefix}{{{session_id}}}:messages"

    @property
    def _index(self) -> str:
        return f"{self.prefix}index"

    def _lease_key(self, session_id: str) -> str:
        return f"{self.prefix}{{{session_id}}}:lease"

    def _ttl_ms(self) -> int:
        return 0 if self.ttl is None else max(1, int(self.ttl * 1000))

    async def _call(self, awaitable: Awaitable[T]) -> T:
        try:
            return await awaitable
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable(f"Redis at {self._display} is unavailable: {exc}") from exc
        except RedisError as exc:
            if "LOADING" in str(exc) or "MASTERDOWN" in str(exc):
                raise StoreUnavailable(f"Redis at {self._display} is not ready: {exc}") from exc
            raise

    def _info(self, session_id: str, raw: Mapping[Any, Any], listing: bool = False) -> SessionInfo:
        metadata, problem = self.codec.summary_metadata(raw[b"metadata"], session_id, listing)
        return SessionInfo(
            session_id,
            int(raw[b"version"]),
            int(raw[b"count"]),
            float(raw[b"created"]),
            float(raw[b"updated"]),
            metadata,
            problem,
        )

    # -- contract ------------------------------------------------------------------

    async def load(self, session_id: str) -> Conversation | None:
        flat, bodies = await self._call(self._load(keys=list(self._keys(session_id))))
        if not flat:
            return None
        info = self._info(session_id, dict(zip(flat[::2], flat[1::2], strict=True)))
        return Conversation(
            session_id=session_id,
            version=info.version,
            messages=self.codec.load_messages(bodies, session_id),
            metadata=dict(info.metadata),
            created_at=info.created_at,
            updated_at=info.updated_at,
        )

    async def info(self, session_id: str) -> SessionInfo | None:
        raw = await self._call(self.client.hgetall(self._keys(session_id)[0]))
        return self._info(session_id, raw) if raw else None

    async def version(self, session_id: str) -> int | None:
        raw = await self._call(self.client.hget(self._keys(session_id)[0], "version"))
        return None if raw is None else int(raw)

    async def create(self, session_id: str, metadata: Mapping[str, Any]) -> None:
        meta, messages = self._keys(session_id)
        args: list[Arg] = [
            time.time(),
            self._ttl_ms(),
            session_id,
            self.codec.dump_metadata(metadata),
        ]
        created = await self._call(self._create(keys=[meta, messages, self._index], args=args))
        if not created:
            raise ConflictError(f"session {session_id!r} already exists")

    async def append(
        self, session_id: str, messages: Sequence[Message], expected_version: int
    ) -> int:
        bodies = [self.codec.dump_message(m) for m in messages]
        return await self._append_releasing(session_id, bodies, expected_version, "")

    async def finish_turn(
        self, session_id: str, messages: Sequence[Message], expected_version: int, token: str
    ) -> int:
        try:
            bodies = [self.codec.dump_message(m) for m in messages]
        except BaseException:  # the script, which releases the lease, will not run
            await self._release_quietly(session_id, token)
            raise
        return await self._append_releasing(session_id, bodies, expected_version, token)

    async def _append_releasing(
        self, session_id: str, bodies: Sequence[str], expected_version: int, token: str
    ) -> int:
        meta, stored = self._keys(session_id)
        args: list[Arg] = [
            expected_version,
            time.time(),
            self._ttl_ms(),
            session_id,
            token,
            *bodies,
        ]
        keys = [meta, stored, self._index, self._lease_key(session_id)]
        status, version = await self._call(self._append(keys=keys, args=args))
        if status == -1:
            raise SessionNotFound(session_id)
        if status == -2:
            raise ConflictError(
                f"session {session_id!r} is at version {version}, expected {expected_version}"
            )
        return int(status)

    async def begin_turn(
        self, session_id: str, ttl: float
    ) -> tuple[str, SessionInfo | None] | None:
        token = secrets.token_hex(16)
        keys = [self._lease_key(session_id), self._keys(session_id)[0]]
        reply = await self._call(self._begin(keys=keys, args=[token, max(1, int(ttl * 1000))]))
        if not reply[0]:
            return None
        flat = reply[1]
        raw = dict(zip(flat[::2], flat[1::2], strict=True))
        try:
            return token, (self._info(session_id, raw) if raw else None)
        except BaseException:  # e.g. CorruptRecord: the caller gets no token to release
            await self._release_quietly(session_id, token)
            raise

    async def _bump(self, session_id: str, mode: str, metadata: str = "") -> int:
        meta, messages = self._keys(session_id)
        args: list[Arg] = [time.time(), self._ttl_ms(), session_id, mode, metadata]
        version = await self._call(self._bump_script(keys=[meta, messages, self._index], args=args))
        if version == -1:
            raise SessionNotFound(session_id)
        return int(version)

    async def set_metadata(self, session_id: str, metadata: Mapping[str, Any]) -> int:
        return await self._bump(session_id, "metadata", self.codec.dump_metadata(metadata))

    async def reset(self, session_id: str) -> int:
        return await self._bump(session_id, "reset")

    async def delete(self, session_id: str) -> bool:
        meta, messages = self._keys(session_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.exists(meta)
        pipe.delete(meta, messages, self._lease_key(session_id))
        pipe.zrem(self._index, session_id)
        existed, _, _ = await self._call(pipe.execute())
        return bool(existed)

    async def rename(self, session_id: str, new_session_id: str) -> None:
        keys = [*self._keys(session_id), *self._keys(new_session_id), self._index]
        args: list[Arg] = [session_id, new_session_id]
        # the two conversations live in different slots: one node only (see module docstring)
        outcome = await self._call(self._rename(keys=keys, args=args))
        if outcome == -1:
            raise SessionNotFound(session_id)
        if outcome == -2:
            raise ConflictError(f"session {new_session_id!r} already exists")

    async def list(self, limit: int = 100, offset: int = 0) -> list[SessionInfo]:
        cutoff = "-inf" if self.ttl is None else time.time() - self.ttl
        ids = await self._call(
            self.client.zrevrangebyscore(self._index, "+inf", cutoff, start=offset, num=limit)
        )
        pipe = self.client.pipeline(transaction=False)
        for raw_id in ids:
            pipe.hgetall(self._keys(_decode(raw_id))[0])
        rows = await self._call(pipe.execute()) if ids else []
        return [
            self._info(_decode(raw_id), raw, listing=True)
            for raw_id, raw in zip(ids, rows, strict=True)
            if raw
        ]

    async def gc(self, idle_seconds: float | None = None) -> int:
        idle = self.ttl if idle_seconds is None else idle_seconds
        if idle is None:
            return 0
        cutoff = time.time() - idle
        stale = [
            _decode(raw)
            for raw in await self._call(
                self.client.zrangebyscore(self._index, "-inf", f"({cutoff}")
            )
        ]
        removed = 0
        for start in range(0, len(stale), 200):
            batch = stale[start : start + 200]
            keys = [self._index]
            for session_id in batch:
                keys += [*self._keys(session_id), self._lease_key(session_id)]
            args: list[Arg] = [cutoff, *batch]
            removed += int(await self._call(self._gc(keys=keys, args=args)))
        return removed

    async def acquire(self, session_id: str, ttl: float) -> str | None:
        token = secrets.token_hex(16)
        taken = await self._call(
            self.client.set(self._lease_key(session_id), token, nx=True, px=max(1, int(ttl * 1000)))
        )
        return token if taken else None

    async def release(self, session_id: str, token: str) -> None:
        await self._call(self._release(keys=[self._lease_key(session_id)], args=[token]))

    async def ping(self) -> None:
        await self._call(self.client.ping())

    async def drop(self) -> None:
        """Delete this store's keys, and only them (tests and teardown).

        The pattern includes the ``{`` of the hash tag, so a store whose prefix extends this
        one's (``app:`` and ``app:v2:``) keeps its keys.
        """
        pattern = _glob_escape(self.prefix) + "{*"
        keys = await self._call(self._scan(pattern))
        keys.append(self._index.encode())
        for start in range(0, len(keys), 500):
            await self._call(self.client.delete(*keys[start : start + 500]))

    async def _scan(self, pattern: str) -> builtins.list[bytes]:
        return [key async for key in self.client.scan_iter(match=pattern, count=1000)]

    async def close(self) -> None:
        if self._owns_client:  # a client the application passed in stays open
            await self.client.aclose()


def _describe(client: Any) -> str:
    """A client given to the store: where it points, for messages (never its password)."""
    if not isinstance(client, aioredis.Redis):
        raise ConfigurationError(
            f"RedisStore(client=...) needs a redis.asyncio.Redis, not {type(client).__name__} "
            "(agentsession's engine is async; the sync redis.Redis would block it)"
        )
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("decode_responses"):
        raise ConfigurationError(
            "RedisStore(client=...) needs a client made without decode_responses=True "
            "(stored records are read as bytes)"
        )
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    return f"redis://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
