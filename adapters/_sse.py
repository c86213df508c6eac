"""Server-Sent Events for streamed turns: the wire format every adapter's helper writes.

Each event of a turn is one SSE message: ``id: <turn id>:<seq>`` (what a reconnecting browser
sends back as ``Last-Event-ID``), ``event: <type>`` (``start``, ``delta``, ``message``,
``end``; ``error`` for a turn that failed after the response began) and ``data:`` its JSON.
A comment line goes out when nothing happened for a while, so proxies keep the connection
open. A stream always ends with ``end`` or ``error``, never silently.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

from agentsession import _loop
from agentsession.errors import AgentSessionError, StreamInterrupted
from agentsession.turns import TurnEvent

from ._errors import error_answer
from ._session import RequestSession

logger = logging.getLogger("agentsession")

HEARTBEAT = 15.0
"""Seconds of silence after which a comment line keeps the connection alive."""

HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Type", "text/event-stream; charset=utf-8"),
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),  # nginx: pass each event on as it comes
)
PING = b": keep-alive\n\n"


def frame(event: TurnEvent, turn_id: str) -> bytes:
    data = json.dumps(event.to_dict(), ensure_ascii=False, separators=(",", ":"))
    return f"id: {turn_id}:{event.seq}\nevent: {event.type}\ndata: {data}\n\n".encode()


def error_frame(exc: BaseException, busy_status: int = 409) -> bytes:
    """The ``error`` event for a turn that failed after its response began."""
    if isinstance(exc, StreamInterrupted):
        code, detail = exc.code, f"The streamed turn {exc.reason}."
    else:
        answer = error_answer(exc, busy_status) if isinstance(exc, AgentSessionError) else None
        if answer is None:
            logger.error("a streamed turn failed", exc_info=exc)
            code, detail = "internal_error", "The turn failed; nothing of it was recorded."
        else:
            code, detail = answer.code, answer.message
    data = json.dumps({"type": "error", "code": code, "detail": detail}, separators=(",", ":"))
    return f"event: error\ndata: {data}\n\n".encode()


def last_event(header: str | None, after: str | None = None) -> tuple[str | None, int]:
    """``(turn_id, seq)`` a reconnecting client has seen: from ``Last-Event-ID`` (``turn:seq``,
    what the browser's EventSource sends) or an ``?after=N`` query; ``(None, -1)`` for none."""
    if header:
        turn_id, _, seq = header.strip().rpartition(":")
        if turn_id and seq.isdigit():
            return turn_id, int(seq)
    if after is not None and after.strip().lstrip("-").isdigit():
        return None, max(-1, int(after))
    return None, -1


async def frames(
    first: TurnEvent,
    events: AsyncIterator[TurnEvent],
    turn_id: str | None = None,
    heartbeat: float = HEARTBEAT,
    busy_status: int = 409,
) -> AsyncIterator[bytes]:
    """The SSE bytes of a stream whose first event is ``first`` (already taken, so that an
    error before it was an ordinary HTTP error): events, keep-alives, and an ``error`` event
    if the turn fails on the way. Closing this closes ``events``."""
    pending: asyncio.Future[TurnEvent | None] | None = None
    try:
        event: TurnEvent | None = first
        while event is not None:
            yield frame(event, event.turn_id or turn_id or "")
            if event.type == "end":
                return
            pending = asyncio.ensure_future(_next(events))
            while True:
                done, _ = await asyncio.wait({pending}, timeout=heartbeat)
                if done:
                    break
                yield PING
            event, pending = pending.result(), None
    except Exception as exc:
        yield error_frame(exc, busy_status)
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            await asyncio.wait([pending])
        close: Any = getattr(events, "aclose", None)
        if close is not None:
            await close()


async def _next(events: AsyncIterator[TurnEvent]) -> TurnEvent | None:
    try:
        return await events.__anext__()
    except StopAsyncIteration:
        return None


def open_stream(
    session: RequestSession,
    text: str | None,
    *,
    sender: str | None = None,
    idempotency_key: str | None = None,
    on_disconnect: Literal["finish", "cancel"] = "finish",
    after: int = -1,
    turn_id: str | None = None,
    heartbeat: float = HEARTBEAT,
    busy_status: int = 409,
) -> Iterator[bytes]:
    """For sync servers (WSGI, Flask): start the turn (or the resumed stream) now, in the
    request, so an error before its first event raises as for any turn; the SSE bytes follow,
    one loop-thread hop per chunk. Closing the iterator (the server does when the client
    leaves) closes the stream."""
    async_session = session.async_session
    async_session.current_owner()  # in the request's thread, where request-locals live
    if text is not None:
        events = async_session.stream(
            text, sender=sender, idempotency_key=idempotency_key, on_disconnect=on_disconnect
        )
    else:
        events = async_session.resume(after, turn_id=turn_id)
    first = _loop.run(_first(events))
    return _loop.iterate(frames(first, events, turn_id, heartbeat, busy_status))


async def _first(events: AsyncIterator[TurnEvent]) -> TurnEvent:
    try:
        return await events.__anext__()
    except BaseException:
        close: Any = getattr(events, "aclose", None)
        if close is not None:
            await close()
        raise
