"""The committer's knowledge of applied commits, and of the documents its last commits left.

A commit is one seq of one swarm, not an op id. An op id can name more than one commit: a fork's
outstanding operations keep their ids (the source committed them too), and an operation parked
by its own commit commits again when it runs. A commit cut short must still be rolled forward
when its op id was applied before.

A process decides on the documents as its last commit of a swarm left them, without a read; a
commit on them proves them current (or loses the ETag race and decides again, fresh)."""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta
from typing import Any

import pytest

from swarm_core.bootstrap import InMemorySwarmApp, SwarmApp, build_app, build_in_memory
from swarm_core.commits import CallFirst, ControlCommit, Decision, Outcome
from swarm_core.in_process import drain
from swarm_core.models import SwarmConfig, utcnow
from swarm_core.ports import Versioned, history_stream
from swarm_core.swarm import Swarm
from tests.harness import remembering_process

USER = "alice"


class HistoryDown(Exception):
    pass


def touch(got: Versioned[Swarm]) -> Any:
    """A control commit that changes nothing but the seq and says so with one event."""
    return ControlCommit(got.value, utcnow(), note="touch").decision()


@pytest.fixture
def app() -> InMemorySwarmApp:
    return build_in_memory()


def history_seqs(app: InMemorySwarmApp, swarm_id: str) -> list[int]:
    return sorted({e["seq"] for e in app.adapters.content.read(history_stream(swarm_id))})


def commit_cut_short(app: SwarmApp, swarm_id: str, op_id: str, decide: Any = touch) -> int:
    """Commit `op_id` on the swarm, its apply dying at the history batch (the last write)."""
    content = app.committer.content
    append = content.append

    def failing_append(stream: str, *args: Any, **kwargs: Any) -> bool:
        if stream == history_stream(swarm_id):
            raise HistoryDown(stream)
        return bool(append(stream, *args, **kwargs))

    content.append = failing_append  # type: ignore[method-assign]
    try:
        with pytest.raises(HistoryDown):
            app.committer.run(swarm_id, op_id, decide)
    finally:
        del content.append  # the instance attribute: the class's method again
    got = app.adapters.store.get_swarm(swarm_id)
    assert got is not None and got.value.pending is not None
    assert got.value.pending.op_id == op_id
    return got.value.pending.seq


def test_a_commit_of_an_op_id_applied_on_another_swarm_is_rolled_forward(app):
    first = app.services.create_swarm(USER, "Plan a trip")
    second = app.services.create_swarm(USER, "Plan a trip")  # as a fork: the same op ids
    app.committer.run(first.swarm_id, "op-shared", touch)
    seq = commit_cut_short(app, second.swarm_id, "op-shared")

    app.committer.run(second.swarm_id, "op-next", touch)

    assert history_seqs(app, second.swarm_id) == list(range(1, seq + 2))


def test_a_redelivered_op_id_whose_earlier_commit_was_applied_redrives_its_new_one(app):
    swarm = app.services.create_swarm(USER, "Plan a trip")
    app.committer.run(swarm.swarm_id, "op-again", touch)  # as a parked operation's first commit
    app.committer.run(swarm.swarm_id, "op-between", touch)
    seq = commit_cut_short(app, swarm.swarm_id, "op-again")

    run = app.committer.run(swarm.swarm_id, "op-again", touch)

    assert run.outcome == Outcome.REDRIVEN and run.seq == seq
    assert history_seqs(app, swarm.swarm_id) == list(range(1, seq + 1))


# ------------------------------------------------- a commit another process may still be applying


def other_process(app: InMemorySwarmApp, seconds: float, ahead: float = 0) -> SwarmApp:
    """Another process on the same storage, presuming a commit's applier dead `seconds` after
    the commit; its clock `ahead` seconds later than the committer's. Records which commits
    it applies (`applied_seqs`)."""
    settings = app.settings.model_copy(update={"roll_forward_after_seconds": seconds})
    other = build_app(settings, app.adapters, clock=lambda: utcnow() + timedelta(seconds=ahead))
    apply = other.committer.apply
    other.applied_seqs = []  # type: ignore[attr-defined]

    def recording_apply(swarm: Swarm, pending: Any, *args: Any, **kwargs: Any) -> None:
        other.applied_seqs.append(pending.seq)  # type: ignore[attr-defined]
        apply(swarm, pending, *args, **kwargs)

    other.committer.apply = recording_apply  # type: ignore[method-assign]
    return other


