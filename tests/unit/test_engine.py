"""Unit tests of the pure step engine: every action, every termination policy, the limits."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from swarm_core import conversation
from swarm_core.actions import plan
from swarm_core.actions.prompts import with_prompt
from swarm_core.actions.specs import SPECS
from swarm_core.engine import advance_one_step, llm_request
from swarm_core.forks import request_digest
from swarm_core.llm import LLMRequest, LLMResult
from swarm_core.models import (
    ActionType,
    ChatMessage,
    Continuation,
    Lifecycle,
    Limits,
    Node,
    SwarmConfig,
    SwarmStatus,
    TerminationPolicy,
    Usage,
)
from swarm_core.operations import LLMOperation, Operation, OperationKind, parse_operation
from swarm_core.step_context import StepFailure, StepResult, StepView
from swarm_core.swarm import Swarm

NOW = datetime(2026, 1, 1, tzinfo=UTC)
REPORT = {"decision": "report", "report": "All done", "subtasks": []}


def make_swarm(**limits: Any) -> Swarm:
    return Swarm(
        swarm_id="s1",
        user_id="u1",
        goal="Plan a picnic",
        status=SwarmStatus.RUNNING,
        spawned=True,
        root_node_id="root",
        config=SwarmConfig(limits=Limits(**limits)),
        seq=5,
        node_count=1,
    )


def make_node(
    node_id: str = "n1",
    action: ActionType = ActionType.EXECUTE,
    parent_id: str | None = "root",
    **kw: Any,
) -> Node:
    policy = SPECS[action].termination_policy
    fields: dict[str, Any] = {
        "node_id": node_id,
        "swarm_id": "s1",
        "parent_id": parent_id,
        "depth": 0 if parent_id is None else 1,
        "action": action,
        "name": node_id,
        "directive": f"do {node_id}",
        "lifecycle": Lifecycle.RUNNING,
        "termination_policy": policy,
    }
    fields.update(kw)
    return Node(**fields)


def op(kind: OperationKind, node_id: str = "n1", **payload: Any) -> Operation:
    return parse_operation(
        {"op_id": f"op-{kind.value}", "kind": kind, "swarm_id": "s1", "node_id": node_id}
        | {"payload": payload}
    )


def step(
    operation: Operation | dict[str, Any],
    node: Node | None = None,
    parent: Node | None = None,
    swarm: Swarm | None = None,
    llm_result: LLMResult | None = None,
) -> StepResult:
    if isinstance(operation, dict):  # an operation as it came off the queue
        operation = parse_operation(operation)
    swarm = swarm or make_swarm()
    request = None
    if isinstance(operation, LLMOperation) and node is not None and llm_result is not None:
        request = llm_request(swarm, node, operation)  # as the worker writes it, for the call
    view = StepView(swarm, node, parent, NOW, llm_result, request)
    return advance_one_step(operation, view)


def action(
    function: str, node: Node, parent: Node | None = None, swarm: Swarm | None = None, **args: Any
) -> StepResult:
    return step(
        op(OperationKind.ACTION, node.node_id, function=function, args=args), node, parent, swarm
    )


def ops_of(result: StepResult, kind: OperationKind) -> list[dict[str, Any]]:
    """The result's operations of `kind`, as their JSON (what travels on the queue)."""
    return [o.model_dump(mode="json") for o in result.operations if o.kind == kind]


def updated(result: StepResult, node_id: str) -> Node:
    return next(n for n in result.updated_nodes if n.node_id == node_id)


def requested(result: StepResult, node_id: str, swarm: Swarm | None = None) -> LLMRequest:
    """The request of the LLM call the step asked for, as its `llm` step writes it: from the
    node as this step left it."""
    call = next(o for o in result.operations if isinstance(o, LLMOperation))
    node = next(n for n in [*result.new_nodes, *result.updated_nodes] if n.node_id == node_id)
    return llm_request(swarm or make_swarm(), node, call)


