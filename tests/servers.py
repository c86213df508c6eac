"""Start real servers in subprocesses for tests, and make sure they die."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
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
