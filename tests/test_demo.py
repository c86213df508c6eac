"""The demo: its pages and API in process, then ``agentsession demo`` in headless Chromium.

The browser test needs Debian's ``chromium`` (/usr/bin/chromium) and the ``playwright`` package
(its driver only: no browser download). It skips without them, and fails without them when
``AGENTSESSION_REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import free_port, server

pytest.importorskip("starlette")

from agentsession.adapters import demo
from agentsession.offline import installed_family, user_messages_seen

CHROMIUM = os.environ.get("AGENTSESSION_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def in_process(store_url: str, *steps: tuple[str, str, dict[str, Any]]) -> list[httpx.Response]:
    app = demo.create_app(store_url, installed_family())

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
            return [await client.request(method, path, **kw) for method, path, kw in steps]

    return asyncio.run(run())


def test_the_page_shows_the_whole_conversation_escaped(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'demo.db'}"
    first_visit, hello, earlier, page = in_process(
        store,
        ("GET", "/", {}),
        ("POST", "/api/send", {"json": {"text": "<script>alert(1)</script>"}}),
        ("POST", "/api/send", {"json": {"text": "what did I say earlier?"}}),
        ("GET", "/", {}),
    )
    assert first_visit.status_code == 200 and "set-cookie" not in first_visit.headers
    assert "set-cookie" in hello.headers and "HttpOnly" in hello.headers["set-cookie"]
    assert user_messages_seen(earlier.json()["reply"]) == 2
    assert [m["role"] for m in earlier.json()["history"]] == ["user", "assistant"] * 2
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<script>alert(1)" not in page.text
    assert page.text.count("<li ") == 4
    assert (tmp_path / "demo.db.secret").exists()  # the key sits next to the database


def test_the_page_works_without_javascript_and_says_what_went_wrong(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'demo.db'}"
    form, page, empty, huge, new, after = in_process(
        store,
        ("POST", "/api/send", {"data": {"text": "a plain form post"}}),
        ("GET", "/", {}),
        ("POST", "/api/send", {"json": {"text": "   "}}),
        ("POST", "/api/send", {"json": {"text": "x" * 70_000}}),
        ("POST", "/api/new", {"headers": {"accept": "application/json"}}),
        ("GET", "/api/history", {}),
    )
    assert form.status_code == 303 and form.headers["location"] == "/"
    assert "a plain form post" in page.text
    assert empty.status_code == 400 and empty.json()["detail"]
    assert huge.status_code == 413 and huge.json()["code"] == "message_too_large"
    assert new.json()["history"] == [] and "Max-Age=0" in new.headers["set-cookie"]
    assert after.json()["history"] == []


def test_an_empty_page_says_what_to_do_and_a_full_one_does_not(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'demo.db'}"
    empty, _, full = in_process(
        store,
        ("GET", "/", {}),
        ("POST", "/api/send", {"json": {"text": "hello"}}),
        ("GET", "/", {}),
    )
    assert '<p id="hint">No messages yet.' in empty.text
    assert '<p id="hint" hidden>' in full.text


def test_new_conversation_asks_before_it_deletes(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'demo.db'}"
    _, page, asked, history, deleted, after = in_process(
        store,
        ("POST", "/api/send", {"json": {"text": "keep me"}}),
        ("GET", "/", {}),
        ("GET", "/new", {}),  # the button without JavaScript: a question, nothing deleted
        ("GET", "/api/history", {}),
        ("POST", "/api/new", {}),  # the confirmation page's form
        ("GET", "/api/history", {}),
    )
    assert 'action="/new"' in page.text  # the button without JavaScript goes to the question
    assert 'confirm("Delete this conversation' in page.text  # with JavaScript: a dialog
    assert asked.status_code == 200 and "cannot be undone" in asked.text
    assert 'action="/api/new"' in asked.text
    assert history.json()["history"][0]["content"] == "keep me"
    assert deleted.status_code == 303 and after.json()["history"] == []


def test_no_favicon_404_and_a_readable_size_limit(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'demo.db'}"
    icon, huge, form = in_process(
        store,
        ("GET", "/favicon.ico", {}),
        ("POST", "/api/send", {"json": {"text": "x" * 70_000}}),
        ("POST", "/api/send", {"data": {"text": "x" * 70_000}}),
    )
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert huge.status_code == 413 and huge.json()["code"] == "message_too_large"
    assert huge.json()["detail"] == (
        "That message is 68.4 KB; the demo takes at most 64 KB. Shorten it and send it again."
    )
    assert form.status_code == 413 and "68.4 KB" in form.text and "Back" in form.text


def test_agentsession_ls_lists_what_the_demo_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from agentsession.cli import main

    monkeypatch.delenv("AGENTSESSION_STORE", raising=False)
    (hello,) = in_process(demo.DEFAULT_STORE, ("POST", "/api/send", {"json": {"text": "hi"}}))
    assert hello.status_code == 200
    assert main(["ls"]) == 0  # no --store: the same default file
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 2 and listed[1].split()[1] == "2"  # header, one conversation


def test_the_signing_key_is_made_once_and_can_be_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentsession import open_store

    store = open_store(f"sqlite:///{tmp_path / 'demo.db'}")
    key = demo.secret_key(store)
    assert demo.secret_key(store) == key and len(key) == 64
    assert oct((tmp_path / "demo.db.secret").stat().st_mode & 0o777) == "0o600"
    assert list(tmp_path.glob("*.tmp")) == []
    monkeypatch.setenv("AGENTSESSION_SECRET_KEY", "from the environment")
    assert demo.secret_key(store) == "from the environment"


def browser_or_skip() -> None:
    missing = []
    if not shutil.which(CHROMIUM):
        missing.append(f"chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install playwright; no 'playwright install')")
    if missing:
        reason = "the browser test needs " + " and ".join(missing)
        if os.environ.get("AGENTSESSION_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + ", and AGENTSESSION_REQUIRE_BROWSER=1")
        pytest.skip(reason)


@pytest.mark.slow
def test_the_demo_in_a_browser_remembers_across_reload_and_restart(tmp_path: Path) -> None:
    browser_or_skip()
    from playwright.sync_api import sync_playwright

    port, store = free_port(), f"sqlite:///{tmp_path / 'demo.db'}"
    args = [sys.executable, "-m", "agentsession", "demo", "--port", str(port), "--store", store]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page()
            with server(args, tmp_path, port):
                page.goto(f"http://127.0.0.1:{port}/")
                for text in ("hello from the browser", "what did I say earlier?"):
                    page.fill("#text", text)
                    page.click("#send")
                    page.wait_for_function(
                        "t => [...document.querySelectorAll('#log li')]"
                        ".some(li => li.textContent.includes(t))",
                        arg=text,
                    )
                page.wait_for_function("document.querySelectorAll('#log li').length === 4")
                page.wait_for_function("!sessionStorage.getItem('agentsession-stream')")  # replied
                assert "agentsession" not in page.evaluate("document.cookie")  # HttpOnly
                assert page.locator("#hint").is_hidden()
                dialogs: list[str] = []
                page.once("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
                page.click("#new button")  # asks first; dismissed, nothing is deleted
                assert dialogs == ["Delete this conversation and start a new one?"]
                page.reload()
                items = page.locator("#log li").all_text_contents()
            assert len(items) == 4, items
            assert "I have seen 2 user messages" in items[3]
            assert "hello from the browser" in items[3]

            with server(args, tmp_path, port):  # a new server process, the same store and key
                page.reload()
                after_restart = page.locator("#log li").all_text_contents()
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)
        finally:
            browser.close()
    assert after_restart == items


def test_the_demo_streams_over_sse_in_process(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'demo.db'}"
    app = demo.create_app(store, "agentchat", delay=0)

    async def run() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
            streamed = await client.post("/api/stream", json={"text": "hello"})
            replayed = await client.get("/api/stream")
            return streamed, replayed, await client.get("/api/history")

    streamed, replayed, history = asyncio.run(run())
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert (
        "event: delta" in streamed.text and streamed.text.rstrip().splitlines()[-2] == "event: end"
    )
    assert replayed.text == streamed.text  # the journal replays the same events
    assert [m["role"] for m in history.json()["history"]] == ["user", "assistant"]


@pytest.mark.slow
def test_the_demo_shows_a_reply_as_it_is_written_and_a_reload_picks_it_up(
    tmp_path: Path,
) -> None:
    browser_or_skip()
    from playwright.sync_api import sync_playwright

    port, store = free_port(), f"sqlite:///{tmp_path / 'demo.db'}"
    args = [sys.executable, "-m", "agentsession", "demo", "--port", str(port), "--store", store,
            "--family", "agentchat"]  # fmt: skip
    reply = "li.assistant:last-child"
    with sync_playwright() as p, server(args, tmp_path, port, AGENTSESSION_DEMO_DELAY="0.25"):
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.fill("#text", "tell me what I said")
            page.click("#send")
            page.wait_for_selector(reply)
            page.wait_for_function(f"document.querySelector('{reply}').textContent.length > 20")
            early = page.locator(reply).text_content() or ""
            page.wait_for_function(
                f"document.querySelector('{reply}').textContent.length > {len(early) + 5}"
            )
            assert "You said" not in early  # text appears as it comes, not all at once
            page.reload()  # mid-reply
            page.wait_for_function(
                f"document.querySelector('{reply}') && "
                f"document.querySelector('{reply}').textContent.includes(\"said: 'tell me\")",
                timeout=60_000,
            )
            page.wait_for_function("!sessionStorage.getItem('agentsession-stream')")
            items = page.locator("#log li").all_text_contents()
        finally:
            browser.close()
    assert len(items) == 2 and "I have seen 1 user message" in items[1], items
