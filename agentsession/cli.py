"""The ``agentsession`` command: ``doctor``, ``chat``, ``demo`` and session administration.

Every failure is one line on stderr and an exit code (see ``EXIT_CODES`` and docs/cli.md);
``-v`` adds the traceback of an unexpected error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import shlex
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn, TextIO
from urllib.parse import parse_qs, urlsplit

from . import __version__
from .errors import (
    AgentSessionError,
    ConfigurationError,
    ConflictError,
    CorruptRecord,
    FamilyError,
    InvalidInput,
    LimitExceeded,
    SessionBusy,
    SessionNotFound,
    StoreError,
    StoreNotFound,
)
from .manager import DEFAULT_STORE_URL, AsyncSessionManager, SessionManager, check_session_id
from .messages import Message
from .offline import OFFLINE_FAMILIES, installed_family, offline_agent_factory, user_messages_seen
from .stores import SessionInfo, Store, open_store
from .stores.base import redact_url, seconds_option

DEFAULT_STORE = DEFAULT_STORE_URL

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_STORE = 3
EXIT_BUG = 4
EXIT_INTERRUPTED = 130
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_NOT_FOUND: "not found or a check failed: a session id or store that is not there, "
    "a doctor check, a damaged record listed by ls or migrate",
    EXIT_USAGE: "bad usage: an unknown option or value, a bad store URL, an unreadable import "
    "file, a missing extra or AutoGen family, a port in use",
    EXIT_STORE: "the store failed: unreachable, busy, or holding a record that cannot be read",
    EXIT_BUG: "an unexpected error, which is a bug: rerun with -v and report the traceback",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}


class CommandFailed(Exception):
    """A failure the command explains in one line; ``code`` is the exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def _store_url(args: argparse.Namespace) -> str:
    return str(
        getattr(args, "store", None)
        or getattr(args, "url", None)
        or os.environ.get("AGENTSESSION_STORE")
        or DEFAULT_STORE
    )


def _many(count: int) -> str:
    return f"{count} conversation{'' if count == 1 else 's'}"


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    minutes = seconds / 60
    if minutes < 120:
        return f"{minutes:.0f}min"
    hours = minutes / 60
    return f"{hours:.0f}h" if hours < 48 else f"{hours / 24:.0f}d"


def _never() -> Any:
    raise AgentSessionError("admin commands do not build agents")


def _admin_manager(args: argparse.Namespace, create: bool = False) -> SessionManager:
    """A manager for commands that never run a turn; ``create=False`` opens an existing
    store only (no file, table or key is created), as reading commands must."""

    return SessionManager(_never, open_store(_store_url(args), create_schema=create))


def _no_session(args: argparse.Namespace, session_id: str) -> CommandFailed:
    return CommandFailed(
        f"no session {session_id!r} in {redact_url(_store_url(args))}", EXIT_NOT_FOUND
    )


def _family(requested: str | None) -> str:
    """The AutoGen family to run the offline model on, or a one-line reason why none can."""
    from .families import detect

    if requested is None:
        try:
            return installed_family()
        except ImportError as exc:
            raise ConfigurationError(str(exc)) from None
    found = {info.family: info for info in detect()}
    info = found.get(requested)
    if info is None:
        raise ConfigurationError(
            f"the {requested} AutoGen family is not installed: "
            f"pip install 'agentsession-middleware[{requested}]'"
        )
    if not info.supported:
        raise ConfigurationError(
            f"the installed {requested} family cannot be used: {info.problem or info.version}"
        )
    return requested


# -- doctor ----------------------------------------------------------------------------


class Report:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.failures = 0
        self.warnings = 0

    def ok(self, text: str) -> None:
        print(f"  ok    {text}", file=self.out)

    def note(self, text: str) -> None:
        print(f"  note  {text}", file=self.out)

    def warn(self, text: str) -> None:
        self.warnings += 1
        print(f"  warn  {text}", file=self.out)

    def fail(self, text: str) -> None:
        self.failures += 1
        print(f"  FAIL  {text}", file=self.out)

    def section(self, title: str) -> None:
        print(f"\n{title}", file=self.out)


