"""Traces (OpenTelemetry): one span per HTTP request and one per step, the Azure SDKs' calls as
their children, and the queue hop carried in the operation itself (`traceparent`, the W3C trace
context of the span that enqueued it), so one user action can be followed from the POST to every
step it caused and the events they published.

Off until `use_tracer` gives a tracer (`adapters/tracing.py` does, exporting to Application
Insights when APPLICATIONINSIGHTS_CONNECTION_STRING is set): a no-op tracer, nothing recorded,
nothing injected into operations.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from swarm_core.operations import Operation

_PROPAGATOR = TraceContextTextMapPropagator()
_tracer: trace.Tracer = trace.NoOpTracer()


def use_tracer(tracer: trace.Tracer | None) -> None:
    """Trace with `tracer` (None: stop). `adapters/tracing.py` sets it up, with the exporter."""
    global _tracer
    _tracer = tracer or trace.NoOpTracer()


@contextmanager
def http_span(
    function: str, method: str, path: str, route: Mapping[str, str]
) -> Iterator[trace.Span]:
    """The span of one HTTP request (the caller sets `http.response.status_code`)."""
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "url.path": path,
        "faas.name": function,
    }
    attributes.update({f"swarm.{k}": v for k, v in route.items() if k in ("swarm_id", "node_id")})
    with _tracer.start_as_current_span(
        f"{method} {function}", kind=SpanKind.SERVER, attributes=attributes
    ) as span:
        yield span


def answered(span: trace.Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))


@contextmanager
def step_span(operation: Operation) -> Iterator[trace.Span]:
    """The span of one step, a child of the span that enqueued its operation (if it carried
    one); the caller sets `swarm.seq` and `swarm.outcome`."""
    parent = (
        _PROPAGATOR.extract({"traceparent": operation.traceparent})
        if operation.traceparent
        else None
    )
    with _tracer.start_as_current_span(
        f"step {operation.kind.value}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            "swarm.swarm_id": operation.swarm_id,
            "swarm.node_id": operation.node_id,
            "swarm.op_id": operation.op_id,
            "swarm.kind": operation.kind.value,
        },
    ) as span:
        yield span


def carrying_trace(operation: Operation) -> Operation:
    """`operation` with the current span's trace context, to enqueue; as is when not tracing."""
    if not trace.get_current_span().get_span_context().is_valid:
        return operation
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    traceparent = carrier.get("traceparent")
    if traceparent is None or traceparent == operation.traceparent:
        return operation
    return operation.model_copy(update={"traceparent": traceparent})
