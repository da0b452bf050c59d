"""Fault injection: crash once at every position before and after every port call of every step
of a scenario swarm, redeliver as a queue would, and require the crash-free outcome."""

from __future__ import annotations

import os

import pytest

from tests.harness import (
    CrashPlan,
    Rig,
    assert_completed,
    crash_problems,
    final_state,
    history_differing_from_published,
    history_seqs,
    one_step_per_delivery,
    records_differing_from_documents,
    run_scenario,
    states_differing_from_replay,
)


@pytest.fixture(scope="module")
def clean():
    run = run_scenario()
    assert_completed(run)
    return run


def test_scenario_is_big_enough(clean):
    state = final_state(clean)
    asking = [n for n in state["nodes"].values() if n["action"] == "ask_user"]
    assert state["seq"] >= 30
    assert len(asking) >= 2, "at least two user conversations"
    follow_ups = [n for n in asking if n["execution_memory"].get("follow_ups")]
    assert follow_ups, "a too-short answer got a follow-up"


def test_state_at_every_seq_is_the_replay_of_the_history(clean):
    assert clean.rig.content.get_snapshot(clean.swarm_id, 4) is not None, "snapshots are taken"
    assert not states_differing_from_replay(clean)
    assert not history_differing_from_published(clean)


def test_the_commit_records_rebuild_the_documents(clean):
    assert not records_differing_from_documents(clean)


def test_history_is_gap_free(clean):
    assert history_seqs(clean) == list(range(1, final_state(clean)["seq"] + 1))


def crash_positions(total_calls: int) -> list[int]:
    positions = list(range(2 * total_calls))
    stride = int(os.environ.get("CRASH_STRIDE", "1"))  # >1 samples positions for quick local runs
    return positions[::stride]


@pytest.mark.parametrize(
    "make_rig", [Rig, one_step_per_delivery], ids=["steps run next", "one step per delivery"]
)
def test_crash_at_every_position_gives_the_crash_free_result(clean, make_rig):
    expected = final_state(clean)
    expected_seqs = history_seqs(clean)
    total = run_scenario(make_rig=make_rig).rig.plan.calls
    positions = crash_positions(total)
    failures = []
    for position in positions:
        plan = CrashPlan(position)
        run = run_scenario(plan, make_rig=make_rig)
        problems = crash_problems(run, expected, expected_seqs)
        if problems:
            failures.append((position, plan.fired, problems))
    print(f"\ncrash positions covered: {len(positions)} ({total} port calls, before and after)")
    assert not failures, failures[:5]
    assert len(positions) >= 2 * total or os.environ.get("CRASH_STRIDE")


def test_every_message_delivered_twice(clean):
    run = run_scenario(deliver_twice=True)
    assert final_state(run) == final_state(clean)
    assert not run.rig.llm.calls_after_commit


def test_events_published_cover_the_history(clean):
    run = run_scenario(CrashPlan(41))
    stored = {(e["seq"], e["index"]) for e in run.rig.content.read(f"{run.swarm_id}/history")}
    published = {(e["seq"], e["index"]) for e in run.rig.publisher.published[run.swarm_id]}
    assert stored == published
