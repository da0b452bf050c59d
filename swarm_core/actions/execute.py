"""`execute`: leaf work. One LLM call does the directive and writes the report; then terminate."""

from __future__ import annotations

from typing import Any

from swarm_core.actions.facts import node_facts
from swarm_core.actions.schemas import ExecuteResponse
from swarm_core.models import Lifecycle
from swarm_core.step_context import FactsFunction, StepContext


def start(ctx: StepContext, args: dict[str, Any]) -> None:
    node = ctx.require_node()
    node.lifecycle = Lifecycle.RUNNING
    ctx.touch(node)
    ctx.call_llm("execute", "on_result")


def on_result(ctx: StepContext, args: dict[str, Any]) -> None:
    answer = ExecuteResponse.model_validate(args["completion"])
    ctx.terminate(answer.report)


FUNCTIONS = {"start": start, "on_result": on_result}
FACTS: dict[str, FactsFunction] = {"execute": node_facts}
