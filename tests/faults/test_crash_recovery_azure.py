"""The fault-injection scenario on the real adapters (Cosmos DB server, Azurite): the crash-free
run equals the in-memory one, and crashes at a sample of positions change nothing."""

from __future__ import annotations

import pytest

from swarm_core.adapters.cosmos import CosmosSwarmStore
from swarm_core.ports import history_stream
from tests.faults.test_fork_crashes import crash_fork_everywhere
from tests.harness import (
    CrashPlan,
    Rig,
    assert_completed,
    emulator_storage,
    final_state,
    history_seqs,
    run_scenario,
)

pytestmark = pytest.mark.emulators

SAMPLES = 16


@pytest.fixture(scope="module")
def azure_rig_factory(emulator_stack):
    def make(plan: CrashPlan) -> Rig:
        # One database and container per run: runs reuse the same swarm id, so they must not
        # share storage (and then their states compare directly, ids included).
        clients, content = emulator_storage(emulator_stack.settings, "faults")
        return Rig(plan, store=CosmosSwarmStore(clients), content=content)

    return make


@pytest.fixture(scope="module")
def memory_clean():
    run = run_scenario()
    assert_completed(run)
    return run


def test_the_scenario_on_emulators_equals_the_in_memory_run(azure_rig_factory, memory_clean):
    run = run_scenario(make_rig=azure_rig_factory)
    assert_completed(run)
    assert final_state(run) == final_state(memory_clean)
    assert history_seqs(run) == history_seqs(memory_clean)


def test_crashes_at_sampled_positions_on_emulators(azure_rig_factory, memory_clean):
    expected = final_state(memory_clean)
    total = memory_clean.rig.plan.calls
    positions = sorted({(i * 2 * total) // SAMPLES + (i % 2) for i in range(SAMPLES)})
    failures = []
    for position in positions:
        plan = CrashPlan(position)
        run = run_scenario(plan, make_rig=azure_rig_factory)
        if plan.fired is None or final_state(run) != expected or run.rig.llm.calls_after_commit:
            failures.append((position, plan.fired))
    print(f"\nemulator crash positions covered: {len(positions)} of {2 * total}")
    assert not failures, failures


def test_a_crash_anywhere_in_a_fork_on_emulators(azure_rig_factory):
    """The fork's crash test (tests/faults/test_fork_crashes.py) on the real adapters, at every
    third position: no half fork left in Cosmos DB or Azurite, the source unchanged."""
    run = run_scenario(make_rig=azure_rig_factory)
    assert_completed(run)
    opened = [
        e["seq"]
        for e in run.rig.content.read(history_stream(run.swarm_id))
        if e["type"] == "interrupt.opened"
    ]
    failures = crash_fork_everywhere(run, opened[-1], stride=3)
    assert not failures, "\n".join(map(str, failures))