def test_a_commit_whose_applier_is_alive_is_waited_for_not_applied_again(app):
    """Applied twice, a commit's operations would be enqueued twice (and run twice)."""
    swarm = app.services.create_swarm(USER, "Plan a trip")
    seq = commit_cut_short(app, swarm.swarm_id, "op-1")  # its applier, still at it
    other = other_process(app, seconds=30)
    thread = threading.Thread(target=other.committer.run, args=(swarm.swarm_id, "op-2", touch))
    thread.start()
    thread.join(timeout=0.3)
    assert thread.is_alive(), "it waits for the history batch"
    assert history_seqs(app, swarm.swarm_id) == list(range(1, seq))

    pending = app.adapters.store.get_swarm(swarm.swarm_id).value.pending
    app.committer.roll_forward(app.adapters.store.get_swarm(swarm.swarm_id).value, pending)
    thread.join(timeout=30)

    assert not thread.is_alive()
    assert other.applied_seqs == [seq + 1], "only its own commit"
    assert history_seqs(app, swarm.swarm_id) == list(range(1, seq + 2))


def test_a_commit_older_than_the_presumed_death_of_its_applier_is_applied_at_once(app):
    swarm = app.services.create_swarm(USER, "Plan a trip")
    seq = commit_cut_short(app, swarm.swarm_id, "op-1")
    other = other_process(app, seconds=10, ahead=11)  # the commit is 11 s old by its clock

    other.committer.run(swarm.swarm_id, "op-2", touch)

    assert other.applied_seqs == [seq, seq + 1]
    assert history_seqs(app, swarm.swarm_id) == list(range(1, seq + 2))


def test_a_commit_whose_applier_never_finishes_is_applied_after_the_wait(app):
    import time

    swarm = app.services.create_swarm(USER, "Plan a trip")
    before_commit = time.monotonic()
    seq = commit_cut_short(app, swarm.swarm_id, "op-1")
    other = other_process(app, seconds=0.3)

    other.committer.run(swarm.swarm_id, "op-2", touch)

    # 0.3 s from the commit (less the clocks' rounding), as its age is counted from then.
    assert time.monotonic() - before_commit >= 0.29, "it waited for the applier first"
    assert other.applied_seqs == [seq, seq + 1]
    assert history_seqs(app, swarm.swarm_id) == list(range(1, seq + 2))


def test_a_commit_whose_applying_failed_in_this_process_is_applied_again_at_once(app):
    """The process knows no one is applying it: no wait (the history is looked for once)."""
    swarm = app.services.create_swarm(USER, "Plan a trip")
    seq = commit_cut_short(app, swarm.swarm_id, "op-1")
    assert app.committer.presumed_dead_after == timedelta(seconds=10)
    looked: list[int] = []
    has_seq = app.adapters.content.has_seq

    def counting_has_seq(stream: str, at: int) -> bool:
        looked.append(at)
        return bool(has_seq(stream, at))

    app.adapters.content.has_seq = counting_has_seq  # type: ignore[method-assign]
    app.committer.run(swarm.swarm_id, "op-2", touch)

    assert looked == [seq]
    assert history_seqs(app, swarm.swarm_id) == list(range(1, seq + 2))


# --------------------------------------------- the documents as this process last committed them


class CountingStore:
    """The in-memory store, counting its reads, and able to fail a commit after it landed (as a
    lost response does)."""

    READS = ("get_swarm", "get_swarm_and_node", "get_node")

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.reads: list[str] = []
        self.fail_after_write = False

    def replace_swarm(self, *args: Any, **kwargs: Any) -> str:
        etag = str(self.inner.replace_swarm(*args, **kwargs))
        if self.fail_after_write:
            self.fail_after_write = False
            raise HistoryDown("the commit landed, its response was lost")
        return etag

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name in self.READS:
            self.reads.append(name)
        return attr


def process_on(app: InMemorySwarmApp) -> tuple[SwarmApp, CountingStore]:
    """Another process on the same storage: an app of its own (its own committer, remembering
    what its last commits left, as on Azure), counting its store reads."""
    store = CountingStore(app.adapters.store)
    adapters = dataclasses.replace(app.adapters, store=store)
    return remembering_process(app.settings, adapters), store


def test_in_memory_nothing_is_remembered(app):
    """A read in memory costs what copying remembered documents costs: not worth it there."""
    swarm = app.services.create_swarm(USER, "Plan a trip")
    store = CountingStore(app.adapters.store)
    plain = build_app(app.settings, dataclasses.replace(app.adapters, store=store))
    plain.committer.run(swarm.swarm_id, "op-1", touch, latest=True)
    plain.committer.run(swarm.swarm_id, "op-2", touch, latest=True)
    assert store.reads == ["get_swarm", "get_swarm"]


