"""Fault injection on the fork: crash once at every position before and after every port call
of `SwarmServices.fork`, then let maintenance finish or purge what the crash left, fork again,
and require the crash-free outcome: the source unchanged, no half fork left anywhere, and the
fork equal to a crash-free one."""

from __future__ import annotations

import contextlib
import itertools
import json
from datetime import timedelta
from typing import Any

import pytest

from swarm_core.forks import forked_op_id
from swarm_core.ports import STREAM_START, chat_stream, history_stream, log_stream
from tests.harness import (
    USER,
    InjectedCrash,
    ScenarioRun,
    assert_completed,
    commits_from,
    final_state,
    run_scenario,
)


@pytest.fixture(scope="module")
def source() -> ScenarioRun:
    run = run_scenario()
    assert_completed(run)
    return run


def fork_view(run: ScenarioRun, fork_id: str) -> dict[str, Any]:
    """What a user sees of a fork, with its id made neutral (two forks compare equal)."""
    rig = run.rig
    swarm = rig.store.get_swarm(fork_id).value
    nodes = rig.store.list_nodes(fork_id)
    view = {
        "swarm": swarm.model_dump(
            mode="json", exclude={"swarm_id", "pending", "created_at", "updated_at"}
        ),
        "nodes": sorted((n.model_dump(mode="json") for n in nodes), key=lambda n: n["node_id"]),
        "states": [rig.services.state(USER, fork_id, seq)["nodes"] for seq in range(swarm.seq)],
        "history": rig.content.read(history_stream(fork_id)),
        "commits": commits_from(rig.content, history_stream(fork_id), STREAM_START, 0, 10**9),
        "chats": {n.node_id: rig.content.read(chat_stream(fork_id, n.node_id)) for n in nodes},
        "logs": {n.node_id: rig.content.read(log_stream(fork_id, n.node_id)) for n in nodes},
        "listed": rig.store.get_summary(USER, fork_id).model_dump(
            mode="json", exclude={"swarm_id", "created_at", "updated_at"}
        ),
    }
    text = json.dumps(view, sort_keys=True, default=str).replace(fork_id, "<fork>")
    text = text.replace(forked_op_id(fork_id), "<forked>")
    return dict(json.loads(text))


def leftovers(run: ScenarioRun, fork_id: str) -> list[str]:
    """What is stored of a fork that must not exist."""
    rig, found = run.rig, []
    if rig.store.get_swarm(fork_id) is not None:
        found.append("swarm document")
    if rig.store.get_summary(USER, fork_id) is not None:
        found.append("listing entry")
    if rig.store.list_nodes(fork_id):
        found.append("nodes")
    if commits_from(rig.content, history_stream(fork_id), STREAM_START, 0, 10**9):
        found.append("streams")
    if rig.content.latest_snapshot(fork_id, 10**9) is not None:
        found.append("snapshots")
    return found


def discard(run: ScenarioRun, fork_id: str) -> None:
    """Delete and purge a fork (so a run of many forks stays small)."""
    if run.rig.store.get_swarm(fork_id) is not None:
        run.rig.services.delete_swarm(USER, fork_id)
    run.rig.services.maintain(stuck_after=timedelta(0))


def crash_fork_everywhere(run: ScenarioRun, at: int, stride: int = 1) -> list[Any]:
    """Fork at `at` through the crashing adapters with a crash at every position (every
    `stride`-th); returns the failures."""
    rig, swarm_id = run.rig, run.swarm_id
    services = rig.user_app.services
    numbers = itertools.count(1)
    made: list[str] = []

    def new_id() -> str:
        made.append(f"fork{next(numbers):0{len(swarm_id) - 4}d}")
        return made[-1]

    services.new_id = new_id
    rig.services.fork_abandoned_after = timedelta(0)  # maintenance purges half forks at once
    before = final_state(run)
    rig.plan.position = None
    discard(run, services.fork(USER, swarm_id, at).swarm_id)  # warm: as every later fork
    rig.plan.calls = 0
    reference = services.fork(USER, swarm_id, at).swarm_id
    expected, total = fork_view(run, reference), rig.plan.calls
    discard(run, reference)
    failures = []
    for position in range(0, 2 * total, stride):
        rig.plan.position, rig.plan.calls, rig.plan.fired = position, 0, None
        made.clear()
        with contextlib.suppress(InjectedCrash):
            services.fork(USER, swarm_id, at)
        fired = rig.plan.fired
        rig.plan.position = None
        problems = []
        if fired is None:
            problems.append("the crash never fired")
        fork_id = made[0] if made else "none"
        # Maintenance, once a worker is presumed dead: finishes a fork whose first commit
        # landed, purges one that stopped before.
        rig.services.maintain(stuck_after=timedelta(0))
        got = rig.store.get_swarm(fork_id)
        if got is None:
            if stuck := leftovers(run, fork_id):
                problems.append(f"a half fork is left: {stuck}")
        elif fork_view(run, fork_id) != expected:
            problems.append("a fork whose commit landed differs from the crash-free one")
        again = services.fork(USER, swarm_id, at)
        if fork_view(run, again.swarm_id) != expected:
            problems.append("the fork made after the crash differs from the crash-free one")
        if final_state(run) != before:
            problems.append("the source changed")
        if problems:
            failures.append((position, fired, problems))
        discard(run, fork_id)
        discard(run, again.swarm_id)
    print(f"\nfork crash positions covered: {len(range(0, 2 * total, stride))} of {2 * total}")
    return failures


def test_a_crash_anywhere_in_a_fork_leaves_no_half_fork(source):
    latest = source.rig.store.get_swarm(source.swarm_id).value.seq
    failures = crash_fork_everywhere(source, latest)
    assert not failures, "\n".join(map(str, failures))


def test_a_crash_anywhere_in_a_fork_mid_conversation(source):
    # After the step that asked the scenario's last question: conversations are open.
    opened = [
        e["seq"]
        for e in source.rig.content.read(history_stream(source.swarm_id))
        if e["type"] == "interrupt.opened"
    ]
    failures = crash_fork_everywhere(source, opened[-1])
    assert not failures, "\n".join(map(str, failures))
