"""The store contract every backend implements, and the record codec they share."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from ..errors import (
    ConfigurationError,
    CorruptRecord,
    DecryptionError,
    StoreError,
    UnknownSchemaVersion,
)
from ..messages import Message, decode_records

logger = logging.getLogger("agentsession")

META_SCHEMA_VERSION = 1
"""Version of the stored conversation (metadata) record."""

ENVELOPE_VERSION = 1
"""Version of the envelope of an encrypted record (see ``stores.encryption``)."""

JOURNAL_SCHEMA_VERSION = 1
"""Version of a streamed turn's journal event record."""
JOURNAL_TTL = 600.0
"""Seconds a streamed turn's journal is kept after its last event."""

TURN_KEYS_KEPT = 100
"""Idempotency keys remembered per conversation (the newest); older ones are forgotten."""
TURN_KEY_TTL = 24 * 3600.0
"""Seconds an idempotency key is remembered."""


@dataclass(frozen=True, slots=True)
class TurnKey:
    """An idempotency key, and the digest of the message it was first used with."""

    key: str
    digest: str


@dataclass(frozen=True, slots=True)
class StoredTurn:
    """The messages a keyed turn recorded, for its retries."""

    messages: list[Message]
    digest: str


@dataclass(slots=True)
class Conversation:
    """A conversation as read from a store."""

    session_id: str
    version: int
    messages: list[Message]
    metadata: dict[str, Any]
    created_at: float
    updated_at: float


@dataclass(slots=True)
class MessagePage:
    """A slice of a conversation's messages, as read by ``Store.read_messages``."""

    messages: list[Message]
    start: int
    """The index of the first message of the page in the whole conversation."""
    total: int
    """How many messages the conversation holds."""
    version: int


def page_bounds(start: int, stop: int | None, total: int) -> tuple[int, int]:
    """``slice(start, stop)`` of a list of ``total`` items, as absolute ``[first, end)``."""
    first, end, _ = slice(start, stop).indices(total)
    return first, max(first, end)


@dataclass(slots=True)
class JournalPage:
    """Events of a conversation's latest streamed turn, as ``Store.journal_read`` returns them."""

    turn_id: str
    events: list[dict[str, Any]]
    """The events after the one asked for, oldest first, each with its ``seq``."""
    writing: bool
    """The conversation's turn lease is held: the turn that writes this journal may be running."""


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A conversation's summary, as listed by ``Store.list``."""

    session_id: str
    version: int
    message_count: int
    created_at: float
    updated_at: float
    metadata: Mapping[str, Any] = field(default_factory=dict)
    problem: str | None = None
    """Set by ``Store.list`` when the metadata record cannot be read (then ``metadata`` is
    empty): one damaged record is reported by its session id and left in place, and the
    rest of the listing still comes back."""