def _check_families(report: Report) -> list[str]:
    from .families import ag2_name_hint, detect

    report.section("AutoGen families (decided by the importable module, not the package name)")
    usable = []
    found = detect()
    for info in found:
        dists = ", ".join(info.distributions) or "unknown distribution"
        label = f"{info.family}: import {info.module} {info.version} (from {dists})"
        if info.problem:
            report.fail(f"{label}\n        {info.problem}")
        elif not info.tested:
            report.warn(f"{label} is newer or older than the tested versions")
            usable.append(info.family)
        else:
            report.ok(label)
            usable.append(info.family)
    hint = ag2_name_hint(found)
    if hint:
        report.ok(hint)
    if not usable:
        report.fail(
            "no supported AutoGen family is importable. Install one: "
            "pip install 'agentsession-middleware[agentchat]' (or [legacy], [maf], [ag2])"
        )
    return usable


async def _check_store(report: Report, store_url: str) -> bool:
    """Does the store answer and hold agentsession's tables? Creates nothing."""
    shown = redact_url(store_url)
    report.section(f"Store {shown}")
    try:
        store = open_store(store_url, create_schema=False)
    except AgentSessionError as exc:
        report.fail(str(exc))
        return False
    try:
        await store.ping()
        await store.list(limit=1)
    except StoreNotFound as exc:
        report.warn(
            f"{exc}\n        A first turn creates the store; so does "
            f"'agentsession store init --store {shown}'. The round trip below is skipped."
        )
        return False
    except AgentSessionError as exc:
        report.fail(f"{exc}")
        return False
    finally:
        await store.close()
    if store_url.startswith("memory:"):
        report.warn("memory:// answers, but keeps conversations in one process only")
    elif store_url.startswith("sqlite:"):
        report.ok(
            "answers; durable across restarts and reloads, shared by the processes of one "
            "machine (several hosts need redis://, postgresql:// or mysql://)"
        )
    else:
        report.ok("answers; durable across restarts, reloads, workers and hosts")
    return True


def _environment_workers(environ: dict[str, str]) -> tuple[int | None, str]:
    """The worker count the environment sets for gunicorn or uvicorn, and where it is set."""
    gunicorn = shlex.split(environ.get("GUNICORN_CMD_ARGS", ""))
    for index, word in enumerate(gunicorn):
        for flag in ("-w", "--workers"):
            value = None
            if word == flag and index + 1 < len(gunicorn):
                value = gunicorn[index + 1]
            elif word.startswith(f"{flag}="):
                value = word.partition("=")[2]
            elif flag == "-w" and word.startswith("-w") and word[2:].isdigit():
                value = word[2:]
            if value and value.isdigit():
                return int(value), f"GUNICORN_CMD_ARGS {flag}"
    for name in ("UVICORN_WORKERS", "WEB_CONCURRENCY"):
        value = environ.get(name, "")
        if value.isdigit():
            return int(value), name
    return None, ""


