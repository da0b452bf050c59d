"""The step engine: `advance_one_step(operation, view) -> StepResult`, pure, no I/O.

One operation advances one node by one step. The worker reads the view (swarm, node, parent),
makes the one LLM call of an `llm` operation before calling in (its request written by
`llm_request` from what it read), and commits what comes back.
A node's failure (bad model output, an unknown function, a limit) is a result, not an exception;
a programming error is an exception (the queue retries it, then the poison handler fails the node).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from swarm_core import conversation
from swarm_core.actions.catalogue import FACTS, FUNCTIONS
from swarm_core.actions.prompts import with_prompt
from swarm_core.forks import request_digest
from swarm_core.llm import LLMRequest
from swarm_core.models import (
    DONE_LIFECYCLES,
    EventType,
    Lifecycle,
    LLMSettings,
    Node,
    SwarmStatus,
    TerminationPolicy,
)
from swarm_core.operations import (
    ActionOperation,
    FailOperation,
    LLMOperation,
    Operation,
    OperationKind,
    SpawnOperation,
    TerminateOperation,
    TerminatePayload,
    UserReplyOperation,
)
from swarm_core.step_context import (
    StepContext,
    StepFailure,
    StepResult,
    StepView,
    SwarmLimitExceeded,
)
from swarm_core.swarm import Swarm

log = logging.getLogger(__name__)

DEFAULT_LLM_SETTINGS = LLMSettings(temperature=0.2, max_tokens=1200)


def needs_parent(operation: Operation) -> bool:
    """Whether the step reads the target node's parent too (a termination hands it the report).
    Every step reads its target node (a spawn's does not exist until the spawn commits)."""
    return operation.kind == OperationKind.TERMINATE


def advance_one_step(operation: Operation, view: StepView) -> StepResult:
    """Advance the operation's node by one step on `view`; never raises for a node's failure."""
    ctx = StepContext(operation, view)
    limits = view.swarm.config.limits
    try:
        if view.swarm.seq >= limits.max_steps:
            raise SwarmLimitExceeded(f"max_steps limit reached ({limits.max_steps} steps)")
        _run(ctx, operation)
    except SwarmLimitExceeded as exc:
        return _fail_swarm(operation, view, str(exc))
    except (StepFailure, ValidationError) as exc:
        return _fail_node(operation, view, f"{type(exc).__name__}: {exc}")
    return ctx.finish()


def _run(ctx: StepContext, operation: Operation) -> None:
    match operation:
        case SpawnOperation():
            _spawn(ctx, operation)
        case ActionOperation():
            _action(ctx, operation)
        case LLMOperation():
            _llm(ctx, operation)
        case UserReplyOperation():
            _user_reply(ctx, operation)
        case TerminateOperation():
            _terminate(ctx, operation)
        case FailOperation():
            _fail(ctx, operation)
        case _:
            raise TypeError(f"not an operation: {operation!r}")


def _spawn(ctx: StepContext, op: SpawnOperation) -> None:
    p = op.payload
    node = Node(
        node_id=op.node_id,
        swarm_id=ctx.swarm.swarm_id,
        parent_id=p.parent_id,
        depth=p.depth,
        action=p.action,
        name=p.name,
        directive=p.directive,
        termination_policy=p.termination_policy,
        context=dict(p.context),
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    ctx.node = node
    ctx.add_node(node)
    ctx.log(node, f"spawned as {node.action.value}: {node.directive}")
    _invoke(ctx, node, "start", {})


def _live_node(ctx: StepContext) -> Node | None:
    """The target node, or None (logged) when the operation came too late for it."""
    node = ctx.require_node()
    if node.lifecycle in DONE_LIFECYCLES:
        ctx.log(
            node, f"{ctx.op.kind.value} ignored: node is {node.lifecycle.value}", level="warning"
        )
        return None
    return node


def _invoke(ctx: StepContext, node: Node, name: str, args: dict[str, Any]) -> None:
    """Run the function `name` of the node's action, in this step."""
    function = FUNCTIONS[node.action].get(name)
    if function is None:
        raise StepFailure(f"action {node.action.value} has no function {name!r}")
    function(ctx, args)


def _action(ctx: StepContext, op: ActionOperation) -> None:
    node = _live_node(ctx)
    if node is None:
        return
    _invoke(ctx, node, op.payload.function, dict(op.payload.args))


def llm_request(swarm: Swarm, node: Node, op: LLMOperation) -> LLMRequest:
    """The request of the `llm` step `op`, written from the swarm and the node as the step reads
    them: the facts of the node's action's task (`swarm_core.actions.catalogue.FACTS`), the
    engine's LLM settings with the swarm's over them. The node is as the step that asked
    committed it (a user's messages meanwhile wait unread), so the request is the one it asked
    for, in every delivery. StepFailure if the node's action has no such task."""
    if op.payload.request is not None:
        return op.payload.request  # enqueued by an earlier version, with its request
    task = op.payload.task or ""
    facts = FACTS[node.action].get(task)
    if facts is None:
        raise StepFailure(f"action {node.action.value} has no LLM task {task!r}")
    return LLMRequest(
        task=task,
        settings=swarm.config.llm.merged_over(DEFAULT_LLM_SETTINGS),
        seed=swarm.config.seed,
        facts=facts(swarm, node),
        swarm_id=swarm.swarm_id,
        node_id=node.node_id,
        op_id=op.op_id,
    )


def _llm(ctx: StepContext, op: LLMOperation) -> None:
    node = _live_node(ctx)
    if node is None:
        return
    # Written again only when the worker could not write it (StepFailure, saying why).
    request = ctx.llm_request or llm_request(ctx.swarm, node, op)
    result = ctx.llm_result
    if result is None:
        raise StepFailure("llm step without an LLM result")
    prompted = with_prompt(request)
    data: dict[str, Any] = {
        "task": prompted.task,
        "messages": [m.model_dump(mode="json") for m in prompted.messages],
        "response": result.content,
        "model": result.model,
        # What a fork of this swarm finds this answer by (`swarm_core.forks`).
        "digest": request_digest(prompted),
    }
    if result.recorded_seq is None:
        message = f"llm {prompted.task}: {result.usage.total_tokens} tokens ({result.model})"
    else:
        source = ctx.swarm.forked_from.swarm_id if ctx.swarm.forked_from else "?"
        message = (
            f"llm {prompted.task}: the answer recorded by swarm {source} at step "
            f"{result.recorded_seq}, reused (no model call, no tokens)"
        )
        data["recorded"] = {"swarm_id": source, "seq": result.recorded_seq}
        node.recorded_seq = result.recorded_seq
    ctx.log(node, message, kind="journal", data=data)
    node.usage = node.usage.plus(result.usage)
    ctx.touch(node)
    ctx.result.usage = result.usage
    args: dict[str, Any] = {**op.payload.args, "completion": result.data}
    _invoke(ctx, node, op.payload.next_function, args)


def _user_reply(ctx: StepContext, op: UserReplyOperation) -> None:
    """Resume the node's continuation with every reply the user committed since it asked."""
    node = ctx.require_node()
    interrupt = node.interrupt
    if (
        node.lifecycle != Lifecycle.WAITING_FOR_USER
        or node.continuation is None
        or interrupt is None
        or interrupt.interrupt_id != op.payload.interrupt_id
        or not node.unread_replies
    ):
        ctx.log(node, "resume ignored: the node is not waiting for this answer", level="warning")
        return
    continuation = node.continuation
    node.continuation = None
    node.lifecycle = Lifecycle.RUNNING
    conversation.take_unread(node)  # into the node's conversation, for the continuation
    if ctx.swarm.status == SwarmStatus.WAITING_FOR_USER:
        ctx.set_swarm_status(SwarmStatus.RUNNING)
    _invoke(ctx, node, continuation.function_to_call, dict(continuation.args))


def _terminate(ctx: StepContext, op: TerminateOperation) -> None:
    node = _live_node(ctx)
    if node is None:
        return
    report = op.payload.report
    node.lifecycle = Lifecycle.TERMINATED
    node.report = report
    node.continuation = None
    ctx.touch(node)
    if node.parent_id is None:
        ctx.result.final_report = report
        ctx.set_swarm_status(SwarmStatus.COMPLETED)
        ctx.event(EventType.SWARM_COMPLETED, {"final_report": report, "root_node_id": node.node_id})
        return
    parent = ctx.parent
    if parent is None:
        raise StepFailure(f"parent {node.parent_id} of node {node.node_id} is missing")
    _hand_report_to_parent(ctx, node, parent, report)


def _hand_report_to_parent(ctx: StepContext, child: Node, parent: Node, report: str) -> None:
    """The parent's termination policy decides what a child's termination does."""
    if parent.lifecycle in DONE_LIFECYCLES:
        ctx.log(parent, f"late report from {child.node_id} ignored", level="warning")
        return
    reports = dict(parent.context.get("child_reports", {}))
    reports[child.node_id] = {"name": child.name, "action": child.action.value, "report": report}
    parent.context["child_reports"] = reports
    ctx.touch(parent)
    policy = parent.termination_policy
    if policy == TerminationPolicy.REVIEW_CHILDREN:
        if all(c in reports for c in parent.children_ids):
            ctx.call_action(parent, "on_children_done")
    elif policy == TerminationPolicy.SIMPLE:
        ctx.enqueue(TerminatePayload(report=report), parent.node_id)
    else:
        ctx.call_action(parent, "on_child_terminated", {"child_id": child.node_id})


def _fail(ctx: StepContext, op: FailOperation) -> None:
    _mark_failed(ctx, ctx.require_node(), op.payload.error, op.payload.operation)


def _mark_failed(ctx: StepContext, node: Node, error: str, failed: dict[str, Any] | None) -> None:
    """Fail the node, keeping what a retry needs: the failed operation and the lifecycle it
    found the node in (its continuation and unread replies stay as they are)."""
    if node.lifecycle != Lifecycle.FAILED:
        node.failed_lifecycle = node.lifecycle
    node.lifecycle = Lifecycle.FAILED
    node.error = error
    node.failed_operation = failed
    ctx.touch(node)
    ctx.log(node, f"failed: {error}", level="error")
    ctx.event(EventType.NODE_FAILED, {"node_id": node.node_id, "error": error})


def _fail_node(operation: Operation, view: StepView, error: str) -> StepResult:
    """A fresh context (nothing the failed step decided survives) that fails the node."""
    log.warning(
        "step failed swarm_id=%s node_id=%s op_id=%s: %s",
        operation.swarm_id,
        operation.node_id,
        operation.op_id,
        error,
    )
    ctx = StepContext(operation, view)
    if ctx.node is None:
        ctx.set_swarm_status(SwarmStatus.FAILED, error=error)
        ctx.result.error = error
        return ctx.finish()
    _mark_failed(ctx, ctx.node, error, operation.model_dump(mode="json"))
    return ctx.finish()


def _fail_swarm(operation: Operation, view: StepView, error: str) -> StepResult:
    log.warning("swarm failed swarm_id=%s op_id=%s: %s", operation.swarm_id, operation.op_id, error)
    ctx = StepContext(operation, view)
    ctx.set_swarm_status(SwarmStatus.FAILED, error=error)
    ctx.result.error = error
    if ctx.node is not None:
        _mark_failed(ctx, ctx.node, error, operation.model_dump(mode="json"))
    return ctx.finish()
