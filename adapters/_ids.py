"""What the three web adapters share: signed conversation ids, the lazy request session, errors.

A request carries a signed id in a cookie (browsers) or a header (API clients). Checking the
signature is CPU only; the store is first touched when the handler uses its session. A claimed
id is adopted only if it is validly signed, unexpired, held by the store and (with owner
binding) not another user's; anything else starts a fresh conversation under a new id, so a
client can never choose, fix or guess its way into a conversation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, TypeVar, cast

from itsdangerous import BadData, TimestampSigner

from agentsession import _loop
from agentsession.errors import (
    AgentSessionError,
    ConflictError,
    ConversationFull,
    CorruptRecord,
    InvalidInput,
    MessageTooLarge,
    SessionBusy,
    StoreUnavailable,
)
from agentsession.manager import AsyncSessionManager, new_session_id
from agentsession.messages import Message
from agentsession.stores import Conversation, SessionInfo

logger = logging.getLogger("agentsession")

T = TypeVar("T")

COOKIE_NAME = "agentsession"
HEADER_NAME = "X-Agent-Session"
MAX_AGE = 14 * 24 * 3600
OWNER_KEY = "agentsession.owner"
"""The metadata key holding the user a conversation is bound to (see ``owner=``)."""

SecretKey = str | bytes | Iterable[str | bytes]
"""One key, or several (oldest first): the last one signs, every one verifies."""

_SALT = "agentsession.session-id"
_ID_SHAPE = re.compile(r"[A-Za-z0-9_-]{16,128}")
_SAMESITE = {"lax": "Lax", "strict": "Strict", "none": "None"}


# -- the id on the wire ----------------------------------------------------------------


@dataclass(frozen=True)
class IdConfig:
    """Where the signed id travels, and the cookie's attributes. Always ``HttpOnly``.

    ``cookie_secure=None`` marks the cookie ``Secure`` when the request came over HTTPS.
    """

    cookie_name: str = COOKIE_NAME
    header_name: str = HEADER_NAME
    max_age: int | None = MAX_AGE
    cookie_path: str = "/"
    cookie_domain: str | None = None
    cookie_secure: bool | None = None
    cookie_samesite: str = "lax"

    def __post_init__(self) -> None:
        if self.cookie_samesite.lower() not in _SAMESITE:
            raise ValueError(
                f"cookie_samesite must be lax, strict or none, not {self.cookie_samesite!r}"
            )
        if self.cookie_samesite.lower() == "none" and self.cookie_secure is False:
            raise ValueError("browsers drop SameSite=None cookies that are not Secure")

    def set_cookie(self, token: str, https: bool) -> str:
        return self._cookie(f"{self.cookie_name}={token}", self.max_age, https)

    def expire_cookie(self, https: bool) -> str:
        return self._cookie(f"{self.cookie_name}=", 0, https)

    def _cookie(self, pair: str, max_age: int | None, https: bool) -> str:
        parts = [pair, f"Path={self.cookie_path}"]
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        if self.cookie_domain:
            parts.append(f"Domain={self.cookie_domain}")
        if self.cookie_secure or (self.cookie_secure is None and https):
            parts.append("Secure")
        parts += ["HttpOnly", f"SameSite={_SAMESITE[self.cookie_samesite.lower()]}"]
        return "; ".join(parts)


def cookie_value(cookie_header: str | None, name: str) -> str | None:
    """The value of cookie ``name``; tolerant of the malformed cookies other apps set."""
    # http.cookies.SimpleCookie gives up on the whole header at the first odd cookie
    if not cookie_header:
        return None
    for chunk in cookie_header.split(";"):
        key, sep, value = chunk.partition("=")
        if sep and key.strip() == name:
            return value.strip().strip('"') or None
    return None


class TokenSigner:
    """Signs ids with a timestamp (itsdangerous, as Flask signs its session cookie)."""

    def __init__(self, secret_key: SecretKey, max_age: int | None) -> None:
        keys = [secret_key] if isinstance(secret_key, (str, bytes)) else list(secret_key)
        if not keys or not all(keys):
            raise ValueError("agentsession needs a secret_key to sign conversation ids")
        encoded = [key.encode() if isinstance(key, str) else key for key in keys]
        self._signer = TimestampSigner(encoded, salt=_SALT)
        self.max_age = max_age

    def sign(self, session_id: str) -> str:
        return self._signer.sign(session_id).decode("ascii")

    def unsign(self, token: str | None) -> str | None:
        """The id in ``token``; None if it is forged, tampered, expired or garbage."""
        if not token or len(token) > 512:
            return None
        try:
            value = self._signer.unsign(token, max_age=self.max_age).decode("ascii")
        except (BadData, UnicodeError) as exc:
            # itsdangerous keeps its first error in a local of a frame that error's traceback
            # holds: a cycle that would keep the request (up the frames) alive until the
            # cyclic collector runs. Forged tokens are cheap to send; let them go at once.
            error: BaseException | None = exc
            while error is not None:
                error.__traceback__ = None
                error = error.__context__
            return None
        return value if _ID_SHAPE.fullmatch(value) else None


@dataclass(frozen=True)
class Claim:
    """The token a request brought and how it travelled; verified only if the session is used."""

    token: str | None
    via_header: bool
    signer: TokenSigner | None = None

    def verified_id(self) -> str | None:
        if self.token is None or self.signer is None:
            return None
        return self.signer.unsign(self.token)


class SessionIds:
    """Reads the claimed id from a request and writes the id back on the response.

    The id goes back the way it came: in the header to a client that sent the header (an API
    client starts with any value, e.g. ``X-Agent-Session: new``), otherwise in the cookie.
    Browsers never get it in a header, where page scripts could read what ``HttpOnly`` hides.
    """

    def __init__(self, secret_key: SecretKey, config: IdConfig) -> None:
        self.config = config
        self.signer = TokenSigner(secret_key, config.max_age)

    def claim(self, header_value: str | None, cookie_header: str | None) -> Claim:
        # the signature is checked on the session's first use: a request that never uses its
        # session pays for finding the token and nothing else
        if header_value is not None:
            return Claim(header_value.strip(), True, self.signer)
        return Claim(cookie_value(cookie_header, self.config.cookie_name), False, self.signer)

    def response_headers(self, session: AsyncRequestSession, https: bool) -> list[tuple[str, str]]:
        """Headers that hand the client its id; none unless the session was used."""
        if not session.needs_headers:
            return []
        outgoing = session.outgoing_id
        if outgoing is not None:
            token = self.signer.sign(outgoing)  # re-signed: the expiry slides with use
            if session.via_header:
                return [(self.config.header_name, token)]
            return [("Set-Cookie", self.config.set_cookie(token, https))]
        if session.deleted and not session.via_header:
            return [("Set-Cookie", self.config.expire_cookie(https))]
        return []


AppT = TypeVar("AppT")
ManagerT = TypeVar("ManagerT")
RequestT = TypeVar("RequestT")


class Middleware(Generic[AppT, ManagerT, RequestT]):
    """The options the ASGI and WSGI middlewares share, and what they build from them."""

    def __init__(
        self,
        app: AppT,
        manager: ManagerT,
        *,
        secret_key: SecretKey,
        cookie_name: str = COOKIE_NAME,
        header_name: str = HEADER_NAME,
        max_age: int | None = MAX_AGE,
        cookie_path: str = "/",
        cookie_domain: str | None = None,
        cookie_secure: bool | None = None,
        cookie_samesite: str = "lax",
        owner: Callable[[RequestT], str | None] | None = None,
        busy_status: int = 409,
    ) -> None:
        self.app = app
        self.manager = manager
        config = IdConfig(
            cookie_name, header_name, max_age, cookie_path, cookie_domain, cookie_secure,
            cookie_samesite,
        )  # fmt: skip
        self.ids = SessionIds(secret_key, config)
        self.owner = owner
        self.busy_status = check_busy_status(busy_status)
        self._installed()

    def _installed(self) -> None:
        """What an adapter sets up once its options are read."""

    @property
    def signer(self) -> TokenSigner:
        return self.ids.signer


# -- the request's session --------------------------------------------------------------


def owner_allows(stored: object, current: str | None) -> bool:
    """Owner binding: an anonymous conversation is anyone's to claim; an owned one is its owner's."""
    return stored is None or stored == current


class AsyncRequestSession:
    """The request's conversation: the ``AsyncSession`` methods, resolved on first use.

    Resolving verifies the claimed token and adopts its id if the store holds it for this
    user, else issues a new id. A new conversation is stored on its first write, so reading a
    fresh one costs no I/O. ``claim`` may be a callable, so a request that never uses its
    session does not even read its headers.
    """

    # class-level defaults: a request that never uses its session sets three attributes
    deleted = False
    _id: str | None = None
    _adoptable = True  # false after the first resolution: a later one must not re-adopt
    _stored = False  # the store holds this conversation
    _changed = False  # adopted, written or rotated: the client should get the id
    _stored_owner: object = None
    _owner_known = False
    _owner_value: str | None = None
    _resolving: asyncio.Lock | None = None
    _metadata: Mapping[str, Any] = MappingProxyType({})  # replaced, never changed in place

    def __init__(
        self,
        engine: AsyncSessionManager,
        claim: Claim | Callable[[], Claim],
        owner: Callable[[], str | None] | None = None,
    ) -> None:
        self.engine = engine
        self._claim = claim
        self._owner = owner

    def __repr__(self) -> str:
        state = "unresolved" if self._id is None else f"{self._id[:6]}…"
        return f"<{type(self).__name__} {state}>"

    @property
    def claim(self) -> Claim:
        """What the request brought (read from the request on first access)."""
        claim = self._claim
        if not isinstance(claim, Claim):
            claim = self._claim = claim()
        return claim

    @property
    def via_header(self) -> bool:
        return self.claim.via_header

    @property
    def needs_headers(self) -> bool:
        """Whether the response must carry the id (or expire the cookie): the session was used."""
        return self._changed or self.deleted

    @property
    def outgoing_id(self) -> str | None:
        """The id to hand back, if the conversation was used and exists."""
        return self._id if self._changed else None

    def current_owner(self) -> str | None:
        """The request's user, asked once (sync adapters ask in the request's own thread)."""
        if not self._owner_known and self._owner is not None:
            self._owner_value = self._owner()
            self._owner_known, self._owner = True, None  # and let go of the request
        return self._owner_value

    async def session_id(self) -> str:
        """The conversation's id, adopted or issued on first use."""
        if self._id is None:
            await self._resolve(read_messages=False)
        assert self._id is not None
        return self._id

    async def _resolve(self, read_messages: bool) -> list[Message] | None:
        """Adopt the claimed id or issue one; with ``read_messages``, the history in the same read."""
        if self._resolving is None:
            self._resolving = asyncio.Lock()
        async with self._resolving:  # two concurrent first uses must agree on one id
            if self._id is not None:
                return None
            self._id, messages = await self._adopt_or_issue(read_messages)
            return messages

    async def _adopt_or_issue(self, read_messages: bool) -> tuple[str, list[Message] | None]:
        owner = self.current_owner()
        claimed = self.claim.verified_id() if self._adoptable else None
        self._adoptable = False  # after a delete(), a later use must not adopt the old id again
        if claimed is not None:
            messages: list[Message] | None = None
            info: SessionInfo | Conversation | None
            if read_messages:  # one store read for both: adoption and the history
                conversation = await self.engine.load(claimed)
                info = conversation
                messages = None if conversation is None else conversation.messages
            else:
                info = await self.engine.info(claimed)
            if info is None:
                logger.info("a signed session id unknown to the store was refused; new id issued")
            elif not owner_allows(info.metadata.get(OWNER_KEY), owner):
                logger.info("a session id bound to another user was refused; new id issued")
            else:
                self._stored = self._changed = True
                self._stored_owner = info.metadata.get(OWNER_KEY)
                self._metadata = dict(info.metadata)
                return claimed, messages
        return new_session_id(), ([] if read_messages else None)

    async def _for_writing(self) -> str:
        session_id = await self.session_id()
        owner = self.current_owner()
        if owner is not None and self._stored_owner != owner:
            # a new conversation, or an anonymous one claimed at login: bind it to its user
            metadata = {**self._metadata, OWNER_KEY: owner}
            await self.engine.set_metadata(session_id, metadata)
            self._stored_owner, self._metadata = owner, metadata
            self._stored = self._changed = True
        return session_id

    async def send(self, text: str, *, sender: str | None = None) -> str:
        reply = await self.engine.send(await self._for_writing(), text, sender=sender)
        self._stored = self._changed = True
        return reply

    async def run_turn(self, text: str, *, sender: str | None = None) -> list[Message]:
        added = await self.engine.run_turn(await self._for_writing(), text, sender=sender)
        self._stored = self._changed = True
        return added

    async def history(self) -> list[Message]:
        if self._id is None:
            messages = await self._resolve(read_messages=True)
            if messages is not None:
                return messages
        assert self._id is not None
        return await self.engine.history(self._id) if self._stored else []

    async def metadata(self) -> dict[str, Any]:
        session_id = await self.session_id()
        return await self.engine.metadata(session_id) if self._stored else {}

    async def set_metadata(self, metadata: Mapping[str, Any]) -> None:
        session_id = await self.session_id()
        owner = self.current_owner()
        merged = {k: v for k, v in metadata.items() if k != OWNER_KEY}
        if owner is not None:
            merged[OWNER_KEY] = owner
        await self.engine.set_metadata(session_id, merged)
        self._stored_owner, self._metadata = owner, merged
        self._stored = self._changed = True

    async def exists(self) -> bool:
        await self.session_id()
        return self._stored

    async def reset(self) -> None:
        session_id = await self.session_id()
        if self._stored:
            await self.engine.reset(session_id)

    async def delete(self) -> bool:
        """Delete the conversation; a later use in this request starts a new one, new id."""
        session_id = await self.session_id()
        deleted = await self.engine.delete(session_id) if self._stored else False
        self._id, self._stored, self._changed = None, False, False
        self._stored_owner, self._metadata = None, MappingProxyType({})
        self.deleted = True
        return deleted

    async def rotate(self) -> str:
        """Move the conversation to a new id (call it at login) and return the new id."""
        session_id = await self.session_id()
        self._id = await self.engine.rotate(session_id) if self._stored else new_session_id()
        return self._id


