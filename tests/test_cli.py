"""The ``agentsession`` command: in process for its answers, as a subprocess where the process
boundary matters (a restart, stdin, a missing package, what reaches the terminal)."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import need_server

from agentsession import SessionManager, cli
from agentsession.cli import EXIT_CODES, main
from agentsession.offline import offline_agent_factory, user_messages_seen
from agentsession.stores.base import redact_url

DOCS = Path(__file__).resolve().parent.parent / "docs"


def agentsession(
    *args: str, stdin: str | bytes = "", cwd: Path, prelude: str = ""
) -> subprocess.CompletedProcess[str]:
    """``python -m agentsession ARGS``; ``prelude`` runs first (to hide a package, say)."""
    command = [sys.executable, "-m", "agentsession", *args]
    if prelude:
        code = f"{prelude}\nimport sys\nfrom agentsession.cli import main\nsys.exit(main())"
        command = [sys.executable, "-c", code, *args]
    result = subprocess.run(
        command,
        input=stdin.encode() if isinstance(stdin, str) else stdin,
        capture_output=True,
        cwd=cwd,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


def seeded(family: str, path: Path, *texts: str) -> tuple[str, list[str]]:
    """A SQLite store holding one conversation per text; its URL and the session ids."""
    url = f"sqlite:///{path}"
    ids = []
    with SessionManager(offline_agent_factory(family), url) as manager:
        for text in texts:
            session = manager.session()
            session.send(text)
            ids.append(session.id)
    return url, ids


def export_document(session_id: str = "imported-1", **changes: Any) -> dict[str, Any]:
    message = {"v": 1, "role": "user", "content": "hi", "name": "user", "created_at": 1.0}
    document = {
        "format": "agentsession.conversation",
        "v": 1,
        "session_id": session_id,
        "metadata": {},
        "created_at": 1.0,
        "updated_at": 1.0,
        "messages": [message],
    }
    document.update(changes)
    return document


# -- chat --------------------------------------------------------------------------------


@pytest.mark.slow
def test_chat_continues_after_a_process_restart_with_the_command_it_prints(
    family: str, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'chat.db'}"
    first = agentsession(
        "chat", "--store", store, "--family", family,
        stdin="hello\nhow are you?\n/quit\n", cwd=tmp_path,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    hint = re.search(r"continue with: (.+)$", first.stdout, re.MULTILINE)
    assert hint is not None, first.stdout
    again = shlex.split(hint.group(1))
    assert again[:2] == ["agentsession", "chat"] and "--store" in again

    # the printed command, run from another directory: the --store in it finds the conversation
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    second = agentsession(*again[1:], stdin="what did I say earlier?\n", cwd=elsewhere)
    assert second.returncode == 0, second.stderr
    replies = [line for line in second.stdout.splitlines() if line.startswith("assistant:")]
    assert len(replies) == 1
    assert user_messages_seen(replies[0]) == 3
    assert "'hello'" in replies[0] and "'how are you?'" in replies[0]
    # nothing but the chat itself on the terminal (AutoGen chatter would land here)
    assert second.stdout.count("\n") == 4, second.stdout


def test_chat_on_memory_does_not_promise_to_continue(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n"))
    assert main(["chat", "--store", "memory://"]) == 0
    out = capsys.readouterr().out
    assert "continue with" not in out and "memory:// keeps nothing" in out


def test_chat_reports_an_oversized_message_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("x" * 70_000 + "\nhello\n"))
    assert main(["chat", "--store", f"sqlite:///{tmp_path / 'c.db'}"]) == 0
    out, err = capsys.readouterr()
    assert "65536" in err and "Traceback" not in err
    assert "I have seen 1 user message" in out


# -- doctor ------------------------------------------------------------------------------


def test_doctor_runs_its_round_trip_on_the_given_store_and_cleans_up(
    durable_store_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = durable_store_url
    assert main(["store", "init", "--store", url]) == 0
    opened: list[str] = []
    real_open = cli.open_store
    monkeypatch.setattr(cli, "open_store", lambda u, **kw: opened.append(u) or real_open(u, **kw))
    assert main(["doctor", "--store", url]) == 0
    out = capsys.readouterr().out
    assert "all good" in out and "the model saw all 3 user messages" in out
    assert f"Persistence round trip (offline model, on {redact_url(url)})" in out
    assert opened and set(opened) == {url}  # no temporary store anywhere
    assert "field report" not in out
    assert main(["ls", "--store", url]) == 0  # the doctor's conversation is gone again
    assert capsys.readouterr().out == ""


def test_ls_says_when_it_shows_only_the_most_recent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = seeded("agentchat" if _agentchat() else "legacy", tmp_path / "l.db", "a", "b", "c")
    assert main(["ls", "--limit", "2", "--store", url]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 3 and "--limit N lists more" in err


def test_doctor_creates_nothing_and_says_the_store_is_not_there_yet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert main(["doctor", "--store", url]) == 0  # a fresh install is not a failure
    out = capsys.readouterr().out
    assert "no agentsession store" in out and "store init --store" in out
    assert "round trip" in out and "skipped" in out
    assert list(tmp_path.iterdir()) == []


def test_doctor_never_calls_a_store_that_is_down_durable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    assert main(["doctor", "--store", f"redis://127.0.0.1:{port}/0"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "unavailable" in out
    assert not [line for line in out.splitlines() if "ok" in line and "durable" in line], out


def test_doctor_on_a_missing_directory_creates_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'd.db'}"
    result = main(["doctor", "--no-round-trip", "--store", url])
    assert result == 0  # a file that is not there yet: a warning, and nothing is created
    assert not (tmp_path / "missing-dir").exists()


@pytest.mark.parametrize(
    ("environ", "store", "level", "words"),
    [
        ({"FLASK_DEBUG": "1"}, "memory://", "FAIL", "forgets every conversation"),
        ({"UVICORN_RELOAD": "true"}, "sqlite:///x.db", "ok", "survives it"),
        ({"WEB_CONCURRENCY": "4"}, "memory://", "FAIL", "4 workers (WEB_CONCURRENCY)"),
        ({"GUNICORN_CMD_ARGS": "-w 3 --threads 4"}, "sqlite:///x.db", "ok", "3 workers"),
        ({"UVICORN_WORKERS": "2"}, "memory://", "FAIL", "do not share"),
        ({"FORWARDED_ALLOW_IPS": "*"}, "sqlite:///x.db", "warn", "from any client"),
        ({"FORWARDED_ALLOW_IPS": "10.0.0.1"}, "sqlite:///x.db", "ok", "trusted from 10.0.0.1"),
        ({}, "sqlite:///x.db", "note", "cookie is sent without Secure"),
        ({"AGENTSESSION_SECRET_KEY": "short"}, "sqlite:///x.db", "warn", "5 characters"),
        ({"SECRET_KEY": "change me"}, "sqlite:///x.db", "warn", "placeholder"),
        ({"FLASK_SECRET_KEY": "k" * 40}, "sqlite:///x.db", "ok", "FLASK_SECRET_KEY is set"),
        ({}, "sqlite:///x.db", "note", "no secret key in the environment"),
    ],
)
def test_doctor_checks_the_web_setup_it_can_see(
    environ: dict[str, str], store: str, level: str, words: str
) -> None:
    out = io.StringIO()
    report = cli.Report(out)
    cli._check_web(report, store, environ)
    lines = [line for line in out.getvalue().splitlines() if words in line]
    assert lines and lines[0].strip().startswith(level), out.getvalue()
    assert "short" not in out.getvalue() and "change me" not in out.getvalue()  # no secrets


# -- reading commands create nothing -------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["ls"], ["show", "abc"], ["export", "abc"], ["rm", "abc"], ["gc", "--idle", "0"],
     ["migrate"]],
)  # fmt: skip
def test_reading_commands_create_no_file(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'typo.db'}"
    assert main([*argv, "--store", url]) == 1
    err = capsys.readouterr().err
    assert f"no agentsession store at {url}" in err
    assert list(tmp_path.iterdir()) == []


def test_the_default_store_is_found_by_the_commands_that_read_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AGENTSESSION_STORE", raising=False)
    with SessionManager(offline_agent_factory()) as manager:  # the engine's default store
        manager.session().send("hello")
    assert (tmp_path / "agentsession.db").exists()
    assert main(["ls"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2  # header and the conversation


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_a_mistyped_table_prefix_creates_no_tables(
    kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlalchemy as sa

    base = need_server(kind)
    prefix = f"typo{os.getpid()}_"
    url = f"{base}?table_prefix={prefix}"
    for argv in (["ls"], ["show", "abc"], ["doctor"], ["migrate"]):
        main([*argv, "--store", url])
    assert "no agentsession tables named" in capsys.readouterr().err
    engine = sa.create_engine(
        base.replace("postgresql://", "postgresql+psycopg://").replace(
            "mysql://", "mysql+pymysql://"
        )
    )
    try:
        assert [t for t in sa.inspect(engine).get_table_names() if t.startswith(prefix)] == []
    finally:
        engine.dispose()


# -- bad input: one line on stderr, the documented exit code, no traceback -----------------


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Files and URLs the bad-argument table refers to, by name."""
    url, (known,) = seeded("agentchat" if _agentchat() else "legacy", tmp_path / "s.db", "hi")
    files = {
        "empty": b"",
        "truncated": json.dumps(export_document()).encode()[:-20],
        "not-json": b"this is not json",
        "latin1": "caf\xe9".encode("latin-1"),
        "a-list": b"[1, 2]",
        "other-format": json.dumps({"format": "something else"}).encode(),
        "bad-messages": json.dumps(export_document(messages="hello")).encode(),
        "bad-message": json.dumps(export_document(messages=[{"v": 1, "role": "x"}])).encode(),
        "no-id": json.dumps(export_document(session_id=None)).encode(),
        "existing": json.dumps(export_document(session_id=known)).encode(),
    }
    for name, content in files.items():
        (tmp_path / f"{name}.json").write_bytes(content)
    (tmp_path / "a-dir").mkdir()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        down = closed.getsockname()[1]
    yield {"url": url, "known": known, "dir": str(tmp_path), "down": str(down)}


