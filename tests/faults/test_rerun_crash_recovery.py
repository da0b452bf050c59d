"""Fault injection around a rerun: the scenario swarm runs (crash-free) until a `plan` branch
under the root has terminated, pauses, and then the API process reruns that branch with a new
directive and resumes the swarm, and the worker runs it to the end. A crash once at every position
before and after every port call of that second part (in the API process, which the client then
asks again, and in the worker, whose message is delivered again) must give the crash-free result.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from swarm_core.adapters.cosmos import CosmosSwarmStore
from swarm_core.in_process import run_until_settled
from swarm_core.models import ActionType, SwarmStatus
from swarm_core.services import InvalidState
from tests.harness import (
    USER,
    CrashingDelivery,
    CrashPlan,
    InjectedCrash,
    Rig,
    ScenarioRun,
    answer_waiting,
    assert_completed,
    crash_problems,
    emulator_storage,
    final_state,
    history_differing_from_published,
    history_seqs,
    records_differing_from_documents,
    scenario_config,
    scenario_user,
    states_differing_from_replay,
)

NEW_DIRECTIVE = "Draft the schedule around the food markets, one neighbourhood a day"


@dataclass
class RerunRun(ScenarioRun):
    discarded_id: str = ""
    new_node_id: str = ""
    calls_before: int = 0  # port calls of the crash-free first part


def terminated_branch(rig: Rig, swarm_id: str) -> str | None:
    """A `plan` child of the root whose whole branch terminated."""
    for node in rig.store.list_nodes(swarm_id):
        if node.depth == 1 and node.action == ActionType.PLAN and node.lifecycle == "terminated":
            return node.node_id
    return None


def until_crash_free(rig: Rig, call: Callable[[], Any]) -> Any:
    """Ask the API process again after each crash, as a client does after a lost response."""
    while True:
        try:
            return call()
        except InjectedCrash:
            rig.user_crashes += 1


def run_rerun_scenario(
    crash_at: int | None = None, make_rig: Callable[[CrashPlan], Rig] = Rig
) -> RerunRun:
    """The scenario, with a crash at `crash_at` counted from the rerun on (None: no crash)."""
    plan = CrashPlan()
    rig = make_rig(plan)
    swarm_id = rig.services.create_swarm(USER, "Plan a 3-day trip to Lisbon", scenario_config())
    swarm_id = swarm_id.swarm_id
    rig.services.spawn(USER, swarm_id)
    # First part, crash-free: until a branch terminated, then pause and park what is queued.
    run_next_steps, rig.worker.run_next_steps = rig.worker.run_next_steps, 0  # step by step
    while (branch := terminated_branch(rig, swarm_id)) is None:
        message = rig.queue.receive()
        if message is None:
            assert answer_waiting(rig, swarm_id), "settled before a branch terminated"
            continue
        rig.worker.process(message.body)
        rig.queue.ack(message)
    rig.services.pause(USER, swarm_id)
    while (message := rig.queue.receive()) is not None:
        rig.worker.process(message.body)
        rig.queue.ack(message)
    rig.worker.run_next_steps = run_next_steps
    calls_before = plan.calls
    if crash_at is not None:
        plan.position = 2 * calls_before + crash_at
    # Second part: rerun and resume in the API process, the rest in the worker; both crash.
    api = rig.user_app.services
    rerun = until_crash_free(rig, lambda: api.rerun_node(USER, swarm_id, branch, NEW_DIRECTIVE))

    def resume() -> None:
        try:
            api.resume(USER, swarm_id)
        except InvalidState:
            # Asked again after a crash that followed the resume's commit: the commit stands
            # (and this request applied its effects, rolling it forward).
            assert rig.store.get_swarm(swarm_id).value.status == SwarmStatus.RUNNING

    until_crash_free(rig, resume)
    deliver = CrashingDelivery(rig)
    deliveries = run_until_settled(
        rig.http_app, swarm_id, scenario_user(rig, swarm_id), deliver=deliver
    )
    return RerunRun(
        rig,
        swarm_id,
        deliver.crashes + rig.user_crashes,
        deliveries,
        discarded_id=branch,
        new_node_id=rerun.new_node_id,
        calls_before=calls_before,
    )


@pytest.fixture(scope="module")
def clean() -> RerunRun:
    run = run_rerun_scenario()
    assert_completed(run)
    return run


def test_the_rerun_scenario_reruns_a_finished_branch(clean):
    state = final_state(clean)
    new = state["nodes"][clean.new_node_id]
    assert new["directive"] == NEW_DIRECTIVE and new["lifecycle"] == "terminated"
    assert clean.discarded_id not in state["nodes"]
    root = next(n for n in state["nodes"].values() if n["parent_id"] is None)
    assert clean.new_node_id in root["children_ids"]
    types = {e["type"] for e in clean.rig.content.read(f"{clean.swarm_id}/history")}
    assert "node.rerun" in types
    assert history_seqs(clean) == list(range(1, state["seq"] + 1))
    assert not states_differing_from_replay(clean)
    assert not history_differing_from_published(clean)
    assert not records_differing_from_documents(clean)


def test_a_crash_at_every_position_of_a_rerun_gives_the_crash_free_result(clean):
    expected, expected_seqs = final_state(clean), history_seqs(clean)
    total = clean.rig.plan.calls - clean.calls_before
    stride = int(os.environ.get("CRASH_STRIDE", "1"))  # >1 samples positions for quick local runs
    positions = list(range(2 * total))[::stride]
    failures = []
    for position in positions:
        run = run_rerun_scenario(position)
        plan = run.rig.plan
        problems = crash_problems(run, expected, expected_seqs)
        if run.new_node_id != clean.new_node_id:
            problems.append("another new node")
        if problems:
            failures.append((position, plan.fired, problems))
    print(
        f"\nrerun crash positions covered: {len(positions)} ({total} port calls, before and after)"
    )
    assert not failures, failures[:5]


EMULATOR_SAMPLES = 6


@pytest.mark.emulators
def test_the_rerun_on_emulators_equals_the_in_memory_run_crashed_or_not(emulator_stack, clean):
    """The same on the Cosmos DB server and Azurite: the rerun's deletes go in the commit's
    transactional batch there."""

    def make(plan: CrashPlan) -> Rig:
        # One database and container per run: the runs reuse the same swarm id.
        clients, content = emulator_storage(emulator_stack.settings, "rerun")
        return Rig(plan, store=CosmosSwarmStore(clients), content=content)

    expected = final_state(clean)
    assert final_state(run_rerun_scenario(make_rig=make)) == expected
    total = clean.rig.plan.calls - clean.calls_before
    positions = sorted(
        {(i * 2 * total) // EMULATOR_SAMPLES + (i % 2) for i in range(EMULATOR_SAMPLES)}
    )
    failures = []
    for position in positions:
        run = run_rerun_scenario(position, make_rig=make)
        if run.rig.plan.fired is None or final_state(run) != expected:
            failures.append((position, run.rig.plan.fired))
    assert not failures, failures
