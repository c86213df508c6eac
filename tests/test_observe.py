"""Observers: what turns and their store calls did, for metrics and traces, without secrets."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from conftest import family_installed

from agentsession import (
    AsyncSessionManager,
    MessageTooLarge,
    Observer,
    SessionBusy,
    SessionManager,
    Stats,
    StoreCall,
    StoreUnavailable,
    TurnRecord,
)
from agentsession.observe import session_digest
from agentsession.offline import offline_agent_factory

PRIVATE = "my card number is 4111 1111 1111 1111"


class Recorder(Observer):
    def __init__(self) -> None:
        self.turns: list[TurnRecord] = []
        self.calls: list[tuple[StoreCall, Any]] = []

    def turn_started(self, session: str) -> Any:
        return ("turn", session)

    def store_call(self, call: StoreCall, turn: Any) -> None:
        self.calls.append((call, turn))

    def turn_finished(self, record: TurnRecord, turn: Any) -> None:
        assert turn == ("turn", record.session)
        self.turns.append(record)


def test_turns_report_their_outcome_agent_and_store_calls(tmp_path: Path) -> None:
    recorder, stats = Recorder(), Stats()
    url = f"sqlite:///{tmp_path / 'o.db'}"
    factory = offline_agent_factory()
    with (
        SessionManager(factory, url, observer=[recorder, stats]) as manager,
        SessionManager(factory, url) as other,
    ):
        session = manager.session()
        session.send(PRIVATE)
        session.send("again")
        other.send(session.id, "from another worker")
        session.send("and again")
        SessionManager(factory, url, observer=recorder).session(session.id).send("cold")
        with pytest.raises(MessageTooLarge):
            session.send("x" * 100_000)
    assert [(t.outcome, t.agent) for t in recorder.turns] == [
        ("ok", "new"),
        ("ok", "cached"),
        ("ok", "caught_up"),
        ("ok", "rebuilt"),
        ("refused", ""),
    ]
    first = recorder.turns[0]
    assert first.session == session_digest(session.id) and session.id not in first.session
    assert first.messages == 2 and first.seconds >= first.lease_wait >= 0
    assert recorder.turns[-1].error == "MessageTooLarge" and recorder.turns[-1].messages == 0
    operations = [call.operation for call, turn in recorder.calls if turn is not None]
    assert operations[:3] == ["begin_turn", "create", "finish_turn"]
    assert "read_messages" in operations  # the catch-up read only the new messages
    assert "load" in operations  # the rebuild read the whole conversation
    snapshot = stats.snapshot()
    assert snapshot["turns"] == {"ok": 3, "refused": 1}  # the cold manager had no Stats
    assert snapshot["agents"] == {"new": 1, "cached": 1, "caught_up": 1}
    assert snapshot["cache_hit_rate"] == 1.0
    assert snapshot["store_calls"]["begin_turn"] == 3 and not snapshot["store_errors"]
    assert PRIVATE not in repr(recorder.turns) + repr(recorder.calls) + repr(snapshot)


def test_busy_turns_and_lease_waits_are_reported() -> None:
    if not family_installed("agentchat"):
        pytest.skip("the slow offline agent streams with the agentchat family")
    stats = Stats()

    async def main() -> list[Any]:
        async with AsyncSessionManager(
            offline_agent_factory("agentchat", chunk_delay=0.02),
            "memory://",
            lock_timeout=0.05,
            observer=stats,
        ) as manager:
            session = manager.session()
            return await asyncio.gather(
                session.send("a long first turn"), session.send("too soon"), return_exceptions=True
            )

    results = asyncio.run(main())
    assert isinstance(results[0], str) and isinstance(results[1], SessionBusy)
    snapshot = stats.snapshot()
    assert snapshot["turns"] == {"ok": 1, "busy": 1}
    assert snapshot["lease_wait_seconds"]["max"] >= 0.05  # the busy turn waited it out


def test_a_store_outage_is_a_store_error_and_an_outcome(unused_port: int) -> None:
    recorder, stats = Recorder(), Stats()
    url = f"redis://127.0.0.1:{unused_port}/0?socket_timeout=1"
    pytest.importorskip("redis")
    with (
        SessionManager(offline_agent_factory(), url, observer=[recorder, stats]) as manager,
        pytest.raises(StoreUnavailable),
    ):
        manager.session().send("hello")
    (record,) = recorder.turns
    assert record.outcome == "store_unavailable" and record.error == "StoreUnavailable"
    assert stats.snapshot()["store_errors"] == {"begin_turn:StoreUnavailable": 1}
    assert str(unused_port) not in repr(recorder.calls) + repr(recorder.turns)


@pytest.fixture
def unused_port() -> int:
    from servers import free_port

    return free_port()


def test_a_failing_observer_never_fails_a_turn(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Observer):
        def turn_started(self, session: str) -> Any:
            raise RuntimeError("observer bug")

        def turn_finished(self, record: TurnRecord, turn: Any) -> None:
            raise RuntimeError("observer bug")

    with SessionManager(offline_agent_factory(), "memory://", observer=Broken()) as manager:
        assert manager.session().send("hello")
    assert "an agentsession observer failed" in caplog.text


def test_opentelemetry_spans_and_metrics(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from agentsession.otel import OpenTelemetryObserver

    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    observer = OpenTelemetryObserver(tracer_provider, MeterProvider(metric_readers=[reader]))
    url = f"sqlite:///{tmp_path / 'otel.db'}"
    with SessionManager(offline_agent_factory(), url, observer=observer) as manager:
        session = manager.session()
        session.send(PRIVATE)
        session.send("again")
    spans = exporter.get_finished_spans()
    turns = [s for s in spans if s.name == "agentsession.turn"]
    assert len(turns) == 2
    assert turns[0].attributes is not None
    assert turns[0].attributes["agentsession.outcome"] == "ok"
    assert turns[0].attributes["agentsession.agent"] == "new"
    assert turns[1].attributes is not None and turns[1].attributes["agentsession.agent"] == "cached"
    children = [
        s for s in spans if s.parent is not None and s.parent.span_id == turns[0].context.span_id
    ]
    assert [s.name for s in children] == [
        "agentsession.store.begin_turn",
        "agentsession.store.create",
        "agentsession.store.finish_turn",
    ]
    assert all(
        c.start_time >= turns[0].start_time and c.end_time <= turns[0].end_time for c in children
    )
    data = reader.get_metrics_data()
    names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert {
        "agentsession.turns",
        "agentsession.turn.duration",
        "agentsession.store.duration",
    } <= names
    everything = repr([dict(s.attributes or {}) for s in spans]) + data.to_json()
    assert (
        PRIVATE not in everything
        and session.id not in everything
        and str(tmp_path) not in everything
    )
