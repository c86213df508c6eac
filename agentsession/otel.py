"""OpenTelemetry spans and metrics for turns and store calls (``pip install 'agentsession-middleware[otel]'``).

    from agentsession.otel import OpenTelemetryObserver

    manager = SessionManager(factory, store, observer=OpenTelemetryObserver())

A span ``agentsession.turn`` per turn, with a child ``agentsession.store.<method>`` per store
call it made; counters and histograms under ``agentsession.*``. Attributes are the turn's
outcome, where its agent came from, its lease wait and message count, and a digest of the
conversation id; never message text, metadata or a store URL. The global tracer and meter
providers are used unless others are given.
"""

from __future__ import annotations

import time
from typing import Any

from .errors import MissingDependency
from .observe import Observer, StoreCall, TurnRecord

try:
    from opentelemetry import metrics, trace
    from opentelemetry.trace import Status, StatusCode
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise MissingDependency("opentelemetry", "otel", "OpenTelemetryObserver") from exc

__all__ = ["OpenTelemetryObserver"]

_SCOPE = "agentsession"


class OpenTelemetryObserver(Observer):
    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        from . import __version__

        self.tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider)
        meter = metrics.get_meter(_SCOPE, __version__, meter_provider)
        self.turns = meter.create_counter(
            "agentsession.turns", "{turn}", "Turns, by outcome and where their agent came from"
        )
        self.turn_duration = meter.create_histogram(
            "agentsession.turn.duration", "s", "A turn's duration, model call included"
        )
        self.lease_wait = meter.create_histogram(
            "agentsession.lease.wait", "s", "Time a turn waited for its conversation's locks"
        )
        self.store_duration = meter.create_histogram(
            "agentsession.store.duration", "s", "A store call's duration, by method"
        )
        self.store_errors = meter.create_counter(
            "agentsession.store.errors", "{error}", "Store calls that raised, by method and error"
        )

    def turn_started(self, session: str) -> Any:
        return self.tracer.start_span(
            "agentsession.turn",
            kind=trace.SpanKind.INTERNAL,
            attributes={"agentsession.session": session},
        )

    def store_call(self, call: StoreCall, turn: Any) -> None:
        attributes = {"agentsession.store.operation": call.operation}
        self.store_duration.record(call.seconds, attributes)
        if call.error is not None:
            self.store_errors.add(1, {**attributes, "error.type": call.error})
        end = time.time_ns()
        context = trace.set_span_in_context(turn) if turn is not None else None
        span = self.tracer.start_span(
            f"agentsession.store.{call.operation}",
            context=context,
            kind=trace.SpanKind.CLIENT,
            attributes=attributes,
            start_time=end - int(call.seconds * 1e9),
        )
        if call.error is not None:
            span.set_status(Status(StatusCode.ERROR, call.error))
            span.set_attribute("error.type", call.error)
        span.end(end_time=end)

    def turn_finished(self, record: TurnRecord, turn: Any) -> None:
        attributes = {"agentsession.outcome": record.outcome, "agentsession.agent": record.agent}
        self.turns.add(1, attributes)
        self.turn_duration.record(record.seconds, attributes)
        self.lease_wait.record(record.lease_wait, {"agentsession.outcome": record.outcome})
        if turn is None:
            return
        turn.set_attributes(
            {
                **attributes,
                "agentsession.lease_wait": record.lease_wait,
                "agentsession.messages": record.messages,
            }
        )
        if record.error is not None:
            turn.set_status(Status(StatusCode.ERROR, record.error))
            turn.set_attribute("error.type", record.error)
        turn.end()