def event_types(result: StepResult) -> list[str]:
    return [e.type.value for e in result.events]


# --- spawn and llm ------------------------------------------------------------------------------


def test_spawn_creates_the_node_and_starts_its_action():
    result = step(
        op(
            OperationKind.SPAWN,
            "c1",
            parent_id="root",
            depth=1,
            action="execute",
            name="Child",
            directive="work",
            termination_policy="simple",
        )
    )
    assert [n.node_id for n in result.new_nodes] == ["c1"]
    spawned = next(e for e in result.events if e.type == "node.spawned")
    assert spawned.data["node"]["lifecycle"] == "spawned"
    # `start` ran in the same step: the node is running and asked for its LLM call.
    assert result.new_nodes[0].lifecycle == Lifecycle.RUNNING
    assert requested(result, "c1").task == "execute"
    assert not ops_of(result, OperationKind.ACTION)
    assert all(e.seq == 6 for e in result.events)


def test_llm_step_writes_its_request_from_the_node_and_journals_prompt_and_response():
    node = make_node(directive="Find the cheapest flight")
    answer = LLMResult(data={"report": "r"}, content='{"report": "r"}', model="m")
    llm_op = op(OperationKind.LLM, task="execute", next_function="on_result")
    assert llm_op.model_dump(mode="json")["payload"] == {
        "task": "execute",
        "next_function": "on_result",
        "args": {},
        "request": None,
    }, "the operation carries no facts: the step writes them from the node"
    request = llm_request(make_swarm(), node, llm_op)
    assert (request.task, request.op_id, request.node_id) == ("execute", "op-llm", "n1")
    assert request.facts["directive"] == "Find the cheapest flight"
    result = step(llm_op, node, llm_result=answer)
    journal = next(entry for entry in result.logs if entry.kind == "journal")
    assert "Find the cheapest flight" in journal.data["messages"][-1]["content"]
    assert journal.data["digest"] == request_digest(with_prompt(request))
    assert ops_of(result, OperationKind.TERMINATE)[0]["payload"] == {"report": "r"}


def test_an_llm_task_the_action_does_not_have_fails_the_node():
    node = make_node()
    with pytest.raises(StepFailure, match="no LLM task 'plan'"):
        llm_request(make_swarm(), node, op(OperationKind.LLM, task="plan", next_function="x"))
    view = StepView(make_swarm(), node, None, NOW)  # the worker made no call: no request
    result = advance_one_step(op(OperationKind.LLM, task="plan", next_function="x"), view)
    failed = updated(result, "n1")
    assert failed.lifecycle == Lifecycle.FAILED
    assert "action execute has no LLM task 'plan'" in (failed.error or "")


def test_an_llm_operation_names_its_task_or_carries_a_request():
    with pytest.raises(ValidationError):
        op(OperationKind.LLM, next_function="on_result")
    with pytest.raises(ValidationError):
        op(OperationKind.LLM, task="execute", request={"task": "execute"}, next_function="x")


def test_an_llm_step_enqueued_by_an_earlier_version_uses_the_request_it_carries():
    node = make_node()
    request = {"task": "execute", "messages": [{"role": "user", "content": "hi"}]}
    answer = LLMResult(
        data={"report": "r"},
        content='{"report": "r"}',
        model="m",
        usage=Usage(prompt_tokens=3, completion_tokens=4, llm_calls=1),
    )
    result = step(
        op(OperationKind.LLM, request=request, next_function="on_result", args={"k": 1}),
        node,
        llm_result=answer,
    )
    # The continuation ran in the same step with the completion: `on_result` terminated.
    assert not ops_of(result, OperationKind.ACTION)
    assert ops_of(result, OperationKind.TERMINATE)[0]["payload"] == {"report": "r"}
    journal = [entry for entry in result.logs if entry.kind == "journal"]
    assert journal[0].data["messages"] == request["messages"]
    assert journal[0].data["response"] == '{"report": "r"}'
    assert result.usage.total_tokens == 7
    assert updated(result, "n1").usage.total_tokens == 7