def _check_web(report: Report, store_url: str, environ: dict[str, str]) -> None:
    report.section(
        "Web server setup (this shell's environment only: options on a server's command "
        "line, such as --reload or -w 4, or set in code, are not visible here)"
    )
    memory = store_url.startswith("memory:")
    kind = store_url.split(":", 1)[0]
    gunicorn = environ.get("GUNICORN_CMD_ARGS", "")
    truthy = ("1", "true", "yes", "on")
    reloaders = [
        name
        for name in ("FLASK_DEBUG", "UVICORN_RELOAD")
        if environ.get(name, "").lower() in truthy
    ]
    if environ.get("FLASK_ENV") == "development":
        reloaders.append("FLASK_ENV=development")
    if environ.get("WERKZEUG_RUN_MAIN"):
        reloaders.append("WERKZEUG_RUN_MAIN")
    if "--reload" in gunicorn:
        reloaders.append("GUNICORN_CMD_ARGS --reload")
    if environ.get("STREAMLIT_SERVER_PORT"):
        reloaders.append("STREAMLIT_SERVER_PORT (Streamlit reruns the script)")
    if reloaders and memory:
        report.fail(
            f"a reloader is on ({', '.join(reloaders)}) and memory:// forgets every "
            "conversation when it restarts the process: use sqlite:// or another durable store"
        )
    elif reloaders:
        report.ok(f"a reloader is on ({', '.join(reloaders)}); the {kind} store survives it")
    else:
        report.note("no reloader in the environment (FLASK_DEBUG, UVICORN_RELOAD, ...)")

    workers, source = _environment_workers(environ)
    if workers is None:
        report.note(
            "no worker count in the environment (WEB_CONCURRENCY, UVICORN_WORKERS, "
            "GUNICORN_CMD_ARGS)"
        )
    elif workers > 1 and memory:
        report.fail(
            f"{workers} workers ({source}) do not share a memory:// store: "
            "each worker would hold its own conversations"
        )
    elif workers > 1 and kind == "sqlite":
        report.ok(
            f"{workers} workers ({source}) share the SQLite file on this machine; "
            "several hosts need redis://, postgresql:// or mysql://"
        )
    else:
        report.ok(f"{workers} worker{'s' if workers != 1 else ''} ({source})")

    trusted = environ.get("FORWARDED_ALLOW_IPS") or environ.get("UVICORN_FORWARDED_ALLOW_IPS")
    if "--forwarded-allow-ips" in gunicorn and not trusted:
        trusted = "set in GUNICORN_CMD_ARGS"
    if trusted == "*":
        report.warn(
            "FORWARDED_ALLOW_IPS=* trusts X-Forwarded-Proto from any client: right only when "
            "nothing but your proxy can reach the server"
        )
    elif trusted:
        report.ok(f"proxy headers are trusted from {trusted}")
    else:
        report.note(
            "no proxy settings in the environment. Behind a proxy that terminates HTTPS, let "
            "the server trust its headers (uvicorn --proxy-headers --forwarded-allow-ips, "
            "gunicorn --forwarded-allow-ips, werkzeug ProxyFix) or set cookie_secure=True, "
            "or the cookie is sent without Secure"
        )

    names = ("AGENTSESSION_SECRET_KEY", "FLASK_SECRET_KEY", "SECRET_KEY")
    found = next((name for name in names if environ.get(name)), None)
    if found is None:
        report.note(
            f"no secret key in the environment ({', '.join(names)}). The web adapters need "
            "one to sign conversation ids; ignore this if your app reads it from elsewhere"
        )
        return
    value = environ[found]
    if value.lower() in ("change me", "changeme", "secret", "dev", "development", "test"):
        report.warn(f"{found} is a placeholder value: generate one with {_KEY_COMMAND}")
    elif len(value) < 32:
        report.warn(
            f"{found} is {len(value)} characters: use at least 32 random ones ({_KEY_COMMAND})"
        )
    else:
        report.ok(f"{found} is set ({len(value)} characters; its value is not shown)")


_KEY_COMMAND = "python -c 'import secrets; print(secrets.token_hex(32))'"


async def _check_round_trip(report: Report, family: str, store_url: str) -> None:
    """Two turns, a brand-new manager on the same store, a third turn: did the model see all?

    Runs on the store being checked, under a throwaway id that is deleted afterwards.
    """
    session_id = f"agentsession-doctor-{secrets.token_hex(8)}"
    factory = offline_agent_factory(family)
    memory = store_url.startswith("memory:")
    # a memory:// store lives in one object: the second manager must share it to find anything
    shared: Store | None = open_store(store_url) if memory else None

    def store() -> Store:
        return shared or open_store(store_url, create_schema=False)

    try:
        async with AsyncSessionManager(factory, store()) as first:
            await first.send(session_id, "doctor check one")
            await first.send(session_id, "doctor check two")
        async with AsyncSessionManager(factory, store()) as second:
            reply = await second.send(session_id, "doctor check three")
            history = await second.history(session_id)
    finally:
        async with AsyncSessionManager(factory, store()) as cleanup:
            await cleanup.delete(session_id)
    seen = user_messages_seen(reply)
    if seen == 3 and len(history) == 6:
        report.ok(
            f"{family}: 3 turns across two managers; the model saw all 3 user messages "
            "(the test conversation is deleted)"
        )
    else:
        report.fail(f"{family}: the model saw {seen} of 3 user messages ({len(history)} stored)")


