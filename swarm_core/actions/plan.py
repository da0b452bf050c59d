"""`plan`: decompose a directive, spawn a child per sub-directive, review when all are done.

Phases (kept in `execution_memory["phase"]`):
- `planning`: one LLM call returns questions for the user or routed subtasks.
- `clarifying`: the questions went to an `ask_user` child; its report becomes user context and the
  node plans again with it.
- `working`: the subtasks' children run; when every child is done the node reviews their reports
  (one LLM call) and either reports upward or revises with more children (`max_revisions`).
Its termination policy is `review_children`: a child's termination hands it its report.

A rerun (`replace_child`) puts a new child in the place of one of them while the node waits for
its children or reviews them: the node forgets the old child's report and waits again. Work
queued before the rerun (the old `on_children_done`, the old review) then finds the children
changed and does nothing.
"""

from __future__ import annotations

from typing import Any

from swarm_core.actions.facts import node_facts
from swarm_core.actions.schemas import PlanResponse, ReviewResponse, Subtask
from swarm_core.models import DONE_LIFECYCLES, Lifecycle, Node
from swarm_core.step_context import ChildSpec, FactsFunction, StepContext
from swarm_core.swarm import Swarm


def plan_facts(swarm: Swarm, node: Node) -> dict[str, Any]:
    limits = swarm.config.limits
    return {
        **node_facts(swarm, node),
        "asked_user": bool(node.execution_memory.get("asked_user")),
        "can_plan_deeper": node.depth + 1 < limits.max_depth,
        "max_children": limits.max_children,
        "breadth": swarm.config.offline_breadth,
        "plan_depth": swarm.config.offline_depth,
    }


def review_facts(swarm: Swarm, node: Node) -> dict[str, Any]:
    reports = node.context.get("child_reports", {})
    return {
        **node_facts(swarm, node),
        "child_reports": [reports[c] for c in node.children_ids if c in reports],
        "revisions": node.execution_memory.get("revisions", 0),
        "max_revisions": swarm.config.limits.max_revisions,
    }


def start(ctx: StepContext, args: dict[str, Any]) -> None:
    node = ctx.require_node()
    node.lifecycle = Lifecycle.RUNNING
    node.execution_memory["phase"] = "planning"
    ctx.touch(node)
    ctx.call_llm("plan", "on_plan")


def _spawn(ctx: StepContext, node: Node, subtasks: list[Subtask]) -> list[str]:
    specs = [ChildSpec(s.name, s.directive, s.action) for s in subtasks]
    ids = ctx.spawn_children(specs)
    if ids:
        node.lifecycle = Lifecycle.WAITING_FOR_CHILDREN
        ctx.touch(node)
    return ids


def on_plan(ctx: StepContext, args: dict[str, Any]) -> None:
    node = ctx.require_node()
    plan = PlanResponse.model_validate(args["completion"])
    node.context["rationale"] = plan.rationale
    if plan.questions and not node.execution_memory.get("asked_user"):
        node.execution_memory["asked_user"] = True
        node.execution_memory["phase"] = "clarifying"
        questions = " ".join(plan.questions)
        clarify = Subtask(
            name="Clarify preferences",
            directive=f"{questions} (for: {node.directive})",
            action="ask_user",
        )
        _spawn(ctx, node, [clarify])
        return
    node.execution_memory["phase"] = "working"
    if not _spawn(ctx, node, plan.subtasks):
        ctx.terminate(plan.rationale or f"Nothing to split for: {node.directive}")


def on_children_done(ctx: StepContext, args: dict[str, Any]) -> None:
    node = ctx.require_node()
    reports = node.context.get("child_reports", {})
    if node.lifecycle != Lifecycle.WAITING_FOR_CHILDREN or not all(
        c in reports for c in node.children_ids
    ):
        # Queued before a rerun replaced a child (or a second time): the new child's report
        # queues it again.
        ctx.log(node, "children done ignored: a child has not reported", level="warning")
        return
    node.lifecycle = Lifecycle.RUNNING
    ctx.touch(node)
    if node.execution_memory.get("phase") == "clarifying":
        answers = [reports[c]["report"] for c in node.children_ids if c in reports]
        node.context["user_context"] = [*node.context.get("user_context", []), *answers]
        node.execution_memory["phase"] = "planning"
        ctx.call_llm("plan", "on_plan")
        return
    # The review names the children it reviewed: one that a rerun overtook is stale.
    ctx.call_llm("review", "on_review", {"children": list(node.children_ids)})


def on_review(ctx: StepContext, args: dict[str, Any]) -> None:
    node = ctx.require_node()
    reviewed = args.get("children")
    if reviewed is not None and reviewed != node.children_ids:
        ctx.log(node, "review ignored: a rerun replaced a child it reviewed", level="warning")
        return
    review = ReviewResponse.model_validate(args["completion"])
    revisions = int(node.execution_memory.get("revisions", 0))
    if review.decision == "revise" and review.subtasks and revisions < ctx.limits.max_revisions:
        node.execution_memory["revisions"] = revisions + 1
        ctx.touch(node)
        if _spawn(ctx, node, review.subtasks):
            return
    ctx.terminate(review.report)


class RerunRefused(Exception):
    """The node cannot take a new child in the place of an old one now; the message says why."""


def replace_child(node: Node, old_id: str, new_id: str) -> None:
    """A rerun discards the child `old_id` and spawns `new_id` in its place: the node forgets
    the old child's report and waits for its children again, so it reviews the new report.

    Only while the node waits for its children or reviews their reports: planning, it has no
    use for a child's report yet; once it decided to report (or is done), its report is made."""
    reviewing = node.lifecycle == Lifecycle.RUNNING and node.execution_memory.get("phase") == (
        "working"
    )
    if node.reporting or not (node.lifecycle == Lifecycle.WAITING_FOR_CHILDREN or reviewing):
        done = node.lifecycle in DONE_LIFECYCLES
        state = "about to report" if node.reporting and not done else node.lifecycle.value
        raise RerunRefused(
            f"its parent {node.name!r} is {state}: a child can be rerun while its parent waits "
            "for its children or reviews their reports"
        )
    node.children_ids = [new_id if c == old_id else c for c in node.children_ids]
    reports = dict(node.context.get("child_reports", {}))
    reports.pop(old_id, None)
    node.context["child_reports"] = reports
    node.lifecycle = Lifecycle.WAITING_FOR_CHILDREN


FUNCTIONS = {
    "start": start,
    "on_plan": on_plan,
    "on_children_done": on_children_done,
    "on_review": on_review,
}
FACTS: dict[str, FactsFunction] = {"plan": plan_facts, "review": review_facts}
