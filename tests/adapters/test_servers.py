"""Real servers in subprocesses: restarts, ``uvicorn --reload``, two worker processes, outages.

uvicorn serves the demo (``agentsession demo``) and the Starlette and FastAPI examples;
werkzeug and gunicorn serve the Flask example. Every turn's reply comes from the offline model,
which reports how many user messages it has seen: proof that the whole history was used.
"""

from __future__ import annotations

import shutil
import socket
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import STORES, drop_store, make_store_url
from servers import REPO, free_port, server

from agentsession.offline import user_messages_seen

pytestmark = pytest.mark.slow

EXAMPLES = REPO / "examples"


@pytest.fixture(params=[s for s in ("sqlite", "redis") if s in STORES])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store several processes share: the embedded one, and a server."""
    if request.param == "redis":
        pytest.importorskip("redis")
    url = make_store_url(str(request.param), tmp_path)
    yield url
    drop_store(str(request.param), url)


def demo(port: int, store: str) -> list[str]:
    return [sys.executable, "-m", "agentsession", "demo", "--port", str(port), "--store", store]


def uvicorn(target: str, port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "uvicorn", target, "--port", str(port), *extra]


def post(client: httpx.Client, url: str, field: str, text: str) -> dict[str, object]:
    response = client.post(url, json={field: text}, timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


def reply_of(answer: dict[str, object]) -> str:
    return str(answer["reply"])


def test_the_demo_survives_a_restart(shared_store: str, tmp_path: Path) -> None:
    pytest.importorskip("starlette")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/send"
    client = httpx.Client()
    started = time.monotonic()
    with server(demo(port, shared_store), tmp_path, port):
        boot = time.monotonic() - started
        post(client, url, "text", "first")
        post(client, url, "text", "second")
    # killed with SIGKILL: nothing was flushed on the way out; a new process, the same store
    with server(demo(port, shared_store), tmp_path, port):
        answer = post(client, url, "text", "what did I say earlier?")
    assert user_messages_seen(reply_of(answer)) == 3
    assert "'first'" in reply_of(answer) and "'second'" in reply_of(answer)
    assert boot < 15, f"the demo took {boot:.1f}s to start"


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("fastapi_app", lambda port: uvicorn("fastapi_app:app", port, "--app-dir", str(EXAMPLES))),
        ("flask_app", lambda port: [sys.executable, "-m", "flask", "--app",
                                    str(EXAMPLES / "flask_app.py"), "run", "--port", str(port)]),
    ],
    ids=["fastapi-uvicorn", "flask-werkzeug"],
)  # fmt: skip
def test_an_example_survives_a_restart(name: str, command: object, tmp_path: Path) -> None:
    pytest.importorskip(name.removesuffix("_app"))
    port, store = free_port(), f"sqlite:///{tmp_path / 'example.db'}"
    args = command(port)  # type: ignore[operator]
    url = f"http://127.0.0.1:{port}/chat"
    client = httpx.Client()
    with server(args, tmp_path, port, health="/history", AGENTSESSION_STORE=store):
        post(client, url, "message", "first")
        post(client, url, "message", "second")
    with server(args, tmp_path, port, health="/history", AGENTSESSION_STORE=store):
        answer = post(client, url, "message", "what did I say earlier?")
        history = client.get(f"http://127.0.0.1:{port}/history").json()["messages"]
    assert user_messages_seen(reply_of(answer)) == 3
    assert history[::2] == ["first", "second", "what did I say earlier?"]


def test_the_conversation_survives_uvicorn_reload(tmp_path: Path) -> None:
    pytest.importorskip("starlette")
    port, store = free_port(), f"sqlite:///{tmp_path / 'reload.db'}"
    module = tmp_path / "reload_app.py"
    shutil.copy(EXAMPLES / "starlette_app.py", module)
    args = uvicorn("reload_app:app", port, "--reload", "--reload-dir", str(tmp_path))
    client = httpx.Client()
    url = f"http://127.0.0.1:{port}/chat"
    with server(args, tmp_path, port, health="/", AGENTSESSION_STORE=store):
        first = post(client, url, "message", "before the reload")
        post(client, url, "message", "still before")
        module.write_text(module.read_text() + "\n# touched\n")
        sent, answer = 2, first
        deadline = time.monotonic() + 30
        while answer["pid"] == first["pid"]:  # until the reloaded process answers
            assert time.monotonic() < deadline, "uvicorn did not reload"
            time.sleep(0.2)
            try:
                answer = post(client, url, "message", "what did I say earlier?")
            except httpx.HTTPError:
                continue
            sent += 1
    assert user_messages_seen(reply_of(answer)) == sent
    assert "'before the reload'" in reply_of(answer)


def many_turns(url: str, field: str, turns: int = 20) -> tuple[set[int], list[str], httpx.Cookies]:
    """``turns`` turns from one client, each on a new connection so any worker may take it.

    The kernel may hand every connection to the same worker (it does under ``gunicorn
    --preload``); then pairs of concurrent turns follow, bounded: a worker busy with one turn
    cannot take the other, so both workers serve the one conversation and its turns queue.
    """
    pids: set[int] = set()
    replies: list[str] = []
    cookies = httpx.Cookies()
    for i in range(turns):
        with httpx.Client(cookies=cookies) as client:
            answer = post(client, url, field, f"turn {i}")
            cookies = client.cookies
        pids.add(int(str(answer["pid"])))
        replies.append(reply_of(answer))
    for pair in range(10):
        if len(pids) > 1:
            break
        jars = [httpx.Cookies(cookies), httpx.Cookies(cookies)]

        def turn(k: int, jars: list[httpx.Cookies] = jars, pair: int = pair) -> dict[str, object]:
            with httpx.Client(cookies=jars[k]) as client:
                return post(client, url, field, f"concurrent {pair}.{k}")

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(turn, range(2)))
        for answer in answers:
            pids.add(int(str(answer["pid"])))
            replies.append(reply_of(answer))
    return pids, replies, cookies


def assert_one_conversation(replies: list[str], history_length: int) -> None:
    """Every turn's model saw every earlier turn, whichever worker served it."""
    assert sorted(user_messages_seen(r) for r in replies) == list(range(1, len(replies) + 1))
    assert history_length == 2 * len(replies)


