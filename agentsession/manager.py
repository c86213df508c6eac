"""The session engine: one persistent conversation per id, over any store and AutoGen family.

``AsyncSessionManager`` is the engine. ``SessionManager`` is its sync face: the same methods,
run on one long-lived loop thread (``agentsession._loop``), so no logic is written twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import random
import secrets
import threading
import time
import weakref
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, TypeVar

from . import _loop
from ._cache import AgentCache, HistoryCache, LiveAgent
from ._claims import Claims
from ._heartbeat import Heartbeat
from ._journal import JournalWriter, replay
from .errors import (
    AgentSessionError,
    ConflictError,
    ConversationFull,
    FamilyError,
    IdempotencyKeyReused,
    InvalidInput,
    LeaseLost,
    MessageTooLarge,
    OutcomeUnknown,
    OwnerMismatch,
    SessionBusy,
    SessionNotFound,
    StoreUnavailable,
)
from .families import Driver, driver_for
from .messages import Image, Message
from .observe import Observer, StoreCall, TurnRecord, session_digest
from .stores import Conversation, SessionInfo, Store, TurnKey, open_store
from .turns import Emit, MessageEvent, TextDelta, Turn, TurnEnd, TurnEvent, TurnStart, ignore

logger = logging.getLogger("agentsession")

T = TypeVar("T")
_timeout = getattr(asyncio, "timeout", None)

DEFAULT_STORE_URL = "sqlite:///agentsession.db"
EXPORT_FORMAT = "agentsession.conversation"
EXPORT_VERSION = 1
MAX_SESSION_ID_LENGTH = 128
"""Characters; at most 512 bytes of UTF-8, the width of the SQL stores' key column."""
MAX_IDEMPOTENCY_KEY_LENGTH = 255
OWNER_KEY = "agentsession.owner"
"""The metadata key holding the user a conversation is bound to (see ``owner=``)."""


class _AnyOwner:
    def __repr__(self) -> str:
        return "ANY_OWNER"


ANY_OWNER: Final = _AnyOwner()
"""``owner=`` default: the caller is trusted with any conversation (no owner check)."""

Owner = str | None | _AnyOwner
"""Who asks: a user id, ``None`` (an anonymous user) or ``ANY_OWNER`` (no check)."""


@dataclass(frozen=True, slots=True)
class SessionContext:
    """What an agent factory is told about the conversation it builds an agent for."""

    id: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


AgentFactory = Callable[..., Any | Awaitable[Any]]
"""``factory(context: SessionContext) -> agent`` or ``factory() -> agent``; may be async."""


def new_session_id() -> str:
    """An unguessable conversation id: 160 bits from ``secrets``, as hex.

    Hex, not url-safe base64: an id starting with "-" would read as an option on a command line.
    """
    return secrets.token_hex(20)


def check_session_id(session_id: object) -> str:
    """Return ``session_id`` if every store can hold it; raise ``InvalidInput`` if not.

    A session id is a non-empty ``str`` of at most ``MAX_SESSION_ID_LENGTH`` characters, with
    no NUL (PostgreSQL refuses it in text) and no lone surrogate (it has no UTF-8 encoding).
    """
    _utf8(session_id, "a session id")
    assert isinstance(session_id, str)
    if not session_id:
        raise InvalidInput("a session id must not be empty")
    if len(session_id) > MAX_SESSION_ID_LENGTH:
        raise InvalidInput(
            f"a session id is at most {MAX_SESSION_ID_LENGTH} characters; "
            f"this one has {len(session_id)}"
        )
    if "\x00" in session_id:
        raise InvalidInput("a session id must not contain NUL characters")
    return session_id


def _utf8(text: object, what: str) -> bytes:
    """``text`` as UTF-8, or ``InvalidInput`` if it is not a ``str`` that has an encoding."""
    if not isinstance(text, str):
        raise InvalidInput(f"{what} must be a str, not {type(text).__name__}")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            f"{what} is not valid text: a lone surrogate at position {exc.start}"
        ) from None


def check_owner(session_id: str, metadata: Mapping[str, Any], owner: Owner) -> None:
    """``OwnerMismatch`` unless ``owner`` may use a conversation with this metadata: an unowned
    conversation is anyone's, an owned one its owner's alone."""
    stored = metadata.get(OWNER_KEY)
    if stored is not None and not isinstance(owner, _AnyOwner) and stored != owner:
        raise OwnerMismatch(session_id)


def _digest(text: str, sender: str, images: Sequence[Image] = ()) -> str:
    digest = hashlib.sha256(f"{sender}\x00{text}".encode("utf-8", "surrogatepass"))
    for image in images:
        digest.update(image.data or (image.url or "").encode())
    return digest.hexdigest()[:32]


def _turn_key(
    key: str | None, text: str, sender: str, images: Sequence[Image] = ()
) -> TurnKey | None:
    if key is None:
        return None
    _utf8(key, "an idempotency key")
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise InvalidInput(
            f"an idempotency key is 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters; "
            f"this one has {len(key)}"
        )
    return TurnKey(key, _digest(text, sender, images))