def test_operation_ids_are_deterministic():
    node = make_node()
    first = action("start", node)
    second = action("start", node)
    assert [o.op_id for o in first.operations] == [o.op_id for o in second.operations]
    assert first.model_dump() == second.model_dump()


# --- execute ----------------------------------------------------------------------------------


def test_execute_asks_the_llm_then_terminates_with_its_report():
    node = make_node(lifecycle=Lifecycle.SPAWNED)
    result = action("start", node)
    llm = ops_of(result, OperationKind.LLM)[0]
    assert requested(result, "n1").task == "execute"
    assert llm["payload"]["next_function"] == "on_result"
    assert updated(result, "n1").lifecycle == Lifecycle.RUNNING
    done = action("on_result", node, completion={"report": "All done."})
    assert ops_of(done, OperationKind.TERMINATE)[0]["payload"] == {"report": "All done."}


def test_a_completion_that_does_not_validate_fails_the_node():
    node = make_node()
    result = action("on_result", node, completion={"nope": 1})
    failed = updated(result, "n1")
    assert failed.lifecycle == Lifecycle.FAILED
    assert "ValidationError" in (failed.error or "")
    assert failed.failed_operation is not None
    assert "node.failed" in event_types(result)
    assert not result.operations


# --- ask_user -----------------------------------------------------------------------------------


def with_reply(node: Node, *contents: str) -> Node:
    """The node after the user's messages were committed to its chat (by the API)."""
    answered = node.model_copy(deep=True)
    for i, content in enumerate(contents):
        message = ChatMessage(
            message_id=f"m{i}",
            node_id=node.node_id,
            role="user",
            content=content,
            created_at=NOW,
            seq=7 + i,
        )
        conversation.accept(answered, message, None)
    return answered


def test_ask_user_conversation_asks_waits_and_resumes():
    node = make_node(action=ActionType.ASK_USER, lifecycle=Lifecycle.SPAWNED)
    started = action("start", node)
    assert requested(started, "n1").task == "ask"
    waiting = action("on_question", node, completion={"message": "Sweet or salty?"})
    w = updated(waiting, "n1")
    assert w.lifecycle == Lifecycle.WAITING_FOR_USER
    assert w.continuation == Continuation(function_to_call="on_answer")
    assert [m.content for m in waiting.chat_messages] == ["Sweet or salty?"]
    assert not waiting.operations, "asking the user ends the step: nothing else runs"
    assert w.interrupt is not None and w.interrupt.status == "open"
    assert w.interrupt.question == "Sweet or salty?"
    assert "interrupt.opened" in event_types(waiting)
    answered = with_reply(w, "Salty, please")
    resume = op(OperationKind.USER_REPLY, interrupt_id=w.interrupt.interrupt_id)
    reply = step(resume, answered)
    r = updated(reply, "n1")
    assert r.lifecycle == Lifecycle.RUNNING and r.continuation is None
    assert not reply.chat_messages, "the reply is in the chat already (committed by the API)"
    assert r.unread_replies == []
    assert r.context["conversation"][-1] == {"role": "user", "content": "Salty, please"}
    # `on_answer` ran in the same step: it asked for the judgement.
    judge = requested(reply, "n1")
    assert judge.task == "judge"
    assert judge.facts["conversation"][-1]["content"] == "Salty, please"


