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
from urllib.parse import urlsplit

from ..errors import (
    ConfigurationError,
    ConflictError,
    LeaseLost,
    MissingDependency,
    SessionNotFound,
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
    redact_url,
    take_url_options,
)

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

# KEYS: meta, messages, index, lease, turn keys. ARGV: expected version, now, ttl ms, session
# id, lease token ('' for none), idempotency key ('' for none), its digest, keys kept, key ttl
# ms, messages…  (the script is atomic: order is free)
_APPEND = """
if ARGV[5] ~= '' then
    local holder = redis.call('GET', KEYS[4])
    if holder and holder ~= ARGV[5] then return {-3, 0} end
    if holder then redis.call('DEL', KEYS[4]) end
end
local version = redis.call('HGET', KEYS[1], 'version')
if not version then return {-1, 0} end
if tonumber(version) ~= tonumber(ARGV[1]) then return {-2, tonumber(version)} end
local first = redis.call('LLEN', KEYS[2])
for i = 10, #ARGV, 1000 do
    redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
local new = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HINCRBY', KEYS[1], 'count', #ARGV - 9)
redis.call('HSET', KEYS[1], 'updated', ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[4])
if ARGV[6] ~= '' then
    redis.call('HSET', KEYS[5], ARGV[6], cjson.encode({first, #ARGV - 9, ARGV[7], tonumber(ARGV[2])}))
    -- forget keys past their ttl, and the oldest beyond the number kept
    local all = redis.call('HGETALL', KEYS[5])
    local kept, oldest, oldest_at = 0, nil, nil
    for i = 1, #all, 2 do
        local at = cjson.decode(all[i + 1])[4]
        if at < tonumber(ARGV[2]) - tonumber(ARGV[9]) / 1000 then
            redis.call('HDEL', KEYS[5], all[i])
        else
            kept = kept + 1
            if oldest_at == nil or at < oldest_at then oldest, oldest_at = all[i], at end
        end
    end
    if kept > tonumber(ARGV[8]) then redis.call('HDEL', KEYS[5], oldest) end
end
if tonumber(ARGV[3]) > 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    redis.call('PEXPIRE', KEYS[2], ARGV[3])
    if redis.call('EXISTS', KEYS[5]) == 1 then redis.call('PEXPIRE', KEYS[5], ARGV[3]) end
end
return {new, 0}
"""

# KEYS: meta, messages, turn keys. ARGV: key, oldest time a key is kept
_FIND_TURN = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local raw = redis.call('HGET', KEYS[3], ARGV[1])
if not raw then return false end
local entry = cjson.decode(raw)
if entry[4] < tonumber(ARGV[2]) then return false end
return {entry[3], redis.call('LRANGE', KEYS[2], entry[1], entry[1] + entry[2] - 1)}
"""

# KEYS: meta, messages. ARGV: start, stop ('' for none), as a Python slice of the messages
_READ = """
local head = redis.call('HMGET', KEYS[1], 'version', 'count')
if not head[1] then return false end
local total = tonumber(head[2])
local function bound(i, default)
    if i == '' then return default end
    i = tonumber(i)
    if i < 0 then return math.max(0, total + i) end
    return math.min(i, total)
end
local first, stop = bound(ARGV[1], 0), bound(ARGV[2], total)
local items = {}
if stop > first then items = redis.call('LRANGE', KEYS[2], first, stop - 1) end
return {tonumber(head[1]), total, first, items}
"""

# KEYS: meta, messages, index, turn keys. ARGV: keep, expected version, now, ttl ms, session id
_TRUNCATE = (
    """
local version = redis.call('HGET', KEYS[1], 'version')
if not version then return {-1, 0} end
if tonumber(version) ~= tonumber(ARGV[2]) then return {-2, tonumber(version)} end
local keep = tonumber(ARGV[1])
if keep == 0 then redis.call('DEL', KEYS[2]) else redis.call('LTRIM', KEYS[2], 0, keep - 1) end
redis.call('HSET', KEYS[1], 'count', redis.call('LLEN', KEYS[2]), 'updated', ARGV[3])
local new = redis.call('HINCRBY', KEYS[1], 'version', 1)
local all = redis.call('HGETALL', KEYS[4])
for i = 1, #all, 2 do
    if cjson.decode(all[i + 1])[1] >= keep then redis.call('HDEL', KEYS[4], all[i]) end
end
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[5])
"""
    + _EXPIRE.format(ttl="ARGV[4]")
    + """
return {new, 0}
"""
)

# KEYS: journal (its first item is the turn id, then the events). ARGV: turn id, first seq,
# ttl ms, events…
_JOURNAL_WRITE = """
if tonumber(ARGV[2]) == 0 then
    redis.call('DEL', KEYS[1])
    redis.call('RPUSH', KEYS[1], ARGV[1])
elseif redis.call('LINDEX', KEYS[1], 0) ~= ARGV[1] then
    return 0
