"""Traces of one exchange on the emulators, with an in-memory exporter: the POST of the user's
answer, the two steps it causes (the resume, then the LLM step) as its descendants through the
queue, each with its swarm attributes, and the Azure SDKs' calls inside them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from swarm_core.adapters import tracing
from swarm_core.adapters.queue import base64_queue_client, build_queue_service
from swarm_core.bootstrap import SwarmApp, build_azure
from swarm_core.entrypoints import http_api
from swarm_core.runtime import use_app
from swarm_core.settings import load_settings

pytestmark = pytest.mark.emulators

_GLOBAL: dict[str, TracerProvider] = {}


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    provider = _GLOBAL.get("provider")
    if provider is None:
        # The Azure SDKs trace with the global provider (as the distro sets it); it can be set
        # once per process, so this module's provider stays, silent once tracing is off again.
        provider = _GLOBAL["provider"] = TracerProvider()
        trace.set_tracer_provider(provider)
    processor = SimpleSpanProcessor(spans)
    provider.add_span_processor(processor)
    tracing.use_tracer_provider(provider)
    try:
        yield spans
    finally:
        tracing.use_tracer_provider(None)
        processor.shutdown()


def call(fn: Any, method: str, body: Any = None, token: str = "", **route: str) -> Any:
    headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
    req = func.HttpRequest(
        method=method,
        url="http://localhost/api/x",
        headers=headers,
        route_params=route,
        body=b"" if body is None else json.dumps(body).encode(),
    )
    resp = fn(req)
    return resp.status_code, json.loads(resp.get_body() or b"null")


def drain(app: SwarmApp, settings: Any) -> None:
    """What the queue trigger does, until the queue is empty."""
    queue = base64_queue_client(build_queue_service(settings), settings.swarm_queue)
    while batch := list(queue.receive_messages(max_messages=8, visibility_timeout=30)):
        for message in batch:
            app.worker.process(app.adapters.queue.decode_message(message.content))
            queue.delete_message(message)


def test_one_exchange_is_one_trace_from_the_post_to_its_steps(emulator_stack, exporter):
    name = f"otel{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        **emulator_stack.settings,
        COSMOS_DATABASE=name,
        SWARM_CONTAINER=name,
        SWARM_QUEUE=name,
        SWARM_POISON_QUEUE=f"{name}-poison",
        AUTH_SECRET="otel-" + "k" * 32,
        BCRYPT_ROUNDS=4,
    )
    app = build_azure(settings)
    use_app(app)
    try:
        _, body = call(http_api.signup, "POST", {"username": name, "password": "p" * 10})
        token = body["access_token"]
        config = {"offline_breadth": 2, "offline_depth": 1}
        _, swarm = call(http_api.create_swarm, "POST", {"goal": "Plan", "config": config}, token)
        swarm_id = swarm["swarm_id"]
        call(http_api.spawn_swarm, "POST", token=token, swarm_id=swarm_id)
        drain(app, settings)
        _, open_ = call(http_api.list_interrupts, "GET", token=token, swarm_id=swarm_id)
        node_id = open_["items"][0]["node_id"]
        exporter.clear()

        status, _ = call(
            http_api.post_message,
            "POST",
            {"content": "Mid-range, in May, no early mornings"},
            token,
            swarm_id=swarm_id,
            node_id=node_id,
        )
        assert status == 202
        drain(app, settings)
    finally:
        use_app(None)

    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    [post] = [s for s in spans if s.name == "POST post_message"]
    assert post.kind == SpanKind.SERVER
    assert post.attributes["swarm.swarm_id"] == swarm_id
    assert post.attributes["http.response.status_code"] == 202
    steps = sorted((s for s in spans if s.name.startswith("step ")), key=lambda s: s.start_time)
    # The answer suffices: the conversation ends and the tree goes on, all caused by the POST.
    assert [s.name for s in steps[:2]] == ["step user_reply", "step llm"] and len(steps) > 2
    resume, llm = steps[:2]
    assert resume.parent is not None and by_id[resume.parent.span_id] in _within(post, spans, by_id)
    assert llm.parent is not None and by_id[llm.parent.span_id] in _within(resume, spans, by_id)
    for step in steps:
        assert step in _within(post, spans, by_id), f"{step.name} descends from the POST"
        assert step.attributes["swarm.node_id"]
        assert step.context.trace_id == post.context.trace_id, "one trace"
        assert step.kind == SpanKind.CONSUMER
        assert step.attributes["swarm.swarm_id"] == swarm_id
        assert step.attributes["swarm.outcome"] == "committed"
        assert step.attributes["swarm.seq"] > 0 and step.attributes["swarm.op_id"]
        sdk = [s for s in _within(step, spans, by_id) if s is not step]
        assert any(s.kind == SpanKind.CLIENT for s in sdk), "the SDKs' calls are in the step"


def _within(root: ReadableSpan, spans: Any, by_id: dict[int, ReadableSpan]) -> list[ReadableSpan]:
    """`root` and its descendants."""

    def descends(span: ReadableSpan) -> bool:
        while span.parent is not None:
            if span.parent.span_id == root.context.span_id:
                return True
            parent = by_id.get(span.parent.span_id)
            if parent is None:
                return False
            span = parent
        return False

    return [root, *[s for s in spans if descends(s)]]