def test_replies_committed_while_the_node_worked_answer_its_next_question_at_once():
    node = make_node(action=ActionType.ASK_USER)
    asked = updated(action("on_question", node, completion={"message": "Sweet?"}), "n1")
    answered = with_reply(asked, "Salty", "and crunchy")
    assert answered.interrupt.answer_message_ids == ["m0", "m1"]
    resumed = updated(
        step(op(OperationKind.USER_REPLY, interrupt_id=asked.interrupt.interrupt_id), answered),
        "n1",
    )
    late = with_reply(resumed, "oh, and cheap")  # while the judgement is being made
    assert late.unread_replies and late.continuation is None
    verdict = {"sufficient": False, "follow_up": "How cheap?", "report": None}
    again = action("on_judgement", late, completion=verdict)
    node_after = updated(again, "n1")
    assert node_after.interrupt.status == "answered"
    assert node_after.interrupt.answer_message_ids == ["m0"]
    resume = ops_of(again, OperationKind.USER_REPLY)
    assert [o["payload"]["interrupt_id"] for o in resume] == [node_after.interrupt.interrupt_id]
    assert "interrupt.answered" in event_types(again)


def test_an_insufficient_answer_gets_a_follow_up_until_the_limit():
    node = make_node(action=ActionType.ASK_USER, swarm_id="s1")
    swarm = make_swarm(max_follow_ups=1)
    verdict = {"sufficient": False, "follow_up": "More detail?", "report": None}
    first = action("on_judgement", node, swarm=swarm, completion=verdict)
    assert [m.content for m in first.chat_messages] == ["More detail?"]
    assert updated(first, "n1").interrupt.question == "More detail?"
    assert updated(first, "n1").execution_memory["follow_ups"] == 1
    exhausted = action("on_judgement", updated(first, "n1"), swarm=swarm, completion=verdict)
    assert ops_of(exhausted, OperationKind.TERMINATE), "no endless follow-ups"


def test_a_sufficient_answer_closes_the_chat_and_reports():
    node = make_node(action=ActionType.ASK_USER)
    verdict = {"sufficient": True, "follow_up": None, "report": "Wants salty."}
    result = action("on_judgement", node, completion=verdict)
    assert result.chat_messages[0].role == "agent"
    assert ops_of(result, OperationKind.TERMINATE)[0]["payload"]["report"] == "Wants salty."


def test_a_resume_of_a_node_not_waiting_changes_nothing_but_a_log():
    node = make_node()
    result = step(op(OperationKind.USER_REPLY, interrupt_id="i1"), node)
    assert not result.operations and not result.chat_messages
    assert result.logs[0].level == "warning"


# --- plan -------------------------------------------------------------------------------------


def subtasks(*actions: str) -> list[dict[str, str]]:
    return [{"name": f"t{i}", "directive": f"part {i}", "action": a} for i, a in enumerate(actions)]


def test_plan_with_questions_asks_the_user_first_through_a_child():
    root = make_node("root", ActionType.PLAN, parent_id=None)
    result = action("on_plan", root, completion={"rationale": "r", "questions": ["Budget?"]})
    spawns = ops_of(result, OperationKind.SPAWN)
    assert len(spawns) == 1 and spawns[0]["payload"]["action"] == "ask_user"
    r = updated(result, "root")
    assert r.lifecycle == Lifecycle.WAITING_FOR_CHILDREN
    assert r.execution_memory["phase"] == "clarifying"
    assert r.children_ids == [spawns[0]["node_id"]]
    assert result.nodes_reserved == 1


def test_plan_spawns_one_child_per_subtask():
    root = make_node("root", ActionType.PLAN, parent_id=None)
    result = action(
        "on_plan", root, completion={"rationale": "r", "subtasks": subtasks("execute", "plan")}
    )
    spawns = ops_of(result, OperationKind.SPAWN)
    assert [s["payload"]["action"] for s in spawns] == ["execute", "plan"]
    assert [s["payload"]["depth"] for s in spawns] == [1, 1]
    assert [s["payload"]["termination_policy"] for s in spawns] == ["simple", "review_children"]
    assert updated(result, "root").children_ids == [s["node_id"] for s in spawns]