def test_two_uvicorn_workers_share_one_conversation(shared_store: str, tmp_path: Path) -> None:
    pytest.importorskip("starlette")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = uvicorn("agentsession.adapters.demo:app_from_environment", port, "--factory",
                   "--workers", "2")  # fmt: skip
    with server(args, tmp_path, port, AGENTSESSION_DEMO_STORE=shared_store):
        pids, replies, cookies = many_turns(f"{base}/api/send", "text")
        history = httpx.get(f"{base}/api/history", cookies=cookies).json()["history"]
        stranger = httpx.get(f"{base}/api/history").json()["history"]
    assert_one_conversation(replies, len(history))
    assert [m["role"] for m in history] == ["user", "assistant"] * len(replies)
    assert stranger == []  # no cookie: a fresh conversation, never another's
    assert len(pids) == 2, f"one worker served every turn: {pids}"


@pytest.mark.parametrize("preload", [False, True], ids=["fork-then-import", "preload"])
def test_two_gunicorn_workers_with_flask(shared_store: str, preload: bool, tmp_path: Path) -> None:
    pytest.importorskip("flask")
    pytest.importorskip("gunicorn")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # --preload builds the app (and its SessionManager) before fork: the loop thread must not be
    args = [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}",
            "--chdir", str(EXAMPLES), *(["--preload"] if preload else []), "flask_app:app"]  # fmt: skip
    with server(args, tmp_path, port, health="/history", AGENTSESSION_STORE=shared_store):
        pids, replies, cookies = many_turns(f"{base}/chat", "message")
        history = httpx.get(f"{base}/history", cookies=cookies).json()["messages"]
    assert_one_conversation(replies, len(history))
    assert len(pids) == 2, f"one worker served every turn: {pids}"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again on exit: nothing listens there


def test_a_store_that_is_down_is_503_and_pages_without_a_session_still_work(
    tmp_path: Path,
) -> None:
    pytest.importorskip("starlette")
    pytest.importorskip("redis")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    down = f"redis://127.0.0.1:{closed_port()}/0"
    with server(demo(port, down), tmp_path, port):
        send = httpx.post(f"{base}/api/send", json={"text": "hello"}, timeout=30)
        page = httpx.get(f"{base}/")  # a first visit reads no store
    assert send.status_code == 503 and send.json()["code"] == "store_unavailable"
    assert send.headers["retry-after"] == "5" and "Traceback" not in send.text
    assert page.status_code == 200
