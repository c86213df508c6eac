"""``agentsession demo`` in headless Chromium: send two messages, reload, the conversation is shown.

Needs Debian's ``chromium`` (/usr/bin/chromium) and the ``playwright`` package (its driver only:
no browser download). Skips without them, fails without them when AGENTSESSION_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from servers import free_port, server

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("AGENTSESSION_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def browser_or_skip() -> None:
    missing = []
    if not shutil.which(CHROMIUM):
        missing.append(f"chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing.append("the playwright package")
    if missing:
        reason = "needs " + " and ".join(missing)
        if os.environ.get("AGENTSESSION_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + " and AGENTSESSION_REQUIRE_BROWSER=1")
        pytest.skip(reason)


def test_demo_page_remembers_across_reload_and_restart(tmp_path: Path) -> None:
    browser_or_skip()
    from playwright.sync_api import sync_playwright

    port, store = free_port(), f"sqlite:///{tmp_path / 'demo.db'}"
    args = [sys.executable, "-m", "agentsession", "demo", "--port", str(port), "--store", store]
    url = f"http://127.0.0.1:{port}/"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        with server(args, tmp_path, port):
            page.goto(url)
            for text in ("hello from the browser", "what did I say earlier?"):
                page.fill("#text", text)
                page.click("button:text('Send')")
                page.wait_for_function(
                    "t => [...document.querySelectorAll('#log li')].some(li => li.textContent.includes(t))",
                    arg=text,
                )
            page.wait_for_function("document.querySelectorAll('#log li').length === 4")
            page.reload()
            items = page.locator("#log li").all_text_contents()
        assert len(items) == 4
        assert "I have seen 2 user messages" in items[3] and "hello from the browser" in items[3]

        with server(args, tmp_path, port):  # a restarted server, same store and key
            page.reload()
            after_restart = page.locator("#log li").all_text_contents()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)
        browser.close()
    assert after_restart == items