def test_after_clarifying_the_plan_is_made_again_with_the_answers():
    root = make_node(
        "root",
        ActionType.PLAN,
        parent_id=None,
        children_ids=["c"],
        lifecycle=Lifecycle.WAITING_FOR_CHILDREN,
        execution_memory={"phase": "clarifying", "asked_user": True},
        context={"child_reports": {"c": {"name": "c", "report": "Wants salty."}}},
    )
    result = action("on_children_done", root)
    request = requested(result, "root")
    assert request.task == "plan"
    assert request.facts["user_context"] == ["Wants salty."]
    assert request.facts["asked_user"] is True


def test_review_reports_upward_or_revises_once():
    reports = {"a": {"name": "a", "report": "A done", "action": "execute"}}
    root = make_node(
        "root",
        ActionType.PLAN,
        parent_id=None,
        children_ids=["a"],
        lifecycle=Lifecycle.WAITING_FOR_CHILDREN,
        execution_memory={"phase": "working"},
        context={"child_reports": reports},
    )
    review = action("on_children_done", root)
    assert requested(review, "root").facts["child_reports"] == [reports["a"]]
    revise = {"decision": "revise", "report": "gaps", "subtasks": subtasks("execute")}
    revised = action("on_review", root, completion=revise)
    assert len(ops_of(revised, OperationKind.SPAWN)) == 1
    again = action("on_review", updated(revised, "root"), completion=revise)
    assert ops_of(again, OperationKind.TERMINATE), "max_revisions=1: the second revise reports"


def test_work_a_rerun_overtook_does_nothing():
    """A rerun put child "b2" in the place of "b": the `on_children_done` that b's report
    queued, and a review of a and b, find other children and leave the node as it is."""
    reports = {"a": {"name": "a", "report": "A done", "action": "execute"}}
    root = make_node(
        "root",
        ActionType.PLAN,
        parent_id=None,
        children_ids=["a", "b2"],
        lifecycle=Lifecycle.WAITING_FOR_CHILDREN,
        execution_memory={"phase": "working"},
        context={"child_reports": reports},
    )
    for result in (
        action("on_children_done", root),
        action("on_review", root, completion=REPORT, children=["a", "b"]),
    ):
        assert not result.operations
        assert updated(result, "root").model_dump(exclude={"recent_op_ids", "updated_at"}) == (
            root.model_dump(exclude={"recent_op_ids", "updated_at"})
        )
    done = action("on_review", root, completion=REPORT, children=["a", "b2"])
    assert ops_of(done, OperationKind.TERMINATE), "a review of the node's children is used"


def test_a_child_is_replaced_only_while_its_parent_waits_for_it_or_reviews():
    waiting = make_node(
        "root",
        ActionType.PLAN,
        parent_id=None,
        children_ids=["a", "b"],
        lifecycle=Lifecycle.WAITING_FOR_CHILDREN,
        execution_memory={"phase": "working"},
        context={"child_reports": {"a": {"report": "A"}, "b": {"report": "B"}}},
    )
    reviewing = waiting.model_copy(deep=True, update={"lifecycle": Lifecycle.RUNNING})
    for node in (waiting, reviewing):
        plan.replace_child(node, "b", "b2")
        assert node.children_ids == ["a", "b2"] and list(node.context["child_reports"]) == ["a"]
        assert node.lifecycle == Lifecycle.WAITING_FOR_CHILDREN
    planning = waiting.model_copy(
        deep=True,
        update={"lifecycle": Lifecycle.RUNNING, "execution_memory": {"phase": "planning"}},
    )
    reporting = waiting.model_copy(deep=True, update={"reporting": True})
    done = waiting.model_copy(deep=True, update={"lifecycle": Lifecycle.TERMINATED})
    for node in (planning, reporting, done):
        before = node.model_copy(deep=True)
        with pytest.raises(plan.RerunRefused):
            plan.replace_child(node, "b", "b2")
        assert node == before


# --- termination policies ---------------------------------------------------------------------


