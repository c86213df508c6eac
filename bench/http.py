"""Throughput over real HTTP: two worker processes, many conversations, a load generator on loopback.

The demo app (ASGI middleware) under ``uvicorn --workers 2`` and the Flask example under
``gunicorn -w 2 --threads 4``, each on the SQLite, Redis and PostgreSQL stores. Every virtual
client owns one conversation (its own cookie) and sends its turns one after another; the load
is bounded in requests and in time and stops by itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from ._report import Table

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("AGENTSESSION_TEST_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "AGENTSESSION_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
DEADLINE_SECONDS = 60
BENCH_KEY = "bench-http-secret-key-of-32-bytes-or-more"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(
    args: list[str], port: int, env: dict[str, str], cwd: str, ready: str
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        args,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:  # both workers up: a few answers in a row
            if all(
                httpx.get(f"http://127.0.0.1:{port}{ready}", timeout=2).status_code == 200
                for _ in range(4)
            ):
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    raise RuntimeError(f"server on {port} did not start")


async def _load(
    url: str, field: str, clients: int, turns: int
) -> tuple[int, float, list[float], int]:
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    stop_at = time.monotonic() + DEADLINE_SECONDS

    async def client(i: int) -> None:
        nonlocal errors
        async with httpx.AsyncClient(timeout=30) as http:
            for turn in range(turns):
                if time.monotonic() > stop_at:
                    return
                start = time.perf_counter()
                try:
                    response = await http.post(url, json={field: f"client {i} turn {turn}"})
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] += 1
                    continue
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    errors[str(response.status_code)] += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return len(latencies), time.perf_counter() - started, latencies, errors


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(quick: bool) -> list[Table]:
    clients, turns = (8, 5) if quick else (16, 10)
    rows: list[list[Any]] = []
    with tempfile.TemporaryDirectory(dir=".") as folder:
        tag = uuid.uuid4().hex[:8]
        folder = os.path.abspath(folder)  # the servers run with their own working directory
        stores = {
            "sqlite": f"sqlite:///{folder}/http.db",
            "redis": f"{REDIS_URL}?prefix=bench-http-{tag}:",
            "postgresql": f"{POSTGRES_URL}?table_prefix=benchhttp{tag}_",
        }
        servers = {
            "uvicorn --workers 2 (ASGI)": (
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "agentsession.adapters.demo:app_from_environment",
                    "--factory",
                    "--workers",
                    "2",
                    "--log-level",
                    "warning",
                    "--port",
                ],
                "/api/send",
                "text",
                "AGENTSESSION_DEMO_STORE",
                "/health",
            ),
            "gunicorn -w 2 --threads 4 (Flask)": (
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "-w",
                    "2",
                    "--threads",
                    "4",
                    "--chdir",
                    str(ROOT / "examples"),
                    "flask_app:app",
                    "-b",
                ],
                "/chat",
                "message",
                "AGENTSESSION_STORE",
                "/history",
            ),
        }
        # the demo writes its offline replies word by word for the page: not here
        env_key = {
            "AGENTSESSION_SECRET_KEY": BENCH_KEY,
            "SECRET_KEY": BENCH_KEY,
            "AGENTSESSION_DEMO_DELAY": "0",
        }
        for server, (command, path, field, store_env, ready) in servers.items():
            for kind, url in stores.items():
                port = _free_port()
                address = str(port) if "uvicorn" in command[2] else f"127.0.0.1:{port}"
                try:
                    process = _start(
                        [*command, address], port, {store_env: url, **env_key}, folder, ready
                    )
                except RuntimeError as exc:
                    rows.append([server, kind, f"unavailable: {exc}", "", "", "", ""])
                    continue
                try:
                    count, seconds, latencies, errors = asyncio.run(
                        _load(f"http://127.0.0.1:{port}{path}", field, clients, turns)
                    )
                finally:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(10)
                rows.append(
                    [
                        server,
                        kind,
                        count,
                        round(count / seconds, 1),
                        round(statistics.median(latencies) * 1000, 2),
                        round(_percentile(latencies, 0.99) * 1000, 2),
                        " ".join(f"{k}: {v}" for k, v in sorted(errors.items())) or 0,
                    ]
                )
    return [
        Table(
            f"Throughput over HTTP on loopback: {clients} clients x {turns} turns, each client its own conversation",
            ["server", "store", "turns", "turns/s", "p50 ms", "p99 ms", "non-200"],
            rows,
            notes=[
                "Each turn runs the offline model through AutoGen agentchat and returns the reply (the demo also returns the history).",
                "The load generator (httpx, asyncio) runs on the same 2 cores as the servers.",
            ],
        )
    ]
