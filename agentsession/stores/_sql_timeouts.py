"""Bounded waits for the SQL store: each driver's timeout arguments, and a watchdog for psycopg.

A server that stops answering without closing its connections (``kill -STOP``, a frozen VM, a
partition the kernel still ACKs) is never noticed by the server-side limits nor by TCP
keepalives: the client must bound its own wait. PyMySQL has socket timeouts (``read_timeout``,
``write_timeout``). psycopg 3 has none for a query (its ``connect_timeout`` covers connecting
only), so the ``Watchdog`` shuts down the socket of a call that outlives its deadline: the
blocked call then fails at once, SQLAlchemy drops the connection, and the pool opens a new one.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

# how often the watchdog looks at the calls in flight (a call overruns by at most this much)
_TICK = 0.1
# idle this long, the watchdog sleeps until the next call wakes it (a wake-up per call while
# busy would cost each call more than the watch itself)
_NAP_AFTER = 10.0
# the client waits this much longer than the server-side limits, so that a live but slow
# server cancels the statement itself (a clean error, and the connection is kept)
GRACE = 1.0


def server_limits(timeout: float) -> dict[str, str]:
    """PostgreSQL's own limits for ``timeout`` seconds: a statement, a lock wait, and a session
    left idle inside a transaction (its row locks released when the client is gone)."""
    ms = str(max(1, int(timeout * 1000)))
    return {
        "statement_timeout": ms,
        "lock_timeout": ms,
        "idle_in_transaction_session_timeout": ms,
    }


def transaction_limits(timeout: float) -> str:
    """The server-side limits as one statement scoped to the current transaction.

    Behind a transaction-pooling PgBouncer a session setting (a startup ``options``, a plain
    ``SET``) would stay on whichever server connection ran it; ``set_config(..., true)`` is
    ``SET LOCAL``: it ends with the transaction, on the connection that ran it.
    """
    calls = ", ".join(
        f"set_config('{name}', '{value}', true)" for name, value in server_limits(timeout).items()
    )
    return f"SELECT {calls}"


def connect_args(
    dialect: str,
    query: dict[str, Any],
    timeout: float,
    connect_timeout: float,
    pgbouncer: bool = False,
) -> dict[str, Any]:
    """Driver arguments that bound every wait; what the URL's query already sets is left alone.

    SQLAlchemy lets ``connect_args`` override the URL's query, so a default is only added for
    a parameter the user did not pass. ``pgbouncer`` (PostgreSQL behind a transaction-pooling
    PgBouncer): no startup ``options`` (PgBouncer refuses the connection; the limits are set
    per transaction instead, see ``transaction_limits``) and no server-side prepared statements
    (psycopg prepares a statement run five times on one connection, which PgBouncer may have
    handed to another client meanwhile).
    """
    ms = max(1, int(timeout * 1000))
    if dialect == "postgresql":
        defaults: dict[str, Any] = {
            "connect_timeout": max(1, round(connect_timeout)),
            # a dead peer or a cut network (not a frozen server on a live host: its kernel
            # still ACKs), noticed while waiting or idle in the pool
            "keepalives": 1,
            "keepalives_idle": max(1, round(timeout)),
            "keepalives_interval": 1,
            "keepalives_count": 3,
            "tcp_user_timeout": ms,
        }
        args = {k: v for k, v in defaults.items() if k not in query}
        if pgbouncer:
            args["prepare_threshold"] = None
            return args
        limits = " ".join(f"-c {name}={value}" for name, value in server_limits(timeout).items())
        # the user's own options come last: a setting named twice takes the last value
        args["options"] = f"{limits} {query['options']}" if query.get("options") else limits
        return args
    # PyMySQL: socket timeouts on every read and write of a query's round trip
    defaults = {
        "connect_timeout": max(1, round(connect_timeout)),
        "read_timeout": timeout + GRACE,
        "write_timeout": timeout + GRACE,
    }
    return {k: v for k, v in defaults.items() if k not in query}


class Watch:
    """One call under the watchdog. ``fired``: its deadline passed and its socket was cut."""

    __slots__ = ("deadline", "fd", "fired")

    def __init__(self, fd: int, deadline: float) -> None:
        self.fd = fd
        self.deadline = deadline
        self.fired = False


class Watchdog:
    """Shuts down the socket of a call still running past its deadline.

    One thread per process, started on first use (and again in a forked child), looking at the
    calls in flight every ``_TICK``, asleep after ``_NAP_AFTER`` without one. A call's socket is duplicated when it is watched, so the watchdog can
    only ever shut down that call's connection, even if the driver closed the original file
    descriptor meanwhile and the number was reused.
    """

    def __init__(self) -> None:
        self._pid = -1
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Condition(threading.Lock())
        self._calls: set[Watch] = set()
        self._thread: threading.Thread | None = None
        self._asleep = False

    def watch(self, fd: int, seconds: float) -> Watch:
        if self._pid != os.getpid():  # forked: the parent's thread and lock are not ours
            self._reset()
        watch = Watch(os.dup(fd), time.monotonic() + seconds)
        with self._lock:
            self._calls.add(watch)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="agentsession-sql-watchdog", daemon=True
                )
                self._thread.start()
            elif self._asleep:
                self._asleep = False
                self._lock.notify()
        return watch

    def done(self, watch: Watch) -> None:
        with self._lock:
            self._calls.discard(watch)
            os.close(watch.fd)

    def _run(self) -> None:
        lock = self._lock
        busy = time.monotonic()
        with lock:
            while True:
                now = time.monotonic()
                if self._calls:
                    busy = now
                    for watch in [w for w in self._calls if not w.fired and w.deadline <= now]:
                        watch.fired = True
                        _shut_down(watch.fd)
                elif now - busy > _NAP_AFTER:
                    self._asleep = True
                    while self._asleep:
                        lock.wait()
                    continue
                lock.wait(_TICK)


def _shut_down(fd: int) -> None:
    sock = socket.socket(fileno=os.dup(fd))
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by the peer
    finally:
        sock.close()


WATCHDOG = Watchdog()