def test_review_children_waits_for_every_child():
    parent = make_node(
        "root",
        ActionType.PLAN,
        parent_id=None,
        children_ids=["a", "b"],
        lifecycle=Lifecycle.WAITING_FOR_CHILDREN,
    )
    a = make_node("a")
    first = step(op(OperationKind.TERMINATE, "a", report="A"), a, parent)
    assert updated(first, "a").lifecycle == Lifecycle.TERMINATED
    assert not first.operations
    b = make_node("b")
    second = step(op(OperationKind.TERMINATE, "b", report="B"), b, updated(first, "root"))
    assert ops_of(second, OperationKind.ACTION)[0]["payload"]["function"] == "on_children_done"
    assert set(updated(second, "root").context["child_reports"]) == {"a", "b"}


def test_simple_policy_terminates_the_parent_chain():
    parent = make_node(
        "p",
        ActionType.EXECUTE,
        parent_id="root",
        children_ids=["a"],
        termination_policy=TerminationPolicy.SIMPLE,
    )
    a = make_node("a", parent_id="p")
    result = step(op(OperationKind.TERMINATE, "a", report="A"), a, parent)
    chained = ops_of(result, OperationKind.TERMINATE)
    assert chained[0]["node_id"] == "p" and chained[0]["payload"]["report"] == "A"


def test_custom_policy_calls_the_parents_handler(monkeypatch):
    parent = make_node(
        "p",
        ActionType.EXECUTE,
        parent_id="root",
        children_ids=["a"],
        termination_policy=TerminationPolicy.CUSTOM,
    )
    a = make_node("a", parent_id="p")
    result = step(op(OperationKind.TERMINATE, "a", report="A"), a, parent)
    handler = ops_of(result, OperationKind.ACTION)[0]
    assert handler["node_id"] == "p"
    assert handler["payload"] == {"function": "on_child_terminated", "args": {"child_id": "a"}}
    # An action without that handler fails the node clearly instead of hanging.
    failed = step(handler, parent)
    assert updated(failed, "p").lifecycle == Lifecycle.FAILED
    assert "on_child_terminated" in (updated(failed, "p").error or "")


def test_the_roots_termination_completes_the_swarm():
    root = make_node("root", ActionType.PLAN, parent_id=None)
    result = step(op(OperationKind.TERMINATE, "root", report="Final!"), root)
    assert result.swarm_status == SwarmStatus.COMPLETED
    assert result.final_report == "Final!"
    assert "swarm.completed" in event_types(result)


def test_operations_for_a_finished_node_are_ignored():
    node = make_node(lifecycle=Lifecycle.TERMINATED)
    result = action("start", node)
    assert not result.operations
    assert result.logs[0].level == "warning"


# --- limits -----------------------------------------------------------------------------------


def test_max_children_drops_the_extra_subtasks():
    root = make_node("root", ActionType.PLAN, parent_id=None)
    swarm = make_swarm(max_children=2)
    result = action(
        "on_plan",
        root,
        swarm=swarm,
        completion={"rationale": "r", "subtasks": subtasks(*["execute"] * 5)},
    )
    assert len(ops_of(result, OperationKind.SPAWN)) == 2
    assert any("max_children" in entry.message for entry in result.logs)


def test_at_max_depth_children_execute_instead_of_planning():
    node = make_node("p", ActionType.PLAN, depth=1)
    swarm = make_swarm(max_depth=2)
    result = action(
        "on_plan", node, swarm=swarm, completion={"rationale": "r", "subtasks": subtasks("plan")}
    )
    assert ops_of(result, OperationKind.SPAWN)[0]["payload"]["action"] == "execute"


def test_max_nodes_fails_the_swarm_clearly():
    root = make_node("root", ActionType.PLAN, parent_id=None)
    swarm = make_swarm(max_nodes=2)
    result = action(
        "on_plan",
        root,
        swarm=swarm,
        completion={"rationale": "r", "subtasks": subtasks("execute", "execute")},
    )
    assert result.swarm_status == SwarmStatus.FAILED
    assert "max_nodes" in (result.error or "")
    assert not ops_of(result, OperationKind.SPAWN)


