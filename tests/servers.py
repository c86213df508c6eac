"""Start real servers in subprocesses for tests, and make sure they die."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
# the examples refuse to start without a SECRET_KEY
EXAMPLE_SECRET = "an-example-secret-key-of-at-least-32-bytes"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(port: int, process: subprocess.Popen[bytes], path: str = "/health") -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}: {read_log(process)}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"server on port {port} did not come up: {read_log(process)}")


def read_log(process: subprocess.Popen[bytes]) -> str:
    log = getattr(process, "log_path", None)
    return Path(log).read_text()[-3000:] if log else ""


@contextmanager
def server(
    args: list[str], cwd: Path, port: int, health: str = "/health", **env: str
) -> Iterator[subprocess.Popen[bytes]]:
    log = cwd / f"server-{port}-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            args,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO), "SECRET_KEY": EXAMPLE_SECRET, **env},
            start_new_session=True,
        )
    process.log_path = str(log)  # type: ignore[attr-defined]
    try:
        wait_until_up(port, process, health)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def find_pgbouncer() -> str | None:
    """The pgbouncer program (Debian installs it in /usr/sbin, not on every user's PATH)."""
    found = shutil.which("pgbouncer")
    if found is None and os.access("/usr/sbin/pgbouncer", os.X_OK):
        found = "/usr/sbin/pgbouncer"
    return found


@contextmanager
def pgbouncer(
    *,
    listen: str = "127.0.0.1",
    pool_size: int = 2,
    upstream: tuple[str, int] = ("127.0.0.1", 5432),
    database: str = "test",
    user: str = "postgres",
    max_client_conn: int = 200,
) -> Iterator[int]:
    """A pgbouncer of the test's own, transaction pooling, on a free port of ``listen``.

    It yields the port and is killed on exit. pgbouncer refuses to run as root: started by
    root, it switches to the ``postgres`` account (or ``nobody``), which owns its directory.
    """
    program = find_pgbouncer()
    if program is None:
        raise FileNotFoundError("pgbouncer is not installed (apt-get install pgbouncer)")
    root = Path(tempfile.mkdtemp(prefix="agentsession-pgbouncer-"))
    port = free_port_on(listen)
    as_user: list[str] = []
    if os.geteuid() == 0:
        account = "postgres"
        try:
            entry = pwd.getpwnam(account)
        except KeyError:
            account, entry = "nobody", pwd.getpwnam("nobody")
        os.chown(root, entry.pw_uid, entry.pw_gid)
        as_user = ["-u", account]
    (root / "users.txt").write_text(f'"{user}" ""\n')
    host, upstream_port = upstream
    (root / "pgbouncer.ini").write_text(
        textwrap.dedent(
            f"""\
            [databases]
            {database} = host={host} port={upstream_port} dbname={database} user={user}
            [pgbouncer]
            listen_addr = {listen}
            listen_port = {port}
            unix_socket_dir =
            auth_type = trust
            auth_file = {root / "users.txt"}
            pool_mode = transaction
            default_pool_size = {pool_size}
            max_client_conn = {max_client_conn}
            logfile = {root / "pgbouncer.log"}
            """
        )
    )
    process = subprocess.Popen(
        [program, *as_user, str(root / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                log = root / "pgbouncer.log"
                said = log.read_text()[-2000:] if log.exists() else ""
                raise AssertionError(f"pgbouncer exited with {process.returncode}: {said}")
            try:
                socket.create_connection((listen, port), 0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"pgbouncer did not listen on {listen}:{port}") from None
                time.sleep(0.05)
        yield port
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        shutil.rmtree(root, ignore_errors=True)


def free_port_on(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])
