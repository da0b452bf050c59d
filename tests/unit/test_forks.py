"""Forks (swarm_core.forks, SwarmServices.fork): a fork after any step is the source as it was
then, runs on from there when resumed, and reuses the source's recorded LLM answers for
identical requests; on the in-memory adapters with the scenario swarm of the fault tests."""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

import pytest

from swarm_core.adapters.offline_llm import OfflineScriptedLLM
from swarm_core.bootstrap import MemoryAdapters, build_in_memory
from swarm_core.forks import apply_changes, changes
from swarm_core.in_process import drain, reply_through_services, run_until_settled, waiting_nodes
from swarm_core.models import EventType, InterruptStatus, Limits, SwarmConfig, SwarmStatus
from swarm_core.ports import chat_stream, history_stream, log_stream
from swarm_core.services import InvalidState, NotFound
from swarm_core.swarm import Swarm
from tests.harness import (
    USER,
    Rig,
    ScenarioRun,
    remembering_process,
    run_scenario,
    scenario_user,
)


@pytest.fixture(scope="module")
def source() -> ScenarioRun:
    run = run_scenario()
    assert run.rig.store.get_swarm(run.swarm_id).value.status == SwarmStatus.COMPLETED
    return run


def events_until(rig: Rig, swarm_id: str, at: int) -> list[dict[str, Any]]:
    return [e for e in rig.content.read(history_stream(swarm_id)) if e["seq"] <= at]


def open_interrupt_seq(rig: Rig, swarm_id: str) -> int:
    """A seq right after which a question is open (mid-conversation)."""
    for event in rig.content.read(history_stream(swarm_id)):
        if event["type"] == EventType.INTERRUPT_OPENED.value:
            return int(event["seq"])
    raise AssertionError("the scenario asks no question")


def model_calls(rig: Rig) -> int:
    return sum(rig.llm.calls.values())


def called_nodes(rig: Rig, since: Counter[str]) -> set[str]:
    """Op ids of the model calls made since the `since` count."""
    return {op for op in rig.llm.calls if rig.llm.calls[op] > since.get(op, 0)}


def resume_and_finish(rig: Rig, fork_id: str, answer: Any = None) -> None:
    rig.services.resume(USER, fork_id)
    run_until_settled(rig.http_app, fork_id, answer or scenario_user(rig, fork_id))