end
local stored = redis.call('LLEN', KEYS[1]) - 1
for i = 4, #ARGV do
    local seq = tonumber(ARGV[2]) + i - 4
    if seq < stored then redis.call('LSET', KEYS[1], seq + 1, ARGV[i])
    else redis.call('RPUSH', KEYS[1], ARGV[i]) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: journal, lease. ARGV: the last seq already seen
_JOURNAL_READ = """
local turn = redis.call('LINDEX', KEYS[1], 0)
if not turn then return false end
return {turn, redis.call('LRANGE', KEYS[1], tonumber(ARGV[1]) + 2, -1), redis.call('EXISTS', KEYS[2])}
"""

# KEYS: lease. ARGV: token, lease ms
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

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

# KEYS: meta, messages, index, turn keys. ARGV: now, ttl ms, session id, mode ('metadata'|'reset'),
# metadata
_BUMP = (
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if ARGV[4] == 'metadata' then redis.call('HSET', KEYS[1], 'metadata', ARGV[5]) end
if ARGV[4] == 'reset' then
    redis.call('DEL', KEYS[2], KEYS[4])
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

# KEYS: meta, messages, new meta, new messages, index, turn keys, new turn keys, journal.
# ARGV: old id, new id
_RENAME = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('EXISTS', KEYS[3]) == 1 then return -2 end
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('RENAME', KEYS[1], KEYS[3])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('RENAME', KEYS[2], KEYS[4]) end
if redis.call('EXISTS', KEYS[6]) == 1 then redis.call('RENAME', KEYS[6], KEYS[7]) end
redis.call('DEL', KEYS[8])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZADD', KEYS[5], redis.call('HGET', KEYS[3], 'updated'), ARGV[2])
return 1
"""

# KEYS: meta, messages. The summary and the messages in one atomic call: cheaper for the client
# than a MULTI/EXEC pipeline of HGETALL and LRANGE (measured ~30 us a read)
_LOAD = """
return {redis.call('HGETALL', KEYS[1]), redis.call('LRANGE', KEYS[2], 0, -1)}
"""

# KEYS: index, then meta, messages, lease, turn keys, journal of each candidate. ARGV: cutoff,
# candidate ids…
# The score is checked again here: a turn that landed since the ZRANGEBYSCORE keeps its
# conversation.
_GC = """
local removed = 0
for i = 2, #ARGV do
    local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
    if score and tonumber(score) < tonumber(ARGV[1]) then
        local k = 2 + (i - 2) * 5
        redis.call('DEL', KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4])
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
        self._options = {"prefix": prefix, "socket_timeout": socket_timeout, **options}
        self._url = url
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
        self._find_turn = self.client.register_script(_FIND_TURN)
        self._renew = self.client.register_script(_RENEW)
        self._read = self.client.register_script(_READ)
        self._journal_write = self.client.register_script(_JOURNAL_WRITE)
        self._journal_read = self.client.register_script(_JOURNAL_READ)
        self._truncate = self.client.register_script(_TRUNCATE)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisStore:
        rest, own = take_url_options(url, ("prefix", "ttl"))
        parts = urlsplit(rest)
        database = parts.path.strip("/") if parts.scheme != "unix" else ""
        if database and not (database.isdigit() and database.isascii()):
            raise ConfigurationError(
                f"the Redis database in {redact_url(url)} is {database!r}: use a number "
                "from 0 to the server's `databases` setting minus one (16 databases by default)"
            )
        return cls(rest, **{**own, **options})

    def for_loop(self) -> RedisStore | None:
        """A twin with a client of its own (redis.asyncio's connections belong to one loop);
        None for a client the application passed in."""
        if not self._owns_client:
            return None
        twin = type(self)(self._url, **self._options)
        twin.codec = self.codec
        return twin

    # -- keys and plumbing ---------------------------------------------------------

    def _keys(self, session_id: str) -> tuple[str, str]:
        # one hash tag per conversation keeps its keys in one slot
        return f"{self.prefix}{{{session_id}}}:meta", f"{self.prefix}{{{session_id}}}:messages"

    @property
    def _index(self) -> str:
        return f"{self.prefix}index"

    def _lease_key(self, session_id: str) -> str:
        return f"{self.prefix}{{{session_id}}}:lease"

    def _turn_keys(self, session_id: str) -> str:
        return f"{self.prefix}{{{session_id}}}:turn-keys"

    def _journal(self, session_id: str) -> str:
        return f"{self.prefix}{{{session_id}}}:journal"

    def _ttl_ms(self) -> int:
        return 0 if self.ttl is None else max(1, int(self.ttl * 1000))

    async def _call(self, awaitable: Awaitable[T]) -> T:
        try:
            return await awaitable
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable(f"Redis at {self._display} is unavailable: {exc}") from exc
        except RedisError as exc:
            if "DB index is out of range" in str(exc):  # the URL's /N, refused on connect
                raise ConfigurationError(
                    f"Redis at {self._display} has no database with that number (its "
                    "`databases` setting is lower): use a smaller number in the URL's path"
                ) from exc
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

    async def read_messages(
        self, session_id: str, start: int = 0, stop: int | None = None
    ) -> MessagePage | None:
        args: list[Arg] = [start, "" if stop is None else stop]
        found = await self._call(self._read(keys=list(self._keys(session_id)), args=args))
        if not found:
            return None
        version, total, first, bodies = found
        messages = self.codec.load_messages(bodies, session_id)
        return MessagePage(messages, int(first), int(total), int(version))

    async def truncate(self, session_id: str, keep: int, expected_version: int) -> int:
        meta, messages = self._keys(session_id)
        keys = [meta, messages, self._index, self._turn_keys(session_id)]
        args: list[Arg] = [keep, expected_version, time.time(), self._ttl_ms(), session_id]
        status, version = await self._call(self._truncate(keys=keys, args=args))
        if status == -1:
            raise SessionNotFound(session_id)
        if status == -2:
            raise ConflictError(
                f"session {session_id!r} is at version {version}, expected {expected_version}"
            )
        return int(status)

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
        return await self._append_releasing(session_id, bodies, expected_version, "", None)

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
            bodies = [self.codec.dump_message(m) for m in messages]
            return await self._append_releasing(
                session_id, bodies, expected_version, token, turn_key
            )
        except BaseException:  # the script did not run (or refused): the lease is still ours
            await self._release_quietly(session_id, token)
            raise

    async def _append_releasing(
        self,
        session_id: str,
        bodies: Sequence[str],
        expected_version: int,
        token: str,
        turn_key: TurnKey | None,
    ) -> int:
        meta, stored = self._keys(session_id)
        args: list[Arg] = [
            expected_version,
            time.time(),
            self._ttl_ms(),
            session_id,
            token,
            turn_key.key if turn_key else "",
            turn_key.digest if turn_key else "",
            TURN_KEYS_KEPT,
            int(TURN_KEY_TTL * 1000),
            *bodies,
        ]
        keys = [meta, stored, self._index, self._lease_key(session_id), self._turn_keys(session_id)]
        status, version = await self._call(self._append(keys=keys, args=args))
        if status == -1:
            raise SessionNotFound(session_id)
        if status == -3:
            raise LeaseLost(f"session {session_id!r}: another turn took over the lease")
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
        keys = [meta, messages, self._index, self._turn_keys(session_id)]
        version = await self._call(self._bump_script(keys=keys, args=args))
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
        pipe.delete(
            meta,
            messages,
            self._lease_key(session_id),
            self._turn_keys(session_id),
            self._journal(session_id),
        )
        pipe.zrem(self._index, session_id)
        existed, _, _ = await self._call(pipe.execute())
        return bool(existed)

    async def rename(self, session_id: str, new_session_id: str) -> None:
        keys = [
            *self._keys(session_id),
            *self._keys(new_session_id),
            self._index,
            self._turn_keys(session_id),
            self._turn_keys(new_session_id),
            self._journal(session_id),
        ]
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
                keys += [
                    *self._keys(session_id),
                    self._lease_key(session_id),
                    self._turn_keys(session_id),
                    self._journal(session_id),
                ]
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

    async def renew(self, session_id: str, token: str, ttl: float) -> bool:
        args: list[Arg] = [token, max(1, int(ttl * 1000))]
        return bool(await self._call(self._renew(keys=[self._lease_key(session_id)], args=args)))

    async def find_turn(self, session_id: str, key: str) -> StoredTurn | None:
        meta, messages = self._keys(session_id)
        keys = [meta, messages, self._turn_keys(session_id)]
        found = await self._call(self._find_turn(keys=keys, args=[key, time.time() - TURN_KEY_TTL]))
        if not found:
            return None
        digest, bodies = found
        return StoredTurn(self.codec.load_messages(bodies, session_id), _decode(digest))

    async def journal_write(
        self, session_id: str, turn_id: str, first_seq: int, events: Sequence[Mapping[str, Any]]
    ) -> None:
        bodies = [self.codec.dump_event(event) for event in events]
        args: list[Arg] = [turn_id, first_seq, int(JOURNAL_TTL * 1000), *bodies]
        await self._call(self._journal_write(keys=[self._journal(session_id)], args=args))

    async def journal_read(self, session_id: str, after: int = -1) -> JournalPage | None:
        keys = [self._journal(session_id), self._lease_key(session_id)]
        found = await self._call(self._journal_read(keys=keys, args=[after]))
        if not found:
            return None
        turn_id, bodies, writing = found
        events = [self.codec.load_event(body, session_id) for body in bodies]
        return JournalPage(_decode(turn_id), events, bool(writing))

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
