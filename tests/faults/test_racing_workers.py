"""Two workers racing on one swarm with parallel branches: no lost update, same outcome."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from typing import Any

from swarm_core.bootstrap import SwarmApp
from swarm_core.in_process import run_until_settled
from swarm_core.ports import ConflictError
from swarm_core.worker import SwarmWorker
from tests.harness import (
    FIXED_NOW,
    GOAL,
    USER,
    CrashingDelivery,
    CrashPlan,
    Rig,
    ScenarioRun,
    answer_waiting,
    assert_completed,
    final_state,
    remembering_process,
    run_scenario,
    scenario_config,
    scenario_user,
)


class RacingStore:
    """For the first races, holds each worker after it read the swarm until the other has read
    it too, so both commit against the same ETag and one must lose; counts the lost commits."""

    def __init__(self, inner: Any, races: int) -> None:
        self.inner = inner
        self.barrier = threading.Barrier(2, timeout=0.5)
        self.races = races
        self.conflicts = 0
        self.lock = threading.Lock()

    def get_swarm(self, swarm_id: str) -> Any:
        got = self.inner.get_swarm(swarm_id)
        if self.races > 0:
            try:
                self.barrier.wait()  # both have read the same version before either commits
                with self.lock:
                    self.races -= 1
            except threading.BrokenBarrierError:
                self.barrier.reset()
        return got

    def replace_swarm(self, swarm: Any, etag: str, nodes: Any = (), **deletes: Any) -> str:
        try:
            return self.inner.replace_swarm(swarm, etag, nodes, **deletes)
        except ConflictError:
            with self.lock:
                self.conflicts += 1
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def process(rig: Rig, adapters: Any) -> SwarmApp:
    """An app of its own on `adapters`: a process, remembering what its last commits left as
    it does on Azure's storage. Nobody dies here: a commit's applier is presumed dead only
    after a long time (as in production, where its default is 10 s), so a commit found
    unfinished is waited for, not applied again."""
    settings = rig.http_app.settings.model_copy(update={"roll_forward_after_seconds": 60})
    return remembering_process(settings, adapters, clock=lambda: FIXED_NOW)


def counting_enqueues(rig: Rig) -> Counter[str]:
    """How many times each operation is enqueued (held or not), from now on."""
    enqueued: Counter[str] = Counter()
    enqueue, enqueue_held = rig.queue.enqueue, rig.queue.enqueue_held

    def counting_enqueue(operation: Any, delay_seconds: int = 0) -> None:
        enqueued[operation.op_id] += 1
        enqueue(operation, delay_seconds)

    def counting_enqueue_held(operation: Any, hold_seconds: int) -> Any:
        enqueued[operation.op_id] += 1
        return enqueue_held(operation, hold_seconds)

    rig.queue.enqueue = counting_enqueue  # type: ignore[method-assign]
    rig.queue.enqueue_held = counting_enqueue_held  # type: ignore[method-assign]
    return enqueued


def test_two_workers_racing_lose_no_update_and_enqueue_each_operation_once():
    """Two processes at once (two apps, two committers) on one swarm: one process never races
    itself (the next test), two do, and the ETag decides. Each finds commits of the other not
    yet finished (its history batch not yet stored): it waits for them rather than apply them
    a second time, so every committed operation is enqueued once — and so runs once, and no
    LLM call races a copy of itself."""
    clean = run_scenario()
    rig = Rig(CrashPlan())
    enqueued = counting_enqueues(rig)
    racing = RacingStore(rig.store, races=40)
    adapters = dataclasses.replace(rig.http_app.adapters, store=racing)
    workers = [process(rig, adapters).worker for _ in range(2)]
    swarm = rig.services.create_swarm(USER, GOAL, scenario_config())
    rig.services.spawn(USER, swarm.swarm_id)
    work_in_threads(rig, workers, swarm.swarm_id)
    run = ScenarioRun(rig, swarm.swarm_id, 0, 0)
    assert_completed(run)
    assert racing.conflicts > 0, "the workers really raced"
    assert final_state(run) == final_state(clean)
    assert len(enqueued) > 20
    assert [op for op, n in enqueued.items() if n > 1] == []
    assert not rig.llm.calls_after_commit


def test_steps_of_one_swarm_in_one_process_take_turns_and_never_conflict():
    """Two invocations at once in one process (two threads, one committer), the user's
    messages committed by the same process, as on one Functions host: the swarm's decisions
    and commits take turns, so no commit loses the ETag race."""
    clean = run_scenario()
    rig = Rig(CrashPlan())
    counting = RacingStore(rig.store, races=0)
    adapters = dataclasses.replace(rig.http_app.adapters, store=counting)
    rig.user_app = process(rig, adapters)
    worker = rig.user_app.worker
    swarm = rig.services.create_swarm(USER, GOAL, scenario_config())  # the scenario's ids
    rig.services.spawn(USER, swarm.swarm_id)
    overlapping = work_in_threads(rig, [worker, worker], swarm.swarm_id)
    run = ScenarioRun(rig, swarm.swarm_id, 0, 0)
    assert_completed(run)
    assert final_state(run) == final_state(clean)
    assert overlapping > 0, "the threads really ran steps at once"
    assert counting.conflicts == 0
    assert not rig.llm.calls_after_commit


def work_in_threads(rig: Rig, workers: list[SwarmWorker], swarm_id: str) -> int:
    """Run the queue on one thread per worker, answering between rounds, until the swarm needs
    no answer (an error fails the test); how many messages began while another was running."""
    errors: list[BaseException] = []
    running = [0]
    overlapping = [0]
    count = threading.Lock()

    def work(index: int) -> None:
        try:
            # Until no message is queued or in flight (the other worker may still enqueue).
            while len(rig.queue):
                message = rig.queue.receive()
                if message is None:
                    time.sleep(0.001)
                    continue
                with count:
                    overlapping[0] += running[0] > 0
                    running[0] += 1
                try:
                    workers[index].process(message.body)
                finally:
                    with count:
                        running[0] -= 1
                rig.queue.ack(message)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    for _round in range(50):
        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(workers))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        if not answer_waiting(rig, swarm_id):
            break
    return overlapping[0]


def test_workers_of_different_processes_enqueue_and_publish_each_thing_once():
    """Steps of one swarm alternate between two processes (two apps, two committers), and the
    user's messages come from a third: each process finds the commit before its own made by
    another. It must not apply that commit again (it did: every operation was enqueued twice
    and every event published twice) — its history batch shows it landed."""
    clean = run_scenario()
    rig = Rig(CrashPlan())
    enqueued = counting_enqueues(rig)
    adapters = rig.http_app.adapters
    workers = [process(rig, adapters).worker for _ in range(2)]
    for worker in workers:
        worker.run_next_steps = 0  # each step in turn, alternating
    swarm = rig.services.create_swarm(USER, GOAL, scenario_config())
    rig.services.spawn(USER, swarm.swarm_id)
    turn = 0
    for _round in range(50):
        while (message := rig.queue.receive()) is not None:
            workers[turn % 2].process(message.body)
            rig.queue.ack(message)
            turn += 1
        if not answer_waiting(rig, swarm.swarm_id):
            break
    run = ScenarioRun(rig, swarm.swarm_id, 0, 0)
    assert_completed(run)
    assert final_state(run) == final_state(clean)
    assert turn > 20 and enqueued, "the processes really took turns"
    assert [op for op, n in enqueued.items() if n > 1] == []
    published = [(e["seq"], e["index"]) for e in rig.publisher.published[swarm.swarm_id]]
    assert len(published) == len(set(published)), "an event published twice"


class LosingTheHold:
    """The worker's model, through which its hold on the step it runs next runs out at the
    first such step's call (a renewal failed): another process is delivered the message and
    runs everything queued, that step too, before the call returns."""

    def __init__(self, rig: Rig, other: SwarmApp) -> None:
        self.rig, self.other = rig, other
        self.lost: list[str] = []

    def complete(self, request: Any, response_model: Any) -> Any:
        if not self.lost and self.rig.queue.release_held():
            self.lost.append(request.op_id)
            while (message := self.rig.queue.receive()) is not None:
                self.other.worker.process(message.body)
                self.rig.queue.ack(message)
        return self.rig.llm.complete(request, response_model)


def test_a_step_whose_hold_runs_out_while_it_runs_commits_once():
    """A worker runs a step next; its hold runs out during the step's LLM call, and another
    process runs the step meanwhile. The first then loses the commit, finds the step a
    duplicate and writes nothing: the same outcome, each operation enqueued once."""
    clean = run_scenario()
    rig = Rig(CrashPlan())
    enqueued = counting_enqueues(rig)
    model = LosingTheHold(rig, process(rig, rig.http_app.adapters))
    rig.worker.llm = model
    swarm = rig.services.create_swarm(USER, GOAL, scenario_config())
    rig.services.spawn(USER, swarm.swarm_id)
    run_until_settled(
        rig.http_app,
        swarm.swarm_id,
        scenario_user(rig, swarm.swarm_id),
        deliver=CrashingDelivery(rig),
    )
    assert model.lost, "a hold ran out during a step run next"
    run = ScenarioRun(rig, swarm.swarm_id, 0, 0)
    assert_completed(run)
    assert final_state(run) == final_state(clean)
    assert [op for op, n in enqueued.items() if n > 1] == []
    assert rig.llm.calls[model.lost[0]] == 2  # each process asked once: one answer is used
