"""Rerunning a branch (`SwarmServices.rerun_node`) with the worker, on the in-memory adapters:
what leaves the tree, what the parent waits for, what happens to work queued for the discarded
nodes, and what the history and `state?at=` show."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from swarm_core.bootstrap import InMemorySwarmApp, build_in_memory
from swarm_core.commits import Outcome
from swarm_core.entrypoints import http_api
from swarm_core.in_process import (
    drain,
    process_and_ack,
    reply_through_services,
    run_until_settled,
    waiting_nodes,
)
from swarm_core.models import ActionType, Lifecycle, Node, SwarmStatus
from swarm_core.operations import OperationKind, parse_operation
from swarm_core.ports import history_stream
from swarm_core.runtime import use_app
from swarm_core.services import InvalidState, NotFound
from tests.unit.test_http_api import call, signup

USER = "alice"
ANSWER = "A relaxed pace, about 900 EUR, good food and one museum a day."
NEW_DIRECTIVE = "Find cheap and cheerful places to eat near the river"


@pytest.fixture
def app() -> InMemorySwarmApp:
    return build_in_memory()


@pytest.fixture
def swarm_id(app: InMemorySwarmApp) -> str:
    swarm = app.services.create_swarm(USER, "Plan a 3-day trip to Lisbon")
    app.services.spawn(USER, swarm.swarm_id)
    return swarm.swarm_id


def nodes(app: InMemorySwarmApp, swarm_id: str) -> dict[str, Node]:
    return {n.node_id: n for n in app.adapters.store.list_nodes(swarm_id)}


def answer(app: InMemorySwarmApp, swarm_id: str, user: str = USER) -> Callable[[Node, list], None]:
    return reply_through_services(app, user, swarm_id, lambda node, chat: ANSWER)


def step_until(
    app: InMemorySwarmApp,
    swarm_id: str,
    found: Callable[[dict[str, Node]], Node | None],
    delivered: list[str] | None = None,
    user: str = USER,
) -> Node:
    """Deliver one message at a time (answering the questions when nothing else can run) until
    `found` finds its node in the tree; `delivered` collects the messages delivered."""
    deliver, reply = process_and_ack(app), answer(app, swarm_id, user)
    for _ in range(10_000):
        if (node := found(nodes(app, swarm_id))) is not None:
            return node
        message = app.adapters.queue.receive()
        if message is not None:
            deliver(message)
            if delivered is not None:
                delivered.append(message.body)
            continue
        waiting = waiting_nodes(app, swarm_id)
        assert waiting, "the swarm settled before the node was found"
        for node in waiting:
            reply(node, [])
    raise AssertionError("not found")


def terminated_branch(tree: dict[str, Node]) -> Node | None:
    """A `plan` child of the root whose whole branch terminated."""
    return next(
        (
            n
            for n in tree.values()
            if n.depth == 1 and n.action == ActionType.PLAN and n.lifecycle == Lifecycle.TERMINATED
        ),
        None,
    )


def branch(tree: dict[str, Node], node_id: str) -> list[str]:
    ids = [node_id]
    for child in tree[node_id].children_ids:
        if child in tree:
            ids.extend(branch(tree, child))
    return ids


def pause_and_park(app: InMemorySwarmApp, swarm_id: str) -> None:
    app.services.pause(USER, swarm_id)
    drain(app)  # whatever was queued parks on the swarm


def test_a_rerun_discards_the_branch_and_the_parent_reviews_the_new_report(app, swarm_id):
    old = step_until(app, swarm_id, terminated_branch)
    pause_and_park(app, swarm_id)
    before = nodes(app, swarm_id)
    discarded = branch(before, old.node_id)
    assert len(discarded) > 1, "the branch has children"
    root = before[old.parent_id]
    assert old.node_id in root.context["child_reports"]

    rerun = app.services.rerun_node(USER, swarm_id, old.node_id, NEW_DIRECTIVE)

    assert rerun.swarm.status == SwarmStatus.PAUSED and rerun.node_id == old.node_id
    after = nodes(app, swarm_id)
    assert not set(discarded) & set(after), "the branch left the live tree"
    assert set(after) == set(before) - set(discarded), "everything else keeps its work"
    parent = after[root.node_id]
    assert parent.children_ids == [
        rerun.new_node_id if c == old.node_id else c for c in root.children_ids
    ]
    assert old.node_id not in parent.context["child_reports"]
    assert parent.lifecycle == Lifecycle.WAITING_FOR_CHILDREN
    swarm = rerun.swarm
    assert swarm.node_count == len(after) + 1, "the new node is counted (decided, not spawned)"
    assert sum(swarm.node_counts.values()) == len(after)
    assert swarm.node_counts == count_lifecycles(after)
    spawn = swarm.parked[-1]
    assert spawn.kind == OperationKind.SPAWN and spawn.node_id == rerun.new_node_id
    assert spawn.payload.directive == NEW_DIRECTIVE and spawn.payload.parent_id == root.node_id
    assert (spawn.payload.name, spawn.payload.action) == (old.name, old.action)
    assert not {op.node_id for op in swarm.parked} & set(discarded)

    events = app.services.history(USER, swarm_id, after=swarm.seq - 1)["events"]
    assert [e["type"] for e in events] == ["node.rerun", "node.updated"]
    assert events[0]["data"] == {
        "node_id": old.node_id,
        "new_node_id": rerun.new_node_id,
        "parent_id": root.node_id,
        "directive": NEW_DIRECTIVE,
        "discarded": discarded,
    }
    for at in (swarm.seq, swarm.seq - 1):
        replayed = {n["node_id"] for n in app.services.state(USER, swarm_id, at=at)["nodes"]}
        now = {n["node_id"] for n in app.services.state(USER, swarm_id)["nodes"]}
        assert (replayed == now) == (at == swarm.seq), at
    with pytest.raises(NotFound):  # the old node's chat and detail went with it
        app.services.node_detail(USER, swarm_id, old.node_id)

    app.services.resume(USER, swarm_id)
    run_until_settled(app, swarm_id, answer(app, swarm_id))

    done = app.services.get_swarm(USER, swarm_id)
    assert done.status == SwarmStatus.COMPLETED, done.error
    final = nodes(app, swarm_id)
    new = final[rerun.new_node_id]
    assert new.directive == NEW_DIRECTIVE and new.lifecycle == Lifecycle.TERMINATED
    assert not set(discarded) & set(final)
    assert done.node_counts == {"terminated": len(final)} and done.node_count == len(final)
    root_done = final[root.node_id]
    assert set(root_done.context["child_reports"]) == set(root_done.children_ids)
    review = [
        entry
        for entry in app.services.node_detail(USER, swarm_id, root.node_id)["journal"]
        if entry["data"]["task"] == "review"
    ]
    assert len(review) == 1, "the parent reviewed once, after the new child reported"
    facts = json.loads(review[0]["data"]["messages"][-1]["content"].split("Facts:\n", 1)[1])
    reviewed = [r["report"] for r in facts["child_reports"]]
    assert new.report in reviewed and old.report not in reviewed
    assert f"{new.name}: {new.report.splitlines()[0]}" in (done.final_report or "")


def count_lifecycles(tree: dict[str, Node]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in tree.values():
        counts[node.lifecycle.value] = counts.get(node.lifecycle.value, 0) + 1
    return counts


def test_a_rerun_without_a_directive_keeps_the_old_one(app, swarm_id):
    old = step_until(app, swarm_id, terminated_branch)
    pause_and_park(app, swarm_id)
    rerun = app.services.rerun_node(USER, swarm_id, old.node_id)
    assert rerun.swarm.parked[-1].payload.directive == old.directive


def test_a_rerun_asked_again_is_the_same_rerun(app, swarm_id):
    old = step_until(app, swarm_id, terminated_branch)
    pause_and_park(app, swarm_id)
    first = app.services.rerun_node(USER, swarm_id, old.node_id, NEW_DIRECTIVE)
    again = app.services.rerun_node(USER, swarm_id, old.node_id, NEW_DIRECTIVE)
    assert again.new_node_id == first.new_node_id
    assert app.services.get_swarm(USER, swarm_id).seq == first.swarm.seq, "nothing new"
    # Also once the swarm moved on: the new node is in the tree.
    app.services.resume(USER, swarm_id)
    drain(app)
    assert rerun_again(app, swarm_id, old.node_id) == first.new_node_id


def rerun_again(app: InMemorySwarmApp, swarm_id: str, node_id: str) -> str:
    return app.services.rerun_node(USER, swarm_id, node_id).new_node_id


def test_a_rerun_is_refused_unless_it_can_be_done(app, swarm_id):
    old = step_until(app, swarm_id, terminated_branch)
    with pytest.raises(InvalidState, match="pause it first"):
        app.services.rerun_node(USER, swarm_id, old.node_id)
    pause_and_park(app, swarm_id)
    tree = nodes(app, swarm_id)
    with pytest.raises(NotFound):
        app.services.rerun_node("mallory", swarm_id, old.node_id)
    with pytest.raises(NotFound):
        app.services.rerun_node(USER, swarm_id, "no-such-node")
    with pytest.raises(InvalidState, match="root"):
        app.services.rerun_node(USER, swarm_id, old.parent_id or "")
    grandchild = old.children_ids[0]
    with pytest.raises(InvalidState, match="is terminated"):  # its parent reported already
        app.services.rerun_node(USER, swarm_id, grandchild)
    assert nodes(app, swarm_id) == tree, "a refused rerun changes nothing"


def test_queued_work_of_a_discarded_branch_does_nothing(app, swarm_id):
    """A plan child decided its children, whose spawns are still in the queue when the swarm
    pauses; the rerun discards it. Its spawns park later (the rerun could not drop them), and
    on resume find their parent gone; a redelivered step of the discarded node finds no node."""
    delivered: list[str] = []
    planned = step_until(
        app,
        swarm_id,
        lambda tree: next(
            (n for n in tree.values() if n.depth == 1 and n.children_ids and n.action == "plan"),
            None,
        ),
        delivered,
    )
    committed = [b for b in delivered if parse_operation(b).node_id == planned.node_id]
    kinds = {parse_operation(b).kind for b in committed}
    assert {OperationKind.SPAWN, OperationKind.LLM} <= kinds
    app.services.pause(USER, swarm_id)
    rerun = app.services.rerun_node(USER, swarm_id, planned.node_id)
    drain(app)
    parked = app.services.get_swarm(USER, swarm_id).parked
    assert {op.node_id for op in parked} & set(planned.children_ids), "queued spawns parked"
    app.services.resume(USER, swarm_id)
    for body in committed:  # the discarded node's own work, delivered again
        assert app.worker.process(body) == Outcome.DROPPED
    run_until_settled(app, swarm_id, answer(app, swarm_id))
    assert app.services.get_swarm(USER, swarm_id).status == SwarmStatus.COMPLETED
    final = nodes(app, swarm_id)
    assert not set(planned.children_ids) & set(final), "no orphan of the discarded node"
    assert all(n.parent_id is None or n.parent_id in final for n in final.values())
    assert rerun.new_node_id in final


def test_an_open_question_of_a_discarded_node_is_cancelled(app, swarm_id):
    asking = step_until(
        app,
        swarm_id,
        lambda tree: next(
            (n for n in tree.values() if n.lifecycle == Lifecycle.WAITING_FOR_USER), None
        ),
    )
    assert [i.node_id for i in app.services.interrupts(USER, swarm_id)] == [asking.node_id]
    pause_and_park(app, swarm_id)
    rerun = app.services.rerun_node(USER, swarm_id, asking.node_id)
    assert app.services.interrupts(USER, swarm_id) == []
    every = app.services.interrupts(USER, swarm_id, status="all")
    assert [(i.node_id, i.status) for i in every] == [(asking.node_id, "cancelled")]
    assert asking.node_id not in {c["node_id"] for c in app.services.chats(USER, swarm_id)}
    with pytest.raises(NotFound):
        app.services.post_user_message(USER, swarm_id, asking.node_id, ANSWER, None)
    events = app.adapters.content.read(history_stream(swarm_id), after_seq=rerun.swarm.seq - 1)
    assert [e["type"] for e in events] == ["node.rerun", "interrupt.answered", "node.updated"]
    app.services.resume(USER, swarm_id)
    run_until_settled(app, swarm_id, answer(app, swarm_id))
    assert app.services.get_swarm(USER, swarm_id).status == SwarmStatus.COMPLETED
    new = nodes(app, swarm_id)[rerun.new_node_id]
    assert new.action == ActionType.ASK_USER and ANSWER in (new.report or "")


def test_a_review_under_way_when_a_child_is_rerun_is_not_used(app, swarm_id):
    """The root had every report and asked for its review; the rerun of a child makes it wait
    again, and the review it asked for (parked, run on resume) is set aside."""
    root = step_until(
        app,
        swarm_id,
        lambda tree: next(
            (
                n
                for n in tree.values()
                if n.parent_id is None
                and n.lifecycle == Lifecycle.RUNNING
                and n.execution_memory.get("phase") == "working"
            ),
            None,
        ),
    )
    pause_and_park(app, swarm_id)
    assert [op.kind for op in app.services.get_swarm(USER, swarm_id).parked] == ["llm"]
    child = nodes(app, swarm_id)[root.children_ids[-1]]
    rerun = app.services.rerun_node(USER, swarm_id, child.node_id, NEW_DIRECTIVE)
    assert nodes(app, swarm_id)[root.node_id].lifecycle == Lifecycle.WAITING_FOR_CHILDREN
    app.services.resume(USER, swarm_id)
    run_until_settled(app, swarm_id, answer(app, swarm_id))
    done = app.services.get_swarm(USER, swarm_id)
    assert done.status == SwarmStatus.COMPLETED, done.error
    new = nodes(app, swarm_id)[rerun.new_node_id]
    assert f"{new.name}: {new.report.splitlines()[0]}" in (done.final_report or "")
    logs = [e["message"] for e in app.services.node_detail(USER, swarm_id, root.node_id)["logs"]]
    assert "review ignored: a rerun replaced a child it reviewed" in logs


# --- over the HTTP function ------------------------------------------------------------------


@pytest.fixture
def rt():
    app = build_in_memory()
    use_app(app)
    yield app
    use_app(None)


def test_rerun_over_http(rt):
    owner, intruder = signup("owner"), signup("intruder")
    _, created, _ = call(http_api.create_swarm, "POST", {"goal": "Plan a picnic"}, owner)
    swarm_id = created["swarm_id"]
    user_id = call(http_api.me, token=owner)[1]["user_id"]
    call(http_api.spawn_swarm, "POST", token=owner, route={"swarm_id": swarm_id})
    old = step_until(rt, swarm_id, terminated_branch, user=user_id)
    route = {"swarm_id": swarm_id, "node_id": old.node_id}
    status, problem, _ = call(http_api.rerun_node, "POST", token=owner, route=route)
    assert status == 409 and "pause it first" in problem["detail"]
    call(http_api.pause_swarm, "POST", token=owner, route={"swarm_id": swarm_id})
    seq = rt.services.get_swarm(user_id, swarm_id).seq
    for body, raw, expected in [
        ({"directive": ""}, None, 422),
        ({"directive": "  "}, None, 422),
        ({"directive": 5}, None, 422),
        ({"directive": "x" * 4001}, None, 422),
        ({"directive": "x", "depth": 1}, None, 422),
        (None, b"{not json", 400),
        (None, b"[]", 422),
    ]:
        status, problem, resp = call(http_api.rerun_node, "POST", body, owner, route, raw=raw)
        assert status == expected, (body, raw, problem)
        assert resp.mimetype == "application/problem+json"
    assert call(http_api.rerun_node, "POST", {}, intruder, route)[0] == 404
    unknown = {**route, "node_id": "no-such-node"}
    assert call(http_api.rerun_node, "POST", {}, owner, unknown)[0] == 404
    assert rt.services.get_swarm(user_id, swarm_id).seq == seq, "refusals change nothing"

    status, accepted, _ = call(
        http_api.rerun_node, "POST", {"directive": NEW_DIRECTIVE}, owner, route
    )
    assert status == 202
    assert set(accepted) == {"swarm_id", "node_id", "new_node_id", "status"}
    assert (accepted["swarm_id"], accepted["node_id"], accepted["status"]) == (
        swarm_id,
        old.node_id,
        "paused",
    )
    # Sent again (no body this time: the body is optional), it is the same rerun.
    status, again, _ = call(http_api.rerun_node, "POST", token=owner, route=route)
    assert status == 202 and again == accepted
    status, state, _ = call(http_api.swarm_state, token=owner, route={"swarm_id": swarm_id})
    assert old.node_id not in {n["node_id"] for n in state["nodes"]}
    call(http_api.resume_swarm, "POST", token=owner, route={"swarm_id": swarm_id})
    run_until_settled(rt, swarm_id, answer(rt, swarm_id, user_id))
    _, detail, _ = call(http_api.get_swarm, token=owner, route={"swarm_id": swarm_id})
    assert detail["status"] == "completed"
    route = {"swarm_id": swarm_id, "node_id": accepted["new_node_id"]}
    _, new, _ = call(http_api.get_node, token=owner, route=route)
    assert new["directive"] == NEW_DIRECTIVE and new["lifecycle"] == "terminated"


def test_a_fork_after_a_rerun_holds_the_parked_spawn_and_replays_the_source(app, swarm_id):
    """Forked while paused right after a rerun, the fork has the new node's spawn parked (the
    rerun parked it, it never went through the queue); resumed after the source finished, it
    reaches the same report on the source's recorded answers (no tokens spent)."""
    old = step_until(app, swarm_id, terminated_branch)
    pause_and_park(app, swarm_id)
    rerun = app.services.rerun_node(USER, swarm_id, old.node_id, NEW_DIRECTIVE)
    fork = app.services.fork(USER, swarm_id)
    assert any(op.node_id == rerun.new_node_id for op in fork.parked)
    assert {op.op_id for op in fork.parked} == {op.op_id for op in rerun.swarm.parked}
    assert set(nodes(app, fork.swarm_id)) == set(nodes(app, swarm_id))
    for seq in (rerun.swarm.seq - 1, rerun.swarm.seq):
        assert (
            app.services.state(USER, fork.swarm_id, seq)["nodes"]
            == app.services.state(USER, swarm_id, seq)["nodes"]
        )
    app.services.resume(USER, swarm_id)
    run_until_settled(app, swarm_id, answer(app, swarm_id))
    app.services.resume(USER, fork.swarm_id)
    run_until_settled(app, fork.swarm_id, answer(app, fork.swarm_id))
    source, forked = (app.services.get_swarm(USER, s) for s in (swarm_id, fork.swarm_id))
    assert forked.status == SwarmStatus.COMPLETED, forked.error
    assert forked.final_report == source.final_report
    assert forked.usage == fork.usage, "every answer after the fork point was a recorded one"
