"""The one long-lived event loop thread that runs the async engine for sync callers.

Started on first use in the process that serves requests, never at import: a loop thread
made before ``fork`` (``gunicorn --preload``) does not exist in the child, so a change of
pid starts a fresh one.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_pid: int | None = None


def _start() -> asyncio.AbstractEventLoop:
    global _loop, _thread, _pid
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()

    thread = threading.Thread(target=serve, name="agentsession-loop", daemon=True)
    thread.start()
    ready.wait()
    _loop, _thread, _pid = loop, thread, os.getpid()
    return loop


def get_loop() -> asyncio.AbstractEventLoop:
    """The bridge loop of this process, started if needed."""
    loop = _loop
    if loop is not None and _pid == os.getpid() and loop.is_running():
        return loop
    with _lock:
        if _loop is not None and _pid == os.getpid() and _loop.is_running():
            return _loop
        return _start()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the bridge loop and wait for its result."""
    loop = get_loop()
    if threading.current_thread() is _thread:
        coro.close()
        raise RuntimeError(
            "a sync agentsession API was called from async code running on agentsession's own "
            "loop; use AsyncSessionManager (await session.send(...)) there instead"
        )
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


_here = threading.local()


def here() -> asyncio.AbstractEventLoop:
    """This thread's own event loop, for reads that need not cross to the bridge loop."""
    loop: asyncio.AbstractEventLoop | None = getattr(_here, "loop", None)
    if loop is None or getattr(_here, "pid", None) != os.getpid() or loop.is_closed():
        loop = asyncio.new_event_loop()
        _here.loop, _here.pid = loop, os.getpid()
    return loop


def is_here(loop: asyncio.AbstractEventLoop) -> bool:
    """True if ``loop`` is a thread's own loop (``run_here``), not the bridge loop."""
    return loop is getattr(_here, "loop", None)


def run_here(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on this thread's own loop: no hop to the bridge thread and back.

    Only for calls whose store can run on any loop (``Store.for_loop``): a sync web app's
    history read then costs what a sync client's would.
    """
    return here().run_until_complete(coro)


def loop_pid() -> int | None:
    """The pid that started the current loop thread (None before first use)."""
    return _pid


def iterate(events: AsyncIterator[T]) -> Iterator[T]:
    """Iterate an async iterator of the bridge loop from sync code, one hop per item."""
    try:
        while True:
            try:
                item = run(_anext(events))
            except StopAsyncIteration:
                return
            yield item
    finally:
        close = getattr(events, "aclose", None)
        if close is not None:
            run(close())


async def _anext(events: AsyncIterator[T]) -> T:
    return await events.__anext__()