class RequestSession:
    """The request's conversation for sync code (WSGI, Flask): the same methods, no ``await``.

    Calls run on agentsession's loop thread, like ``SessionManager``'s; only the owner is asked
    here, in the request's thread, where framework request-locals (Flask-Login, …) live.
    """

    def __init__(self, async_session: AsyncRequestSession) -> None:
        self.async_session = async_session

    def __repr__(self) -> str:
        return repr(self.async_session).replace("AsyncRequestSession", "RequestSession")

    def _run(self, call: Callable[[], Coroutine[Any, Any, T]]) -> T:
        self.async_session.current_owner()
        return _loop.run(call())

    def session_id(self) -> str:
        return self._run(self.async_session.session_id)

    def send(self, text: str, *, sender: str | None = None) -> str:
        return self._run(lambda: self.async_session.send(text, sender=sender))

    def run_turn(self, text: str, *, sender: str | None = None) -> list[Message]:
        return self._run(lambda: self.async_session.run_turn(text, sender=sender))

    def history(self) -> list[Message]:
        return self._run(self.async_session.history)

    def metadata(self) -> dict[str, Any]:
        return self._run(self.async_session.metadata)

    def set_metadata(self, metadata: Mapping[str, Any]) -> None:
        self._run(lambda: self.async_session.set_metadata(metadata))

    def exists(self) -> bool:
        return self._run(self.async_session.exists)

    def reset(self) -> None:
        self._run(self.async_session.reset)

    def delete(self) -> bool:
        return self._run(self.async_session.delete)

    def rotate(self) -> str:
        return self._run(self.async_session.rotate)


