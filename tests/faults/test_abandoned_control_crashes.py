"""Fault injection around a control commit whose client gives up: the API process crashes once,
at a position before or after one of the port calls of a pause, and the client never asks again.

The worker's own commits are re-driven by their message, which the queue delivers again; a
pause has no message. What finishes it is the maintenance timer: after it has run, the swarm is
either untouched (the crash came before the commit) or paused with every effect of the pause in
place (the listing says `paused`, the history has the pause's step, the commit records rebuild
the documents). Resumed, it runs to the same end as the swarm that was paused without a crash.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest

from swarm_core.in_process import run_until_settled
from swarm_core.models import SwarmStatus
from tests.harness import (
    USER,
    CrashingDelivery,
    CrashPlan,
    InjectedCrash,
    Rig,
    ScenarioRun,
    assert_completed,
    final_state,
    history_seqs,
    records_differing_from_documents,
    scenario_config,
    scenario_user,
)

STEPS_BEFORE_PAUSE = 4  # the first steps: the root has planned, its children are running


def first_steps(plan: CrashPlan) -> tuple[Rig, str]:
    """A rig with the scenario swarm after its first steps, crash-free."""
    rig = Rig(plan)
    rig.worker.run_next_steps = 0  # one step per delivery: the steps are counted here
    swarm = rig.services.create_swarm(USER, "Plan a 3-day trip to Lisbon", scenario_config())
    rig.services.spawn(USER, swarm.swarm_id)
    for _ in range(STEPS_BEFORE_PAUSE):
        message = rig.queue.receive()
        assert message is not None, "the scenario waits for the user sooner"
        rig.worker.process(message.body)
        rig.queue.ack(message)
    return rig, swarm.swarm_id


def run_paused(crash_at: int | None) -> tuple[ScenarioRun, SwarmStatus]:
    """The scenario's first steps, a pause that crashes at `crash_at` (counted from the pause;
    None: no crash) and is not asked again, maintenance; then, as the user finds the swarm,
    a resume (when it is paused) and the rest of the run. Also the status maintenance left."""
    plan = CrashPlan()
    rig, swarm_id = first_steps(plan)
    if crash_at is not None:
        plan.position = 2 * plan.calls + crash_at
    try:
        rig.user_app.services.pause(USER, swarm_id)
    except InjectedCrash:
        rig.user_crashes += 1  # and the client gives up
    rig.http_app.services.maintain(stuck_after=timedelta(0))
    status = rig.store.get_swarm(swarm_id).value.status
    if status == SwarmStatus.PAUSED:
        rig.services.resume(USER, swarm_id)
    deliver = CrashingDelivery(rig)
    deliveries = run_until_settled(
        rig.http_app, swarm_id, scenario_user(rig, swarm_id), deliver=deliver
    )
    run = ScenarioRun(rig, swarm_id, deliver.crashes + rig.user_crashes, deliveries)
    return run, status


def after_maintenance(crash_at: int) -> list[str]:
    """What is wrong with the swarm right after the abandoned pause and maintenance."""
    plan = CrashPlan()
    rig, swarm_id = first_steps(plan)
    plan.position = 2 * plan.calls + crash_at
    with contextlib.suppress(InjectedCrash):  # and the client gives up
        rig.user_app.services.pause(USER, swarm_id)
    rig.http_app.services.maintain(stuck_after=timedelta(0))
    problems = []
    if plan.fired is None:
        problems.append("the crash never fired")
    swarm = rig.store.get_swarm(swarm_id).value
    listed = rig.store.get_summary(USER, swarm_id)
    if listed is None or listed.status != swarm.status:
        problems.append(f"listed as {listed and listed.status}, is {swarm.status}")
    run = ScenarioRun(rig, swarm_id, 1, 0)
    if history_seqs(run) != list(range(1, swarm.seq + 1)):
        problems.append(f"history {history_seqs(run)[-3:]} for seq {swarm.seq}")
    if differing := records_differing_from_documents(run):
        problems.append(f"the commit records rebuild other documents: {differing[:5]}")
    return problems


@pytest.fixture(scope="module")
def clean() -> ScenarioRun:
    run, status = run_paused(None)
    assert status == SwarmStatus.PAUSED
    assert_completed(run)
    return run


def pause_positions() -> int:
    """How many crash positions a pause has (before and after each of its port calls)."""
    plan = CrashPlan()
    rig, swarm_id = first_steps(plan)
    before = plan.calls
    rig.user_app.services.pause(USER, swarm_id)
    return 2 * (plan.calls - before)


POSITIONS = pause_positions()


def test_the_pause_has_port_calls_to_crash_in():
    assert POSITIONS >= 10, "the pause commits and applies its effects through the ports"


@pytest.mark.parametrize("crash_at", range(POSITIONS))
def test_maintenance_finishes_a_pause_whose_client_gave_up(crash_at):
    assert after_maintenance(crash_at) == []


@pytest.mark.parametrize("crash_at", range(0, POSITIONS, 3))
def test_resumed_after_maintenance_the_swarm_ends_as_without_the_crash(clean, crash_at):
    run, status = run_paused(crash_at)
    assert run.rig.plan.fired is not None
    assert_completed(run)
    expected = final_state(clean)
    if status == SwarmStatus.PAUSED:
        assert final_state(run) == expected
    else:  # the crash came before the commit: no pause in this swarm's history
        assert final_state(run)["seq"] == expected["seq"] - 2