def test_after_its_own_commit_a_process_decides_without_reading(app):
    swarm = app.services.create_swarm(USER, "Plan a trip")
    worker, store = process_on(app)
    worker.committer.run(swarm.swarm_id, "op-1", touch, latest=True)
    assert store.reads == ["get_swarm"], "nothing remembered yet: one read"
    store.reads.clear()

    run = worker.committer.run(swarm.swarm_id, "op-2", touch, latest=True)

    assert run.outcome == Outcome.COMMITTED and run.seq == swarm.seq + 2
    assert store.reads == []
    assert history_seqs(app, swarm.swarm_id) == list(range(1, run.seq + 1))


def test_a_swarm_another_process_committed_since_is_read_again(app):
    swarm = app.services.create_swarm(USER, "Plan a trip")
    worker, store = process_on(app)
    worker.committer.run(swarm.swarm_id, "op-1", touch, latest=True)
    app.committer.run(swarm.swarm_id, "op-elsewhere", touch)  # the other process
    store.reads.clear()

    run = worker.committer.run(swarm.swarm_id, "op-2", touch, latest=True)

    assert run.outcome == Outcome.COMMITTED
    assert store.reads == ["get_swarm"], "the commit on what it remembered lost: read, again"
    assert history_seqs(app, swarm.swarm_id) == list(range(1, run.seq + 1))


def test_a_decision_to_write_nothing_is_made_again_on_a_fresh_read(app):
    """Remembered documents may be stale: only a commit proves them current (its ETag), so a
    decision to do nothing (drop, park, a duplicate) is believed only on a fresh read."""
    swarm = app.services.create_swarm(USER, "Plan a trip")
    worker, _ = process_on(app)
    worker.committer.run(swarm.swarm_id, "op-1", touch, latest=True)
    app.committer.run(swarm.swarm_id, "op-ready", touch)  # what the decision waits for
    seen: list[int] = []

    def when_ready(got: Versioned[Swarm]) -> Any:
        seen.append(got.value.seq)
        if got.value.pending is None or got.value.pending.op_id != "op-ready":
            return Decision(Outcome.DROPPED)
        return touch(got)

    run = worker.committer.run(swarm.swarm_id, "op-2", when_ready, latest=True)

    assert seen == [swarm.seq + 1, swarm.seq + 2], "stale, then fresh"
    assert run.outcome == Outcome.COMMITTED


def test_a_slow_call_is_made_outside_the_lock_and_only_for_a_fresh_decision(app):
    swarm = app.services.create_swarm(USER, "Plan a trip")
    worker, store = process_on(app)
    worker.committer.run(swarm.swarm_id, "op-1", touch, latest=True)
    answers: list[str] = []
    decided_on: list[int] = []
    locked_during_call: list[bool] = []

    def call() -> None:
        other = threading.Thread(
            target=lambda: worker.committer.run(swarm.swarm_id, "op-meanwhile", touch, latest=True)
        )
        other.start()
        other.join(timeout=5)
        locked_during_call.append(other.is_alive())
        answers.append("the model's answer")

    def with_answer(got: Versioned[Swarm]) -> Any:
        decided_on.append(got.value.seq)
        if not answers:
            raise CallFirst(call)
        return touch(got)

    store.reads.clear()
    run = worker.committer.run(swarm.swarm_id, "op-2", with_answer, latest=True)

    assert answers == ["the model's answer"], "called once"
    assert locked_during_call == [False], "another step of the swarm committed meanwhile"
    # Remembered (the call is not made on it), fresh (called), then what the step that ran
    # meanwhile committed, without a read: the answer is used on the latest documents.
    assert decided_on == [swarm.seq + 1, swarm.seq + 1, swarm.seq + 2]
    assert store.reads == ["get_swarm"]
    assert run.outcome == Outcome.COMMITTED and run.seq == swarm.seq + 3


