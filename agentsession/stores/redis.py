"""Redis store on ``redis.asyncio``: a single node (``redis://``, ``rediss://``, ``unix://``),
Redis Cluster (``redis+cluster://``) and Sentinel (``redis+sentinel://``).

Per conversation: a hash (version, count, metadata, timestamps) and a list of encoded
messages, both under one hash tag; a sorted set indexes conversations by last update for
``list`` and ``gc``. Every write is one Lua script, so a turn is atomic and checks the
version in the same round trip. Tested against a single Redis 7 node, a 3-master cluster
and a Sentinel-managed master with a replica.

On a cluster every key a script touches must live in one hash slot. A conversation's keys
and its entry of the index are therefore tagged with one of ``shards`` hash tags (``{7.12}``)
chosen by the session id, each shard with its own index: a turn stays one single-slot script
(moving the index update into a second command would leave a conversation unlisted if the
process died in between), and ``list``/``gc`` read every shard's index (one round trip per
master). ``rename`` between two shards copies, then deletes the original if it did not
change meanwhile (see ``_rename_across``).

URL options: ``?prefix=agentsession:`` (key namespace), ``?ttl=SECONDS`` (idle expiry,
refreshed on every write), ``?wait_replicas=N`` and ``?wait_timeout=SECONDS`` (a write is
acknowledged once N replicas have it: default 1 on a cluster or Sentinel, 0 on a single
node), ``?shards=64`` (cluster only), plus redis-py's own (``socket_timeout``, …).
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import functools
import os
import secrets
import ssl
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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
    logger,
    redact_url,
    seconds_option,
    take_url_options,
    url_port,
)

try:
    import redis
    import redis.asyncio as aioredis
    from redis import __version__ as redis_version
    from redis.asyncio.cluster import ClusterNode, RedisCluster
    from redis.asyncio.connection import parse_url
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.asyncio.sentinel import Sentinel
    from redis.backoff import ExponentialBackoff
    from redis.cluster import ClusterNode as SyncClusterNode
    from redis.cluster import RedisCluster as SyncRedisCluster
    from redis.commands.core import AsyncScript
    from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
    from redis.exceptions import (
        AskError,
        ClusterDownError,
        ClusterError,
        NoScriptError,
        ReadOnlyError,
        RedisClusterException,
        RedisError,
        SlotNotCoveredError,
        TryAgainError,
    )
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from redis.retry import Retry
    from redis.sentinel import Sentinel as SyncSentinel
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

# KEYS: meta, messages. The summary and the messages in one atomic call, for a cluster client
# (elsewhere a MULTI/EXEC pipeline: see ``RedisStore.load``)
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

# KEYS: meta, messages, lease, turn keys, journal, index. ARGV: session id. (Replaces the
# MULTI of a single node where a write must be followed by WAIT, or on a cluster.)
_DELETE = """
local existed = redis.call('EXISTS', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.call('ZREM', KEYS[6], ARGV[1])
return existed
"""

# A rename across two cluster slots, in three single-slot steps (see _rename_across).
# 1. KEYS: meta, messages, turn keys: the conversation as it is, or false
_SNAPSHOT = """
local meta = redis.call('HGETALL', KEYS[1])
if #meta == 0 then return false end
return {meta, redis.call('LRANGE', KEYS[2], 0, -1), redis.call('HGETALL', KEYS[3]),
        redis.call('PTTL', KEYS[1])}
"""

# 2. KEYS: new meta, new messages, new turn keys, new index. ARGV: new id, pttl (<= 0: none),
# number of meta items, number of turn-key items, meta items…, turn-key items…, messages…
_RESTORE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2], KEYS[3])
local at, stop = 5, 4 + tonumber(ARGV[3])
for i = at, stop, 1000 do redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 999, stop))) end
at, stop = stop + 1, stop + tonumber(ARGV[4])
for i = at, stop, 1000 do redis.call('HSET', KEYS[3], unpack(ARGV, i, math.min(i + 999, stop))) end
for i = stop + 1, #ARGV, 1000 do
    redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
local new = redis.call('HINCRBY', KEYS[1], 'version', 1)
if tonumber(ARGV[2]) > 0 then
    for i = 1, 3 do
        if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
    end
end
redis.call('ZADD', KEYS[4], redis.call('HGET', KEYS[1], 'updated'), ARGV[1])
return new
"""

# 3. KEYS: meta, messages, turn keys, journal, index. ARGV: id, the version copied. Deletes the
# original only if no write landed since the snapshot (-1: gone, 0: changed, 1: deleted)
_DROP_IF = """
local version = redis.call('HGET', KEYS[1], 'version')
if not version then return -1 end
if tonumber(version) ~= tonumber(ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[5], ARGV[1])
return 1
"""


_RETRIED = [RedisConnectionError, RedisTimeoutError]
# a PING before using a connection idle for 30 s. redis-py before 6.0 recurses without end
# when that health check and the retries meet a server that resets every connection (a
# plain client on a TLS-only port): there the retries alone find a dead pooled connection
_HEALTH_CHECK: dict[str, Any] = (
    {"health_check_interval": 30} if int(redis_version.split(".")[0]) >= 6 else {}
)
# what a cluster or Sentinel says while it fails over: the store is unavailable for a while
_TRANSIENT = (ClusterError, TryAgainError, SlotNotCoveredError, ReadOnlyError)
_OWN_OPTIONS = ("prefix", "ttl", "wait_replicas", "wait_timeout", "shards", "sentinel_password")
DEFAULT_SHARDS = 64
"""Hash tags a cluster store spreads its conversations over (``?shards=``)."""


class NotReplicated(StoreUnavailable):
    """A write reached the master but fewer replicas than ``wait_replicas`` confirmed it in
    ``wait_timeout``: it may or may not survive a failover, so it is not acknowledged."""


class RedisStore(Store):
    schemes = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "redis+sentinel",
               "rediss+sentinel")  # fmt: skip

    def __init__(
        self,
        url: str | None = None,
        *,
        prefix: str = "agentsession:",
        socket_timeout: float = 5.0,
        client: aioredis.Redis | None = None,
        wait_replicas: int | None = None,
        wait_timeout: float = 1.0,
        shards: int = DEFAULT_SHARDS,
        sentinel_password: str | None = None,
        **options: Any,
    ) -> None:
        """``url`` (default ``redis://127.0.0.1:6379/0``; ``redis+cluster://h:p,h:p`` and
        ``redis+sentinel://h:p,h:p/service/db`` too), or ``client``: a ``redis.asyncio.Redis``
        the application already has. The store uses that client as configured (its timeouts and
        retries) and leaves it open on ``close()``: whoever made it closes it.

        ``wait_replicas``: after each write, wait until that many replicas have it (``WAIT``)
        before acknowledging it; default 1 on a cluster or Sentinel, 0 on a single node."""
        super().__init__(**options)
        self.prefix = prefix
        self._options = {
            "prefix": prefix,
            "socket_timeout": socket_timeout,
            "wait_replicas": wait_replicas,
            "wait_timeout": wait_timeout,
            "shards": shards,
            "sentinel_password": sentinel_password,
            **options,
        }
        self._url = url
        self.wait_timeout = wait_timeout
        self._sentinel: Sentinel | None = None
        self._sync_sentinel: SyncSentinel | None = None  # for_loop's, on a Sentinel store
        self._node_clients: dict[str, aioredis.Redis] = {}
        self._node_kwargs: dict[str, Any] = {}
        self.client: Any
        kind = urlsplit(url).scheme.partition("+")[2] if url else ""
        if kind not in ("", "cluster", "sentinel"):
            raise ConfigurationError(
                f"{redact_url(url or '')}: Redis URLs are redis://, redis+cluster:// and "
                "redis+sentinel:// (rediss for TLS)"
            )
        if client is not None:
            if url is not None:
                raise ConfigurationError("give RedisStore a url or a client, not both")
            self._display = _describe(client)
            self.client = client
            self._owns_client = False
        else:
            url = url or "redis://127.0.0.1:6379/0"
            self._display = redact_url(url)
            timeouts: dict[str, Any] = {
                "socket_timeout": socket_timeout,
                "socket_connect_timeout": min(socket_timeout, 2.0),
            }
            self._timeouts = timeouts
            if kind == "cluster":
                self.client = self._cluster_client(url, timeouts)
            elif kind == "sentinel":
                self.client = self._sentinel_client(url, timeouts, sentinel_password)
            else:
                self.client = self._node_client(url, timeouts)
            self._owns_client = True
        self.cluster = kind == "cluster"
        if self.cluster and ("{" in prefix or "}" in prefix):
            raise ConfigurationError(
                f"?prefix={prefix} in {self._display}: a cluster store's prefix cannot hold "
                "'{' or '}' (its keys carry hash tags of their own)"
            )
        if not 1 <= shards <= 1024:
            raise ConfigurationError(f"?shards={shards}: use a number from 1 to 1024")
        self.shards = shards
        self._shard_tags = _shard_tags(shards) if self.cluster else ()
        self.wait_replicas = (1 if kind else 0) if wait_replicas is None else wait_replicas
        if self.wait_replicas < 0:
            raise ConfigurationError(f"?wait_replicas={wait_replicas}: use 0 or more")
        self._inline: RedisStore | None = None  # for_loop's twin, made on first use
        self._inline_lock = threading.Lock()
        self._register_scripts()

    def _register_scripts(self) -> None:
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
        self._delete = self.client.register_script(_DELETE)
        self._snapshot = self.client.register_script(_SNAPSHOT)
        self._restore = self.client.register_script(_RESTORE)
        self._drop_if = self.client.register_script(_DROP_IF)

    def _node_client(self, url: str, timeouts: dict[str, Any], sync: bool = False) -> Any:
        """A single node's client: redis.asyncio's, or (``sync``) redis-py's sync one, for the
        reads of sync callers (``for_loop``)."""
        return (redis.Redis if sync else aioredis.Redis).from_url(
            url, **timeouts, **_HEALTH_CHECK, retry=_retry(sync), retry_on_error=_RETRIED
        )

    def _cluster_client(self, url: str, timeouts: dict[str, Any], sync: bool = False) -> Any:
        """The cluster's client: redis.asyncio's, or (``sync``) redis-py's sync one, for the
        reads of sync callers (``for_loop``)."""
        hosts, kwargs = _multi_host_kwargs(url, urlsplit(url).path)
        if kwargs.pop("db", 0):
            raise ConfigurationError(f"{redact_url(url)}: a Redis Cluster has database 0 only")
        if kwargs.pop("connection_class", None) is not None:  # rediss+cluster
            kwargs["ssl"] = True
        kwargs = {**timeouts, **kwargs}
        # redis-py follows MOVED/ASK itself, and on connection errors and CLUSTERDOWN
        # reloads the slot map and retries (twice here, with backoff) before giving up
        if sync:
            return SyncRedisCluster(
                startup_nodes=[SyncClusterNode(host, port) for host, port in hosts],  # type: ignore[no-untyped-call,unused-ignore]
                retry=_retry(sync=True),
                **kwargs,
            )
        self._node_kwargs = kwargs
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in hosts],
            retry=_retry(sync=False),
            **kwargs,
        )

    def _sentinel_client(
        self, url: str, timeouts: dict[str, Any], sentinel_password: str | None, sync: bool = False
    ) -> Any:
        """The master's client through the sentinels: redis.asyncio's, or (``sync``) redis-py's
        sync one, for the reads of sync callers (``for_loop``)."""
        hosts, kwargs = _multi_host_kwargs(url)
        path = [part for part in urlsplit(url).path.split("/") if part]
        if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
            raise ConfigurationError(
                f"{redact_url(url)}: name the master's service, and optionally a database: "
                "redis+sentinel://host:port[,host:port]/SERVICE[/DB]"
            )
        kwargs["db"] = int(path[1]) if len(path) == 2 else 0
        sentinel_kwargs = dict(timeouts)
        if kwargs.pop("connection_class", None) is not None:  # rediss+sentinel
            kwargs["ssl"] = True
            # the sentinels speak TLS too, with the same certificates (a TLS deployment runs
            # them on its tls-port): they hand out the master's address
            sentinel_kwargs.update((k, v) for k, v in kwargs.items() if k.startswith("ssl"))
        if sentinel_password:
            sentinel_kwargs["password"] = sentinel_password
        sentinel: Any = (SyncSentinel if sync else Sentinel)(hosts, sentinel_kwargs=sentinel_kwargs)
        if sync:
            self._sync_sentinel = sentinel
        else:
            self._sentinel = sentinel
        # the pool asks the sentinels for the master on every new connection, and a master
        # that turned replica (READONLY) drops its connection: a retry reaches the new master
        return sentinel.master_for(
            path[0],
            redis_class=redis.Redis if sync else aioredis.Redis,
            **{**timeouts, **kwargs},
            **_HEALTH_CHECK,
            retry=_retry(sync),
            retry_on_error=_RETRIED,
        )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisStore:
        scheme = urlsplit(url).scheme
        if "+" in scheme:
            _hosts(url)  # a port that cannot work says so now
            parts = urlsplit(url)
            query = parse_qsl(parts.query)
            own: dict[str, Any] = {k: v for k, v in query if k in _OWN_OPTIONS}
            if "ttl" in own:
                own["ttl"] = seconds_option("ttl", own["ttl"], url)
            rest = urlunsplit(
                parts._replace(query=urlencode([(k, v) for k, v in query if k not in own]))
            )
        else:
            rest, own = take_url_options(url, _OWN_OPTIONS)
            parts = urlsplit(rest)
            database = parts.path.strip("/") if parts.scheme != "unix" else ""
            if database and not (database.isdigit() and database.isascii()):
                raise ConfigurationError(
                    f"the Redis database in {redact_url(url)} is {database!r}: use a number "
                    "from 0 to the server's `databases` setting minus one (16 databases by "
                    "default)"
                )
        if "wait_timeout" in own:
            own["wait_timeout"] = seconds_option("wait_timeout", own["wait_timeout"], url)
        for name in ("wait_replicas", "shards"):
            if name in own:
                if not own[name].isdigit():
                    raise ConfigurationError(
                        f"?{name}={own[name]} in {redact_url(url)} is not a whole number"
                    )
                own[name] = int(own[name])
        return cls(rest, **{**own, **options})

    def for_loop(self) -> RedisStore | None:
        """A twin that reads through a sync client, shared by every thread (redis-py's sync
        clients are thread-safe): a sync app's history read is one blocking round trip,
        without the event loop turns of redis.asyncio. On a single node, a cluster or through
        the sentinels; None for a client the application passed in (it lives on one loop)."""
        if not self._owns_client:
            return None
        with self._inline_lock:
            if self._inline is None:
                url = self._url or "redis://127.0.0.1:6379/0"
                if self.cluster:
                    try:  # the sync cluster client reads the slot map as it is made
                        client = self._cluster_client(url, self._timeouts, sync=True)
                    except (RedisClusterException, RedisConnectionError, OSError) as exc:
                        raise StoreUnavailable(
                            f"Redis Cluster at {self._display}: {exc}{_tls_reason(exc)}"
                        ) from exc
                elif self._sentinel is not None:
                    password = self._options["sentinel_password"]
                    client = self._sentinel_client(url, self._timeouts, password, sync=True)
                else:
                    client = self._node_client(url, self._timeouts, sync=True)
                twin = copy.copy(self)  # the same keys, codec and options
                twin.client = _Inline(client)
                twin._register_scripts()
                self._inline = twin
            return self._inline

    # -- keys and plumbing ---------------------------------------------------------

    def _tag(self, session_id: str) -> str:
        if not self.cluster:  # one hash tag per conversation keeps its keys in one slot
            return f"{self.prefix}{{{session_id}}}"
        # the conversation's shard: its keys and its index entry share the shard's slot
        return f"{self.prefix}{{{self._shard_tag(session_id)}}}:{session_id}"

    def _shard_tag(self, session_id: str) -> str:
        return self._shard_tags[zlib.crc32(session_id.encode()) % self.shards]

    def _keys(self, session_id: str) -> tuple[str, str]:
        tag = self._tag(session_id)
        return f"{tag}:meta", f"{tag}:messages"

    @property
    def _index(self) -> str:
        return f"{self.prefix}index"

    def _index_of(self, session_id: str) -> str:
        """The index holding ``session_id``: the one index, or its shard's on a cluster."""
        if not self.cluster:
            return self._index
        return f"{self.prefix}{{{self._shard_tag(session_id)}}}:index"

    def _shard_indexes(self) -> builtins.list[str]:
        return [f"{self.prefix}{{{tag}}}:index" for tag in self._shard_tags]

    def _lease_key(self, session_id: str) -> str:
        return f"{self._tag(session_id)}:lease"

    def _turn_keys(self, session_id: str) -> str:
        return f"{self._tag(session_id)}:turn-keys"

    def _journal(self, session_id: str) -> str:
        return f"{self._tag(session_id)}:journal"

    def _ttl_ms(self) -> int:
        return 0 if self.ttl is None else max(1, int(self.ttl * 1000))

    def _write(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run a writing script; with ``wait_replicas``, acknowledged only once replicated."""
        if not self.wait_replicas:  # a single node: one round trip, as it always was
            return script(keys=keys, args=args)
        return self._replicated(script, keys, args)

    async def _replicated(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[Arg]
    ) -> Any:
        """The script and ``WAIT`` in one pipeline: ``WAIT`` counts the replicas that have the
        writes of *its own connection*, so both go down the same one, to the master that
        serves the keys' slot (on a cluster a plain connection to that node: a cluster client
        would route a key-less ``WAIT`` to any node)."""
        for attempt in range(4):
            target = await self._master_of(keys[0])
            pipe = target.pipeline(transaction=False)
            pipe.evalsha(script.sha, len(keys), *keys, *args)
            pipe.execute_command("WAIT", self.wait_replicas, int(self.wait_timeout * 1000))
            try:
                reply, replicas = await pipe.execute(raise_on_error=False)
            except (RedisConnectionError, RedisTimeoutError, OSError):
                await self._refresh(keys[0])  # the next call finds the new master
                raise
            if isinstance(reply, NoScriptError):  # a node that never saw it (new, promoted)
                await target.script_load(script.script)
                continue
            if self.cluster and isinstance(reply, (AskError, TryAgainError, ClusterDownError)):
                await self._refresh(keys[0])  # MOVED (an AskError too), a slot migrating
                await asyncio.sleep(0.05 * attempt)
                continue
            if isinstance(reply, ReadOnlyError):  # a demoted master: find the new one
                await self._refresh(keys[0])
                raise reply
            if isinstance(reply, Exception):
                raise reply
            if isinstance(replicas, Exception):
                raise replicas
            if int(replicas) < self.wait_replicas:
                logger.warning(
                    "Redis at %s: %d of %d replicas confirmed a write within %g s; "
                    "answering StoreUnavailable",
                    self._display,
                    int(replicas),
                    self.wait_replicas,
                    self.wait_timeout,
                )
                raise NotReplicated(
                    f"Redis at {self._display}: a write reached the master but "
                    f"{int(replicas)} of {self.wait_replicas} replicas confirmed it within "
                    f"{self.wait_timeout:g} s; it is not acknowledged and may or may not last"
                )
            return reply
        raise StoreUnavailable(f"Redis at {self._display}: the keys' slot kept moving")

    async def _master_of(self, key: str) -> aioredis.Redis:
        if not self.cluster:
            client: aioredis.Redis = self.client
            return client
        await self.client.initialize()  # a no-op once the slot map is loaded
        node = self.client.get_node_from_key(key)
        found = self._node_clients.get(node.name)
        if found is None:
            no_retry = AsyncRetry(ExponentialBackoff(cap=0.5, base=0.05), 0)
            found = aioredis.Redis(
                host=node.host, port=node.port, **self._node_kwargs, retry=no_retry
            )
            self._node_clients[node.name] = found
        return found

    async def _refresh(self, key: str) -> None:
        """Let the cluster client learn where ``key``'s slot is served now (it follows MOVED
        and reloads the slot map after connection errors)."""
        if self.cluster:
            try:
                await self.client.type(key)  # one key: the client's own redirection path
            except Exception as exc:  # best effort: the caller raises its own error
                logger.debug("Redis Cluster at %s: refreshing the slot map: %r", self._display, exc)

    async def _call(self, awaitable: Awaitable[T]) -> T:
        try:
            return await awaitable
        except StoreUnavailable:
            raise
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable(
                f"Redis at {self._display} is unavailable: {exc}{_tls_reason(exc)}"
            ) from exc
        except _TRANSIENT as exc:
            raise StoreUnavailable(f"Redis at {self._display} is failing over: {exc}") from exc
        except RedisClusterException as exc:  # no node reachable, slots not all covered, …
            raise StoreUnavailable(
                f"Redis Cluster at {self._display}: {exc}{_tls_reason(exc)}"
            ) from exc
        except AttributeError as exc:
            if not (self.cluster and _raised_in_redis_py(exc)):
                raise
            # redis-py's cluster client closes every connection when it reloads the slot map
            # during a failover, including one another request is using at that moment
            raise StoreUnavailable(
                f"Redis Cluster at {self._display}: a connection was closed mid-request"
            ) from exc
        except RedisError as exc:
            if "DB index is out of range" in str(exc):  # the URL's /N, refused on connect
                raise ConfigurationError(
                    f"Redis at {self._display} has no database with that number (its "
                    "`databases` setting is lower): use a smaller number in the URL's path"
                ) from exc
            if "LOADING" in str(exc) or "MASTERDOWN" in str(exc):
                raise StoreUnavailable(f"Redis at {self._display} is not ready: {exc}") from exc
            if str(exc).startswith("DENIED"):  # protected mode: only loopback clients
                raise StoreUnavailable(
                    f"Redis at {self._display} refuses this host: it runs in protected mode "
                    "(no password set, loopback clients only); set a password or "
                    "protected-mode no on the server"
                ) from exc
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
        # MULTI/EXEC rather than a script: a script's LRANGE builds every record again as a
        # Lua string and back (0.95 against 0.73 ms at 1,000 messages, 9.7 against 4.9 ms at
        # 10,000; 0.1 ms dearer at 2). A cluster client keeps the script, as delete does.
        meta, messages = self._keys(session_id)
        raw: Mapping[Any, Any]
        if self.cluster:
            flat, bodies = await self._call(self._load(keys=[meta, messages]))
            raw = dict(zip(flat[::2], flat[1::2], strict=True))
        else:
            pipe = self.client.pipeline(transaction=True)
            pipe.hgetall(meta)
            pipe.lrange(messages, 0, -1)
            raw, bodies = await self._call(pipe.execute())
        if not raw:
            return None
        info = self._info(session_id, raw)
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
        keys = [meta, messages, self._index_of(session_id), self._turn_keys(session_id)]
        args: list[Arg] = [keep, expected_version, time.time(), self._ttl_ms(), session_id]
        status, version = await self._call(self._write(self._truncate, keys, args))
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
        keys = [meta, messages, self._index_of(session_id)]
        created = await self._call(self._write(self._create, keys, args))
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
        keys = [
            meta,
            stored,
            self._index_of(session_id),
            self._lease_key(session_id),
            self._turn_keys(session_id),
        ]
        status, version = await self._call(self._write(self._append, keys, args))
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
        keys = [meta, messages, self._index_of(session_id), self._turn_keys(session_id)]
        version = await self._call(self._write(self._bump_script, keys, args))
        if version == -1:
            raise SessionNotFound(session_id)
        return int(version)

    async def set_metadata(self, session_id: str, metadata: Mapping[str, Any]) -> int:
        return await self._bump(session_id, "metadata", self.codec.dump_metadata(metadata))

    async def reset(self, session_id: str) -> int:
        return await self._bump(session_id, "reset")

    async def delete(self, session_id: str) -> bool:
        meta, messages = self._keys(session_id)
        if self.cluster or self.wait_replicas:
            keys = [
                meta,
                messages,
                self._lease_key(session_id),
                self._turn_keys(session_id),
                self._journal(session_id),
                self._index_of(session_id),
            ]
            return bool(await self._call(self._write(self._delete, keys, [session_id])))
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
        if self.cluster and self._shard_tag(session_id) != self._shard_tag(new_session_id):
            await self._call(self._rename_across(session_id, new_session_id))
            return
        keys = [
            *self._keys(session_id),
            *self._keys(new_session_id),
            self._index_of(session_id),
            self._turn_keys(session_id),
            self._turn_keys(new_session_id),
            self._journal(session_id),
        ]
        args: list[Arg] = [session_id, new_session_id]
        # one slot (a single node, or both ids in one cluster shard): one atomic script
        outcome = await self._call(self._write(self._rename, keys, args))
        if outcome == -1:
            raise SessionNotFound(session_id)
        if outcome == -2:
            raise ConflictError(f"session {new_session_id!r} already exists")

    async def _rename_across(self, session_id: str, new_session_id: str) -> None:
        """Rename between two cluster slots: no script can span them, so copy, then delete.

        1. snapshot the conversation (read only); 2. write the copy under the new id, in the
        new id's slot, unless that id exists; 3. delete the original, only if its version is
        still the snapshot's. If a write landed in between, step 3 refuses: the copy is
        deleted and the rename starts again (3 tries, then ``ConflictError``), so no turn
        acknowledged on the old id is lost. A crash between steps 2 and 3 leaves both: the
        original, whole and still in use under the old id (the caller saw no success), and an
        unreferenced copy under the new id, which idles until ``gc`` or the TTL removes it.
        """
        old_meta, old_messages = self._keys(session_id)
        new_meta, new_messages = self._keys(new_session_id)
        old_keys = [old_meta, old_messages, self._turn_keys(session_id)]
        new_keys = [new_meta, new_messages, self._turn_keys(new_session_id)]
        for _ in range(3):
            found = await self._snapshot(keys=old_keys)
            if not found:
                raise SessionNotFound(session_id)
            flat, bodies, turn_keys, pttl = found
            meta = dict(zip(flat[::2], flat[1::2], strict=True))
            copied = int(meta[b"version"])
            args: list[Arg] = [new_session_id, int(pttl), len(flat), len(turn_keys)]
            args += [*flat, *turn_keys, *bodies]
            keys = [*new_keys, self._index_of(new_session_id)]
            if not await self._write(self._restore, keys, args):
                raise ConflictError(f"session {new_session_id!r} already exists")
            drop = [*old_keys, self._journal(session_id), self._index_of(session_id)]
            outcome = await self._write(self._drop_if, drop, [session_id, copied])
            if outcome == 1:
                return
            # the original changed (or went) meanwhile: take the copy back
            undo = [*new_keys, self._journal(new_session_id), self._index_of(new_session_id)]
            await self._write(self._drop_if, undo, [new_session_id, copied + 1])
            if outcome == -1:
                raise SessionNotFound(session_id)
            logger.info("rename of a Redis Cluster conversation raced a write; trying again")
        raise ConflictError(f"session {session_id!r} kept changing while it was renamed")

    async def list(self, limit: int = 100, offset: int = 0) -> list[SessionInfo]:
        cutoff = "-inf" if self.ttl is None else time.time() - self.ttl
        if self.cluster:
            ids = await self._call(self._cluster_list_ids(cutoff, limit, offset))
        else:
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

    async def _cluster_list_ids(
        self, cutoff: float | str, limit: int, offset: int
    ) -> builtins.list[bytes]:
        """Every shard's newest ``offset + limit``, merged: each id is in one shard's index
        only (its shard follows from the id), so none is missed and none comes twice."""
        if limit <= 0:
            return []
        pipe = self.client.pipeline(transaction=False)  # one round trip per master
        for index in self._shard_indexes():
            pipe.zrevrangebyscore(index, "+inf", cutoff, start=0, num=offset + limit,
                                  withscores=True)  # fmt: skip
        merged = [entry for shard in await pipe.execute() for entry in shard]
        # a shard's own order: by score, then by member, both descending
        merged.sort(key=lambda entry: (entry[1], entry[0]), reverse=True)
        return [member for member, _ in merged[offset : offset + limit]]

    async def gc(self, idle_seconds: float | None = None) -> int:
        idle = self.ttl if idle_seconds is None else idle_seconds
        if idle is None:
            return 0
        cutoff = time.time() - idle
        if self.cluster:
            pipe = self.client.pipeline(transaction=False)
            indexes = self._shard_indexes()
            for index in indexes:
                pipe.zrangebyscore(index, "-inf", f"({cutoff}")
            shards = await self._call(pipe.execute())
            removed = 0
            for index, found in zip(indexes, shards, strict=True):
                removed += await self._gc_index(index, [_decode(raw) for raw in found], cutoff)
            return removed
        stale = [
            _decode(raw)
            for raw in await self._call(
                self.client.zrangebyscore(self._index, "-inf", f"({cutoff}")
            )
        ]
        return await self._gc_index(self._index, stale, cutoff)

    async def _gc_index(self, index: str, stale: Sequence[str], cutoff: float) -> int:
        removed = 0
        for start in range(0, len(stale), 200):
            batch = stale[start : start + 200]
            keys = [index]
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
        if not self.cluster:  # a cluster's shard indexes match the pattern
            keys.append(self._index.encode())
        for start in range(0, len(keys), 500):
            await self._call(self.client.delete(*keys[start : start + 500]))

    async def _scan(self, pattern: str) -> builtins.list[bytes]:
        return [key async for key in self.client.scan_iter(match=pattern, count=1000)]

    async def close(self) -> None:
        if self._inline is not None:
            self._inline.client.sync.close()
            self._inline = None
        if self._sync_sentinel is not None:
            for sync_sentinel in self._sync_sentinel.sentinels:
                sync_sentinel.close()
            self._sync_sentinel = None
        for node in self._node_clients.values():
            await node.aclose()
        if self._owns_client:  # a client the application passed in stays open
            await self.client.aclose()
        if self._sentinel is not None:
            # redis-py 5.0's Sentinel has no aclose(): its clients close one by one
            for sentinel in self._sentinel.sentinels:
                await sentinel.aclose()


class _Inline:
    """redis.asyncio's calls, made with a sync client: each is done before it returns, so a
    read on a sync caller's own loop never suspends. Only the reads use it (``for_loop``)."""

    def __init__(self, client: redis.Redis | SyncRedisCluster) -> None:
        self.sync = client

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        command = getattr(self.sync, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return command(*args, **kwargs)

        return call

    def register_script(self, script: str) -> Callable[..., Awaitable[Any]]:
        registered = self.sync.register_script(script)

        async def call(keys: Sequence[str] = (), args: Sequence[Arg] = ()) -> Any:
            return registered(keys=keys, args=args)  # EVALSHA, loading the script if needed

        return call

    def pipeline(self, transaction: bool = True) -> _InlinePipeline:
        return _InlinePipeline(self.sync.pipeline(transaction=transaction))


class _InlinePipeline:
    def __init__(self, pipe: Any) -> None:
        self._pipe = pipe

    def __getattr__(self, name: str) -> Any:  # commands queue, as on redis.asyncio
        return getattr(self._pipe, name)

    async def execute(self) -> list[Any]:
        result: list[Any] = self._pipe.execute()
        return result


def _retry(sync: bool) -> Any:
    """The store's retries: two, with backoff (redis.asyncio's, or the sync client's)."""
    return (Retry if sync else AsyncRetry)(ExponentialBackoff(cap=0.5, base=0.05), 2)


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


def _raised_in_redis_py(exc: BaseException) -> bool:
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is not None and f"{os.sep}redis{os.sep}" in frame.tb_frame.f_code.co_filename


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _hosts(url: str) -> builtins.list[tuple[str, int]]:
    """The ``host:port`` list of a cluster or Sentinel URL (``h1:7000,h2:7001``)."""
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    default = 26379 if "sentinel" in urlsplit(url).scheme else 6379
    hosts = []
    for item in netloc.split(","):
        port = url_port(f"redis://{item}")
        host = urlsplit(f"redis://{item}").hostname
        if not host:
            raise ConfigurationError(f"{redact_url(url)} names no host in {item!r}")
        hosts.append((host, default if port is None else port))
    return hosts


def _tls_reason(exc: BaseException) -> str:
    """`` (TLS: why)`` when a TLS failure lies under ``exc`` and its text does not say so
    (redis-py before 6 words a refused certificate as ``Error 1 connecting to h:p. 1.``)."""
    cause: BaseException | None = exc
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLError):
            reason = str(cause)
            return "" if reason in str(exc) else f" (TLS: {reason})"
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return ""


