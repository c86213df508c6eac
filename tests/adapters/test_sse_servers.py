"""Streamed turns over real servers: a client that disconnects mid-stream from one server
(uvicorn) reconnects to another (gunicorn, other processes) on the same store, and gets the
events it missed, then the end; with ``on_disconnect="cancel"`` nothing of the turn is stored;
a server killed mid-stream leaves an ``error`` event for the reader and no half turn."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import STORES, drop_store, make_store_url
from servers import REPO, free_port, server

from agentsession.offline import user_messages_seen

pytestmark = pytest.mark.slow

EXAMPLES = REPO / "examples"


@pytest.fixture(params=[s for s in ("sqlite", "redis") if s in STORES])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    url = make_store_url(str(request.param), tmp_path)
    yield url
    drop_store(str(request.param), url)


def uvicorn(port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "starlette_app:app", "--port", str(port),
            "--app-dir", str(EXAMPLES)]  # fmt: skip


def gunicorn(port: int) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "-w", "2", "-k", "gthread", "--threads", "4",
            "-b", f"127.0.0.1:{port}", "--chdir", str(EXAMPLES), "flask_app:app"]  # fmt: skip


def read_events(lines: Iterator[str], count: int | None = None) -> list[dict[str, Any]]:
    """SSE messages from a line iterator: ``count`` of them, or all until the stream ends."""
    got: list[dict[str, Any]] = []
    fields: dict[str, Any] = {}
    for line in lines:
        if not line:
            if fields:
                got.append(fields)
                fields = {}
                if count is not None and len(got) == count:
                    break
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(": ")
        fields[name] = json.loads(value) if name == "data" else value
    if fields:
        got.append(fields)
    return got


def start_and_drop(client: httpx.Client, url: str, text: str, count: int) -> list[dict[str, Any]]:
    with client.stream("POST", url, json={"message": text}, timeout=30) as response:
        assert response.status_code == 200
        return read_events(response.iter_lines(), count)  # then the connection closes


def both_servers() -> None:
    """The Starlette example under uvicorn and the Flask one under gunicorn (a framework cell
    of the matrix installs one framework; the full suite has both)."""
    for module in ("starlette", "uvicorn", "flask", "gunicorn"):
        pytest.importorskip(module)


def test_a_dropped_stream_is_finished_and_replayed_by_another_server(
    shared_store: str, tmp_path: Path
) -> None:
    both_servers()
    env = {"AGENTSESSION_STORE": shared_store, "OFFLINE_CHUNK_DELAY": "0.05"}
    a, b = free_port(), free_port()
    with (
        server(uvicorn(a), tmp_path, a, health="/", **env),
        server(gunicorn(b), tmp_path, b, health="/history", **env),
    ):
        client = httpx.Client()
        client.post(f"http://127.0.0.1:{a}/chat", json={"message": "hello"}).raise_for_status()
        first = start_and_drop(client, f"http://127.0.0.1:{a}/chat/stream", "again?", 4)
        assert first[0]["event"] == "start" and first[-1]["event"] == "delta"
        headers = {"Last-Event-ID": first[-1]["id"]}
        with client.stream("GET", f"http://127.0.0.1:{b}/chat/stream", headers=headers,
                           timeout=60) as response:  # fmt: skip
            assert response.status_code == 200
            rest = read_events(response.iter_lines())
        every = first + rest
        turn = every[-1]
        assert turn["event"] == "end", every[-2:]
        assert [int(e["id"].split(":")[1]) for e in every] == list(range(len(every)))
        text = "".join(e["data"]["text"] for e in every if e["event"] == "delta")
        assert text == turn["data"]["turn"]["reply"] and user_messages_seen(text) == 2
        history = client.get(f"http://127.0.0.1:{b}/history").json()["messages"]
        assert history[2:] == ["again?", text]  # stored whole, though the reader had left


def test_a_dropped_stream_with_cancel_stores_nothing(shared_store: str, tmp_path: Path) -> None:
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    env = {"AGENTSESSION_STORE": shared_store, "OFFLINE_CHUNK_DELAY": "0.05",
           "STREAM_ON_DISCONNECT": "cancel"}  # fmt: skip
    port = free_port()
    with server(uvicorn(port), tmp_path, port, health="/", **env):
        client = httpx.Client()
        client.post(f"http://127.0.0.1:{port}/chat", json={"message": "kept"}).raise_for_status()
        start_and_drop(client, f"http://127.0.0.1:{port}/chat/stream", "dropped", 3)
        for _ in range(100):  # the cancelled turn's end is journaled just after
            response = client.get(f"http://127.0.0.1:{port}/chat/stream", timeout=30)
            if response.status_code == 200 and "cancelled" in response.text:
                break
            time.sleep(0.1)
        assert '"code":"cancelled"' in response.text
        reply = client.post(f"http://127.0.0.1:{port}/chat", json={"message": "next"}).json()
        assert user_messages_seen(reply["reply"]) == 2  # the dropped turn left nothing


def test_a_server_killed_mid_stream_leaves_an_error_event(
    shared_store: str, tmp_path: Path
) -> None:
    both_servers()
    env = {"AGENTSESSION_STORE": shared_store, "OFFLINE_CHUNK_DELAY": "0.5"}
    a, b = free_port(), free_port()
    client = httpx.Client()
    with server(gunicorn(b), tmp_path, b, health="/history", **env):
        with server(uvicorn(a), tmp_path, a, health="/", **env) as dying:
            client.post(f"http://127.0.0.1:{a}/chat", json={"message": "hello"}).raise_for_status()
            seen = start_and_drop(client, f"http://127.0.0.1:{a}/chat/stream", "doomed", 3)
            time.sleep(0.3)  # its journal is written behind the stream
            os.killpg(dying.pid, signal.SIGKILL)
        headers = {"Last-Event-ID": seen[-1]["id"]}
        response = client.get(f"http://127.0.0.1:{b}/chat/stream", headers=headers, timeout=60)
        if response.status_code == 200:  # events the reader missed, then the error
            tail = read_events(iter(response.text.splitlines()))
            assert tail[-1]["event"] == "error" and tail[-1]["data"]["code"] == "interrupted"
        else:  # nothing it missed: the error is the answer
            assert response.status_code == 410 and response.json()["code"] == "interrupted"
        for _ in range(150):  # the dead server's lease expires, then turns go on
            answer = client.post(f"http://127.0.0.1:{b}/chat", json={"message": "after"})
            if answer.status_code == 200:
                break
            time.sleep(0.1)
        assert user_messages_seen(answer.json()["reply"]) == 2  # no half turn
        history = client.get(f"http://127.0.0.1:{b}/history").json()["messages"]
        assert history[::2] == ["hello", "after"]