def fork_points(rig: Rig, swarm_id: str) -> list[int]:
    latest = rig.store.get_swarm(swarm_id).value.seq
    return sorted({1, 3, 4, open_interrupt_seq(rig, swarm_id), latest // 2, latest - 1, latest})


def test_a_fork_is_the_source_as_it_was_after_the_step(source):
    rig, swarm_id = source.rig, source.swarm_id
    for at in fork_points(rig, swarm_id):
        fork = rig.services.fork(USER, swarm_id, at)
        assert fork.forked_from is not None
        assert (fork.forked_from.swarm_id, fork.forked_from.seq) == (swarm_id, at)
        assert fork.seq == at + 1
        assert fork.user_id == USER
        # The tree, as the slider shows it, at and before the fork point.
        for seq in {1, at // 2 or 1, at}:
            assert (
                rig.services.state(USER, fork.swarm_id, seq)["nodes"]
                == rig.services.state(USER, swarm_id, seq)["nodes"]
            ), (at, seq)
        # The node documents (contexts, continuations, interrupts): the fold of the source.
        source_state = rig.services.state(USER, swarm_id, at)["nodes"]
        fork_nodes = {n.node_id: n for n in rig.store.list_nodes(fork.swarm_id)}
        assert sorted(fork_nodes) == sorted(n["node_id"] for n in source_state)
        for node in fork_nodes.values():
            assert node.swarm_id == fork.swarm_id
            assert node.seq <= at
        # History up to the fork point, then the fork's own first step.
        copied = events_until(rig, fork.swarm_id, at)
        original = events_until(rig, swarm_id, at)
        assert [{**e, "swarm_id": swarm_id} for e in copied] == original
        assert all(e["swarm_id"] == fork.swarm_id for e in copied)
        shown = {
            swarm: [
                e for e in rig.services.history(USER, swarm, 0, 10**9)["events"] if e["seq"] <= at
            ]
            for swarm in (swarm_id, fork.swarm_id)
        }
        assert json.dumps(shown[fork.swarm_id]).replace(fork.swarm_id, swarm_id) == json.dumps(
            shown[swarm_id]
        ), "the history shows the fork's events, nodes replayed, as the source's"
        first = [e for e in rig.content.read(history_stream(fork.swarm_id)) if e["seq"] > at]
        assert [e["type"] for e in first] == ["swarm.status", "swarm.forked"]
        assert first[1]["data"]["forked_from"] == {"swarm_id": swarm_id, "seq": at}
        # Chats and logs up to the fork point.
        for node_id in fork_nodes:
            for stream in (chat_stream, log_stream):
                mine = rig.content.read(stream(fork.swarm_id, node_id))
                theirs = [r for r in rig.content.read(stream(swarm_id, node_id)) if r["seq"] <= at]
                assert json.dumps(mine).replace(fork.swarm_id, swarm_id) == json.dumps(theirs)
        # Open interrupts: those open after step `at` in the source.
        opened = {
            n["node_id"]
            for n in source_state
            if n["interrupt"] and n["interrupt"]["status"] == InterruptStatus.OPEN.value
        }
        assert {i.node_id for i in rig.services.interrupts(USER, fork.swarm_id)} == opened
        if at == open_interrupt_seq(rig, swarm_id):
            assert opened, "a fork in the middle of a conversation has its question open"
        # The listing shows it; the source is not changed.
        listed = {s.swarm_id: s for s in rig.services.list_swarms(USER, 100)[0]}
        assert listed[fork.swarm_id].forked_from == fork.forked_from
        expected_status = SwarmStatus.COMPLETED if at == source_state_seq(rig, swarm_id) else None
        assert fork.status == (expected_status or SwarmStatus.PAUSED)


def source_state_seq(rig: Rig, swarm_id: str) -> int:
    return rig.store.get_swarm(swarm_id).value.seq


def test_a_resumed_fork_with_the_same_answers_calls_no_model(source):
    rig, swarm_id = source.rig, source.swarm_id
    report = rig.store.get_swarm(swarm_id).value.final_report
    for at in (1, open_interrupt_seq(rig, swarm_id), source_state_seq(rig, swarm_id) // 2):
        fork = rig.services.fork(USER, swarm_id, at)
        before = model_calls(rig)
        resume_and_finish(rig, fork.swarm_id)
        done = rig.store.get_swarm(fork.swarm_id).value
        assert done.status == SwarmStatus.COMPLETED, done.error
        assert done.final_report == report
        assert model_calls(rig) == before, f"fork at {at} called the model"
        journal = [
            e
            for n in rig.store.list_nodes(fork.swarm_id)
            for e in rig.content.read(log_stream(fork.swarm_id, n.node_id))
            if e["kind"] == "journal" and e["seq"] > at
        ]
        assert journal and all("recorded" in e["data"] for e in journal)
        assert all("reused (no model call" in e["message"] for e in journal)
        assert done.usage.llm_calls == rig.store.get_swarm(swarm_id).value.usage.llm_calls - sum(
            1
            for n in rig.store.list_nodes(swarm_id)
            for e in rig.content.read(log_stream(swarm_id, n.node_id))
            if e["kind"] == "journal" and e["seq"] > at
        ), "tokens and calls of reused answers are not counted again"


def test_a_different_answer_calls_the_model_from_where_it_diverged(source):
    # The last question of the scenario: two sibling conversations are open beside it.
    rig, swarm_id = source.rig, source.swarm_id
    opened = [
        e
        for e in rig.content.read(history_stream(swarm_id))
        if e["type"] == EventType.INTERRUPT_OPENED.value
    ]
    at, asked = int(opened[-1]["seq"]), opened[-1]["data"]["node_id"]
    fork = rig.services.fork(USER, swarm_id, at)
    assert len(rig.services.interrupts(USER, fork.swarm_id)) >= 2
    usual = scenario_user(rig, fork.swarm_id)

    def answer(node, chat):
        if node.node_id == asked and not any(m["seq"] > at for m in chat):
            rig.user_app.services.post_user_message(
                USER, fork.swarm_id, asked, "Something else entirely: a week in Porto.", "x"
            )
            return
        usual(node, chat)

    seen = Counter(rig.llm.calls)
    resume_and_finish(rig, fork.swarm_id, answer)
    assert rig.store.get_swarm(fork.swarm_id).value.status == SwarmStatus.COMPLETED
    called = called_nodes(rig, seen)
    assert called, "the new answer is judged by the model"
    nodes = {n.node_id: n for n in rig.store.list_nodes(fork.swarm_id)}
    diverging = {asked}
    parent = nodes[asked].parent_id
    while parent is not None:
        diverging.add(parent)
        parent = nodes[parent].parent_id
    called_node_ids = {rig.llm.nodes[op] for op in called}
    # The node that got the other answer judges it, and its ancestors review what follows; the
    # sibling conversations, answered as before, reuse the recorded answers.
    assert called_node_ids == diverging, called_node_ids ^ diverging


def test_reuse_llm_false_calls_the_model(source):
    rig, swarm_id = source.rig, source.swarm_id
    fork = rig.services.fork(USER, swarm_id, 1, reuse_llm=False)
    before = model_calls(rig)
    resume_and_finish(rig, fork.swarm_id)
    assert rig.store.get_swarm(fork.swarm_id).value.status == SwarmStatus.COMPLETED
    assert model_calls(rig) > before


def test_a_fork_of_a_fork(source):
    rig, swarm_id = source.rig, source.swarm_id
    first = rig.services.fork(USER, swarm_id, 4)
    second = rig.services.fork(USER, first.swarm_id, 5)  # 5: the first's swarm.forked step
    assert second.forked_from.swarm_id == first.swarm_id
    assert (
        rig.services.state(USER, second.swarm_id, 4)["nodes"]
        == rig.services.state(USER, swarm_id, 4)["nodes"]
    )
    before = model_calls(rig)
    resume_and_finish(rig, first.swarm_id)
    resume_and_finish(rig, second.swarm_id)
    assert model_calls(rig) == before, "each fork reuses its source's answers"
    report = rig.store.get_swarm(swarm_id).value.final_report
    assert rig.store.get_swarm(second.swarm_id).value.final_report == report


def test_only_the_owner_forks_and_at_is_checked(source):
    rig, swarm_id = source.rig, source.swarm_id
    with pytest.raises(NotFound):
        rig.services.fork("someone-else", swarm_id)
    latest = source_state_seq(rig, swarm_id)
    with pytest.raises(InvalidState):
        rig.services.fork(USER, swarm_id, latest + 1)
    assert source_state_seq(rig, swarm_id) == latest


def test_a_fork_before_the_first_step_is_a_new_swarm_to_spawn(source):
    rig, swarm_id = source.rig, source.swarm_id
    fork = rig.services.fork(USER, swarm_id, 0)
    assert fork.status == SwarmStatus.CREATED and not fork.spawned
    assert rig.store.list_nodes(fork.swarm_id) == []
    rig.services.spawn(USER, fork.swarm_id)
    before = model_calls(rig)
    run_until_settled(rig.http_app, fork.swarm_id, scenario_user(rig, fork.swarm_id))
    done = rig.store.get_swarm(fork.swarm_id).value
    assert done.status == SwarmStatus.COMPLETED
    # Its node ids are its own (the root's is derived from the swarm id): nothing to reuse.
    assert model_calls(rig) > before


def test_changes_rebuild_the_document_they_were_taken_from():
    """`changes(a, b)` applied to `a` is `b`, for random nested documents changed at random
    (fields set and removed, objects changed inside, lists slid on or rewritten), and is
    plain JSON; a window that slid on is recorded as what left it and what came."""
    rng = random.Random(7)

    def value(depth: int = 0) -> Any:
        roll = rng.random()
        if depth > 2 or roll < 0.3:
            return rng.choice([1, "a", None, True, 2.5, "b"])
        if roll < 0.6:
            return [value(depth + 1) for _ in range(rng.randint(0, 4))]
        return {rng.choice("abcde"): value(depth + 1) for _ in range(rng.randint(0, 4))}

    def changed(old: Any, depth: int = 0) -> Any:
        if isinstance(old, dict):
            new = {k: v for k, v in old.items() if rng.random() > 0.2}
            for key in list(new):
                if rng.random() < 0.4:
                    new[key] = changed(new[key], depth + 1)
            if rng.random() < 0.3:
                new[rng.choice("vwxyz")] = value(depth + 1)
            return new
        if isinstance(old, list):
            roll = rng.random()
            if roll < 0.3:
                return [*old[rng.randint(0, len(old)) :], value(depth + 1)]
            return [changed(v, depth + 1) for v in old] if roll < 0.5 else old
        return value(depth + 1) if rng.random() < 0.3 else old

    for _ in range(5000):
        before = {k: value() for k in "abcdef"}
        after = changed(before)
        diff = changes(before, after)
        assert apply_changes(json.loads(json.dumps(before)), json.loads(json.dumps(diff))) == after
    window = {"recent": [f"op{i}" for i in range(64)], "context": {"n": 1, "log": ["x"]}}
    slid = {"recent": [*window["recent"][1:], "op64"], "context": {"n": 2, "log": ["x"]}}
    assert changes(window, slid) == {
        "slide": {"recent": [1, ["op64"]]},
        "merge": {"context": {"set": {"n": 2}}},
    }
    assert changes(None, slid) == {"all": slid}
    # Equal in Python is not the same JSON value: 1, 1.0 and true differ inside containers too.
    for was, now in (([1], [True]), ({"x": 1}, {"x": 1.0}), ([{"y": [0]}], [{"y": [False]}])):
        diff = changes({"a": was}, {"a": now})
        assert json.dumps(apply_changes({"a": was}, diff)) == json.dumps({"a": now})


class FencedLLM(OfflineScriptedLLM):
    """The offline LLM answering as a model in JSON mode sometimes does: in a ```json fence
    (the OpenAI adapter takes the JSON inside and keeps the answer as given)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def complete(self, request: Any, response_model: Any) -> Any:
        self.calls += 1
        result = super().complete(request, response_model)
        return result.model_copy(update={"content": f"```json\n{result.content}\n```"})


def run_in_memory(app: Any, swarm_id: str) -> Swarm:
    run_until_settled(app, swarm_id, reply_through_services(app, USER, swarm_id, lambda n, c: LONG))
    return app.services.get_swarm(USER, swarm_id)


LONG = "A relaxed pace, about 900 EUR in total, good food and one museum a day please."


def test_recorded_answers_in_a_code_fence_are_reused():
    llm = FencedLLM()
    app = build_in_memory(adapters=MemoryAdapters(llm=llm))
    swarm = app.services.create_swarm(USER, "Plan a 3-day trip to Lisbon")
    app.services.spawn(USER, swarm.swarm_id)
    done = run_in_memory(app, swarm.swarm_id)
    calls = llm.calls
    fork = app.services.fork(USER, swarm.swarm_id, 1)
    app.services.resume(USER, fork.swarm_id)
    assert run_in_memory(app, fork.swarm_id).final_report == done.final_report
    assert llm.calls == calls


def test_forks_at_a_spent_budget_of_a_failed_swarm_and_at_zero():
    app = build_in_memory()
    config = SwarmConfig(limits=Limits(max_tokens_total=3000))
    swarm = app.services.create_swarm(USER, "Plan a 3-day trip to Lisbon", config)
    app.services.spawn(USER, swarm.swarm_id)
    paused = run_in_memory(app, swarm.swarm_id)
    assert paused.status == SwarmStatus.PAUSED and paused.paused_reason
    fork = app.services.fork(USER, swarm.swarm_id)
    assert fork.paused_reason == paused.paused_reason, "it paused for the same reason"
    assert [op.op_id for op in fork.parked] == [op.op_id for op in paused.parked]
    app.services.resume(USER, swarm.swarm_id, max_tokens_total=10**6)
    run_in_memory(app, swarm.swarm_id)
    at_zero = app.services.fork(USER, swarm.swarm_id, 0)
    assert at_zero.config.limits.max_tokens_total == 3000, "the config it was created with"
    # A swarm that failed (a limit): its fork keeps the status and parks nothing (a finished
    # swarm drops what arrives); a retry of its failed node runs in the fork.
    failing = app.services.create_swarm(
        USER, "Plan a 3-day trip to Lisbon", SwarmConfig(limits=Limits(max_steps=20))
    )
    app.services.spawn(USER, failing.swarm_id)
    failed = run_in_memory(app, failing.swarm_id)
    assert failed.status == SwarmStatus.FAILED
    copy = app.services.fork(USER, failing.swarm_id)
    assert copy.status == SwarmStatus.FAILED and copy.parked == []


def test_a_fork_step_on_out_of_date_documents_reuses_the_answer_to_its_own_request():
    """Two processes run a fork's conversation. One decides a judgement on the documents its
    last commit of the fork left, out of date (the other process has run a round since): the
    request it writes from them is the previous round's, whose recorded answer it finds. Its
    commit loses; on the fresh read the request is this round's, and so is the answer it uses
    (the previous round's is dropped): the fork replays its source round by round."""
    app = build_in_memory()
    config = SwarmConfig(offline_breadth=2, offline_depth=1, limits=Limits(max_follow_ups=10))
    source = app.services.create_swarm(USER, "Plan a 3-day trip to Lisbon", config)
    app.services.spawn(USER, source.swarm_id)
    queue = app.adapters.queue

    def deliver(process: Any) -> str:
        message = queue.receive()
        assert message is not None
        process.worker.process(message.body)
        queue.ack(message)
        return json.loads(message.body)["kind"]

    def answer(swarm_id: str) -> None:
        (node,) = waiting_nodes(app, swarm_id)
        app.services.post_user_message(USER, swarm_id, node.node_id, "x" * 200, None)

    drain(app)
    at = app.services.get_swarm(USER, source.swarm_id).seq  # the first question open
    for _ in range(2):  # too short, twice: two judgements, each asks again
        answer(source.swarm_id)
        drain(app)
    fork = app.services.fork(USER, source.swarm_id, at)
    app.services.resume(USER, fork.swarm_id)
    one = remembering_process(app.settings, app.adapters)
    two = remembering_process(app.settings, app.adapters)
    answer(fork.swarm_id)
    assert deliver(two) == "user_reply"  # `two` remembers the fork as of this round's resume
    assert deliver(one) == "llm"  # the first judgement
    answer(fork.swarm_id)
    assert deliver(one) == "user_reply"
    assert deliver(two) == "llm"  # the second, decided first on what `two` remembers

    (node,) = waiting_nodes(app, fork.swarm_id)

    def judgements(swarm_id: str) -> list[dict[str, Any]]:
        entries = app.adapters.content.read(log_stream(swarm_id, node.node_id))
        return [e for e in entries if e["kind"] == "journal" and e["data"]["task"] == "judge"]

    source_judged = [e for e in judgements(source.swarm_id) if e["seq"] > at]
    fork_judged = [e for e in judgements(fork.swarm_id) if e["seq"] > at + 1]
    assert [e["data"]["recorded"]["seq"] for e in fork_judged] == [e["seq"] for e in source_judged]
    assert [e["data"]["digest"] for e in fork_judged] == [
        e["data"]["digest"] for e in source_judged
    ]