class RecordCodec:
    """Turns messages and metadata into the JSON text a store keeps, and back.

    ``EncryptedCodec`` seals that text in an envelope; this plain codec refuses sealed
    records with a clear error instead of calling them corrupt.
    """

    sealed = False
    """True when each record is sealed on its own (``EncryptedCodec``): a store cannot hand
    them over as one joined array."""

    def dump_message(self, message: Message) -> str:
        return message.to_json()

    def load_message(self, text: str | bytes, session_id: str) -> Message:
        return self._message(self._parse(text, session_id, "message"), session_id)

    def load_messages(self, texts: Sequence[str | bytes], session_id: str) -> list[Message]:
        """``load_message`` over a conversation's records, decoded as one JSON array.

        One strict decode of the joined records (``decode_records``) costs a fraction of one
        parse per record. If it refuses them (a damaged record, a newer schema, a sealed
        record this codec must open first), they are decoded one by one instead, so an error
        names what is wrong.
        """
        joined = _join(texts)
        if joined is not None:
            messages = decode_records(joined, len(texts))
            if messages is not None:
                return messages
        return [self.load_message(text, session_id) for text in texts]

    def load_array(self, array: str | bytes | None, count: int) -> list[Message] | None:
        """The ``count`` messages of ``array``, the records a store joined into one JSON
        array as it read them, or ``None`` when the store must read and decode them one by
        one (``load_messages``): a damaged record, a newer schema, sealed records, or an
        array the server could not build (too long for it)."""
        if count == 0:
            return []
        if array is None or self.sealed:
            return None
        return decode_records(array, count)

    def _message(self, record: Any, session_id: str) -> Message:
        if type(record) is not dict:
            raise CorruptRecord(session_id, "a message record is not a JSON object")
        if "enc" in record:
            record = self._parse(self.decode_sealed(record, session_id), session_id, "message")
        return Message.from_dict(record, session_id)

    def dump_event(self, event: Mapping[str, Any]) -> str:
        """A journal event (see ``Store.journal_write``) as the text a store keeps."""
        return json.dumps(
            {"v": JOURNAL_SCHEMA_VERSION, **event}, ensure_ascii=False, separators=(",", ":")
        )

    def load_event(self, text: str | bytes, session_id: str) -> dict[str, Any]:
        record = self._parse(text, session_id, "journal event")
        if "enc" in record:
            record = self._parse(self.decode_sealed(record, session_id), session_id, "event")
        version = record.pop("v", None)
        if version != JOURNAL_SCHEMA_VERSION:
            raise CorruptRecord(
                session_id, f"journal event schema version {version!r} is not known"
            )
        return record

    def dump_metadata(self, metadata: Mapping[str, Any]) -> str:
        return json.dumps(
            {"v": META_SCHEMA_VERSION, "metadata": dict(metadata)},
            ensure_ascii=False,
            separators=(",", ":"),
        )

    def summary_metadata(
        self, text: str | bytes | None, session_id: str, listing: bool = False
    ) -> tuple[dict[str, Any], str | None]:
        """The metadata and ``SessionInfo.problem`` for a summary.

        For a listing a damaged record gives ``({}, why)``, logged, so the rest still lists;
        otherwise it raises, as ``load_metadata`` does.
        """
        try:
            return self.load_metadata(text, session_id), None
        except CorruptRecord as exc:
            if not listing:
                raise
            logger.error("%s", exc)
            return {}, str(exc)

    def load_metadata(self, text: str | bytes | None, session_id: str) -> dict[str, Any]:
        if text is None:
            return {}
        record = self._parse(text, session_id, "metadata")
        if "enc" in record:
            record = self._parse(self.decode_sealed(record, session_id), session_id, "metadata")
        if not isinstance(record.get("metadata"), dict):
            raise CorruptRecord(session_id, "metadata record is not a JSON object with 'metadata'")
        version = record.get("v")
        if version != META_SCHEMA_VERSION:
            if isinstance(version, int) and version > META_SCHEMA_VERSION:
                raise UnknownSchemaVersion(
                    session_id, f"metadata schema v{version} is newer than this agentsession"
                )
            raise CorruptRecord(session_id, f"metadata schema version {version!r} is not known")
        metadata: dict[str, Any] = record["metadata"]
        return metadata

    def decode_sealed(self, record: Mapping[str, Any], session_id: str) -> str:
        raise DecryptionError(
            f"session {session_id!r} holds encrypted records; open the store with "
            "encryption_keys=[...] to read them"
        )

    @staticmethod
    def _parse(text: str | bytes, session_id: str, what: str) -> dict[str, Any]:
        try:
            record = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptRecord(session_id, f"invalid {what} JSON: {exc}") from exc
        if not isinstance(record, dict):
            raise CorruptRecord(session_id, f"a {what} record is not a JSON object")
        return record


def _join(texts: Sequence[str | bytes]) -> str | bytes | None:
    """The records as the text of one JSON array (None if they mix text and bytes)."""
    try:
        return "[" + ",".join(cast("Sequence[str]", texts)) + "]"
    except TypeError:  # bytes, as Redis returns them
        try:
            return b"[" + b",".join(cast("Sequence[bytes]", texts)) + b"]"
        except TypeError:
            return None


REDACTED = "***"
_SECRET_WORDS = ("password", "passwd", "secret", "token", "apikey", "api_key", "credential")
_SECRET_NAMES = frozenset({"pwd", "pass", "auth", "sslpassword", "key"})


def _is_secret_parameter(name: str) -> bool:
    name = unquote_plus(name).strip().lower()
    return name in _SECRET_NAMES or any(word in name for word in _SECRET_WORDS)


def redact_url(url: str) -> str:
    """``url`` as it may be shown (errors, logs, the CLI): every credential replaced by ``***``.

    The userinfo password (``postgresql://u:pw@h``, ``redis://:pw@h``, ``rediss://user:pw@h``)
    and query parameters that carry secrets (``password``, ``passwd``, ``pwd``,
    ``sslpassword``, ``token``, ``api_key``, …, in any case) are masked; the scheme, user, host,
    port, path and other options stay, so the message still says which server it means. What
    cannot be parsed is masked whole rather than shown.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    userinfo, at, hostport = parts.netloc.rpartition("@")
    # several hosts for a cluster or Sentinel: h1:7000,h2:7001
    ports = [host.rpartition("]")[2].partition(":")[2] for host in hostport.split(",")]
    netloc = parts.netloc
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:{REDACTED}@{hostport}"
    if any(port and not port.isdigit() for port in ports):  # a password cut short by '#'…
        netloc = REDACTED
    pairs = []
    for pair in parts.query.split("&") if parts.query else ():
        name, eq, _ = pair.partition("=")
        pairs.append(f"{name}={REDACTED}" if eq and _is_secret_parameter(name) else pair)
    shown = f"{parts.scheme}:" if parts.scheme else ""
    if url[len(shown) : len(shown) + 2] == "//":  # kept even when empty: sqlite:///, unix:///
        shown += f"//{netloc}"
    shown += parts.path + (f"?{'&'.join(pairs)}" if pairs else "")
    # no store reads a fragment: whatever follows a '#' is most likely a cut password
    return shown + (f"#{REDACTED}" if parts.fragment else "")


def url_port(url: str) -> int | None:
    """The URL's port, or ``ConfigurationError`` if it is not a number from 0 to 65535."""
    try:
        return urlsplit(url).port
    except ValueError:
        port = urlsplit(url).netloc.rpartition("@")[2].rpartition(":")[2]
        raise ConfigurationError(
            f"the port {port!r} in {redact_url(url)} is not a number from 0 to 65535"
        ) from None


