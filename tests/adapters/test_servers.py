"""Real servers in subprocesses: restarts, ``--reload`` and two worker processes."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import httpx
import pytest
from servers import REPO, free_port, server

from agentsession.offline import user_messages_seen

pytestmark = pytest.mark.slow


def demo(port: int, store: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "agentsession",
        "demo",
        "--port",
        str(port),
        "--store",
        store,
        *extra,
    ]


def send(client: httpx.Client, port: int, text: str) -> dict[str, object]:
    response = client.post(f"http://127.0.0.1:{port}/api/send", json={"text": text}, timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_conversation_survives_a_server_restart(tmp_path: Path) -> None:
    port, store = free_port(), f"sqlite:///{tmp_path / 'demo.db'}"
    client = httpx.Client()
    with server(demo(port, store), tmp_path, port):
        send(client, port, "first")
        send(client, port, "second")
    # the process was killed with SIGKILL; a new one starts on the same store
    with server(demo(port, store), tmp_path, port):
        reply = send(client, port, "what did I say earlier?")
    assert user_messages_seen(str(reply["reply"])) == 3
    assert "'first'" in str(reply["reply"]) and "'second'" in str(reply["reply"])


def test_conversation_survives_uvicorn_reload(tmp_path: Path) -> None:
    port, store = free_port(), f"sqlite:///{tmp_path / 'reload.db'}"
    module = tmp_path / "reload_app.py"
    shutil.copy(REPO / "examples" / "starlette_app.py", module)
    args = [sys.executable, "-m", "uvicorn", "reload_app:app", "--reload", "--port", str(port),
            "--reload-dir", str(tmp_path)]  # fmt: skip
    client = httpx.Client()
    url = f"http://127.0.0.1:{port}/chat"
    with server(args, tmp_path, port, health="/", AGENTSESSION_STORE=store):
        first = client.post(url, json={"message": "before reload"}).json()
        client.post(url, json={"message": "still before"})
        module.write_text(module.read_text() + "\n# touched\n")
        deadline = time.monotonic() + 30
        pid, sent = first["pid"], 2
        while time.monotonic() < deadline:  # until a new worker process answers
            time.sleep(0.3)
            try:
                reply = client.post(url, json={"message": "after reload?"}, timeout=5).json()
            except httpx.HTTPError:
                continue
            sent += 1
            if reply["pid"] != pid:
                break
        else:
            raise AssertionError("uvicorn did not reload")
    assert reply["pid"] != pid
    assert user_messages_seen(str(reply["reply"])) == sent


def _many_turns(
    port: int, path: str, field: str, turns: int = 20
) -> tuple[set[int], list[str], httpx.Cookies]:
    pids: set[int] = set()
    replies = []
    cookies = httpx.Cookies()
    for i in range(turns):
        # a new connection per turn, so either worker may accept it
        with httpx.Client(cookies=cookies) as client:
            response = client.post(
                f"http://127.0.0.1:{port}{path}", json={field: f"turn {i}"}, timeout=30
            )
            assert response.status_code == 200, response.text
            cookies = client.cookies
        pids.add(int(response.json()["pid"]))
        replies.append(str(response.json()["reply"]))
    return pids, replies, cookies


def test_two_uvicorn_workers_share_one_conversation(tmp_path: Path) -> None:
    port, store = free_port(), f"sqlite:///{tmp_path / 'workers.db'}"
    with server(demo(port, store), tmp_path, port):
        pass  # creates the signing key once, as `agentsession demo` does before its workers start
    args = [sys.executable, "-m", "uvicorn", "agentsession.adapters.demo:app_from_environment",
            "--factory", "--workers", "2", "--port", str(port)]  # fmt: skip
    with server(args, tmp_path, port, AGENTSESSION_DEMO_STORE=store):
        pids, replies, cookies = _many_turns(port, "/api/send", "text")
        history = httpx.get(f"http://127.0.0.1:{port}/api/history", cookies=cookies).json()[
            "history"
        ]
        stranger = httpx.get(f"http://127.0.0.1:{port}/api/history").json()["history"]
    assert [user_messages_seen(r) for r in replies] == list(range(1, 21))
    assert len(history) == 40 and [m["role"] for m in history] == ["user", "assistant"] * 20
    assert stranger == []  # no cookie: a fresh conversation, never another's
    assert len(pids) == 2, f"one worker served every turn: {pids}"


def test_two_gunicorn_workers_with_flask(tmp_path: Path) -> None:
    port, store = free_port(), f"sqlite:///{tmp_path / 'gunicorn.db'}"
    args = [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}",
            "--chdir", str(REPO / "examples"), "flask_app:app"]  # fmt: skip
    with server(args, tmp_path, port, health="/history", AGENTSESSION_STORE=store):
        pids, replies, cookies = _many_turns(port, "/chat", "message")
        history = httpx.get(f"http://127.0.0.1:{port}/history", cookies=cookies).json()["messages"]
    assert [user_messages_seen(r) for r in replies] == list(range(1, 21))
    assert len(history) == 40
    assert len(pids) == 2, f"one worker served every turn: {pids}"
