"""What every adapter shares: signed ids, the lazy per-request session, and error statuses.

A request carries a signed conversation id in a cookie or a header. Checking the signature is
CPU only; the store is touched on the session's first use. A claimed id is adopted only if it
is validly signed, unexpired, known to the store and (with owner binding) owned by the same
user; otherwise the request gets a fresh conversation. A client can never choose an id.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any

from itsdangerous import BadData, URLSafeTimedSerializer

from agentsession.errors import (
    AgentSessionError,
    ConversationFull,
    CorruptRecord,
    LimitExceeded,
    MessageTooLarge,
    SessionBusy,
    StoreUnavailable,
)
from agentsession.manager import AsyncSessionManager, new_session_id
from agentsession.messages import Message
from agentsession.stores import Conversation

logger = logging.getLogger("agentsession")

OWNER_KEY = "owner"


@dataclass(frozen=True)
class CookieSettings:
    """Where the signed id travels. ``header`` serves API clients; the cookie serves browsers."""

    name: str = "agentsession"
    header: str = "X-Agent-Session"
    max_age: int | None = 14 * 24 * 3600
    path: str = "/"
    domain: str | None = None
    secure: bool = False
    httponly: bool = True
    samesite: str = "Lax"

    def set_cookie_header(self, token: str) -> str:
        parts = [f"{self.name}={token}", f"Path={self.path}", f"SameSite={self.samesite}"]
        if self.max_age is not None:
            parts.append(f"Max-Age={self.max_age}")
        if self.domain:
            parts.append(f"Domain={self.domain}")
        if self.secure:
            parts.append("Secure")
        if self.httponly:
            parts.append("HttpOnly")
        return "; ".join(parts)

    def token_from(self, header_value: str | None, cookie_header: str | None) -> str | None:
        if header_value:
            return header_value.strip()
        if not cookie_header:
            return None
        cookies: SimpleCookie = SimpleCookie()
        try:
            cookies.load(cookie_header)
        except Exception:  # a malformed Cookie header is just no cookie
            return None
        morsel = cookies.get(self.name)
        return morsel.value if morsel is not None else None


class TokenSigner:
    """Signs conversation ids (itsdangerous, as Flask signs its session cookie)."""

    def __init__(self, secret_key: str | bytes, max_age: int | None) -> None:
        if not secret_key:
            raise ValueError("agentsession needs a secret_key to sign session ids")
        self._serializer = URLSafeTimedSerializer(secret_key, salt="agentsession.session-id")
        self.max_age = max_age

    def sign(self, session_id: str) -> str:
        return self._serializer.dumps(session_id)

    def unsign(self, token: str | None) -> str | None:
        """The id in ``token``, or None if it is forged, tampered, expired or garbage."""
        if not token:
            return None
        try:
            value = self._serializer.loads(token, max_age=self.max_age)
        except BadData:
            return None
        return value if isinstance(value, str) and 16 <= len(value) <= 128 else None


class SessionBinding:
    """The conversation one request is bound to, resolved on first use.

    Nothing is read at construction: the token is found (``read_token(source)``), its
    signature checked and the owner asked (``read_owner(source)``) only when the handler
    first touches its session, so a request that ignores it costs one small object.
    """

    __slots__ = (
        "adopted",
        "engine",
        "id",
        "read_owner",
        "read_token",
        "signer",
        "source",
        "written",
    )

    def __init__(
        self,
        engine: AsyncSessionManager,
        signer: TokenSigner,
        source: Any,
        read_token: Callable[[Any], str | None],
        read_owner: Callable[[Any], str | None] | None = None,
    ) -> None:
        self.engine = engine
        self.signer = signer
        self.source = source
        self.read_token = read_token
        self.read_owner = read_owner
        self.id: str | None = None
        self.adopted = False
        self.written = False

    @property
    def used(self) -> bool:
        return self.id is not None

    @property
    def needs_cookie(self) -> bool:
        """Send the id back when the session was used and exists (sliding expiry)."""
        return self.id is not None and (self.adopted or self.written)

    def _owner(self) -> str | None:
        return self.read_owner(self.source) if self.read_owner is not None else None

    async def resolve(self, conversation: Conversation | None = None) -> str:
        """The conversation id: the claimed one if it may be adopted, else a fresh one.

        ``conversation`` is the claimed conversation when the caller already loaded it
        (``history`` does, to answer in one round trip).
        """
        if self.id is not None:
            return self.id
        claimed = self.signer.unsign(self.read_token(self.source))
        owner = self._owner()
        if claimed is not None:
            metadata = (
                conversation.metadata
                if conversation is not None
                else await self._metadata_of(claimed)
            )
            if metadata is not None and _may_use(metadata, owner):
                self.id, self.adopted = claimed, True
                return self.id
            logger.info("refused a session id the store does not hold for this client")
        self.id = new_session_id()
        if owner is not None:
            await self.engine.set_metadata(self.id, {OWNER_KEY: owner})
            self.written = True
        return self.id

    async def _metadata_of(self, session_id: str) -> Mapping[str, Any] | None:
        info = await self.engine.info(session_id)
        return None if info is None else info.metadata

    async def session_id(self) -> str:
        return await self.resolve()

    async def send(self, text: str) -> str:
        session_id = await self.resolve()
        reply = await self.engine.send(session_id, text)
        self.written = True
        return reply

    async def history(self) -> list[Message]:
        if self.id is None:
            claimed = self.signer.unsign(self.read_token(self.source))
            if claimed is None:
                await self.resolve()
                return []
            # one store read both checks the claim and answers
            conversation = await self.engine.store.load(claimed)
            if conversation is None:
                await self.resolve(conversation)
                return []
            if await self.resolve(conversation) == claimed:
                return conversation.messages
            return []
        return await self.engine.history(self.id)

    async def metadata(self) -> dict[str, Any]:
        return await self.engine.metadata(await self.resolve())

    async def set_metadata(self, metadata: Mapping[str, Any]) -> None:
        merged = dict(metadata)
        owner = self._owner()
        if owner is not None:
            merged[OWNER_KEY] = owner
        await self.engine.set_metadata(await self.resolve(), merged)
        self.written = True

    async def reset(self) -> None:
        await self.engine.reset(await self.resolve())

    async def delete(self) -> bool:
        deleted = await self.engine.delete(await self.resolve())
        self.written = False
        self.adopted = False
        return deleted

    async def rotate(self) -> str:
        self.id = await self.engine.rotate(await self.resolve())
        self.written = True
        return self.id


def _may_use(metadata: Mapping[str, Any], owner: str | None) -> bool:
    stored = metadata.get(OWNER_KEY)
    return stored is None or stored == owner


@dataclass(frozen=True)
class ErrorResponse:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)


def error_response(exc: AgentSessionError, busy_status: int = 409) -> ErrorResponse | None:
    """The HTTP answer to an agentsession error a handler let through, or None to re-raise."""
    status: int
    if isinstance(exc, StoreUnavailable):
        status, message = 503, "The conversation store is unavailable; try again shortly."
    elif isinstance(exc, SessionBusy):
        status, message = busy_status, "This conversation is busy with another message; retry."
    elif isinstance(exc, MessageTooLarge):
        status, message = 413, "The message is too large."
    elif isinstance(exc, (ConversationFull, LimitExceeded)):
        status, message = 409, "This conversation is full; reset it or start a new one."
    elif isinstance(exc, CorruptRecord):
        logger.error("%s", exc)
        status, message = 500, "This conversation's stored record cannot be read; it was kept."
    else:
        return None
    body = json.dumps({"error": message, "detail": str(exc)}).encode()
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)
    if status == 503:
        headers += (("retry-after", "5"),)
    return ErrorResponse(status, body, headers)