def test_a_commit_whose_response_was_lost_is_found_by_its_redelivery(app):
    """A commit whose response was lost may have landed: the redelivered operation reads the
    swarm (what the process remembered is older than that commit) and finds its own commit,
    which it re-drives."""
    swarm = app.services.create_swarm(USER, "Plan a trip")
    worker, store = process_on(app)
    worker.committer.run(swarm.swarm_id, "op-1", touch, latest=True)
    store.fail_after_write = True
    with pytest.raises(HistoryDown):
        worker.committer.run(swarm.swarm_id, "op-2", touch, latest=True)
    store.reads.clear()

    run = worker.committer.run(swarm.swarm_id, "op-2", touch, latest=True)

    assert store.reads == ["get_swarm"]
    assert run.outcome == Outcome.REDRIVEN and run.seq == swarm.seq + 2
    assert history_seqs(app, swarm.swarm_id) == list(range(1, run.seq + 1))


def test_an_operation_parked_by_its_own_commit_runs_when_resumed_elsewhere(app):
    """The budget runs out at an LLM step: its commit parks the operation (the swarm's pending
    commit is that operation's). Resumed by another process, the operation comes again with the
    same id: the worker that remembers the parking commit must not take it for done."""
    worker = remembering_process(app.settings, app.adapters)
    config = SwarmConfig(limits={"max_tokens_total": 1})
    swarm = app.services.create_swarm(USER, "Plan a 3-day trip to Lisbon", config)
    app.services.spawn(USER, swarm.swarm_id)
    outcomes: list[Outcome] = []

    def deliver(message: Any) -> None:
        outcomes.append(worker.worker.process(message.body, dequeue_count=message.dequeue_count))
        app.adapters.queue.ack(message)

    drain(app, deliver)
    paused = app.services.get_swarm(USER, swarm.swarm_id)
    assert paused.status == "paused" and paused.pending is not None
    assert [op.op_id for op in paused.parked] == [paused.pending.op_id], "parked by its commit"
    outcomes.clear()

    app.services.resume(USER, swarm.swarm_id, max_tokens_total=10_000_000)  # the API process
    drain(app, deliver)

    assert outcomes[0] == Outcome.COMMITTED, outcomes
    assert app.services.get_swarm(USER, swarm.swarm_id).seq >= paused.seq + 2, "resumed, stepped"


def test_after_a_commit_whose_effects_failed_the_next_step_finishes_them_first(app):
    """Remembered documents of a commit whose effects did not all land (the history is down):
    the next step rolls that commit forward before its own, and no seq is missing."""
    swarm = app.services.create_swarm(USER, "Plan a trip")
    worker, _ = process_on(app)
    worker.committer.run(swarm.swarm_id, "op-1", touch, latest=True)
    seq = commit_cut_short(worker, swarm.swarm_id, "op-2")

    run = worker.committer.run(swarm.swarm_id, "op-3", touch, latest=True)

    assert run.outcome == Outcome.COMMITTED and run.seq == seq + 1
    assert history_seqs(app, swarm.swarm_id) == list(range(1, run.seq + 1))


def test_a_remembered_document_changed_in_place_is_caught_in_the_tests(app):
    """Remembered documents are handed out as shallow copies: what they hold is shared, so
    nothing may change it in place. The tests' check says so when something does."""
    swarm = app.services.create_swarm(USER, "Plan a trip")
    worker, _ = process_on(app)
    worker.committer.run(swarm.swarm_id, "op-1", touch, latest=True)

    def changing(got: Versioned[Swarm]) -> Any:
        got.value.node_counts["running"] = 99  # in place: shared with what is remembered
        return Decision(Outcome.DROPPED)

    with pytest.raises(AssertionError, match="changed in place"):
        worker.committer.run(swarm.swarm_id, "op-2", changing, latest=True)
    # The failure forgot what was remembered: the next step reads the swarm and goes on.
    assert worker.committer.run(swarm.swarm_id, "op-3", touch, latest=True).seq == swarm.seq + 2


def test_a_decision_that_fails_on_remembered_documents_is_made_again_fresh(app):
    """A failure on what the process remembered may come from their being stale: the decision
    is made again on a fresh read before it costs a delivery. An assertion (a bug, or the tests'
    check of remembered documents) is not retried away."""
    swarm = app.services.create_swarm(USER, "Plan a trip")
    worker, store = process_on(app)
    worker.committer.run(swarm.swarm_id, "op-1", touch, latest=True)
    store.reads.clear()
    attempts: list[int] = []

    def fails_once(got: Versioned[Swarm]) -> Any:
        attempts.append(got.value.seq)
        if len(attempts) == 1:
            raise ValueError("not what it expected")
        return touch(got)

    run = worker.committer.run(swarm.swarm_id, "op-2", fails_once, latest=True)
    assert run.outcome == Outcome.COMMITTED and store.reads == ["get_swarm"]
    assert len(attempts) == 2

    def asserts(got: Versioned[Swarm]) -> Any:
        attempts.append(got.value.seq)
        raise AssertionError("a bug")

    attempts.clear()
    with pytest.raises(AssertionError, match="a bug"):
        worker.committer.run(swarm.swarm_id, "op-3", asserts, latest=True)
    assert len(attempts) == 1