def _agentchat() -> bool:
    import importlib.util

    return importlib.util.find_spec("autogen_agentchat") is not None


S = "--store={url}"
BAD_ARGUMENTS: list[tuple[list[str], int, str]] = [
    # (argv, exit code, words of the one-line message on stderr)
    ([], 2, "required: COMMAND"),
    (["frobnicate"], 2, "invalid choice"),
    (["show", S], 2, "required: session_id"),
    (["import", "{dir}/missing.json", S], 2, "cannot read {dir}/missing.json: no such file"),
    (["import", "{dir}/a-dir", S], 2, "cannot read {dir}/a-dir"),
    (["import", "{dir}/empty.json", S], 2, "is empty"),
    (["import", "{dir}/truncated.json", S], 2, "not valid JSON (is it truncated?)"),
    (["import", "{dir}/not-json.json", S], 2, "not valid JSON"),
    (["import", "{dir}/latin1.json", S], 2, "not UTF-8 text (byte 0xe9 at offset 3)"),
    (["import", "{dir}/a-list.json", S], 2, "not an agentsession export"),
    (["import", "{dir}/other-format.json", S], 2, "not an agentsession export"),
    (["import", "{dir}/bad-messages.json", S], 2, '"messages" must be a list'),
    (["import", "{dir}/bad-message.json", S], 2, "message 1 cannot be imported"),
    (["import", "{dir}/no-id.json", S], 2, "give one with --id"),
    (["import", "{dir}/existing.json", S], 2, "already exists"),
    (["ls", "--store", "redis://127.0.0.1:70000/0"], 2, "port '70000'"),
    (["ls", "--store", "redis://127.0.0.1:6379/abc"], 2, "the Redis database"),
    (
        ["ls", "--store", "postgresql://u:pw@127.0.0.1:abc/db"],
        2,
        "the port 'abc' in postgresql://***/db",
    ),  # an odd port hides the netloc
    (["ls", "--store", "mysql://root@127.0.0.1:99999/test"], 2, "port '99999'"),
    (["ls", "--store", "sqlite:///{dir}/x.db?ttl=abc"], 2, "?ttl=abc"),
    (["ls", "--store", "redis://127.0.0.1:6379/0?ttl=-3"], 2, "not a positive number"),
    (["ls", "--store", "nosuch://x"], 2, "no store for URL scheme 'nosuch'"),
    (["ls", "--store", "agents.db"], 2, "not a store URL: name a scheme, e.g. sqlite:///agents.db"),
    (["ls", "--limit", "0", S], 2, "not a positive number"),
    (["ls", "--limit", "many", S], 2, "not a whole number"),
    (["ls", "--store", "redis://127.0.0.1:{down}/0"], 3, "unavailable"),
    (["show", "no-such-id", S], 1, "no session 'no-such-id' in sqlite:///"),
    (["export", "no-such-id", S], 1, "no session 'no-such-id' in sqlite:///"),
    (["rm", "no-such-id", S], 1, "no session 'no-such-id' in sqlite:///"),
    (["show", "x" * 200, S], 2, "at most 128 characters"),
    (["rm", "{known}", "x" * 200, S], 2, "at most 128 characters"),
    (["export", "{known}", "-o", "{dir}/no/such/dir.json", S], 2, "cannot write"),
    (["gc", "--idle", "-5", S], 2, "is negative"),
    (["gc", "--idle", "soon", S], 2, "not a number of seconds"),
    (["gc", S], 2, "has no TTL and no --idle was given"),
    (["migrate", "--store", "sqlite:///{dir}/none.db"], 1, "no agentsession store"),
    (["chat", "--session", "x" * 200, S], 2, "at most 128 characters"),
    (["chat", "--family", "gpt", S], 2, "invalid choice: 'gpt'"),
    (["demo", "--port", "70000"], 2, "not a port from 1 to 65535"),
    (["demo", "--host", "10.255.255.1", "--port", "8123"], 2, "cannot listen on 10.255.255.1"),
    (["store", "init", "--store", "redis://127.0.0.1:{down}/0"], 3, "unavailable"),
    (["store", "init", "--store", "sqlite:///{dir}/no/such/dir.db"], 3, "cannot open"),
    (["doctor", "--store", "nosuch://x"], 1, ""),  # doctor reports on stdout, checked below
]