def _multi_host_kwargs(
    url: str, path: str = ""
) -> tuple[builtins.list[tuple[str, int]], dict[str, Any]]:
    """The hosts of a cluster or Sentinel URL, and redis-py's keyword arguments from the rest
    (user, password, TLS, ``path`` as the database, query options), as ``redis.asyncio``
    would read a one-host URL."""
    parts = urlsplit(url)
    hosts = _hosts(url)
    userinfo, at, _ = parts.netloc.rpartition("@")
    scheme = parts.scheme.partition("+")[0]
    netloc = f"{userinfo}{at}{hosts[0][0]}:{hosts[0][1]}"
    single = urlunsplit((scheme, netloc, path, parts.query, ""))
    kwargs: dict[str, Any] = dict(parse_url(single))
    for name in ("host", "port", "path"):
        kwargs.pop(name, None)
    return hosts, kwargs


@functools.lru_cache(maxsize=8)
def _shard_tags(shards: int) -> tuple[str, ...]:
    """The hash tag of each of ``shards`` shards: tag ``k`` is the first ``"k.i"`` (i = 0,
    1, …) whose slot falls in the ``k``-th of ``shards`` equal ranges of the 16384 slots, so
    the shards spread evenly over masters that own equal slot ranges. Fixed forever: another
    tag would hide the conversations stored under this one."""
    tags = []
    for k in range(shards):
        i = 0
        while key_slot(f"{k}.{i}".encode()) * shards // REDIS_CLUSTER_HASH_SLOTS != k:
            i += 1
        tags.append(f"{k}.{i}")
    return tuple(tags)