def test_max_steps_fails_the_swarm_clearly():
    swarm = make_swarm(max_steps=5)
    result = action("start", make_node(), swarm=swarm)
    assert result.swarm_status == SwarmStatus.FAILED
    assert "max_steps" in (result.error or "")
    assert not result.operations


@pytest.mark.parametrize("kind", list(OperationKind))
def test_every_step_emits_an_event(kind):
    node = make_node(
        lifecycle=Lifecycle.WAITING_FOR_USER,
        continuation=Continuation(function_to_call="on_result"),
    )
    payloads = {
        OperationKind.SPAWN: {
            "parent_id": None,
            "depth": 0,
            "action": "execute",
            "name": "x",
            "directive": "y",
            "termination_policy": "simple",
        },
        OperationKind.ACTION: {"function": "start"},
        OperationKind.LLM: {
            "request": {"task": "execute", "messages": []},
            "next_function": "on_result",
        },
        OperationKind.USER_REPLY: {"interrupt_id": "i1"},
        OperationKind.TERMINATE: {"report": "r"},
        OperationKind.FAIL: {"error": "boom"},
    }
    answer = LLMResult(data={"report": "r"}, content="{}", model="m")
    result = step(
        op(kind, **payloads[kind]), node, make_node("root", parent_id=None), llm_result=answer
    )
    assert result.events and all(e.seq == 6 for e in result.events)


def test_a_conversation_does_not_end_on_a_message_the_node_has_not_read():
    node = make_node(action=ActionType.ASK_USER)
    asked = updated(action("on_question", node, completion={"message": "Sweet?"}), "n1")
    answered = with_reply(asked, "Salty")
    resume = op(OperationKind.USER_REPLY, interrupt_id=asked.interrupt.interrupt_id)
    resumed = updated(step(resume, answered), "n1")
    late = with_reply(resumed, "and crunchy, with a view of the sea")
    verdict = {"sufficient": True, "follow_up": None, "report": "Wants salty."}
    result = action("on_judgement", late, completion=verdict)
    assert not ops_of(result, OperationKind.TERMINATE), "it judges again instead"
    said = [m["content"] for m in requested(result, "n1").facts["conversation"]]
    assert said[-2:] == ["Salty", "and crunchy, with a view of the sea"]


def test_a_deep_copy_of_a_document_is_equal_and_shares_nothing():
    """A step works on a deep copy of its node (and a paused swarm parks on a copy): the copy
    equals the document, keeps its types, and changing it anywhere leaves the original as it
    was."""
    node = make_node(
        context={"plan": {"steps": ["a", "b"]}, "answers": [{"text": "x", "n": 1}]},
        execution_memory={"phase": "ask", "counts": [1, 2.5, True]},
        last_message_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    swarm = make_swarm()
    swarm.parked = [op(OperationKind.TERMINATE, report="done")]
    for document in (node, swarm):
        copied = document.deep_copy()
        assert copied == document and type(copied) is type(document)
    copied_node = node.deep_copy()
    assert copied_node.last_message_at == node.last_message_at
    assert copied_node.execution_memory["counts"] == [1, 2.5, True]
    assert [type(v) for v in copied_node.execution_memory["counts"]] == [int, float, bool]
    copied_node.context["plan"]["steps"].append("c")
    copied_node.context["answers"][0]["text"] = "changed"
    copied_node.execution_memory["counts"].clear()
    assert node.context == {"plan": {"steps": ["a", "b"]}, "answers": [{"text": "x", "n": 1}]}
    assert node.execution_memory["counts"] == [1, 2.5, True]
    copied_swarm = swarm.deep_copy()
    copied_swarm.parked.clear()
    assert len(swarm.parked) == 1