def _factory_takes_context(factory: AgentFactory) -> bool:
    """Does ``factory`` want the ``SessionContext`` (passed as its first argument)? Only if its
    first positional parameter is required, or named or annotated as the context: a factory
    whose parameters all have defaults (``build_agent(name="assistant")``) is called bare."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # some builtins and C callables have no signature
        return True
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    first = next(
        (p for p in signature.parameters.values() if p.kind in (*kinds, p.VAR_POSITIONAL)), None
    )
    if first is None:
        return False
    annotation = getattr(first.annotation, "__name__", first.annotation)  # a str if postponed
    if first.name in ("context", "ctx") or "SessionContext" in str(annotation):
        return True
    return first.kind in kinds and first.default is first.empty


class AsyncSessionManager:
    """Hands out persistent sessions; the async engine.

    ``factory`` builds a fresh agent (or legacy ``(user_proxy, assistant)`` pair); the
    manager loads the stored history into it, runs the turn and appends the turn's
    messages to the store. Turns on one conversation are serialised (an in-process lock
    plus a lease in the store, so across processes too). Live agents are cached, bounded
    by ``cache_size``, and reused only while the store's version still matches.
    Whole histories read with ``history()`` are kept too, up to ``history_cache`` messages
    in all: reading one again reads only what changed since (0 turns that off).

    Use one ``AsyncSessionManager`` per event loop.
    """

    def __init__(
        self,
        factory: AgentFactory,
        store: Store | str = DEFAULT_STORE_URL,
        *,
        cache_size: int = 256,
        history_cache: int = 100_000,
        lock_timeout: float = 2.0,
        lease_ttl: float = 6.0,
        max_message_bytes: int = 64 * 1024,
        max_image_bytes: int = 5 * 1024 * 1024,
        max_messages: int | None = None,
        sender: str = "user",
        observer: Observer | Sequence[Observer] | None = None,
    ) -> None:
        self.factory = factory
        self._observers: tuple[Observer, ...] = (
            ()
            if observer is None
            else (observer,)
            if isinstance(observer, Observer)
            else tuple(observer)
        )
        self.max_image_bytes = max_image_bytes
        self.store = open_store(store) if isinstance(store, str) else store
        self.lock_timeout = lock_timeout
        self.lease_ttl = lease_ttl
        self.max_message_bytes = max_message_bytes
        self.max_messages = max_messages
        self.sender = sender
        self._factory_takes_context = _factory_takes_context(factory)
        self._cache = AgentCache(cache_size)
        self._histories = HistoryCache(history_cache)
        # the store's twins for sync callers' own loops (``read_here``), None where it has none
        self._twins: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Store | None] = (
            weakref.WeakKeyDictionary()
        )
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        # streamed turns whose reader left, and the tasks that journal them
        self._background: set[asyncio.Future[Turn]] = set()
        self._followers: set[asyncio.Future[None]] = set()
        self._claims = Claims()

    def session(self, session_id: str | None = None) -> AsyncSession:
        """The session ``session_id`` (created in the store on its first write), or a new one.

        Raises ``InvalidInput`` for an id no store can hold (see ``check_session_id``).
        """
        if session_id is None:
            return AsyncSession(self, new_session_id())
        return AsyncSession(self, check_session_id(session_id))

    # -- turns -----------------------------------------------------------------------

    async def send(
        self,
        session_id: str,
        text: str,
        *,
        sender: str | None = None,
        idempotency_key: str | None = None,
        images: Sequence[Image] = (),
        owner: Owner = ANY_OWNER,
        create: bool = True,
    ) -> str:
        """Run one user turn and return the reply text (see ``run_turn`` for the options)."""
        turn = await self._turn(
            session_id, text, sender, ignore, idempotency_key, owner, create, images
        )
        return turn.reply

    async def run_turn(
        self,
        session_id: str,
        text: str,
        *,
        sender: str | None = None,
        idempotency_key: str | None = None,
        images: Sequence[Image] = (),
        owner: Owner = ANY_OWNER,
        create: bool = True,
    ) -> Turn:
        """Run one user turn and return the ``Turn``: every message it added, the reply last.

        ``idempotency_key``: a retry with the same key returns the recorded turn (``replayed``)
        instead of running the model again; the same key with another message raises
        ``IdempotencyKeyReused``. ``owner``: the user asking (``None`` for an anonymous one);
        an owned conversation refuses anyone else with ``OwnerMismatch``, an unowned one is
        bound to the first user that writes to it. ``create=False``: ``SessionNotFound``
        instead of creating a conversation that does not exist (a deleted or rotated id).
        """
        return await self._turn(
            session_id, text, sender, ignore, idempotency_key, owner, create, images
        )

    async def stream(
        self,
        session_id: str,
        text: str,
        *,
        sender: str | None = None,
        idempotency_key: str | None = None,
        images: Sequence[Image] = (),
        owner: Owner = ANY_OWNER,
        create: bool = True,
        journal: bool = True,
        on_disconnect: Literal["finish", "cancel"] = "finish",
    ) -> AsyncIterator[TurnEvent]:
        """Run one user turn, yielding its events as they happen: ``TurnStart``, then
        ``TextDelta``s and ``MessageEvent``s, and ``TurnEnd`` last.

        The same turn as ``run_turn`` (same options, locks, leases, limits, one record at its
        end). With ``journal`` its events also go to the store, numbered by their ``seq``, so a
        reader that reconnects, to any worker, catches up with ``resume``. A reader that stops
        early does not stop the turn (``on_disconnect="finish"``): it completes and is stored,
        and its journal goes on; with ``"cancel"`` it is cancelled and nothing of it is stored.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[TurnStart | TextDelta | MessageEvent | None] = asyncio.Queue()
        thread = threading.get_ident()

        def emit(event: TurnStart | TextDelta | MessageEvent) -> None:
            if threading.get_ident() == thread:
                queue.put_nowait(event)
            else:  # a driver's worker thread (the legacy family runs turns in one)
                loop.call_soon_threadsafe(queue.put_nowait, event)

        turn_id = secrets.token_hex(8)
        writer = JournalWriter(self.store, session_id, turn_id) if journal else None
        seq = 0

        def numbered(event: TurnEvent) -> TurnEvent:
            nonlocal seq
            event = replace(event, turn_id=turn_id, seq=seq)
            if writer is None or writer.add(event.to_dict()):
                seq += 1
            return event

        task = asyncio.ensure_future(
            self._turn(session_id, text, sender, emit, idempotency_key, owner, create, images)
        )
        # the sentinel is queued after every event the turn emitted, thread-emitted ones too
        task.add_done_callback(lambda _: queue.put_nowait(None))
        drained = finished = False
        try:
            while (event := await queue.get()) is not None:
                yield numbered(event)
            drained = True
            yield numbered(TurnEnd(task.result()))
            finished = True
        finally:
            if not finished:
                if not task.done():
                    if on_disconnect == "cancel":
                        task.cancel()
                    self._background.add(task)
                    task.add_done_callback(self._background.discard)
                    task.add_done_callback(_log_background_failure)
                if writer is not None:  # readers that come back learn how the turn ended
                    self._follow(task, None if drained else queue, numbered, writer)
            elif writer is not None:
                await writer.close()

    def _follow(
        self,
        task: asyncio.Future[Turn],
        queue: asyncio.Queue[TurnStart | TextDelta | MessageEvent | None] | None,
        numbered: Callable[[TurnEvent], TurnEvent],
        writer: JournalWriter,
    ) -> None:
        """Journal the rest of a streamed turn whose reader left (or that failed), and how it
        ended."""

        async def drain() -> None:
            while queue is not None and (event := await queue.get()) is not None:
                numbered(event)
            await asyncio.wait([task])
            if task.cancelled():
                writer.add({"type": "error", "seq": writer.next_seq, "code": "cancelled",
                            "detail": "was cancelled; nothing of it was recorded"})  # fmt: skip
            elif task.exception() is not None:
                writer.add({"type": "error", "seq": writer.next_seq, "code": "failed",
                            "detail": "failed; nothing of it was recorded"})  # fmt: skip
            else:
                numbered(TurnEnd(task.result()))
            await writer.close()

        follower = asyncio.ensure_future(drain())
        self._followers.add(follower)
        follower.add_done_callback(self._followers.discard)

    async def resume(
        self, session_id: str, after: int = -1, *, turn_id: str | None = None
    ) -> AsyncIterator[TurnEvent]:
        """The events of the conversation's latest streamed turn with ``seq > after``, then the
        rest as they happen, until its ``TurnEnd``: what a reader that lost its connection
        missed, from any worker. ``StreamInterrupted`` if that turn failed, was cancelled or
        its worker died (nothing of it was recorded), or there is no journal to follow. With
        ``turn_id`` (the turn the reader followed), a newer turn's journal is replayed whole."""
        check_session_id(session_id)
        async for event in replay(self.store, session_id, after, turn_id):
            yield event

    async def _turn(
        self,
        session_id: str,
        text: str,
        sender: str | None,
        emit: Emit,
        idempotency_key: str | None = None,
        owner: Owner = ANY_OWNER,
        create: bool = True,
        images: Sequence[Image] = (),
    ) -> Turn:
        """The one turn mechanism behind ``send``, ``run_turn`` and ``stream``."""
        run = self._run_turn(session_id, text, sender, emit, idempotency_key, owner, create, images)
        if not self._observers:
            return await run
        watch = _Watch(self._observers, session_digest(check_session_id(session_id)))
        reset = _watching.set(watch)
        try:
            turn = await run
        except BaseException as exc:
            watch.finish(_outcome(exc), 0, type(exc).__name__)
            raise
        finally:
            _watching.reset(reset)
        watch.finish("replayed" if turn.replayed else "ok", 0 if turn.replayed else len(turn))
        return turn

    async def _run_turn(
        self,
        session_id: str,
        text: str,
        sender: str | None,
        emit: Emit,
        idempotency_key: str | None,
        owner: Owner,
        create: bool,
        images: Sequence[Image],
    ) -> Turn:
        check_session_id(session_id)
        size = len(_utf8(text, "the message"))
        if size > self.max_message_bytes:
            raise MessageTooLarge(
                f"the message is {size} bytes; the limit is {self.max_message_bytes} "
                "(max_message_bytes)"
            )
        pictures = sum(image.size for image in images)
        if pictures > self.max_image_bytes:
            raise MessageTooLarge(
                f"the message's images are {pictures} bytes; the limit is "
                f"{self.max_image_bytes} (max_image_bytes)"
            )
        speaker = sender or self.sender
        turn_key = _turn_key(idempotency_key, text, speaker, images)
        watch = _watching.get()
        async with self._local_lock(session_id):
            token, info = await self._begin_turn(session_id)
            if watch is not None:
                watch.leased()
            released = False
            try:
                if info is not None:
                    check_owner(session_id, info.metadata, owner)
                    if turn_key is not None:
                        replayed = await self._replay(session_id, turn_key)
                        if replayed is not None:
                            emit(TurnStart(session_id))
                            for message in replayed:
                                emit(MessageEvent(message))
                            return replayed  # the finally gives the lease back
                    version, count = info.version, info.message_count
                    live = self._cache.take(session_id)
                    agent = "cached" if live is not None else "rebuilt"
                    if live is not None and live.version != version:
                        live = await self._catch_up(session_id, live, info)
                        agent = "caught_up" if live is not None else "rebuilt"
                    metadata: Mapping[str, Any] = info.metadata
                    if isinstance(owner, str) and metadata.get(OWNER_KEY) is None:
                        # an anonymous conversation's first user: bound under the lease, so
                        # no other user's turn can slip in between the check and the write
                        metadata = {**metadata, OWNER_KEY: owner}
                        version = await self._observed(
                            self.store.set_metadata(session_id, metadata)
                        )
                elif not create:
                    raise SessionNotFound(session_id)
                else:
                    metadata = {OWNER_KEY: owner} if isinstance(owner, str) else {}
                    await self._observed(self.store.create(session_id, metadata))
                    version, count, live, agent = 0, 0, None, "new"
                if self.max_messages is not None and count + 2 > self.max_messages:
                    raise ConversationFull(
                        f"session {session_id!r} holds {count} messages; the limit is "
                        f"{self.max_messages} (max_messages). Reset it or start a new session."
                    )
                if watch is not None:
                    watch.agent = agent
                emit(TurnStart(session_id))
                driver = live.driver if live is not None else None
                async with Heartbeat(self.store, session_id, token, self.lease_ttl) as heartbeat:
                    if driver is None:
                        driver = await self._build(session_id, metadata, version)
                    turn = await driver.run_turn(text, speaker, emit, images=images)
                if not turn.messages:
                    raise FamilyError(f"the {type(driver).__name__} turn added no messages")
                if self.max_messages is not None and count + len(turn) > self.max_messages:
                    raise ConversationFull(
                        f"session {session_id!r}: this turn's {len(turn)} messages would take "
                        f"it past {self.max_messages} (max_messages); it was not recorded"
                    )
                if heartbeat.lost:
                    raise LeaseLost(f"session {session_id!r}: another turn took over the lease")
                released = True  # finish_turn releases the lease whatever happens
                new_version = await self._observed(
                    self.store.finish_turn(
                        session_id, turn.messages, version, token, turn_key=turn_key
                    )
                )
            finally:
                if not released:
                    await self._observed(self.store.release(session_id, token))
            live = LiveAgent(
                driver, new_version, count + len(turn.messages), metadata, turn.messages[-1]
            )
            await self._cache_put(session_id, live)
            return turn

    async def _replay(self, session_id: str, turn_key: TurnKey) -> Turn | None:
        """The turn recorded under ``turn_key``, or None if there is none."""
        stored = await self._observed(self.store.find_turn(session_id, turn_key.key))
        if stored is None:
            return None
        if stored.digest != turn_key.digest:
            raise IdempotencyKeyReused(
                f"idempotency key {turn_key.key!r} already recorded a turn with another "
                "message; use a new key for a new message"
            )
        return Turn(tuple(stored.messages), replayed=True)

    async def _build(self, session_id: str, metadata: Mapping[str, Any], version: int) -> Driver:
        context = SessionContext(session_id, metadata)
        built = self.factory(context) if self._factory_takes_context else self.factory()
        agent = await built if inspect.isawaitable(built) else built
        driver = driver_for(agent)
        self._claims.claim(session_id, tuple(driver.parts()))
        if version:
            conversation = await self._observed(self.store.load(session_id))
            if conversation is None:
                raise SessionNotFound(session_id)
            if conversation.version != version:
                raise ConflictError(f"session {session_id!r} changed while it was being loaded")
            await driver.import_history(conversation.messages)
        return driver

    async def _catch_up(
        self, session_id: str, live: LiveAgent, info: SessionInfo
    ) -> LiveAgent | None:
        """The cached agent brought up to date with the turns other processes recorded since
        it last ran, reading only those; None if anything but appends happened since, or its
        driver cannot catch up: the turn then builds a new agent (the stale one is dropped, as
        a mismatched agent always was, not closed).

        Behind a load balancer a conversation's turns move between workers, so this is the
        common case: a worker's agent is a few turns behind, not lost.
        """
        known = live.message_count
        page = None
        if (
            info.version > live.version
            and info.message_count >= known
            and dict(info.metadata) == dict(live.metadata)
        ):
            # from the last message this agent knows: if the store still holds that one where
            # it was, nothing was truncated, reset or replaced in between, only appended
            page = await self._observed(self.store.read_messages(session_id, max(known - 1, 0)))
        if (
            page is not None
            and page.version == info.version
            and page.total == info.message_count
            and (known == 0 or (page.messages and page.messages[0] == live.last))
        ):
            added = page.messages[1:] if known else page.messages
            try:
                caught_up = await live.driver.extend_history(added) if added else True
            except Exception:
                logger.warning(
                    "session %r: the cached agent could not catch up; building a new one",
                    session_id,
                    exc_info=True,
                )
                caught_up = False
            if caught_up:
                last = added[-1] if added else live.last
                return LiveAgent(live.driver, info.version, page.total, live.metadata, last)
        return None

    async def _observed(self, call: Coroutine[Any, Any, T]) -> T:
        """Await a store call, reporting it to the observers (named after the store method)."""
        if not self._observers:
            return await call
        operation = call.cr_code.co_name if inspect.iscoroutine(call) else "store"
        start = time.perf_counter()
        try:
            result = await call
        except BaseException as exc:
            _report_call(
                self._observers,
                StoreCall(operation, time.perf_counter() - start, type(exc).__name__),
            )
            raise
        _report_call(self._observers, StoreCall(operation, time.perf_counter() - start))
        return result

    async def _cache_put(self, session_id: str, live: LiveAgent) -> None:
        evicted = self._cache.put(session_id, live)
        for agent in evicted:
            task = asyncio.ensure_future(agent.driver.close())
            task.add_done_callback(_log_close_failure)
        if evicted:
            # a turn may never yield to the loop (an inline SQLite or memory store, an offline
            # model): without this, a loop of such turns piles up unstarted close() tasks,
            # each holding its evicted agent
            await asyncio.sleep(0)

    @asynccontextmanager
    async def _local_lock(self, session_id: str) -> AsyncIterator[None]:
        """In-process serialisation, so local waiters queue instead of polling the store."""
        lock = self._locks.get(session_id)
        if lock is None:
            lock = self._locks[session_id] = asyncio.Lock()
        try:
            if _timeout is not None:  # Python 3.11+: a timer, not a task per acquire
                async with _timeout(self.lock_timeout):
                    await lock.acquire()
            else:  # pragma: no cover - Python 3.10
                await asyncio.wait_for(lock.acquire(), self.lock_timeout)
        except asyncio.TimeoutError:
            raise SessionBusy(session_id, self.lock_timeout) from None
        try:
            yield
        finally:
            lock.release()

    async def _begin_turn(self, session_id: str) -> tuple[str, SessionInfo | None]:
        """Take the store lease (across processes), polling with backoff up to ``lock_timeout``."""
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.002
        while (
            begun := await self._observed(self.store.begin_turn(session_id, self.lease_ttl))
        ) is None:
            if time.monotonic() >= deadline:
                raise SessionBusy(session_id, self.lock_timeout)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.1)
        return begun

    @asynccontextmanager
    async def _turn_lock(self, session_id: str) -> AsyncIterator[SessionInfo | None]:
        """Both locks, for operations other than turns (metadata, reset, delete, rotate);
        yields the conversation's summary as read under them."""
        async with self._local_lock(session_id):
            token, info = await self._begin_turn(session_id)
            try:
                yield info
            finally:
                await self._observed(self.store.release(session_id, token))

    # -- reading and housekeeping ----------------------------------------------------

    def read_here(self, coro: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run a read (``history``, ``load``, ``info``, ``metadata``, ``exists``) for a sync
        caller: on the calling thread's own loop when the store can run there
        (``Store.for_loop``), else on the loop thread like every other call."""
        loop = _loop.here()
        if loop not in self._twins:
            self._twins[loop] = self.store.for_loop()
        if self._twins[loop] is None:
            return _loop.run(coro())
        return _loop.run_here(coro())

    def _reader(self) -> Store:
        """The store a read goes to: the manager's own, or its twin on a sync caller's loop."""
        loop = asyncio.get_running_loop()
        if not _loop.is_here(loop):
            return self.store
        twin = self._twins.get(loop)
        return self.store if twin is None else twin

    async def history(
        self, session_id: str, *, limit: int | None = None, before: int | None = None
    ) -> list[Message]:
        """The conversation's messages, oldest first; with ``limit``, a page of at most that
        many ending just before message index ``before`` (default: the newest). One store read,
        O(page): ``history(limit=20)`` is the last 20 messages, ``history(limit=20, before=n)``
        the 20 before index ``n``."""
        if limit is None and before is None:
            found = await self.whole_history(check_session_id(session_id))
            return [] if found is None else found[0]
        check_session_id(session_id)
        if (limit is not None and limit < 0) or (before is not None and before < 0):
            raise InvalidInput("limit and before count messages: they are zero or more")
        if limit == 0:
            return []
        if before is None:
            start, stop = (0 if limit is None else -limit), None
        else:
            start, stop = (0 if limit is None else max(0, before - limit)), before
        page = await self._observed(self._reader().read_messages(session_id, start, stop))
        return [] if page is None else page.messages

    async def whole_history(
        self, session_id: str, *, with_metadata: bool = False
    ) -> tuple[list[Message], Mapping[str, Any] | None] | None:
        """The whole history and, ``with_metadata``, the metadata (else None), or None if
        there is no such conversation. For the adapters: a request adopting a session id
        checks its owner and reads its history in one small read when nothing changed.

        A history is read once and then kept up to date by reading only what changed: the
        store's version and the messages from the last one cached on, in one small read. If
        that last message is no longer where it was (a turn was popped, the conversation
        truncated, cleared or replaced), it is read whole again. The small read does not carry
        the metadata: asked for after a change, it is read from the summary (``info``) and
        used if that is still at the same version (else the conversation is read whole).
        """
        reader = self._reader()
        cached = self._histories.get(session_id)
        if cached is not None:
            version, known, metadata = cached
            page = await self._observed(reader.read_messages(session_id, len(known) - 1))
            if page is None:
                self._histories.discard(session_id)
                return None
            if page.start == len(known) - 1 and page.messages and page.messages[0] == known[-1]:
                if page.version == version and (metadata is not None or not with_metadata):
                    return list(known), metadata
                caught_up = (*known, *page.messages[1:])
                metadata = None
                if with_metadata:
                    info = await self._observed(reader.info(session_id))
                    metadata = info.metadata if info and info.version == page.version else None
                if metadata is not None or not with_metadata:
                    self._histories.put(session_id, page.version, caught_up, metadata)
                    return list(caught_up), metadata
        conversation = await self._observed(reader.load(session_id))
        if conversation is None:
            self._histories.discard(session_id)
            return None
        messages, stored = conversation.messages, conversation.metadata
        if messages:  # an empty one costs as little to read as to check
            self._histories.put(session_id, conversation.version, tuple(messages), stored)
        return messages, (stored if with_metadata else None)

    async def pop_turn(self, session_id: str, *, owner: Owner = ANY_OWNER) -> list[Message]:
        """Undo the last turn: remove the last user message and everything after it, and
        return what was removed (empty if there is no user message)."""
        check_session_id(session_id)
        async with self._turn_lock(session_id) as info:
            if info is None:
                return []
            check_owner(session_id, info.metadata, owner)
            self._cache.discard(session_id)
            stop: int | None = None
            while True:  # pages back from the end until the turn's user message
                page = await self._observed(
                    self.store.read_messages(
                        session_id, -64 if stop is None else max(0, stop - 64), stop
                    )
                )
                if page is None:
                    return []
                for index in range(len(page.messages) - 1, -1, -1):
                    if page.messages[index].role == "user":
                        keep = page.start + index
                        removed = await self._observed(
                            self.store.read_messages(session_id, keep, None)
                        )
                        await self._observed(self.store.truncate(session_id, keep, info.version))
                        return [] if removed is None else removed.messages
                if page.start == 0:
                    return []
                stop = page.start

    async def append(
        self,
        session_id: str,
        messages: Sequence[Message],
        *,
        owner: Owner = ANY_OWNER,
        create: bool = True,
    ) -> None:
        """Record messages without running the agent (seeding a conversation, importing one,
        a human taking over); the next turn's agent sees them."""
        check_session_id(session_id)
        if not messages:
            return
        for message in messages:
            if message.content is not None:
                _utf8(message.content, "a message's content")
        async with self._turn_lock(session_id) as info:
            if info is None:
                if not create:
                    raise SessionNotFound(session_id)
                metadata = {OWNER_KEY: owner} if isinstance(owner, str) else {}
                await self._observed(self.store.create(session_id, metadata))
                version, count = 0, 0
            else:
                check_owner(session_id, info.metadata, owner)
                version, count = info.version, info.message_count
            if self.max_messages is not None and count + len(messages) > self.max_messages:
                raise ConversationFull(
                    f"session {session_id!r} holds {count} messages; the limit is "
                    f"{self.max_messages} (max_messages)"
                )
            self._cache.discard(session_id)
            await self._observed(self.store.append(session_id, messages, version))

    async def info(self, session_id: str) -> SessionInfo | None:
        check_session_id(session_id)
        return await self._observed(self._reader().info(session_id))

    async def load(self, session_id: str) -> Conversation | None:
        """The stored conversation (messages, metadata, version) in one read, or None."""
        check_session_id(session_id)
        return await self._observed(self._reader().load(session_id))

    async def metadata(self, session_id: str) -> dict[str, Any]:
        check_session_id(session_id)
        info = await self._observed(self._reader().info(session_id))
        return {} if info is None else dict(info.metadata)

    async def set_metadata(
        self,
        session_id: str,
        metadata: Mapping[str, Any],
        *,
        owner: Owner = ANY_OWNER,
        create: bool = True,
    ) -> None:
        """Replace the metadata (creating the conversation unless ``create=False``).

        With an ``owner`` (see ``run_turn``) the owner key is the conversation's own: it
        cannot be set or changed through the metadata, only bound.
        """
        check_session_id(session_id)
        async with self._turn_lock(session_id) as info:
            if info is not None:
                check_owner(session_id, info.metadata, owner)
            elif not create:
                raise SessionNotFound(session_id)
            if not isinstance(owner, _AnyOwner):
                metadata = {k: v for k, v in metadata.items() if k != OWNER_KEY}
                stored = None if info is None else info.metadata.get(OWNER_KEY)
                if stored is not None or owner is not None:
                    metadata[OWNER_KEY] = stored if stored is not None else owner
            if info is None:
                await self._observed(self.store.create(session_id, metadata))
            else:
                await self._observed(self.store.set_metadata(session_id, metadata))
            # the factory may read metadata: the next turn rebuilds the agent
            self._cache.discard(session_id)

    async def exists(self, session_id: str) -> bool:
        check_session_id(session_id)
        return await self._observed(self._reader().version(session_id)) is not None

    async def reset(self, session_id: str, *, owner: Owner = ANY_OWNER) -> None:
        """Forget the messages, keep the id and the metadata."""
        check_session_id(session_id)
        async with self._turn_lock(session_id) as info:
            self._cache.discard(session_id)
            self._histories.discard(session_id)
            if info is not None:
                check_owner(session_id, info.metadata, owner)
                await self._observed(self.store.reset(session_id))

    async def delete(self, session_id: str, *, owner: Owner = ANY_OWNER) -> bool:
        check_session_id(session_id)
        async with self._turn_lock(session_id) as info:
            self._cache.discard(session_id)
            self._histories.discard(session_id)
            if info is not None:
                check_owner(session_id, info.metadata, owner)
            return await self._observed(self.store.delete(session_id))

    async def rotate(self, session_id: str, *, owner: Owner = ANY_OWNER) -> str:
        """Move the conversation to a fresh id and return that id; call it at login.

        With an ``owner`` (a user id) the conversation is also bound to that user, before it
        moves: whoever held the old id (a token copied before login) is locked out.
        """
        check_session_id(session_id)
        new_id = new_session_id()
        async with self._turn_lock(session_id) as info:
            self._cache.discard(session_id)
            self._histories.discard(session_id)
            if info is not None:
                check_owner(session_id, info.metadata, owner)
                if isinstance(owner, str) and info.metadata.get(OWNER_KEY) is None:
                    await self._observed(
                        self.store.set_metadata(session_id, {**info.metadata, OWNER_KEY: owner})
                    )
                await self._observed(self.store.rename(session_id, new_id))
        return new_id

    async def list(self, limit: int = 100, offset: int = 0) -> list[SessionInfo]:
        return await self._observed(self.store.list(limit=limit, offset=offset))

    async def gc(self, idle_seconds: float | None = None) -> int:
        return await self._observed(self.store.gc(idle_seconds))

    async def export(self, session_id: str) -> dict[str, Any]:
        """The conversation as a version-neutral JSON document (``agentsession import`` reads it)."""
        conversation = await self.load(session_id)
        if conversation is None:
            raise SessionNotFound(session_id)
        return {
            "format": EXPORT_FORMAT,
            "v": EXPORT_VERSION,
            "session_id": session_id,
            "metadata": conversation.metadata,
            "created_at": conversation.created_at,
            "updated_at": conversation.updated_at,
            "messages": [m.to_dict() for m in conversation.messages],
        }

    async def import_(self, document: Mapping[str, Any], session_id: str | None = None) -> str:
        """Store an exported conversation under ``session_id`` (default: its own id)."""
        if document.get("format") != EXPORT_FORMAT or document.get("v") != EXPORT_VERSION:
            raise ValueError(
                f"not an agentsession export (format {EXPORT_FORMAT!r} v{EXPORT_VERSION})"
            )
        target = check_session_id(document.get("session_id") if session_id is None else session_id)
        messages = [Message.from_dict(m, target) for m in document.get("messages", [])]
        async with self._turn_lock(target):
            self._cache.discard(target)
            await self._observed(self.store.create(target, document.get("metadata", {})))
            if messages:
                await self._observed(self.store.append(target, messages, 0))
        return target

    async def ping(self) -> None:
        await self._observed(self.store.ping())

    async def aclose(self) -> None:
        # streamed turns whose readers left finish, and journal their end, before the store goes
        await asyncio.gather(*self._background, return_exceptions=True)
        await asyncio.gather(*self._followers, return_exceptions=True)
        for live in self._cache.drain():
            await live.driver.close()
        await self.store.close()

    async def __aenter__(self) -> AsyncSessionManager:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


_watching: ContextVar[_Watch | None] = ContextVar("agentsession_turn", default=None)


class _Watch:
    """One observed turn: what its observers returned from ``turn_started``, and its timings."""

    __slots__ = ("agent", "observers", "session", "start", "tokens", "wait")

    def __init__(self, observers: tuple[Observer, ...], session: str) -> None:
        self.observers, self.session, self.agent = observers, session, ""
        self.wait: float | None = None
        self.start = time.perf_counter()
        self.tokens = [_safely(o.turn_started, session) for o in observers]

    def leased(self) -> None:
        self.wait = time.perf_counter() - self.start

    def finish(self, outcome: str, messages: int, error: str | None = None) -> None:
        elapsed = time.perf_counter() - self.start
        # a busy turn waited for the locks all along; others that never got them, not at all
        wait = self.wait if self.wait is not None else elapsed if outcome == "busy" else 0.0
        record = TurnRecord(self.session, outcome, self.agent, wait, elapsed, messages, error)
        for observer, token in zip(self.observers, self.tokens, strict=True):
            _safely(observer.turn_finished, record, token)


def _report_call(observers: tuple[Observer, ...], call: StoreCall) -> None:
    watch = _watching.get()
    for index, observer in enumerate(observers):
        token = watch.tokens[index] if watch is not None and watch.observers is observers else None
        _safely(observer.store_call, call, token)


def _safely(hook: Callable[..., T], *args: Any) -> T | None:
    try:
        return hook(*args)
    except Exception:
        logger.exception(
            "an agentsession observer failed (%s)", getattr(hook, "__qualname__", hook)
        )
        return None


def _outcome(exc: BaseException) -> str:
    """A turn's exception as a ``TurnRecord.outcome``."""
    kinds: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
        (SessionBusy, "busy"),
        (OutcomeUnknown, "outcome_unknown"),
        (StoreUnavailable, "store_unavailable"),
        (LeaseLost, "lease_lost"),
        (ConflictError, "conflict"),
        (FamilyError, "agent_error"),
        (asyncio.CancelledError, "cancelled"),
        (AgentSessionError, "refused"),
    )
    return next((name for kind, name in kinds if isinstance(exc, kind)), "error")