def swarm_with_a_pending_commit(app: Any) -> tuple[Any, Versioned[Swarm]]:
    """A swarm three steps in, its last commit left `pending` (as every commit does)."""
    swarm = app.services.create_swarm(USER, "Plan a trip")
    app.services.spawn(USER, swarm.swarm_id)
    drain(app, limit=3)
    got = app.adapters.store.get_swarm(swarm.swarm_id)
    assert got is not None
    return swarm, got


def test_a_pending_commit_is_stored_packed_and_read_packed_or_not(app):
    """A pending commit's effects are stored compressed (nothing queries them), and a swarm
    document stored before that, its effects as they are, still reads."""
    from swarm_core.swarm import PendingCommit

    _, got = swarm_with_a_pending_commit(app)
    pending = got.value.pending
    assert pending is not None
    stored = got.value.model_dump(mode="json")["pending"]
    assert isinstance(stored["effects"], str)
    assert len(stored["effects"]) < len(pending.effects.model_dump_json()) * 0.7
    assert PendingCommit.model_validate(stored) == pending
    as_before = {**stored, "effects": pending.effects.model_dump(mode="json")}
    assert PendingCommit.model_validate(as_before) == pending


def test_a_commit_keeps_a_node_update_as_the_node_id_and_publishes_and_shows_the_node(app):
    """Neither the swarm document's pending commit nor the stored history holds a second copy
    of each node a commit writes: their `node.updated` events keep the node's id. Whoever
    applies the commit (its worker, or another process rolling it forward, which reads the
    nodes back) publishes the node as the commit wrote it, and the history API shows it so
    (replayed from the commit's record)."""
    swarm, got = swarm_with_a_pending_commit(app)
    pending = got.value.pending
    assert pending is not None
    kept = [e for e in pending.effects.events if e.type == "node.updated"]
    assert kept and all(set(e.data) == {"node_id"} for e in kept)

    def node_updates(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [e for e in events if e["type"] == "node.updated" and e["seq"] == pending.seq]

    stored = node_updates(app.adapters.content.read(history_stream(swarm.swarm_id)))
    assert [e["data"] for e in stored] == [e.data for e in kept]
    shown = node_updates(app.services.history(USER, swarm.swarm_id)["events"])
    published = node_updates(app.adapters.publisher.published[swarm.swarm_id])
    nodes = {
        e.data["node_id"]: app.adapters.store.get_node(swarm.swarm_id, e.data["node_id"])
        for e in kept
    }
    assert [e["data"]["node"] for e in shown] == [
        nodes[e.data["node_id"]].value.public_view()
        for e in kept  # type: ignore[union-attr]
    ]
    assert published == shown

    other, _ = process_on(app)
    other.committer.apply(got.value, pending)  # rolled forward elsewhere: nodes read back
    assert node_updates(app.adapters.publisher.published[swarm.swarm_id])[len(shown) :] == shown


def test_maintenance_goes_on_past_a_swarm_deleted_under_it(app):
    """Maintenance rolls forward the unfinished commits of several swarms. One of them is being
    deleted: its nodes are gone, so its commit cannot be applied (nothing of it is written),
    and the others' commits still are."""
    swarms = [app.services.create_swarm(USER, "Plan a trip") for _ in range(2)]
    for swarm in swarms:
        app.services.spawn(USER, swarm.swarm_id)
    drain(app)

    def rewrite_root(got: Versioned[Swarm]) -> Decision:
        change = ControlCommit(got.value, utcnow())
        root = app.adapters.store.get_node(got.value.swarm_id, got.value.root_node_id or "")
        assert root is not None
        change.write_node(root.value.model_copy(update={"updated_at": utcnow()}), root.value)
        return change.decision()

    seqs = [commit_cut_short(app, s.swarm_id, "op-cut", rewrite_root) for s in swarms]
    gone, other = swarms
    app.adapters.store.delete_nodes(gone.swarm_id)  # the delete's purge, half way

    counts = app.services.maintain(stuck_after=timedelta(0))

    assert counts["redriven"] == 1
    assert history_seqs(app, other.swarm_id)[-1] == seqs[1]
    assert history_seqs(app, gone.swarm_id)[-1] == seqs[0] - 1