# -- errors -----------------------------------------------------------------------------

ASGIMessage = MutableMapping[str, Any]


@dataclass(frozen=True)
class ErrorAnswer:
    """An HTTP answer to an agentsession error; also a tiny ASGI app that sends itself."""

    status: int
    code: str
    message: str
    headers: tuple[tuple[str, str], ...]
    websocket_code: int

    @property
    def body(self) -> bytes:
        return json.dumps({"detail": self.message, "code": self.code}).encode()

    @property
    def all_headers(self) -> list[tuple[str, str]]:
        return [("Content-Type", "application/json"), *self.headers]

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[ASGIMessage]],
        send: Callable[[ASGIMessage], Awaitable[None]],
    ) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": self.websocket_code})
            return
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.all_headers]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


@dataclass(frozen=True)
class _Rule:
    error: type[AgentSessionError]
    status: int
    code: str
    message: str
    websocket_code: int
    level: int
    # the exception's own text helps the client (limits); other texts stay in the log
    detail: bool = False


# subclasses before their bases; 1013 = "try again later", 1009 = "message too big"
ERROR_RULES: tuple[_Rule, ...] = (
    _Rule(StoreUnavailable, 503, "store_unavailable",
          "The conversation store is unavailable; try again shortly.", 1013, logging.WARNING),
    _Rule(SessionBusy, 409, "session_busy",
          "This conversation is busy with another message; retry shortly.", 1013, logging.INFO),
    _Rule(ConflictError, 409, "conflict",
          "This conversation changed while the message was processed; retry.", 1013, logging.INFO),
    _Rule(InvalidInput, 400, "invalid_input", "The message or session id is not valid.", 1007,
          logging.INFO, detail=True),
    _Rule(MessageTooLarge, 413, "message_too_large", "The message is too large.", 1009,
          logging.INFO, detail=True),
    _Rule(ConversationFull, 409, "conversation_full",
          "This conversation is full; reset it or start a new one.", 1008, logging.INFO,
          detail=True),
    _Rule(CorruptRecord, 500, "corrupt_record",
          "This conversation's stored record cannot be read; it was kept for inspection.", 1011,
          logging.ERROR),
)  # fmt: skip
"""Every agentsession error an adapter answers itself; any other error is a server bug (500)."""

MAPPED_ERRORS: tuple[type[AgentSessionError], ...] = tuple(rule.error for rule in ERROR_RULES)


def check_busy_status(status: int) -> int:
    if status not in (409, 429):
        raise ValueError(f"busy_status must be 409 or 429, not {status}")
    return status


def error_answer(exc: BaseException, busy_status: int = 409) -> ErrorAnswer | None:
    """The answer to ``exc``, or None when it is not a client-facing agentsession error."""
    for rule in ERROR_RULES:
        if isinstance(exc, rule.error):
            break
    else:
        return None
    logger.log(rule.level, "answering %d to %s: %s", rule.status, type(exc).__name__, exc)
    status, headers = rule.status, cast(tuple[tuple[str, str], ...], ())
    if isinstance(exc, SessionBusy):
        status, headers = busy_status, (("Retry-After", "1"),)
    elif isinstance(exc, StoreUnavailable):
        headers = (("Retry-After", "5"),)
    message = f"{rule.message} {exc}" if rule.detail else rule.message
    return ErrorAnswer(status, rule.code, message, headers, rule.websocket_code)