def _log_close_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("closing an evicted agent failed: %r", task.exception())


def _log_background_failure(task: asyncio.Future[Turn]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("a streamed turn whose reader left failed: %r", task.exception())


class AsyncSession:
    """One conversation, bound to its manager. Cheap to create; holds no state of its own."""

    def __init__(self, manager: AsyncSessionManager, session_id: str) -> None:
        self.manager = manager
        self.id = session_id

    def __repr__(self) -> str:
        return f"<AsyncSession {self.id[:6]}…>"

    async def send(
        self,
        text: str,
        *,
        sender: str | None = None,
        idempotency_key: str | None = None,
        images: Sequence[Image] = (),
    ) -> str:
        return await self.manager.send(
            self.id, text, sender=sender, idempotency_key=idempotency_key, images=images
        )

    async def run_turn(
        self,
        text: str,
        *,
        sender: str | None = None,
        idempotency_key: str | None = None,
        images: Sequence[Image] = (),
    ) -> Turn:
        return await self.manager.run_turn(
            self.id, text, sender=sender, idempotency_key=idempotency_key, images=images
        )

    def stream(
        self,
        text: str,
        *,
        sender: str | None = None,
        idempotency_key: str | None = None,
        images: Sequence[Image] = (),
        journal: bool = True,
        on_disconnect: Literal["finish", "cancel"] = "finish",
    ) -> AsyncIterator[TurnEvent]:
        return self.manager.stream(
            self.id,
            text,
            sender=sender,
            idempotency_key=idempotency_key,
            images=images,
            journal=journal,
            on_disconnect=on_disconnect,
        )

    def resume(self, after: int = -1) -> AsyncIterator[TurnEvent]:
        return self.manager.resume(self.id, after)

    async def history(
        self, *, limit: int | None = None, before: int | None = None
    ) -> list[Message]:
        return await self.manager.history(self.id, limit=limit, before=before)

    async def pop_turn(self) -> list[Message]:
        return await self.manager.pop_turn(self.id)

    async def append(self, messages: Sequence[Message]) -> None:
        await self.manager.append(self.id, messages)

    async def metadata(self) -> dict[str, Any]:
        return await self.manager.metadata(self.id)

    async def set_metadata(self, metadata: Mapping[str, Any]) -> None:
        await self.manager.set_metadata(self.id, metadata)

    async def exists(self) -> bool:
        return await self.manager.exists(self.id)

    async def reset(self) -> None:
        await self.manager.reset(self.id)

    async def delete(self) -> bool:
        return await self.manager.delete(self.id)

    async def rotate(self, *, owner: Owner = ANY_OWNER) -> str:
        """Give the conversation a new id (kept on this object) and return it; with ``owner``
        bind it to that user as well (see ``AsyncSessionManager.rotate``)."""
        self.id = await self.manager.rotate(self.id, owner=owner)
        return self.id


class SessionManager:
    """The sync face of ``AsyncSessionManager``: same arguments, same methods, no ``await``.

    Calls run on agentsession's loop thread, which is started lazily in the process that
    serves requests (safe with pre-forking servers).
    """

    def __init__(
        self,
        factory: AgentFactory,
        store: Store | str = DEFAULT_STORE_URL,
        *,
        cache_size: int = 256,
        history_cache: int = 100_000,
        lock_timeout: float = 2.0,
        lease_ttl: float = 6.0,
        max_message_bytes: int = 64 * 1024,
        max_image_bytes: int = 5 * 1024 * 1024,
        max_messages: int | None = None,
        sender: str = "user",
        observer: Observer | Sequence[Observer] | None = None,
    ) -> None:
        self.engine = AsyncSessionManager(
            factory,
            store,
            cache_size=cache_size,
            history_cache=history_cache,
            lock_timeout=lock_timeout,
            lease_ttl=lease_ttl,
            max_message_bytes=max_message_bytes,
            max_image_bytes=max_image_bytes,
            max_messages=max_messages,
            sender=sender,
            observer=observer,
        )

    @property
    def store(self) -> Store:
        return self.engine.store

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return _loop.run(coro)

    def session(self, session_id: str | None = None) -> Session:
        return Session(self, self.engine.session(session_id).id)

    def send(
        self,
        session_id: str,
        text: str,
        *,
        sender: str | None = None,
        idempotency_key: str | None = None,
        images: Sequence[Image] = (),
        owner: Owner = ANY_OWNER,
        create: bool = True,
    ) -> str:
        return self._run(
            self.engine.send(
                session_id,
                text,
                sender=sender,
                idempotency_key=idempotency_key,
                images=images,
                owner=owner,
                create=create,
            )
        )

    def run_turn(
        self,
        session_id: str,
        text: str,
        *,
        sender: str | None = None,
        idempotency_key: str | None = None,
        images: Sequence[Image] = (),
        owner: Owner = ANY_OWNER,
        create: bool = True,
    ) -> Turn:
        return self._run(
            self.engine.run_turn(
                session_id,
                text,
                sender=sender,
                idempotency_key=idempotency_key,
                images=images,
                owner=owner,
                create=create,
            )
        )

    def stream(
        self,
        session_id: str,
        text: str,
        *,
        sender: str | None = None,
        idempotency_key: str | None = None,
        images: Sequence[Image] = (),
        owner: Owner = ANY_OWNER,
        create: bool = True,
        journal: bool = True,
        on_disconnect: Literal["finish", "cancel"] = "finish",
    ) -> Iterator[TurnEvent]:
        """``AsyncSessionManager.stream`` as a plain iterator (each event comes over the loop
        thread)."""
        events = self.engine.stream(
            session_id,
            text,
            sender=sender,
            idempotency_key=idempotency_key,
            images=images,
            owner=owner,
            create=create,
            journal=journal,
            on_disconnect=on_disconnect,
        )
        return _loop.iterate(events)

    def resume(
        self, session_id: str, after: int = -1, *, turn_id: str | None = None
    ) -> Iterator[TurnEvent]:
        return _loop.iterate(self.engine.resume(session_id, after, turn_id=turn_id))

    def history(
        self, session_id: str, *, limit: int | None = None, before: int | None = None
    ) -> list[Message]:
        return self.engine.read_here(
            lambda: self.engine.history(session_id, limit=limit, before=before)
        )

    def pop_turn(self, session_id: str, *, owner: Owner = ANY_OWNER) -> list[Message]:
        return self._run(self.engine.pop_turn(session_id, owner=owner))

    def append(
        self,
        session_id: str,
        messages: Sequence[Message],
        *,
        owner: Owner = ANY_OWNER,
        create: bool = True,
    ) -> None:
        self._run(self.engine.append(session_id, messages, owner=owner, create=create))

    def load(self, session_id: str) -> Conversation | None:
        return self.engine.read_here(lambda: self.engine.load(session_id))

    def info(self, session_id: str) -> SessionInfo | None:
        return self.engine.read_here(lambda: self.engine.info(session_id))

    def metadata(self, session_id: str) -> dict[str, Any]:
        return self.engine.read_here(lambda: self.engine.metadata(session_id))

    def set_metadata(
        self,
        session_id: str,
        metadata: Mapping[str, Any],
        *,
        owner: Owner = ANY_OWNER,
        create: bool = True,
    ) -> None:
        self._run(self.engine.set_metadata(session_id, metadata, owner=owner, create=create))

    def exists(self, session_id: str) -> bool:
        return self.engine.read_here(lambda: self.engine.exists(session_id))

    def reset(self, session_id: str, *, owner: Owner = ANY_OWNER) -> None:
        self._run(self.engine.reset(session_id, owner=owner))

    def delete(self, session_id: str, *, owner: Owner = ANY_OWNER) -> bool:
        return self._run(self.engine.delete(session_id, owner=owner))

    def rotate(self, session_id: str, *, owner: Owner = ANY_OWNER) -> str:
        return self._run(self.engine.rotate(session_id, owner=owner))

    def list(self, limit: int = 100, offset: int = 0) -> list[SessionInfo]:
        return self._run(self.engine.list(limit=limit, offset=offset))

    def gc(self, idle_seconds: float | None = None) -> int:
        return self._run(self.engine.gc(idle_seconds))

    def export(self, session_id: str) -> dict[str, Any]:
        return self._run(self.engine.export(session_id))

    def import_(self, document: Mapping[str, Any], session_id: str | None = None) -> str:
        return self._run(self.engine.import_(document, session_id))

    def ping(self) -> None:
        self._run(self.engine.ping())

    def close(self) -> None:
        self._run(self.engine.aclose())

    def __enter__(self) -> SessionManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Session:
    """One conversation (sync). Cheap to create; holds no state of its own."""

    def __init__(self, manager: SessionManager, session_id: str) -> None:
        self.manager = manager
        self.id = session_id

    def __repr__(self) -> str:
        return f"<Session {self.id[:6]}…>"

    def send(
        self,
        text: str,
        *,
        sender: str | None = None,
        idempotency_key: str | None = None,
        images: Sequence[Image] = (),
    ) -> str:
        return self.manager.send(
            self.id, text, sender=sender, idempotency_key=idempotency_key, images=images
        )

    def run_turn(
        self,
        text: str,
        *,
        sender: str | None = None,
        idempotency_key: str | None = None,
        images: Sequence[Image] = (),
    ) -> Turn:
        return self.manager.run_turn(
            self.id, text, sender=sender, idempotency_key=idempotency_key, images=images
        )

    def stream(
        self,
        text: str,
        *,
        sender: str | None = None,
        idempotency_key: str | None = None,
        images: Sequence[Image] = (),
        journal: bool = True,
        on_disconnect: Literal["finish", "cancel"] = "finish",
    ) -> Iterator[TurnEvent]:
        return self.manager.stream(
            self.id,
            text,
            sender=sender,
            idempotency_key=idempotency_key,
            images=images,
            journal=journal,
            on_disconnect=on_disconnect,
        )

    def resume(self, after: int = -1) -> Iterator[TurnEvent]:
        return self.manager.resume(self.id, after)

    def history(self, *, limit: int | None = None, before: int | None = None) -> list[Message]:
        return self.manager.history(self.id, limit=limit, before=before)

    def pop_turn(self) -> list[Message]:
        return self.manager.pop_turn(self.id)

    def append(self, messages: Sequence[Message]) -> None:
        self.manager.append(self.id, messages)

    def metadata(self) -> dict[str, Any]:
        return self.manager.metadata(self.id)

    def set_metadata(self, metadata: Mapping[str, Any]) -> None:
        self.manager.set_metadata(self.id, metadata)

    def exists(self) -> bool:
        return self.manager.exists(self.id)

    def reset(self) -> None:
        self.manager.reset(self.id)

    def delete(self) -> bool:
        return self.manager.delete(self.id)

    def rotate(self, *, owner: Owner = ANY_OWNER) -> str:
        self.id = self.manager.rotate(self.id, owner=owner)
        return self.id