def seconds_option(name: str, value: str, url: str) -> float:
    """A query option holding seconds (``ttl``, ``busy_timeout``): a positive number."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise ConfigurationError(
            f"?{name}={value} in {redact_url(url)} is not a positive number of seconds"
        )
    return seconds


def take_url_options(url: str, names: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    """Split agentsession's own query options (``ttl``, ``prefix``, …) off a store URL.

    Returns the URL without them (what the driver library sees) and the options, with
    ``ttl`` as a float. A port or ``ttl`` that cannot work raises ``ConfigurationError``.
    """
    url_port(url)
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    own: dict[str, Any] = {k: v for k, v in query if k in names}
    if "ttl" in own:
        own["ttl"] = seconds_option("ttl", own["ttl"], url)
    rest = urlencode([(k, v) for k, v in query if k not in names])
    rebuilt = urlunsplit(parts._replace(query=rest))
    scheme = f"{parts.scheme}:"
    if not parts.netloc and url.startswith(scheme + "//") and not rebuilt.startswith(scheme + "//"):
        # urlunsplit writes unix:///run/redis.sock as unix:/run/redis.sock, which redis-py
        # 8.2 refuses: keep the URL's empty authority
        rebuilt = scheme + "//" + rebuilt[len(scheme) :]
    return rebuilt, own


class Store(ABC):
    """Durable home of conversations.

    Each conversation has a version counter bumped by every write; writers pass the
    version they read and a write against a newer version raises ``ConflictError``
    (that is what fences a writer whose lease expired). A turn is one ``append``:
    all of its messages land together or none do.

    Leases (``acquire``/``release``) serialise turns across processes; the engine
    adds an in-process lock on top so local waiters do not poll.
    """

    schemes: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        codec: RecordCodec | None = None,
        ttl: float | None = None,
        encryption_keys: Sequence[str | bytes] | None = None,
        create_schema: bool = True,
    ) -> None:
        """``create_schema=False`` opens an existing store only: a store that keeps a schema
        (SQLite, SQL) then raises ``StoreNotFound`` instead of creating its file or tables,
        as the read-only commands (``agentsession ls``, ``show``, ``doctor``) need."""
        self.create_schema = create_schema
        if encryption_keys:
            from .encryption import EncryptedCodec

            codec = EncryptedCodec(encryption_keys)
        self.codec = codec or RecordCodec()
        self.ttl = ttl

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Store:
        """Build the store from its URL; each backend parses what it needs."""
        return cls(**options)

    def for_loop(self) -> Store | None:
        """This store for another event loop than the one it runs on: a sync web app's
        thread reads on its own loop instead of crossing to agentsession's loop thread.

        Itself if nothing of it is bound to a loop (its calls run inline or in worker threads
        and its state is thread-safe), a twin with connections of its own if it can make one,
        or None (the default): calls then cross to the loop thread, as every write does. Only
        reads are called on a twin (``load``, ``read_messages``, ``info``, ``version``), from
        any thread; the Redis store's twin is one for all threads, on a sync client.
        """
        return None

    def is_expired(self, updated_at: float, now: float | None = None) -> bool:
        return self.ttl is not None and (now or time.time()) - updated_at > self.ttl

    @abstractmethod
    async def load(self, session_id: str) -> Conversation | None:
        """The whole conversation, or None if it does not exist (or has expired)."""

    @abstractmethod
    async def read_messages(
        self, session_id: str, start: int = 0, stop: int | None = None
    ) -> MessagePage | None:
        """The messages ``[start:stop]`` (list slice semantics: negative counts from the end)
        in one read, O(page) whatever the conversation's length; None if it does not exist."""

    @abstractmethod
    async def truncate(self, session_id: str, keep: int, expected_version: int) -> int:
        """Remove every message from index ``keep`` on and return the new version
        (``ConflictError`` if the version is not ``expected_version``). Idempotency keys of
        the removed turns are forgotten."""

    @abstractmethod
    async def info(self, session_id: str) -> SessionInfo | None:
        """The conversation's summary and metadata without its messages (O(1) in its length)."""

    @abstractmethod
    async def version(self, session_id: str) -> int | None:
        """The conversation's version, or None if it does not exist (or has expired)."""

    @abstractmethod
    async def create(self, session_id: str, metadata: Mapping[str, Any]) -> None:
        """Create an empty conversation (version 0). ``ConflictError`` if it exists."""

    @abstractmethod
    async def append(
        self, session_id: str, messages: Sequence[Message], expected_version: int
    ) -> int:
        """Append one turn atomically and return the new version.

        ``SessionNotFound`` if the conversation does not exist, ``ConflictError`` if its
        version is not ``expected_version``.
        """

    @abstractmethod
    async def set_metadata(self, session_id: str, metadata: Mapping[str, Any]) -> int:
        """Replace the metadata and return the new version."""

    @abstractmethod
    async def reset(self, session_id: str) -> int:
        """Remove every message, keep the metadata, and return the new version."""

    @abstractmethod
    async def delete(self, session_id: str) -> bool:
        """Remove the conversation; True if it existed."""

    @abstractmethod
    async def rename(self, session_id: str, new_session_id: str) -> None:
        """Move a conversation to a new id (session rotation)."""

    @abstractmethod
    async def list(self, limit: int = 100, offset: int = 0) -> list[SessionInfo]:
        """Summaries of stored conversations, most recently updated first."""

    @abstractmethod
    async def gc(self, idle_seconds: float | None = None) -> int:
        """Remove conversations idle longer than ``idle_seconds`` (default: the TTL)."""

    @abstractmethod
    async def acquire(self, session_id: str, ttl: float) -> str | None:
        """Try once to take the turn lease; return its token, or None if another holds it."""

    @abstractmethod
    async def renew(self, session_id: str, token: str, ttl: float) -> bool:
        """Extend the lease ``token`` holds to ``ttl`` seconds from now (the heartbeat of a
        running turn). False if another holder has taken it over; a lease that expired but
        that nobody took is taken again."""

    @abstractmethod
    async def release(self, session_id: str, token: str) -> None:
        """Give the lease back if ``token`` still holds it."""

    async def _release_quietly(self, session_id: str, token: str) -> None:
        """Give the lease back after a failed turn step. If the store is gone too, the lease
        simply expires, and the caller sees the error that matters rather than this one."""
        with contextlib.suppress(StoreError):
            await self.release(session_id, token)

    async def begin_turn(
        self, session_id: str, ttl: float
    ) -> tuple[str, SessionInfo | None] | None:
        """Take the lease and read the summary; None if another holds the lease.

        Stores that can do both in one round trip override this.
        """
        token = await self.acquire(session_id, ttl)
        if token is None:
            return None
        try:
            return token, await self.info(session_id)
        except BaseException:
            await self.release(session_id, token)
            raise

    @abstractmethod
    async def finish_turn(
        self,
        session_id: str,
        messages: Sequence[Message],
        expected_version: int,
        token: str,
        *,
        turn_key: TurnKey | None = None,
    ) -> int:
        """Append one turn and release its lease, atomically, and return the new version.

        Fenced twice: ``ConflictError`` if the version is not ``expected_version``, and
        ``LeaseLost`` if another holder has taken the lease over from ``token``; either way
        nothing is written. ``turn_key`` records the turn under its idempotency key (see
        ``find_turn``). The lease is released whatever happens.
        """

    @abstractmethod
    async def find_turn(self, session_id: str, key: str) -> StoredTurn | None:
        """The turn recorded under idempotency ``key``, or None (never recorded, or forgotten:
        see ``TURN_KEYS_KEPT`` and ``TURN_KEY_TTL``)."""

    @abstractmethod
    async def journal_write(
        self, session_id: str, turn_id: str, first_seq: int, events: Sequence[Mapping[str, Any]]
    ) -> None:
        """Record a streamed turn's events ``first_seq``, ``first_seq + 1``, … in the
        conversation's journal. ``first_seq == 0`` starts the journal of a new turn, replacing
        the previous one; events for another turn than the journal's are dropped. The journal
        expires ``JOURNAL_TTL`` seconds after its last write."""

    @abstractmethod
    async def journal_read(self, session_id: str, after: int = -1) -> JournalPage | None:
        """The journal's events with ``seq > after``, or None if there is no journal."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers."""

    async def close(self) -> None:
        """Release connections. The store may not be used afterwards."""
