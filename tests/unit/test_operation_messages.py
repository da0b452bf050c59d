"""A queue message carries an operation's compact JSON (`compact_json`): without the fields at
their defaults, and every kind of operation reads back the same."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from swarm_core.llm import LLMRequest
from swarm_core.models import ActionType, LLMSettings, TerminationPolicy
from swarm_core.operations import (
    ActionPayload,
    FailPayload,
    LLMPayload,
    Operation,
    SpawnPayload,
    TerminatePayload,
    UserReplyPayload,
    compact_json,
    make_operation,
    parse_operation,
)

PAYLOADS = [
    SpawnPayload(
        parent_id=None,
        depth=0,
        action=ActionType.PLAN,
        name="Root",
        directive="d",
        termination_policy=TerminationPolicy.SIMPLE,
    ),
    ActionPayload(function="on_answer"),
    ActionPayload(function="on_answer", args={"k": [1, None]}),
    LLMPayload(task="judge", next_function="on_judgement"),
    LLMPayload(
        next_function="on_judgement",
        request=LLMRequest(task="judge", facts={"a": 1}, settings=LLMSettings()),
    ),
    UserReplyPayload(interrupt_id="i1"),
    TerminatePayload(report="r"),
    FailPayload(error="e", operation={"op_id": "x", "traceparent": None}),
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: type(p).__name__)
def test_every_kind_reads_back_the_same(payload) -> None:
    operation: Operation = make_operation("op1", "s1", "n1", payload)
    body = compact_json(operation)
    assert parse_operation(body) == operation
    top = json.loads(body)
    assert "traceparent" not in top and top["kind"] == operation.kind.value


def test_fields_at_their_defaults_are_left_out_and_others_kept() -> None:
    operation = make_operation("op1", "s1", "n1", LLMPayload(task="judge", next_function="f"))
    assert compact_json(operation) == (
        '{"op_id":"op1","swarm_id":"s1","node_id":"n1","kind":"llm",'
        '"payload":{"task":"judge","next_function":"f"}}'
    )
    traced = operation.model_copy(update={"traceparent": "00-abc-def-01"})
    assert parse_operation(compact_json(traced)) == traced


def test_values_inside_a_field_stay_whole() -> None:
    # Only the operation's and its payload's own fields go when at their defaults: what a step
    # put in `args` (a model among them) is sent as its JSON, every key of it.
    class Choice(BaseModel):
        index: int = 0
        label: str = ""

    payload = ActionPayload(function="f", args={"choice": Choice(), "list": [Choice(index=1)]})
    body = compact_json(make_operation("op1", "s1", "n1", payload))
    assert json.loads(body)["payload"]["args"] == {
        "choice": {"index": 0, "label": ""},
        "list": [{"index": 1, "label": ""}],
    }
