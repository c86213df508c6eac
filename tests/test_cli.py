"""The ``agentsession`` command, run as a real subprocess where a process boundary matters."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agentsession import SessionManager
from agentsession.cli import main
from agentsession.offline import offline_agent_factory, user_messages_seen


def agentsession(*args: str, stdin: str = "", cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentsession", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


@pytest.mark.slow
def test_chat_continues_after_a_process_restart(family: str, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'chat.db'}"
    first = agentsession(
        "chat",
        "--store",
        store,
        "--family",
        family,
        stdin="hello\nhow are you?\n/quit\n",
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    session_id = re.search(r"^session (\S+)", first.stdout, re.MULTILINE)
    assert session_id is not None, first.stdout

    second = agentsession(
        "chat", "--store", store, "--family", family, "--session", session_id.group(1),
        stdin="what did I say earlier?\n",
        cwd=tmp_path,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    replies = [line for line in second.stdout.splitlines() if line.startswith("assistant:")]
    assert len(replies) == 1
    assert user_messages_seen(replies[0]) == 3
    assert "'hello'" in replies[0] and "'how are you?'" in replies[0]
    # nothing but the chat itself on the terminal (AutoGen chatter would land here)
    assert second.stdout.count("\n") == 4, second.stdout


def test_doctor_reports_families_store_and_round_trip(tmp_path: Path) -> None:
    result = agentsession("doctor", "--store", f"sqlite:///{tmp_path / 'd.db'}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all good" in result.stdout
    assert "answers" in result.stdout
    assert "the model saw all 3 user messages" in result.stdout


def test_doctor_fails_on_an_unreachable_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'd.db'}"
    result = agentsession("doctor", "--no-round-trip", "--store", url, cwd=tmp_path)
    assert result.returncode == 1
    assert "FAIL" in result.stdout and "missing-dir" in result.stdout


def test_doctor_warns_about_memory_store_under_a_reloader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WERKZEUG_RUN_MAIN", "true")
    code = main(["doctor", "--no-round-trip", "--store", "memory://"])
    out = capsys.readouterr().out
    assert code == 1
    assert "reloader is active" in out and "forgets" in out


def test_admin_commands(family: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'admin.db'}"
    with SessionManager(offline_agent_factory(family), url) as manager:
        first, second = manager.session(), manager.session()
        first.send("first conversation")
        second.send("second conversation")

    assert main(["ls", "--store", url]) == 0
    listed = capsys.readouterr().out
    assert first.id in listed and second.id in listed

    assert main(["show", first.id, "--store", url]) == 0
    assert "first conversation" in capsys.readouterr().out

    exported = tmp_path / "first.json"
    assert main(["export", first.id, "-o", str(exported), "--store", url]) == 0
    document = json.loads(exported.read_text())
    assert document["session_id"] == first.id and len(document["messages"]) == 2

    assert main(["rm", first.id, "--store", url]) == 0
    assert main(["show", first.id, "--store", url]) == 1
    capsys.readouterr()

    assert main(["import", str(exported), "--store", url]) == 0
    assert capsys.readouterr().out.strip() == first.id
    assert main(["migrate", "--store", url]) == 0
    assert "checked 2 conversations: 0 unreadable" in capsys.readouterr().out

    with sqlite3.connect(tmp_path / "admin.db") as db:
        db.execute(
            "UPDATE agentsession_messages SET body = 'garbage' WHERE session_id = ?", (second.id,)
        )
    assert main(["migrate", "--store", url]) == 1
    report = capsys.readouterr().out
    assert second.id in report and "1 unreadable" in report

    with sqlite3.connect(tmp_path / "admin.db") as db:
        db.execute(
            "UPDATE agentsession_conversations SET metadata = 'garbage' WHERE session_id = ?",
            (first.id,),
        )
    assert main(["ls", "--store", url]) == 1  # the rest is still listed
    listed, errors = capsys.readouterr()
    assert first.id in listed and second.id in listed and "DAMAGED" in listed
    assert first.id in errors and "left untouched" in errors

    assert main(["gc", "--idle", "0", "--store", url]) == 0
    assert "removed 2" in capsys.readouterr().out
    assert main(["ls", "--store", url]) == 0
    assert capsys.readouterr().out == ""


def test_store_init_and_unknown_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["store", "init", f"sqlite:///{tmp_path / 'init.db'}"]) == 0
    assert "is ready" in capsys.readouterr().out
    assert main(["ls", "--store", "nosuch://x"]) == 2
    assert "no store for URL scheme" in capsys.readouterr().err
