"""The ``agentsession`` command: ``doctor``, ``chat``, ``demo`` and session administration."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from . import __version__
from .errors import AgentSessionError
from .manager import AsyncSessionManager, SessionManager
from .offline import OFFLINE_FAMILIES, installed_family, offline_agent_factory, user_messages_seen
from .stores import open_store

DEFAULT_STORE = "sqlite:///agentsession.db"


def _store_url(args: argparse.Namespace) -> str:
    return str(args.store or os.environ.get("AGENTSESSION_STORE") or DEFAULT_STORE)


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _admin_manager(args: argparse.Namespace) -> SessionManager:
    # admin commands never run a turn, so the factory is never called
    def no_agent() -> Any:
        raise AgentSessionError("admin commands do not build agents")

    return SessionManager(no_agent, _store_url(args))


# -- doctor ----------------------------------------------------------------------------


class Report:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.failures = 0
        self.warnings = 0

    def ok(self, text: str) -> None:
        print(f"  ok    {text}", file=self.out)

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


def _check_runtime(report: Report, store_url: str) -> None:
    report.section("Process model (the field report's reloader and worker checks)")
    reloading = [
        name
        for name in ("WERKZEUG_RUN_MAIN", "FLASK_DEBUG", "UVICORN_RELOAD", "STREAMLIT_SERVER_PORT")
        if os.environ.get(name)
    ]
    workers = os.environ.get("WEB_CONCURRENCY") or ""
    durable = not store_url.startswith("memory:")
    if reloading:
        detail = ", ".join(reloading)
        if durable:
            report.ok(
                f"a reloader is active ({detail}); the {store_url.split(':')[0]} store survives it"
            )
        else:
            report.fail(
                f"a reloader is active ({detail}) and the memory:// store forgets on reload"
            )
    if workers and workers != "1" and store_url.startswith(("memory:", "sqlite:")):
        kind = "memory://" if store_url.startswith("memory:") else "SQLite (one machine only)"
        report.warn(f"WEB_CONCURRENCY={workers} workers share a {kind} store")
    if not durable:
        report.warn("memory:// keeps conversations in one process only: use sqlite:// or redis://")
    else:
        report.ok(f"store {store_url.split('?')[0]} is durable across restarts and reloads")


async def _check_store(report: Report, store_url: str) -> bool:
    report.section("Store")
    try:
        store = open_store(store_url)
        await store.ping()
        await store.close()
    except Exception as exc:
        report.fail(f"{store_url}: {exc}")
        return False
    report.ok(f"{store_url.split('?')[0]} answers")
    return True


async def _check_round_trip(report: Report, family: str) -> None:
    """Two turns, a brand-new manager on the same store, a third turn: did the model see all?"""
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'doctor.db'}"
        factory = offline_agent_factory(family)
        async with AsyncSessionManager(factory, url) as first:
            session = first.session()
            await session.send("doctor check one")
            await session.send("doctor check two")
        async with AsyncSessionManager(factory, url) as second:
            reply = await second.session(session.id).send("doctor check three")
            history = await second.history(session.id)
    seen = user_messages_seen(reply)
    if seen == 3 and len(history) == 6:
        report.ok(f"{family}: 3 turns across two managers; the model saw all 3 user messages")
    else:
        report.fail(f"{family}: the model saw {seen} of 3 user messages ({len(history)} stored)")


def doctor(args: argparse.Namespace) -> int:
    report = Report(sys.stdout)
    out = sys.stdout
    store_url = _store_url(args)
    print(f"agentsession {__version__} doctor (python {sys.version.split()[0]})", file=out)
    families = _check_families(report)
    _check_runtime(report, store_url)

    async def checks() -> None:
        await _check_store(report, store_url)
        if families and not args.no_round_trip:
            report.section("Persistence round trip (offline model, temporary SQLite store)")
            for family in families:
                try:
                    await _check_round_trip(report, family)
                except Exception as exc:
                    report.fail(f"{family}: {type(exc).__name__}: {exc}")

    asyncio.run(checks())
    verdict = "problems found" if report.failures else "all good"
    print(f"\n{verdict}: {report.failures} failed, {report.warnings} warnings", file=out)
    return 1 if report.failures else 0


# -- chat ------------------------------------------------------------------------------


def chat(args: argparse.Namespace) -> int:
    out = sys.stdout
    family = args.family or installed_family()
    manager = SessionManager(offline_agent_factory(family), _store_url(args))
    session = manager.session(args.session)
    print(
        f"session {session.id} ({family} family, offline model, store {_store_url(args)})", file=out
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
            print(f"assistant: {session.send(text)}", file=out, flush=True)
    finally:
        manager.close()
    print(f"bye; continue with: agentsession chat --session {session.id}", file=out)
    return 0


# -- demo ------------------------------------------------------------------------------


def demo(args: argparse.Namespace) -> int:
    from .adapters.demo import (
        serve,
    )  # the CLI is the composition root; the engine never imports adapters

    serve(
        host=args.host,
        port=args.port,
        store_url=args.store
        or os.environ.get("AGENTSESSION_STORE")
        or "sqlite:///agentsession-demo.db",
        family=args.family,
        reload=args.reload,
    )
    return 0


# -- administration --------------------------------------------------------------------


def ls(args: argparse.Namespace) -> int:
    out = sys.stdout
    with _admin_manager(args) as manager:
        sessions = manager.list(limit=args.limit)
    damaged = 0
    for info in sessions:
        print(
            f"{info.session_id}  {info.message_count:>6} messages  v{info.version}"
            f"  updated {_when(info.updated_at)}" + ("  DAMAGED" if info.problem else ""),
            file=out,
        )
        if info.problem:
            damaged += 1
            print(f"error: {info.problem}", file=sys.stderr)
    return 1 if damaged else 0


def show(args: argparse.Namespace) -> int:
    out = sys.stdout
    with _admin_manager(args) as manager:
        info = manager.info(args.session_id)
        if info is None:
            print(f"no session {args.session_id!r}", file=sys.stderr)
            return 1
        history = manager.history(args.session_id)
    print(f"session {info.session_id}: v{info.version}, {info.message_count} messages", file=out)
    print(f"metadata {json.dumps(dict(info.metadata))}", file=out)
    for message in history:
        who = message.name or message.role
        if message.tool_calls:
            calls = ", ".join(f"{c.name}({c.arguments})" for c in message.tool_calls)
            print(f"  [{message.role}] {who}: calls {calls}", file=out)
        else:
            print(f"  [{message.role}] {who}: {message.content}", file=out)
    return 0


def export(args: argparse.Namespace) -> int:
    out = sys.stdout
    with _admin_manager(args) as manager:
        document = manager.export(args.session_id)
    text = json.dumps(document, ensure_ascii=False, indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    else:
        print(text, file=out)
    return 0


def import_(args: argparse.Namespace) -> int:
    out = sys.stdout
    document = json.loads(Path(args.file).read_text(encoding="utf-8"))
    with _admin_manager(args) as manager:
        session_id = manager.import_(document, args.id)
    print(session_id, file=out)
    return 0


def rm(args: argparse.Namespace) -> int:
    with _admin_manager(args) as manager:
        missing = [sid for sid in args.session_ids if not manager.delete(sid)]
    for sid in missing:
        print(f"no session {sid!r}", file=sys.stderr)
    return 1 if missing else 0


def gc(args: argparse.Namespace) -> int:
    out = sys.stdout
    with _admin_manager(args) as manager:
        removed = manager.gc(args.idle)
    print(f"removed {removed} idle conversations", file=out)
    return 0


def migrate(args: argparse.Namespace) -> int:
    """Read every stored conversation; with --to, check each against a target family."""
    if args.to:
        return _migrate_to(args)
    out = sys.stdout
    bad = 0
    checked = 0
    with _admin_manager(args) as manager:
        offset = 0
        while page := manager.list(limit=500, offset=offset):
            offset += len(page)
            for info in page:
                checked += 1
                try:
                    manager.history(info.session_id)
                except AgentSessionError as exc:
                    bad += 1
                    print(f"{info.session_id}: {exc}", file=out)
    print(f"checked {checked} conversations: {bad} unreadable, left in place", file=out)
    return 1 if bad else 0


def _migrate_to(args: argparse.Namespace) -> int:
    from .migration import check

    out = sys.stdout
    counts = {"checked": 0, "blocked": 0, "loss": 0, "repair": 0, "repaired": 0}

    async def run() -> None:
        store = open_store(_store_url(args))
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
    return 1 if counts["blocked"] else 0


def store_init(args: argparse.Namespace) -> int:
    out = sys.stdout

    async def init() -> None:
        store = open_store(args.url)
        try:
            initialise = getattr(store, "init", None)
            if initialise is not None:
                await initialise()
            await store.ping()
        finally:
            await store.close()

    asyncio.run(init())
    print(f"{args.url.split('?')[0]} is ready", file=out)
    return 0


# -- entry point -----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentsession", description=__doc__)
    parser.add_argument("--version", action="version", version=f"agentsession {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler: Callable[..., int], help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    def with_store(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument(
            "--store", help=f"store URL (default: $AGENTSESSION_STORE or {DEFAULT_STORE})"
        )
        return sub

    sub = with_store(
        command("doctor", doctor, "check the AutoGen install, the store and persistence")
    )
    sub.add_argument("--no-round-trip", action="store_true", help="skip the offline round trip")

    sub = with_store(command("chat", chat, "chat in the terminal with the offline model"))
    sub.add_argument("--session", help="continue this session id")
    sub.add_argument("--family", choices=OFFLINE_FAMILIES, help="default: the installed one")

    sub = with_store(command("demo", demo, "serve the demo chat web app"))
    sub.add_argument("--host", default="127.0.0.1")
    sub.add_argument("--port", type=int, default=8000)
    sub.add_argument("--family", choices=OFFLINE_FAMILIES, help="default: the installed one")
    sub.add_argument("--reload", action="store_true", help="restart on code changes (uvicorn)")

    sub = with_store(command("ls", ls, "list stored conversations"))
    sub.add_argument("--limit", type=int, default=100)
    sub = with_store(command("show", show, "print one conversation"))
    sub.add_argument("session_id")
    sub = with_store(command("export", export, "write one conversation as JSON"))
    sub.add_argument("session_id")
    sub.add_argument("-o", "--output", help="file to write (default: stdout)")
    sub = with_store(command("import", import_, "store a conversation exported as JSON"))
    sub.add_argument("file")
    sub.add_argument("--id", help="store it under this id (default: its own)")
    sub = with_store(command("rm", rm, "delete conversations"))
    sub.add_argument("session_ids", nargs="+")
    sub = with_store(command("gc", gc, "delete idle conversations"))
    sub.add_argument("--idle", type=float, help="seconds idle (default: the store's TTL)")
    sub = with_store(
        command(
            "migrate",
            migrate,
            "check every stored record; with --to, what a target family cannot hold",
        )
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
    store_commands = store.add_subparsers(dest="store_command", required=True)
    init = store_commands.add_parser("init", help="create the store's tables or keys")
    init.add_argument("url")
    init.set_defaults(handler=store_init)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.handler(args)
    except AgentSessionError as exc:
        print(f"agentsession: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