def doctor(args: argparse.Namespace) -> int:
    out = sys.stdout
    report = Report(out)
    store_url = _store_url(args)
    print(f"agentsession {__version__} doctor (python {sys.version.split()[0]})", file=out)
    families = _check_families(report)

    async def checks() -> None:
        usable = await _check_store(report, store_url)
        _check_web(report, store_url, dict(os.environ))
        if args.no_round_trip:
            return
        report.section(f"Persistence round trip (offline model, on {redact_url(store_url)})")
        if not usable or not families:
            report.note("skipped: " + ("the store is not usable" if not usable else "no family"))
            return
        for family in families:
            try:
                await _check_round_trip(report, family, store_url)
            except Exception as exc:
                report.fail(f"{family}: {type(exc).__name__}: {exc}")

    asyncio.run(checks())
    verdict = "problems found" if report.failures else "all good"
    print(f"\n{verdict}: {report.failures} failed, {report.warnings} warnings", file=out)
    return EXIT_NOT_FOUND if report.failures else EXIT_OK


# -- chat ------------------------------------------------------------------------------


def chat(args: argparse.Namespace) -> int:
    out = sys.stdout
    family = _family(args.family)
    store_url = _store_url(args)
    manager = SessionManager(offline_agent_factory(family), store_url)
    session = manager.session(args.session)
    print(
        f"session {session.id} ({family} family, offline model, store {redact_url(store_url)})",
        file=out,
    )
    print("type a message; /history, /reset, /quit", file=out)
    try:
        for line in sys.stdin:
            text = line.strip()
            if not text:
                continue
            if text in ("/quit", "/exit"):
                break
            if text == "/history":
                for message in session.history():
                    print(f"  {message.role}: {message.content}", file=out)
                continue
            if text == "/reset":
                session.reset()
                print("  (conversation reset)", file=out)
                continue
            try:
                reply = session.send(text)
            except (LimitExceeded, InvalidInput) as exc:  # this message only: keep chatting
                print(f"agentsession: {exc}", file=sys.stderr)
                continue
            print(f"assistant: {reply}", file=out, flush=True)
    finally:
        manager.close()
        again = ["agentsession", "chat", "--store", redact_url(store_url), "--session", session.id]
        if args.family:
            again[2:2] = ["--family", args.family]
        if store_url.startswith("memory:"):
            print("bye; memory:// keeps nothing after this process ends", file=out)
        else:
            print(f"bye; continue with: {shlex.join(again)}", file=out)
    return EXIT_OK


# -- demo ------------------------------------------------------------------------------


def demo(args: argparse.Namespace) -> int:
    # the CLI is the composition root; the engine never imports adapters
    from .adapters.demo import serve

    serve(
        host=args.host,
        port=args.port,
        store_url=_store_url(args),
        family=_family(args.family),
        reload=args.reload,
        team=args.team,
    )
    return EXIT_OK


# -- administration --------------------------------------------------------------------


def _all_sessions(manager: SessionManager) -> list[SessionInfo]:
    found: list[SessionInfo] = []
    while page := manager.list(limit=500, offset=len(found)):
        found += page
    return found


def ls(args: argparse.Namespace) -> int:
    out = sys.stdout
    with _admin_manager(args) as manager:
        sessions = manager.list(limit=args.limit)
    if not sessions:
        print(f"agentsession: no conversations in {redact_url(_store_url(args))}", file=sys.stderr)
        return EXIT_OK
    rows = [
        (
            info.session_id,
            str(info.message_count),
            str(info.version),
            _when(info.updated_at),
            "DAMAGED" if info.problem else "",
        )
        for info in sessions
    ]
    header = ("SESSION", "MESSAGES", "VERSION", "UPDATED (UTC)", "")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        cells = [
            row[0].ljust(widths[0]),
            row[1].rjust(widths[1]),
            row[2].rjust(widths[2]),
            row[3].ljust(widths[3]),
            row[4],
        ]
        print("  ".join(cells).rstrip(), file=out)
    damaged = [info for info in sessions if info.problem]
    for info in damaged:
        print(f"agentsession: {info.problem}", file=sys.stderr)
    if len(sessions) == args.limit:
        print(f"agentsession: the {args.limit} most recent; --limit N lists more", file=sys.stderr)
    return EXIT_NOT_FOUND if damaged else EXIT_OK


def show(args: argparse.Namespace) -> int:
    out = sys.stdout
    with _admin_manager(args) as manager:
        info = manager.info(args.session_id)
        if info is None:
            raise _no_session(args, args.session_id)
        history = manager.history(args.session_id)
    print(f"session {info.session_id}: v{info.version}, {info.message_count} messages", file=out)
    print(f"metadata {json.dumps(dict(info.metadata), ensure_ascii=False)}", file=out)
    for message in history:
        who = message.name or message.role
        if message.tool_calls:
            calls = ", ".join(f"{c.name}({c.arguments})" for c in message.tool_calls)
            print(f"  [{message.role}] {who}: calls {calls}", file=out)
        else:
            print(f"  [{message.role}] {who}: {message.content}", file=out)
    return EXIT_OK


