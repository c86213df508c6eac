"""agentsession errors as HTTP answers: status, JSON body, headers, and a websocket close code."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, cast

from agentsession.errors import (
    AgentSessionError,
    ConflictError,
    ConversationFull,
    CorruptRecord,
    IdempotencyKeyReused,
    InvalidInput,
    MessageTooLarge,
    OutcomeUnknown,
    OwnerMismatch,
    SessionBusy,
    StoreUnavailable,
    StreamInterrupted,
)

logger = logging.getLogger("agentsession")

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
    _Rule(OutcomeUnknown, 503, "outcome_unknown",
          "The conversation store stopped answering while saving: the message may or may not "
          "have been recorded. Retrying with the same Idempotency-Key header is safe.", 1013,
          logging.WARNING),
    _Rule(StoreUnavailable, 503, "store_unavailable",
          "The conversation store is unavailable; try again shortly.", 1013, logging.WARNING),
    _Rule(SessionBusy, 409, "session_busy",
          "This conversation is busy with another message; retry shortly.", 1013, logging.INFO),
    _Rule(ConflictError, 409, "conflict",
          "This conversation changed while the message was processed; retry.", 1013, logging.INFO),
    _Rule(IdempotencyKeyReused, 422, "idempotency_key_reused",
          "This Idempotency-Key was already used for another message.", 1008, logging.INFO),
    _Rule(InvalidInput, 400, "invalid_input", "The message or session id is not valid.", 1007,
          logging.INFO, detail=True),
    _Rule(OwnerMismatch, 403, "forbidden", "This conversation belongs to another user.", 1008,
          logging.INFO),
    _Rule(MessageTooLarge, 413, "message_too_large", "The message is too large.", 1009,
          logging.INFO, detail=True),
    _Rule(ConversationFull, 409, "conversation_full",
          "This conversation is full; reset it or start a new one.", 1008, logging.INFO,
          detail=True),
    _Rule(StreamInterrupted, 410, "stream_interrupted",
          "This streamed turn cannot be followed.", 1000, logging.INFO),
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
    code = exc.code if isinstance(exc, StreamInterrupted) else rule.code  # no_journal, failed, …
    return ErrorAnswer(status, code, message, headers, rule.websocket_code)