@pytest.mark.parametrize(
    ("argv", "code", "words"), BAD_ARGUMENTS, ids=[" ".join(a[0])[:60] for a in BAD_ARGUMENTS]
)
def test_bad_arguments_get_one_line_and_their_exit_code(
    argv: list[str],
    code: int,
    words: str,
    workspace: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [a.format(**workspace) for a in argv]
    assert main(args) == code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    if argv[:1] == ["doctor"]:
        assert "FAIL" in out and "no store for URL scheme" in out
        return
    assert err.count("\n") == 1, err  # one line
    assert words.format(**workspace) in err, err
    assert err.startswith("agentsession"), err
    assert code in EXIT_CODES


def test_every_subcommand_is_in_the_bad_argument_table() -> None:
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert commands is not None
    driven = {argv[0] for argv, _, _ in BAD_ARGUMENTS if argv}
    assert set(commands) <= driven


def test_the_exit_codes_are_documented() -> None:
    page = (DOCS / "cli.md").read_text()
    for code in EXIT_CODES:
        assert re.search(rf"^\| `{code}` \|", page, re.MULTILINE), f"exit code {code}"


def test_family_not_installed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import agentsession.families as families

    monkeypatch.setattr(families, "detect", lambda: [])
    for argv in (["chat", "--family", "legacy"], ["demo", "--family", "legacy"]):
        assert main([*argv, "--store", f"sqlite:///{tmp_path / 'f.db'}"]) == 2
        err = capsys.readouterr().err
        assert err == (
            "agentsession: the legacy AutoGen family is not installed: "
            "pip install 'agentsession-middleware[legacy]'\n"
        )


def test_a_demo_port_in_use_is_an_error_before_any_banner(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["demo", "--port", str(port), "--store", "memory://"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"port {port} on 127.0.0.1 is already in use" in err


@pytest.mark.slow
@pytest.mark.parametrize(
    ("hidden", "scheme"),
    [("sqlalchemy", "mysql"), ("pymysql", "mysql"), ("sqlalchemy", "postgresql"),
     ("psycopg", "postgresql")],
)  # fmt: skip
def test_a_missing_sql_driver_names_the_extra_of_its_scheme(
    hidden: str, scheme: str, tmp_path: Path
) -> None:
    url = f"{scheme}://root@127.0.0.1/test"
    result = agentsession(
        "ls", "--store", url, cwd=tmp_path, prelude=f"import sys; sys.modules[{hidden!r}] = None"
    )
    assert result.returncode == 2, result.stderr
    assert f"pip install 'agentsession-middleware[{scheme}]'" in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


def test_a_redis_database_the_server_does_not_have(capsys: pytest.CaptureFixture[str]) -> None:
    url = need_server("redis").rsplit("/", 1)[0] + "/999"
    assert main(["ls", "--store", url]) == 2
    err = capsys.readouterr().err
    assert "has no database with that number" in err and err.count("\n") == 1


@pytest.mark.slow
def test_bad_input_as_a_real_process_prints_no_traceback(
    workspace: dict[str, str], tmp_path: Path
) -> None:
    for argv, code, words in BAD_ARGUMENTS[:12]:
        args = [a.format(**workspace) for a in argv]
        result = agentsession(*args, cwd=tmp_path)
        assert result.returncode == code, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert words.format(**workspace) in result.stderr


def test_an_unexpected_error_is_one_line_and_the_traceback_needs_v(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(args: Any) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "ls", broken)
    assert main(["ls", "--store", "memory://"]) == 4
    assert capsys.readouterr().err.startswith("agentsession: unexpected error RuntimeError: boom")
    assert main(["-v", "ls", "--store", "memory://"]) == 4
    assert "Traceback" in capsys.readouterr().err


# -- import and export -----------------------------------------------------------------


@pytest.mark.slow
def test_import_reads_stdin(family: str, tmp_path: Path) -> None:
    url, (first,) = seeded(family, tmp_path / "a.db", "from stdin")
    exported = agentsession("export", first, "--store", url, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    other = f"sqlite:///{tmp_path / 'b.db'}"
    imported = agentsession("import", "-", "--store", other, stdin=exported.stdout, cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == first
    shown = agentsession("show", first, "--store", other, cwd=tmp_path)
    assert "from stdin" in shown.stdout


def test_import_of_a_utf8_file_with_bom_and_under_a_new_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(export_document()).encode())
    url = f"sqlite:///{tmp_path / 'i.db'}"
    assert main(["import", str(path), "--id", "renamed", "--store", url]) == 0
    assert capsys.readouterr().out == "renamed\n"


# -- administration ----------------------------------------------------------------------


def test_admin_commands(family: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url, (first, second) = seeded(
        family, tmp_path / "admin.db", "first conversation", "second conversation"
    )
    assert main(["ls", "--store", url]) == 0
    listed = capsys.readouterr().out
    assert first in listed and second in listed

    assert main(["show", first, "--store", url]) == 0
    assert "first conversation" in capsys.readouterr().out

    exported = tmp_path / "first.json"
    assert main(["export", first, "-o", str(exported), "--store", url]) == 0
    document = json.loads(exported.read_text())
    assert document["session_id"] == first and len(document["messages"]) == 2

    assert main(["rm", first, "--store", url]) == 0
    assert capsys.readouterr().out == f"removed {first}\n"
    assert main(["show", first, "--store", url]) == 1
    capsys.readouterr()

    assert main(["import", str(exported), "--store", url]) == 0
    assert capsys.readouterr().out.strip() == first
    assert main(["migrate", "--store", url]) == 0
    assert "checked 2 conversations: 0 unreadable" in capsys.readouterr().out


def test_the_damaged_record_advice_names_commands_that_work(
    family: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, (body, summary) = seeded(family, tmp_path / "d.db", "damaged body", "damaged summary")
    with sqlite3.connect(tmp_path / "d.db") as db:
        db.execute(
            "UPDATE agentsession_messages SET body = 'garbage' WHERE session_id = ?", (body,)
        )
        db.execute(
            "UPDATE agentsession_conversations SET metadata = 'garbage' WHERE session_id = ?",
            (summary,),
        )
    assert main(["show", body, "--store", url]) == 3
    advice = capsys.readouterr().err
    assert "'agentsession migrate'" in advice and f"'agentsession rm {body}'" in advice

    assert main(["ls", "--store", url]) == 1  # the rest is still listed
    listed, errors = capsys.readouterr()
    assert body in listed and summary in listed and "DAMAGED" in listed
    assert summary in errors and "left untouched" in errors

    assert main(["migrate", "--store", url]) == 1  # the advice, followed
    report = capsys.readouterr().out
    assert body in report and summary in report and "2 unreadable" in report
    assert main(["rm", body, summary, "--store", url]) == 0
    assert capsys.readouterr().out == f"removed {body}\nremoved {summary}\n"
    assert main(["ls", "--store", url]) == 0


def test_ls_columns_line_up(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'ls.db'}"
    with SessionManager(offline_agent_factory(), url) as manager:
        manager.session("a").send("hi")
        manager.session("a-much-longer-custom-session-id").send("hi")
        session = manager.session()
        for _ in range(12):
            session.send("hi")
    assert main(["ls", "--store", url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["SESSION", "MESSAGES", "VERSION", "UPDATED", "(UTC)"]
    assert len(lines) == 4
    # every column starts (left-aligned) or ends (numbers, right-aligned) at one offset
    dates = {re.search(r"\d{4}-\d\d-\d\d", line).start() for line in lines[1:]}  # type: ignore[union-attr]
    counts = {re.search(r"\d+(?=\s+\d+\s+\d{4}-)", line).end() for line in lines[1:]}  # type: ignore[union-attr]
    assert len(dates) == 1 and len(counts) == 1
    assert lines[0].index("UPDATED") == dates.pop()
    assert lines[0].index("MESSAGES") + len("MESSAGES") == counts.pop()


def test_ls_says_so_when_the_store_is_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'e.db'}"
    assert main(["store", "init", "--store", url]) == 0
    capsys.readouterr()
    assert main(["ls", "--store", url]) == 0
    out, err = capsys.readouterr()
    assert out == "" and err == f"agentsession: no conversations in {url}\n"


def test_store_init_takes_store_like_every_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'init.db'}"
    assert main(["store", "init", "--store", url]) == 0
    assert capsys.readouterr().out == f"{url} is ready\n"
    assert (tmp_path / "init.db").exists()
    assert main(["ls", "--store", url]) == 0  # the tables are there
    assert main(["store", "init", f"sqlite:///{tmp_path / 'old.db'}"]) == 0  # older spelling
    monkeypatch.setenv("AGENTSESSION_STORE", f"sqlite:///{tmp_path / 'env.db'}")
    assert main(["store", "init"]) == 0
    assert (tmp_path / "env.db").exists()


# -- gc ------------------------------------------------------------------------------------


def aged(url: str, path: Path, session_id: str, seconds: float) -> None:
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE agentsession_conversations SET updated_at = ? WHERE session_id = ?",
            (time.time() - seconds, session_id),
        )


def test_gc_dry_run_lists_and_removes_nothing(
    family: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gc.db"
    url, (old, new) = seeded(family, path, "old", "new")
    aged(url, path, old, 3 * 86400)
    assert main(["gc", "--idle", "86400", "--dry-run", "--store", url]) == 0
    out = capsys.readouterr().out
    assert f"would remove {old}" in out and new not in out
    assert "dry run: 1 conversation idle longer than 24h; nothing removed" in out
    assert main(["show", old, "--store", url]) == 0


def test_gc_asks_when_interactive_and_prints_what_it_removed(
    family: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gc.db"
    url, (old, new) = seeded(family, path, "old", "new")
    aged(url, path, old, 3 * 86400)
    monkeypatch.setattr(cli, "_interactive", lambda: True)
    answers = iter(["n", "y"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    assert main(["gc", "--idle", "86400", "--store", url]) == 0
    assert "nothing removed" in capsys.readouterr().out
    assert main(["show", old, "--store", url]) == 0
    capsys.readouterr()
    assert main(["gc", "--idle", "86400", "--store", url]) == 0
    out = capsys.readouterr().out
    assert f"removing {old}" in out and "removed 1 conversation idle" in out and new not in out
    assert main(["show", old, "--store", url]) == 1
    assert main(["show", new, "--store", url]) == 0


def test_gc_uses_the_ttl_of_the_store_url_and_yes_skips_the_question(
    family: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gc.db"
    url, (old, _) = seeded(family, path, "old", "new")
    aged(url, path, old, 7200)
    monkeypatch.setattr(cli, "_interactive", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: pytest.fail("asked despite --yes"))
    assert main(["gc", "--yes", "--store", f"{url}?ttl=3600"]) == 0
    out = capsys.readouterr().out
    assert f"removing {old}" in out
    assert "removed 1 conversation idle longer than 60min (the TTL)" in out
    assert main(["ls", "--store", url]) == 0
    assert old not in capsys.readouterr().out
