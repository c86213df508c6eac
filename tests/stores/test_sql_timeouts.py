"""The SQL store's bounds on every wait: ``?timeout=``, the driver arguments, the watchdog.

The frozen-server scenarios are in ``test_store_freeze.py``; these check the configuration
against the shared servers (read-only) and the watchdog on a socket pair.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from conftest import need_server

from agentsession import ConfigurationError
from agentsession.stores import open_store
from agentsession.stores._sql_timeouts import WATCHDOG, connect_args, transaction_limits


def test_defaults_bound_every_wait() -> None:
    pg = connect_args("postgresql", {}, 5.0, 5.0)
    assert pg["connect_timeout"] == 5 and pg["tcp_user_timeout"] == 5000
    assert pg["keepalives"] == 1 and pg["keepalives_idle"] == 5
    for setting in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout"):
        assert f"-c {setting}=5000" in pg["options"]
    my = connect_args("mysql", {}, 5.0, 5.0)
    assert my == {"connect_timeout": 5, "read_timeout": 6.0, "write_timeout": 6.0}


def test_behind_pgbouncer_the_limits_move_into_each_transaction() -> None:
    pg = connect_args("postgresql", {}, 2.0, 5.0, pgbouncer=True)
    assert "options" not in pg  # PgBouncer refuses the startup parameter
    assert pg["prepare_threshold"] is None and pg["tcp_user_timeout"] == 2000
    local = transaction_limits(2.0)
    for setting in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout"):
        assert f"set_config('{setting}', '2000', true)" in local  # SET LOCAL


def test_the_users_driver_parameters_win() -> None:
    pg = connect_args(
        "postgresql",
        {"connect_timeout": "2", "tcp_user_timeout": "900", "options": "-c statement_timeout=9s"},
        5.0,
        5.0,
    )
    assert "connect_timeout" not in pg and "tcp_user_timeout" not in pg  # the URL's stay
    # appended after ours: PostgreSQL takes the last value of a setting named twice
    assert pg["options"].endswith("-c statement_timeout=9s")
    assert connect_args("mysql", {"read_timeout": "30"}, 5.0, 5.0) == {
        "connect_timeout": 5,
        "write_timeout": 6.0,
    }


@pytest.mark.parametrize("bad", ["abc", "0", "-1"])
def test_a_bad_timeout_is_a_configuration_error(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        open_store(f"postgresql://postgres:pw@127.0.0.1:1/test?timeout={bad}")


def test_timeout_in_the_url_reaches_the_server() -> None:
    url = need_server("postgresql")
    store = open_store(f"{url}?timeout=2.5")
    try:
        with store.engine.connect() as conn:  # type: ignore[attr-defined]
            show = conn.exec_driver_sql
            assert show("SHOW statement_timeout").scalar() == "2500ms"
            assert show("SHOW lock_timeout").scalar() == "2500ms"
            assert show("SHOW idle_in_transaction_session_timeout").scalar() == "2500ms"
            client = conn.connection.dbapi_connection.info.get_parameters()  # libpq's side
            assert client["tcp_user_timeout"] == "2500" and client["keepalives"] == "1"
    finally:
        store.engine.dispose()  # type: ignore[attr-defined]


def test_pymysql_gets_socket_timeouts() -> None:
    url = need_server("mariadb")
    store = open_store(f"{url}?timeout=2&connect_timeout=3")
    try:
        with store.engine.connect() as conn:  # type: ignore[attr-defined]
            raw = conn.connection.dbapi_connection
            assert raw._read_timeout == 3.0 and raw._write_timeout == 3.0  # 2 s + 1 s of grace
            assert raw.connect_timeout == 3
    finally:
        store.engine.dispose()  # type: ignore[attr-defined]


def test_the_watchdog_cuts_only_an_overdue_call() -> None:
    overdue, client = socket.socketpair()
    on_time, other = socket.socketpair()
    try:
        late = WATCHDOG.watch(client.fileno(), 0.2)
        prompt = WATCHDOG.watch(other.fileno(), 30)
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(client.recv(10)))
        reader.start()
        reader.join(30)  # a hang guard: the blocked recv is woken by the shutdown
        assert not reader.is_alive() and got == [b""] and late.fired
        WATCHDOG.done(late)
        WATCHDOG.done(prompt)
        assert not prompt.fired
        other.sendall(b"ok")  # the call that finished in time keeps its connection
        assert on_time.recv(2) == b"ok"
        time.sleep(0.3)
        assert not prompt.fired
    finally:
        for sock in (overdue, client, on_time, other):
            sock.close()