def export(args: argparse.Namespace) -> int:
    out = sys.stdout
    with _admin_manager(args) as manager:
        try:
            document = manager.export(args.session_id)
        except SessionNotFound:
            raise _no_session(args, args.session_id) from None
    text = json.dumps(document, ensure_ascii=False, indent=2)
    if args.output:
        try:
            Path(args.output).write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise CommandFailed(f"cannot write {args.output}: {exc.strerror or exc}") from None
    else:
        print(text, file=out)
    return EXIT_OK


def _read_export(name: str) -> dict[str, Any]:
    """The export document in ``name`` (``-``: stdin), or a one-line reason why it is not one."""
    label = "stdin" if name == "-" else name
    try:
        raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except FileNotFoundError:
        raise CommandFailed(f"cannot read {label}: no such file") from None
    except OSError as exc:
        raise CommandFailed(f"cannot read {label}: {exc.strerror or exc}") from None
    if not raw.strip():
        raise CommandFailed(f"{label} is empty: nothing to import")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CommandFailed(
            f"{label} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        ) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        truncated = " (is it truncated?)" if exc.pos >= len(text.rstrip()) else ""
        raise CommandFailed(f"{label} is not valid JSON{truncated}: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != "agentsession.conversation":
        raise CommandFailed(
            f"{label} is not an agentsession export (it has no "
            '"format": "agentsession.conversation"); \'agentsession export ID\' writes one'
        )
    if document.get("v") != 1:
        raise CommandFailed(
            f"{label} is an export of version {document.get('v')!r}; this agentsession reads v1"
        )
    messages = document.get("messages", [])
    if not isinstance(messages, list):
        raise CommandFailed(f'{label}: "messages" must be a list of message objects')
    if not isinstance(document.get("metadata", {}), dict):
        raise CommandFailed(f'{label}: "metadata" must be a JSON object')
    for index, record in enumerate(messages, 1):
        if not isinstance(record, dict):
            raise CommandFailed(f"{label}: message {index} is not a JSON object")
        try:
            Message.from_dict(record, "import")
        except CorruptRecord as exc:
            raise CommandFailed(
                f"{label}: message {index} cannot be imported: {exc.detail}"
            ) from None
    return document


def import_(args: argparse.Namespace) -> int:
    out = sys.stdout
    document = _read_export(args.file)
    target = args.id if args.id is not None else document.get("session_id")
    if target is None:
        raise CommandFailed(f"{args.file} names no session_id: give one with --id")
    check_session_id(target)
    with _admin_manager(args, create=True) as manager:
        try:
            session_id = manager.import_(document, target)
        except ConflictError:
            raise CommandFailed(
                f"session {target!r} already exists in {redact_url(_store_url(args))}: import "
                "it under another id with --id, or remove it first with 'agentsession rm'"
            ) from None
    print(session_id, file=out)
    return EXIT_OK


def rm(args: argparse.Namespace) -> int:
    out = sys.stdout
    for sid in args.session_ids:
        check_session_id(sid)
    missing = 0
    with _admin_manager(args) as manager:
        for sid in args.session_ids:
            try:
                removed = manager.delete(sid)
            except CorruptRecord:  # its summary cannot be read: remove it without the turn lock
                removed = manager._run(manager.store.delete(sid))
            if removed:
                print(f"removed {sid}", file=out)
            else:
                missing += 1
                print(f"agentsession: {_no_session(args, sid)}", file=sys.stderr)
    return EXIT_NOT_FOUND if missing else EXIT_OK


def _url_ttl(url: str) -> float | None:
    ttl = parse_qs(urlsplit(url).query).get("ttl")
    return None if not ttl else seconds_option("ttl", ttl[-1], url)


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def gc(args: argparse.Namespace) -> int:
    out = sys.stdout
    url = _store_url(args)
    # listed without the TTL, or the expired conversations gc is about would be hidden
    with SessionManager(_never, open_store(url, create_schema=False, ttl=None)) as manager:
        ttl = _url_ttl(url)
        idle = args.idle if args.idle is not None else ttl
        if idle is None:
            raise CommandFailed(
                f"nothing to remove: {redact_url(url)} has no TTL and no --idle was given. "
                "Pass --idle SECONDS (604800 is a week) or add ?ttl=SECONDS to the store URL"
            )
        now = time.time()
        idle_ones = [s for s in _all_sessions(manager) if now - s.updated_at > idle]
        shown = idle_ones[:50]
        verb = "would remove" if args.dry_run else "removing"
        for info in shown:
            print(
                f"{verb} {info.session_id}  ({info.message_count} messages, "
                f"idle {_duration(now - info.updated_at)})",
                file=out,
            )
        if len(idle_ones) > len(shown):
            print(f"... and {len(idle_ones) - len(shown)} more", file=out)
        limit = f"idle longer than {_duration(idle)}" + (" (the TTL)" if args.idle is None else "")
        if args.dry_run:
            print(f"dry run: {_many(len(idle_ones))} {limit}; nothing removed", file=out)
            return EXIT_OK
        if not idle_ones:
            print(f"removed 0 conversations: none is {limit}", file=out)
            return EXIT_OK
        if not args.yes and _interactive():
            answer = input(f"remove {_many(len(idle_ones))}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing removed", file=out)
                return EXIT_OK
        removed = manager.gc(idle)
    print(f"removed {_many(removed)} {limit}", file=out)
    return EXIT_OK


def migrate(args: argparse.Namespace) -> int:
    """Read every stored conversation; with --to, check each against a target family."""
    if args.to:
        return _migrate_to(args)
    out = sys.stdout
    bad = 0
    with _admin_manager(args) as manager:
        sessions = _all_sessions(manager)
        for info in sessions:
            try:
                manager.history(info.session_id)
            except AgentSessionError as exc:
                bad += 1
                print(f"{info.session_id}: {exc}", file=out)
    print(f"checked {_many(len(sessions))}: {bad} unreadable, left in place", file=out)
    return EXIT_NOT_FOUND if bad else EXIT_OK


def _migrate_to(args: argparse.Namespace) -> int:
    from .migration import check

    out = sys.stdout
    counts = {"checked": 0, "blocked": 0, "loss": 0, "repair": 0, "repaired": 0}

    async def run() -> None:
        store = open_store(_store_url(args), create_schema=args.repair)
        try:
            async for report in check(store, args.to, repair=args.repair):
                counts["checked"] += 1
                counts["blocked"] += report.blocked
                counts["repaired"] += report.repaired
                kinds = {finding.kind for finding in report.findings}
                counts["loss"] += "loss" in kinds
                counts["repair"] += "repair" in kinds
                if report.unreadable:
                    print(f"{report.session_id}: unreadable: {report.unreadable}", file=out)
                if report.repaired:
                    print(
                        f"{report.session_id}: appended {report.repaired} synthetic tool result(s)",
                        file=out,
                    )
                for finding in report.findings:
                    print(f"{report.session_id}: {finding}", file=out)
        finally:
            await store.close()

    asyncio.run(run())
    changed = (
        f"{counts['repaired']} synthetic results appended" if args.repair else "nothing changed"
    )
    print(
        f"checked {counts['checked']} conversations for the {args.to} family: "
        f"{counts['blocked']} cannot be loaded, {counts['loss']} lose a detail, "
        f"{counts['repair']} are repaired on load; {changed}",
        file=out,
    )
    return EXIT_NOT_FOUND if counts["blocked"] else EXIT_OK


def store_init(args: argparse.Namespace) -> int:
    out = sys.stdout
    url = _store_url(args)

    async def init() -> None:
        store = open_store(url)
        try:
            initialise = getattr(store, "init", None)
            if initialise is not None:
                await initialise()
            await store.ping()
            await store.list(limit=1)  # SQLite creates its file and tables on first use
        finally:
            await store.close()

    asyncio.run(init())
    print(f"{redact_url(url)} is ready", file=out)
    return EXIT_OK


# -- arguments ---------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, with errors in one line (usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port from 1 to 65535")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is negative: give idle seconds, 0 or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="agentsession",
        description="AutoGen conversations that persist: check, try and administer them.",
        epilog="Exit codes: "
        + "; ".join(f"{code} {text.split(':')[0]}" for code, text in EXIT_CODES.items()),
    )
    parser.add_argument("--version", action="version", version=f"agentsession {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log at DEBUG level; show tracebacks"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[..., int], help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        sub.add_argument(
            "--store", help=f"store URL (default: $AGENTSESSION_STORE or {DEFAULT_STORE})"
        )
        return sub

    sub = command("doctor", doctor, "check the AutoGen install, the store and the web setup")
    sub.add_argument("--no-round-trip", action="store_true", help="skip the offline round trip")

    sub = command("chat", chat, "chat in the terminal with the offline model")
    sub.add_argument("--session", help="continue this session id")
    sub.add_argument("--family", choices=OFFLINE_FAMILIES, help="default: the installed one")

    sub = command("demo", demo, "serve the demo chat web app")
    sub.add_argument("--host", default="127.0.0.1")
    sub.add_argument("--port", type=_port, default=8000)
    sub.add_argument("--family", choices=OFFLINE_FAMILIES, help="default: the installed one")
    sub.add_argument("--reload", action="store_true", help="restart on code changes (uvicorn)")
    sub.add_argument(
        "--team", action="store_true", help="a writer and a critic answer (a team or group chat)"
    )

    sub = command("ls", ls, "list stored conversations, most recent first")
    sub.add_argument("--limit", type=_count, default=100, help="at most this many (default 100)")
    sub = command("show", show, "print one conversation")
    sub.add_argument("session_id")
    sub = command("export", export, "write one conversation as JSON")
    sub.add_argument("session_id")
    sub.add_argument("-o", "--output", help="file to write (default: stdout)")
    sub = command("import", import_, "store a conversation exported as JSON")
    sub.add_argument("file", help="the exported JSON file, or - for stdin")
    sub.add_argument("--id", help="store it under this id (default: its own)")
    sub = command("rm", rm, "delete conversations")
    sub.add_argument("session_ids", nargs="+", metavar="session_id")
    sub = command("gc", gc, "delete idle conversations")
    sub.add_argument("--idle", type=_seconds, help="seconds idle (default: the store's TTL)")
    sub.add_argument("--dry-run", action="store_true", help="list what would go; remove nothing")
    sub.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    sub = command(
        "migrate", migrate, "check every stored record; with --to, what a target family cannot hold"
    )
    sub.add_argument(
        "--to", choices=OFFLINE_FAMILIES, help="report what each conversation would meet there"
    )
    sub.add_argument(
        "--repair",
        action="store_true",
        help="with --to: store the synthetic results of tool calls left unanswered at the end",
    )

    store = commands.add_parser("store", help="store maintenance")
    store_commands = store.add_subparsers(dest="store_command", required=True, metavar="COMMAND")
    init = store_commands.add_parser(
        "init", help="create the store's tables or keys", description="create the store's tables"
    )
    init.add_argument(
        "--store", help=f"store URL (default: $AGENTSESSION_STORE or {DEFAULT_STORE})"
    )
    init.add_argument("url", nargs="?", help=argparse.SUPPRESS)  # the older spelling
    init.set_defaults(handler=store_init)
    return parser


def _exit_code(exc: AgentSessionError) -> int:
    if isinstance(exc, (SessionNotFound, StoreNotFound)):
        return EXIT_NOT_FOUND
    if isinstance(exc, (ConfigurationError, FamilyError, InvalidInput, LimitExceeded)):
        return EXIT_USAGE
    if isinstance(exc, (StoreError, SessionBusy)):
        return EXIT_STORE
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    # pyautogen 0.2 imports flaml, which warns about an extra nobody here needs
    warnings.filterwarnings("ignore", message="flaml.automl is not available")
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.handler(args)
    except CommandFailed as exc:
        print(f"agentsession: {exc}", file=sys.stderr)
        return exc.code
    except AgentSessionError as exc:
        print(f"agentsession: {exc}", file=sys.stderr)
        return _exit_code(exc)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: one line, and the traceback only when asked for
        if args.verbose:
            traceback.print_exc()
        print(
            f"agentsession: unexpected error {type(exc).__name__}: {exc} "
            "(a bug: rerun with -v for the traceback and report it)",
            file=sys.stderr,
        )
        return EXIT_BUG
    return code


if __name__ == "__main__":
    sys.exit(main())
