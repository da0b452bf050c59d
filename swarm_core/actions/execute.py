"""`execute`: leaf work. One LLM call does the directive and writes the report; then terminate."""

from __future__ import annotations

from typing import Any

from swarm_core.actions.context import StepContext
from swarm_core.actions.schemas import ExecuteResponse
from swarm_core.models import Lifecycle, Node


def node_facts(ctx: StepContext, node: Node) -> dict[str, Any]:
    """Facts every task gets about its node."""
    return {
        "goal": ctx.swarm.goal,
        "directive": node.directive,
        "name": node.name,
        "depth": node.depth,
        "is_root": node.parent_id is None,
        "user_context": node.context.get("user_context", []),
    }


def start(ctx: StepContext, args: dict[str, Any]) -> None:
    node = ctx.require_node()
    node.lifecycle = Lifecycle.RUNNING
    ctx.touch(node)
    facts = node_facts(ctx, node)
    ctx.call_llm("execute", "on_result", facts)


def on_result(ctx: StepContext, args: dict[str, Any]) -> None:
    answer = ExecuteResponse.model_validate(args["completion"])
    ctx.terminate(answer.report)


FUNCTIONS = {"start": start, "on_result": on_result}
