"""The commit protocol (docs/architecture.md), shared by the worker (node steps) and the services
(control changes: spawn, pause, resume, retry, idle, a user's message).

Per swarm, one commit at a time, all through `SwarmCommitter.run(swarm_id, op_id, decide)`; in
one process, one swarm's decisions and commits take turns (a lock per swarm), so its steps on
different threads do not race each other for the ETag:

1. Read the swarm document (with its ETag; `run_on_node`: with the node the operation is about,
   in one round trip). A step (`latest`) decides instead on the documents as this process's
   last commit of the swarm left them, when it has them (kept where storage is remote,
   `remember_latest`): no read on the common path. A commit
   on them proves them current; if another process committed since, the commit loses the ETag
   race and the step decides again on a fresh read. A decision to write nothing, or one that
   needs a slow call first (`CallFirst`: the step's LLM call, made outside the lock), is only
   believed on a fresh read. If the operation is the swarm's `pending` commit, it
   committed already and its effects may be half applied: re-drive them (unless they are known
   to have landed, as in 2), idempotently, and stop.
2. If the swarm's `pending` commit (another operation's) may be unfinished — its worker may have
   crashed mid-way — apply its effects first (roll forward). So at most the latest commit is
   ever unfinished, and each commit's effects land before the next commit. A commit is known
   finished when this process finished it (no request: the common path on one host) or when
   its history batch is stored (one read: its worker, on another host, finished it, since the
   history batch is its last write); only then is nothing applied twice. A commit of another
   process not finished yet is waited for until its applier is presumed dead
   (`presumed_dead_after`): applied twice, its operations would be enqueued twice.
3. `decide` looks at the fresh swarm and returns a `Decision`: a new swarm document and the
   effects, or nothing to write (dropped, parked already, or a duplicate: a node step finds its
   own op id among the node's recent ones, which its commit wrote).
4. **Commit**: replace the swarm document iff its ETag is unchanged, with `seq + 1` and the
   effects as the new `pending`, and write the nodes the step changed (and delete those a
   rerun discards), all or nothing (one
   transactional batch: a swarm's documents share a partition). Losing that race means another
   commit came first: nothing was written; decide again on a fresh read.
5. Apply the effects: appends to chats and logs keyed by seq (appended at most once), the
   listing entry, enqueues (consumers dedupe by op_id) and publishes, at once on a few threads
   where storage is remote; then, last, the history batch (its presence marks the commit
   applied).

Every effect is idempotent, so re-driving after a crash at any point gives the crash-free result.
`apply_step_result` turns what a node step decided into the new swarm document and its effects;
`ControlCommit` builds the same for a control change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import Any, TypeVar

from pydantic import BaseModel

from swarm_core import telemetry
from swarm_core.forks import IncompleteRecords, commit_record, fold_from
from swarm_core.models import (
    MAINTAINED_STATUSES,
    ChatMessage,
    EventType,
    HistoryEvent,
    Lifecycle,
    Node,
    SwarmStatus,
    utcnow,
)
from swarm_core.operations import Operation
from swarm_core.ports import (
    CommitChanges,
    ConflictError,
    ContentStore,
    EventPublisher,
    HeldMessage,
    NodeChanges,
    OperationQueue,
    SwarmStore,
    Versioned,
    chat_stream,
    history_stream,
    log_stream,
)
from swarm_core.step_context import StepResult, StepView
from swarm_core.swarm import Effects, PendingCommit, Swarm

log = logging.getLogger(__name__)

APPLIED_CACHE_SIZE = 4096
# While another process may still be applying a commit, how often to look for its history batch:
# from soon after (an applier usually finishes within tens of ms) to at most this often.
LANDED_POLL_FIRST = 0.01
LANDED_POLL_MAX = 0.25
LATEST_CACHE_SIZE = 256  # swarms whose latest documents a process keeps
LATEST_NODES = 2048  # nodes it keeps with them, at most, across swarms
LATEST_NODES_PER_SWARM = 64  # and per swarm: the ones its latest commits wrote or read

DocumentT = TypeVar("DocumentT", bound=BaseModel)

# A commit, as the committer knows it: its swarm and its seq.
CommitKey = tuple[str, int]


class Outcome(StrEnum):
    COMMITTED = "committed"
    DUPLICATE = "duplicate"  # committed and applied before: nothing to do
    REDRIVEN = "redriven"  # committed before, effects re-applied
    PARKED = "parked"
    DROPPED = "dropped"


class Forwarded(StrEnum):
    """How `roll_forward` found a pending commit."""

    FINISHED = "finished"  # finished already (by this process, or its history batch is stored)
    LANDED = "landed"  # another process finished it while this one waited
    APPLIED = "applied"  # applied here (its applier presumed dead)


class CallFirst(Exception):
    """Raised by a decision that needs a slow call first (a step's LLM call): the commit loop
    makes `call` without holding the swarm's lock, then decides again."""

    def __init__(self, call: Callable[[], object]) -> None:
        super().__init__("the decision needs a call first")
        self.call = call


class TooManyConflicts(Exception):
    """Retried commits kept losing; the message is left for the queue to deliver again."""


class SwarmNotFound(Exception):
    pass


@dataclass
class Decision:
    """What a commit function decided on a fresh read of the swarm.

    `swarm` is the new swarm document to write (None: write nothing), with `nodes`, the nodes
    it changed or created, and `deleted_nodes`, the ids of the nodes it removes from the tree
    (a rerun's discarded branch). A `COMMITTED` decision takes the next seq; `refresh_listing`
    puts the new listing entry among its effects."""

    outcome: Outcome
    swarm: Swarm | None = None
    effects: Effects = field(default_factory=Effects)
    refresh_listing: bool = False
    nodes: list[Node] = field(default_factory=list)
    # The documents of `nodes` as the decision read them (the commit's record keeps changes).
    read_nodes: list[Node] = field(default_factory=list)
    deleted_nodes: list[str] = field(default_factory=list)
    # The operation (of `effects.operations`) its decider runs next itself: it is enqueued held
    # (`OperationQueue.enqueue_held`), and the run answers its handle.
    run_next: str | None = None


Decide = Callable[[Versioned[Swarm]], Decision]
# A decision about one node, given as it was read with the swarm document (None: no such node).
NodeDecide = Callable[[Versioned[Swarm], "Versioned[Node] | None"], Decision]


@dataclass
class _Latest:
    """A swarm's documents as this process's last commit of it (or last read) left them: the
    swarm document with its ETag, and the nodes that commit chain wrote or read."""

    swarm: Swarm
    etag: str
    nodes: dict[str, Node]
    fingerprint: str | None = None  # `verify_remembered`


@dataclass
class _SwarmLock:
    lock: threading.RLock
    users: int = 0


@dataclass(frozen=True)
class CommitRun:
    """How a `run` ended, and the swarm document as it stands after it."""

    outcome: Outcome
    swarm: Swarm
    seq: int
    # The decision's `run_next`, as enqueued held: its decider runs it and settles it.
    held: HeldMessage | None = None


class SwarmCommitter:
    """The commit loop. One per app: the worker and the services share it (and its cache)."""

    def __init__(
        self,
        store: SwarmStore,
        content: ContentStore,
        queue: OperationQueue,
        publisher: EventPublisher,
        max_attempts: int = 50,
        parallel_effects: int = 0,
        snapshot_every: int = 50,
        remember_latest: bool = False,
        presumed_dead_after: timedelta = timedelta(seconds=10),
        clock: Callable[[], datetime] = utcnow,
        hold_seconds: int = 60,
    ) -> None:
        self.store = store
        self.content = content
        self.queue = queue
        self.publisher = publisher
        self.max_attempts = max_attempts
        self.snapshot_every = snapshot_every
        # The applier of a commit is presumed dead (and its commit rolled forward by whoever
        # finds it unfinished) once this long has passed since the commit, by `clock`, or once
        # this process has waited this long for its history batch. Before that, it is waited
        # for: applying it a second time would enqueue its operations twice (both copies then
        # run, and two LLM calls race) and publish its events twice.
        self.presumed_dead_after = presumed_dead_after
        self.clock = clock
        # How long an operation its decider runs next (`Decision.run_next`) stays hidden from
        # the queue (`RUN_NEXT_HOLD_SECONDS`).
        self.hold_seconds = hold_seconds
        # With storage over the network, a commit's effects (chat and log appends, the listing
        # entry, enqueues, publishes, a snapshot) go out at once on this many threads, then the
        # history batch: they touch different documents and blobs, and a crash part-way is
        # rolled forward like any other. 0: one after another (in memory, and where a test
        # counts port calls in order).
        self._effects_pool = (
            ThreadPoolExecutor(parallel_effects, thread_name_prefix="effects")
            if parallel_effects > 1
            else None
        )
        # Commits this process applied completely: the next commit of the swarm need not roll
        # them forward. Only ever holds true facts, so it is safe to lose (a process that does
        # not know a commit applies it again, idempotently). A commit is named by its swarm
        # and seq: an op id can name several (a fork's outstanding operations keep the ids
        # the source committed them with; an operation parked by its own commit commits again).
        self._applied: OrderedDict[CommitKey, None] = OrderedDict()
        # Commits this process is applying right now: another thread of the process waits for
        # that instead of applying them a second time (enqueuing and publishing twice).
        self._applying: dict[CommitKey, threading.Event] = {}
        # Commits whose applying failed in this process (an error part-way): no one else is
        # applying them, so the next look rolls them forward at once. Bounded like `_applied`.
        self._abandoned: OrderedDict[CommitKey, None] = OrderedDict()
        # The documents of the swarms this process committed last (`_read`), and the lock
        # each swarm's decisions and commits take in turn (`_run`). Remembered only where a
        # read is a request (in memory, a read costs what the copies of remembered documents
        # cost, so there it is not worth it).
        self._remember_latest = remember_latest
        self._latest: OrderedDict[str, _Latest] = OrderedDict()
        self._latest_nodes = 0  # nodes remembered, across swarms
        # Tests turn this on: every use of remembered documents checks nothing changed them.
        self.verify_remembered = False
        self._swarm_locks: dict[str, _SwarmLock] = {}
        self._lock = threading.Lock()

    def run(self, swarm_id: str, op_id: str, decide: Decide, latest: bool = False) -> CommitRun:
        """Commit what `decide` makes of the swarm document (see the module docstring). With
        `latest`, the first decision may be made on the documents as this process's last
        commit of the swarm left them, without a read (see `_read`)."""
        return self._run(swarm_id, op_id, None, lambda got, _: decide(got), latest)

    def run_on_node(
        self, swarm_id: str, op_id: str, node_id: str, decide: NodeDecide, latest: bool = False
    ) -> CommitRun:
        """`run`, deciding on one node as well: it is read with the swarm document, at the same
        moment, in one round trip (`get_swarm_and_node`)."""
        return self._run(swarm_id, op_id, node_id, decide, latest)

    def get_node(self, swarm_id: str, node_id: str) -> Versioned[Node] | None:
        """For a decision: one of the swarm's nodes, as the documents it decides on hold it
        (this process's last commit of the swarm, when it wrote or read that node), else as
        stored now. Either way the commit's ETag check proves it current."""
        with self._lock:
            latest = self._latest.get(swarm_id)
            node = None if latest is None else latest.nodes.get(node_id)
        if node is not None and latest is not None:
            self._verify(swarm_id, latest)
            return Versioned(_shallow(node), "")
        return self.store.get_node(swarm_id, node_id)

    def _read(
        self, swarm_id: str, node_id: str | None, latest: bool
    ) -> tuple[Versioned[Swarm] | None, Versioned[Node] | None, bool]:
        """The swarm document (and the node) to decide on, and whether they came from memory.

        With `latest`, the documents as this process's last commit of the swarm left them (a
        copy), when it has them: the common path, where one process runs a swarm's steps one
        after another, needs no read. They may be stale (another process committed since): a
        commit on them then loses the ETag race and decides again on a fresh read, and a
        decision to write nothing is made again on a fresh read before it is believed."""
        if latest:
            with self._lock:
                known = self._latest.get(swarm_id)
                if known is not None:
                    self._latest.move_to_end(swarm_id)
            if known is not None:
                self._verify(swarm_id, known)
                remembered = Versioned(_shallow(known.swarm), known.etag)
                if node_id is None:
                    return remembered, None, True
                return remembered, self.get_node(swarm_id, node_id), True
        if node_id is None:
            got, node = self.store.get_swarm(swarm_id), None
        else:
            got, node = self.store.get_swarm_and_node(swarm_id, node_id)
        self._remember_read(swarm_id, got, node)
        return got, node, False

    def _run(
        self,
        swarm_id: str,
        op_id: str,
        node_id: str | None,
        decide: NodeDecide,
        latest: bool,
    ) -> CommitRun:
        use_latest = latest
        # What the decision that asked for a call was made on: without remembered documents,
        # the decision after the call is made on it again (its commit proves it current).
        called_on: tuple[Versioned[Swarm] | None, Versioned[Node] | None] | None = None
        for _ in range(self.max_attempts):
            call_first: Callable[[], object] | None = None
            # One decision and commit of a swarm at a time in this process: two steps of one
            # swarm would otherwise both decide on the same document, and one of them would lose
            # the ETag race and do it all again. The next commit waits for this one's effects
            # anyway (roll forward), so little is lost by waiting for the lock instead.
            with self._swarm_lock(swarm_id):
                try:
                    if called_on is not None and not (latest and self._remember_latest):
                        (got, node), remembered = called_on, False
                    else:
                        got, node, remembered = self._read(swarm_id, node_id, use_latest)
                    use_latest, called_on = latest, None
                    if got is None:
                        raise SwarmNotFound(swarm_id)
                    swarm = got.value
                    if swarm.status == SwarmStatus.DELETED:
                        # Its purge owns what is left: applying a pending commit now would
                        # write again what the purge deletes.
                        raise SwarmNotFound(swarm_id)
                    pending = swarm.pending
                    if pending is not None and pending.op_id == op_id:
                        if remembered:
                            # Doing nothing is believed only fresh: since, another process
                            # may have run the operation's commit on (an operation parked by
                            # its own commit, resumed there, comes again with the same id).
                            use_latest = False
                            continue
                        # Delivered again: the delivery that committed it has ended, and
                        # no one else applies the commit of this operation.
                        redriven = self.roll_forward(swarm, pending, applier_dead=True)
                        outcome = Outcome.REDRIVEN if redriven else Outcome.DUPLICATE
                        return CommitRun(outcome, swarm, pending.seq)
                    if pending is not None and self._forward(swarm, pending) == Forwarded.LANDED:
                        # Another process finished it while this one waited, and may have
                        # committed again since: decide on a fresh read, not on this one,
                        # which its next commit would make lose.
                        use_latest = False
                        continue
                    try:
                        decision = decide(got, node)
                    except CallFirst as needed:
                        if remembered:
                            # A slow (and paid) call is made only for a decision on a fresh
                            # read: on a stale one, the step may be a duplicate or parked.
                            use_latest = False
                            continue
                        call_first, called_on = needed.call, (got, node)
                    except Exception as failed:
                        if not remembered or isinstance(failed, AssertionError):
                            raise  # (an assertion: a bug, and the tests' `_verify`, surface)
                        # A step that fails on what this process remembered is given the
                        # fresh documents before its failure costs a delivery.
                        use_latest = False
                        continue
                    else:
                        if decision.swarm is None:
                            if remembered:
                                use_latest = False  # nothing to write: believed only fresh
                                continue
                            return CommitRun(decision.outcome, swarm, swarm.seq)
                        try:
                            return self.commit(got, op_id, decision)
                        except ConflictError:
                            # Decided again on fresh reads, remembering nothing of before (a
                            # node the store found not as read may be one remembered).
                            use_latest = False
                            self._forget_latest(swarm_id)
                            log.info(
                                "commit conflict swarm_id=%s op_id=%s: retrying", swarm_id, op_id
                            )
                except BaseException:
                    # Whatever failed (a write may have landed all the same): decide on a
                    # fresh read next time.
                    self._forget_latest(swarm_id)
                    raise
            if call_first is not None:
                call_first()  # outside the lock: the swarm's other steps go on meanwhile
        raise TooManyConflicts(f"op {op_id} on swarm {swarm_id}")

    @contextmanager
    def _swarm_lock(self, swarm_id: str) -> Iterator[None]:
        with self._lock:
            entry = self._swarm_locks.get(swarm_id)
            if entry is None:
                entry = self._swarm_locks[swarm_id] = _SwarmLock(threading.RLock())
            entry.users += 1
        try:
            with entry.lock:
                yield
        finally:
            with self._lock:
                entry.users -= 1
                if not entry.users:
                    del self._swarm_locks[swarm_id]

    # --- the documents as this process last committed them ------------------------------------

    def _remember_read(
        self, swarm_id: str, got: Versioned[Swarm] | None, node: Versioned[Node] | None
    ) -> None:
        """A fresh read replaces what was remembered."""
        if got is None:
            self._forget_latest(swarm_id)
            return
        self._remember(got.value, got.etag, got.etag, [] if node is None else [node.value])

    def _remember(
        self,
        swarm: Swarm,
        etag: str,
        nodes_hold_at: str,
        nodes: Iterable[Node],
        deleted_node_ids: Iterable[str] = (),
    ) -> None:
        """Remember `swarm` (with its ETag) and `nodes` as they now are. The nodes remembered
        before stay true if they were remembered with the swarm document of ETag
        `nodes_hold_at` (the one a commit read, or the one just read again): nothing committed
        in between. Otherwise another process committed, and they may have changed."""
        if not self._remember_latest:
            return
        with self._lock:
            known = self._latest.get(swarm.swarm_id)
        if known is not None:
            self._verify(swarm.swarm_id, known)
        kept = dict(known.nodes) if known is not None and known.etag == nodes_hold_at else {}
        for node in nodes:
            _put_latest(kept, node.node_id, _shallow(node))
        for node_id in deleted_node_ids:
            kept.pop(node_id, None)
        self._keep_latest(swarm.swarm_id, _Latest(_shallow(swarm), etag, kept))

    def _keep_latest(self, swarm_id: str, latest: _Latest) -> None:
        if self.verify_remembered:
            latest.fingerprint = _fingerprint(latest)
        with self._lock:
            replaced = self._latest.pop(swarm_id, None)
            if replaced is not None:
                self._latest_nodes -= len(replaced.nodes)
            self._latest[swarm_id] = latest
            self._latest_nodes += len(latest.nodes)
            # Bounded in swarms and in nodes (a node document can be tens of KB): the swarms
            # least recently used are forgotten first, this one last.
            while len(self._latest) > 1 and (
                len(self._latest) > LATEST_CACHE_SIZE or self._latest_nodes > LATEST_NODES
            ):
                _, evicted = self._latest.popitem(last=False)
                self._latest_nodes -= len(evicted.nodes)

    def _verify(self, swarm_id: str, latest: _Latest) -> None:
        """In the tests: the remembered documents are as they were remembered (see `_shallow`)."""
        if self.verify_remembered and _fingerprint(latest) != latest.fingerprint:
            raise AssertionError(f"a remembered document of swarm {swarm_id} was changed in place")

    def _forget_latest(self, swarm_id: str) -> None:
        with self._lock:
            forgotten = self._latest.pop(swarm_id, None)
            if forgotten is not None:
                self._latest_nodes -= len(forgotten.nodes)

    def commit(self, got: Versioned[Swarm], op_id: str, decision: Decision) -> CommitRun:
        """Write `decision.swarm` over the swarm document as read (`got`), with its nodes, and
        apply a committed decision's effects. ConflictError, writing nothing, if the document
        changed since it was read."""
        assert decision.swarm is not None
        new = decision.swarm
        record = None
        if decision.outcome == Outcome.COMMITTED:
            # Parked operations the change dropped (a rerun's, for the branch it discards)
            # will never run: consumed, as far as the record is concerned.
            kept = {op.op_id for op in [*new.parked, *decision.effects.operations]}
            decision.effects.consumed += [
                op.op_id for op in got.value.parked if op.op_id not in kept
            ]
            new.pending = self.seal(new, got.value.seq + 1, op_id, decision)
            old = got.value if got.value.seq else None  # a first commit records it all
            record = commit_record(new.pending, old, new, decision.nodes, decision.read_nodes)
        etag = self.store.replace_swarm(
            new,
            got.etag,
            decision.nodes,
            deleted_node_ids=decision.deleted_nodes,
            changes=_commit_changes(record, got.value, new, decision.read_nodes),
        )
        self._remember(new, etag, got.etag, decision.nodes, decision.deleted_nodes)
        held = None
        if new.pending is not None and record is not None:
            held = self.apply(new, new.pending, record, decision.nodes, decision.run_next)
        return CommitRun(decision.outcome, new, new.seq, held)

    def seal(self, new: Swarm, seq: int, op_id: str, decision: Decision) -> PendingCommit:
        """Make `decision` the commit of `seq` by `op_id`: number the swarm and its nodes, and
        complete its effects (listing entry, snapshot, what its record needs)."""
        new.seq = seq
        effects = decision.effects
        chatting = {e.data["node_id"] for e in effects.events if e.type == EventType.CHAT_MESSAGE}
        for node in decision.nodes:
            node.seq = seq
            if node.node_id in chatting:
                effects.chat_after[node.node_id] = node.chat_seq
                node.chat_seq = seq
        if decision.refresh_listing:
            effects.summary = new.summary()
        effects.snapshot = seq % self.snapshot_every == 0
        effects.node_ids = [node.node_id for node in decision.nodes]
        effects.deleted_node_ids = list(decision.deleted_nodes)
        if not any(parked.op_id == op_id for parked in new.parked):
            # Its step is done (an operation parked by its own commit is still to run).
            effects.consumed.insert(0, op_id)
        kept = effects.model_copy(update={"events": _kept_events(effects.events, decision.nodes)})
        return PendingCommit(op_id=op_id, seq=seq, effects=kept)

    def is_applied(self, key: CommitKey) -> bool:
        """Whether this process applied the commit completely. Unknown is not applied: applying
        again is safe (every effect is idempotent), only slower."""
        with self._lock:
            return key in self._applied

    def _applied_or_waited(self, key: CommitKey, timeout: float = 30.0) -> bool:
        """Whether the commit is applied, waiting for it while this process applies it."""
        with self._lock:
            if key in self._applied:
                return True
            applying = self._applying.get(key)
        return applying is not None and applying.wait(timeout) and self.is_applied(key)

    def roll_forward(
        self, swarm: Swarm, pending: PendingCommit, applier_dead: bool = False
    ) -> bool:
        """Apply a commit whose worker may have died before finishing it, unless it is known to
        be finished: this process finished it (or is finishing it: wait), or its history batch
        is stored — appended last, it proves every other effect landed (one read, instead of
        writing, enqueuing and publishing everything again). A commit of another process that
        is not finished yet is waited for (its history batch looked for again) until its
        applier is presumed dead (`presumed_dead_after`): then it is applied here. The caller
        may know it dead already (`applier_dead`: the commit's own operation delivered again,
        maintenance after `stuck_after`). True if this process applied it."""
        return self._forward(swarm, pending, applier_dead) == Forwarded.APPLIED

    def _forward(
        self, swarm: Swarm, pending: PendingCommit, applier_dead: bool = False
    ) -> Forwarded:
        """`roll_forward`, saying how the commit was found finished, or that it was applied."""
        key = (swarm.swarm_id, pending.seq)
        if self._applied_or_waited(key):
            return Forwarded.FINISHED
        stream = history_stream(swarm.swarm_id)
        if self.content.has_seq(stream, pending.seq):
            self._remember_applied(key)
            return Forwarded.FINISHED
        with self._lock:
            applier_dead = applier_dead or key in self._abandoned
        if not applier_dead and self._landed_while_waiting(swarm, stream, pending.seq):
            self._remember_applied(key)
            return Forwarded.LANDED
        log.info(
            "roll forward swarm_id=%s seq=%s op_id=%s: its applier is presumed dead",
            swarm.swarm_id,
            pending.seq,
            pending.op_id,
        )
        self.apply(swarm, pending)
        return Forwarded.APPLIED

    def _landed_while_waiting(self, swarm: Swarm, stream: str, seq: int) -> bool:
        """Wait for the history batch of commit `seq` while its applier may be alive: until
        `presumed_dead_after` has passed since the commit (the swarm document's `updated_at`,
        by the committer's clock) or since this wait began, whichever comes first. True if it
        landed meanwhile."""
        age = max(self.clock() - swarm.updated_at, timedelta(0))
        deadline = time.monotonic() + (self.presumed_dead_after - age).total_seconds()
        pause = LANDED_POLL_FIRST
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(pause, left))
            if self.content.has_seq(stream, seq):
                return True
            pause = min(pause * 2, LANDED_POLL_MAX)
        return False

    def _remember_applied(self, key: CommitKey) -> None:
        with self._lock:
            _keep_bounded(self._applied, key)
            self._abandoned.pop(key, None)

    def apply(
        self,
        swarm: Swarm,
        pending: PendingCommit,
        record: dict[str, Any] | None = None,
        nodes: list[Node] | None = None,
        run_next: str | None = None,
    ) -> HeldMessage | None:
        """Apply a commit's effects; safe to run any number of times, by anyone. `record` and
        `nodes`: the commit's record, as its committer made it (the changes from what it
        read), and the nodes it wrote; without them, the nodes are the documents as the commit
        left them, read back (no later commit can have changed them: it would have applied
        this one first), and the record is made of those. SwarmNotFound, writing nothing, if
        a node it wrote is gone (the swarm was deleted). `run_next`: the operation to enqueue
        held, for the caller to run (its handle is returned)."""
        key = (swarm.swarm_id, pending.seq)
        with self._lock:
            applying = self._applying.setdefault(key, threading.Event())
        try:
            if nodes is None:
                read = (self.store.get_node(swarm.swarm_id, n) for n in pending.effects.node_ids)
                nodes = [got.value for got in read if got is not None]
            if record is None:
                record = commit_record(pending, None, swarm, nodes)
            held = self._apply_effects(swarm, pending, record, nodes, run_next)
            self._remember_applied(key)
        except BaseException:
            with self._lock:
                _keep_bounded(self._abandoned, key)
            raise
        finally:
            with self._lock:
                self._applying.pop(key, None)
            applying.set()
        return held

    def _apply_effects(
        self,
        swarm: Swarm,
        pending: PendingCommit,
        record: dict[str, Any],
        nodes: list[Node],
        run_next: str | None = None,
    ) -> HeldMessage | None:
        effects, seq, swarm_id = pending.effects, pending.seq, swarm.swarm_id
        events = _full_events(effects.events, nodes)
        # All at once (where storage is remote): the appends, the listing entry, the enqueues
        # and the publishes. The next step may start before an append of this commit lands: it
        # finds this commit not known as applied (its history batch is missing) and applies it
        # first, or, in this process, waits for it. The history batch goes last of all: once it
        # is there, everything is (`roll_forward` relies on it), so a crash before it re-drives
        # the commit. Publishing is best effort: a client that misses an event reads it from
        # the history.
        calls: list[Callable[[], object]] = []
        # A listing entry that leaves the statuses maintenance looks at (a pause, the end) goes
        # after the history batch: until then the entry still shows the commit to maintenance,
        # which re-drives it should its applier die and no message bring it back (a pause whose
        # client gave up). Maintenance also rewrites an entry found behind its swarm.
        last_listing = effects.summary
        if last_listing is not None and last_listing.status in MAINTAINED_STATUSES:
            last_listing = None
        chats = (e["data"] for e in events if e["type"] == EventType.CHAT_MESSAGE)
        for node_id, chat in _by_node(chats):
            stream = chat_stream(swarm_id, node_id)
            after = effects.chat_after.get(node_id)
            calls.append(partial(self.content.append, stream, seq, chat, after_seq=after))
        for node_id, logs in _by_node(entry.model_dump(mode="json") for entry in effects.logs):
            calls.append(partial(self.content.append, log_stream(swarm_id, node_id), seq, logs))
        if effects.summary is not None and last_listing is None:
            calls.append(partial(self.store.put_summary, effects.summary))
        held: list[HeldMessage] = []
        for operation in effects.operations:
            operation = telemetry.carrying_trace(operation)
            if operation.op_id == run_next:
                calls.append(partial(self._enqueue_held, operation, held))
            else:
                calls.append(partial(self.queue.enqueue, operation))
        if events:
            calls.append(partial(self._publish, swarm_id, seq, events))
        if effects.snapshot:
            calls.append(partial(self._snapshot, swarm_id, record))
        try:
            self._run_all(calls)
            # The commit's record goes with its history batch: one write for both. The batch
            # keeps a `node.updated` event as its node's id, as `pending` does: the record
            # holds the node's changes, and readers replay them (`forks.TreeReplay`).
            stored = [
                {**shown, "data": event.data} if _kept_as_id(event) else shown
                for event, shown in zip(effects.events, events, strict=True)
            ]
            self.content.append(history_stream(swarm_id), seq, stored, commit=record)
            if last_listing is not None:
                self.store.put_summary(last_listing)
        except Exception:
            for message in held:  # no one runs it here: the queue, at once
                self.queue.settle(message, done=False)
            raise
        return held[0] if held else None

    def _enqueue_held(self, operation: Operation, held: list[HeldMessage]) -> None:
        held.append(self.queue.enqueue_held(operation, self.hold_seconds))

    def _snapshot(self, swarm_id: str, record: dict[str, Any]) -> None:
        """Store the swarm as it is right after this commit: the checkpoint a fork starts from
        (the fold of the records: the previous checkpoint and the records since, this one's
        at hand as it is being appended) and the public tree `state?at=` starts from, each
        with where the stream after it starts. A swarm without the records before this one (older
        than them) gets its tree from the node documents instead, unless they moved on."""
        seq = int(record["seq"])
        mark = self.content.mark(history_stream(swarm_id))
        try:
            # From the checkpoint of `snapshot_every` commits ago (the first from the start):
            # without it (a swarm older than the records) the fold is not tried, so a commit
            # never reads more than that many records.
            previous = None
            if seq > self.snapshot_every:
                previous = self.content.get_snapshot(
                    swarm_id, seq - self.snapshot_every, "checkpoint"
                )
                if previous is None:
                    raise IncompleteRecords(f"no checkpoint at {seq - self.snapshot_every}")
            folded = fold_from(self.content, swarm_id, previous, seq - 1)
        except IncompleteRecords:
            log.info("checkpoint skipped swarm_id=%s seq=%s: no records before", swarm_id, seq)
            nodes = self.store.list_nodes(swarm_id)
            if any(node.seq > seq for node in nodes):
                log.info("snapshot skipped swarm_id=%s seq=%s: the tree moved on", swarm_id, seq)
                return
        else:
            folded.apply(record)
            self.content.put_snapshot(swarm_id, seq, folded.checkpoint(mark), "checkpoint")
            nodes = folded.node_documents()
        views = sorted((n.public_view() for n in nodes), key=tree_order)
        document = {"seq": seq, "nodes": views, "history": mark}
        self.content.put_snapshot(swarm_id, seq, document)

    def _publish(self, swarm_id: str, seq: int, events: list[dict[str, Any]]) -> None:
        try:
            self.publisher.publish(swarm_id, events)
        except Exception:
            # Clients catch up from the stored history (`history?after=`): never fail a step.
            log.warning("publish failed swarm_id=%s seq=%s", swarm_id, seq, exc_info=True)

    def _run_all(self, calls: list[Callable[[], object]]) -> None:
        """Run every call; all of them have ended when this returns or raises (the first
        error), so no write of this commit is still under way when the next begins."""
        if self._effects_pool is None or len(calls) < 2:
            for call in calls:
                call()
            return
        futures = [self._effects_pool.submit(call) for call in calls]
        wait(futures)
        for future in futures:
            future.result()


def _commit_changes(
    record: dict[str, Any] | None, old: Swarm, new: Swarm, read_nodes: list[Node]
) -> CommitChanges | None:
    """What the commit changed in the documents it read, from its record (a store may write
    them instead of the whole documents): the record's swarm changes, with what a record
    leaves out (the commit's own `pending`, the parked operations), and its nodes'."""
    if record is None:
        return None
    swarm = dict(record["swarm"])
    if "all" not in swarm:
        left_out: dict[str, Any] = {
            "pending": new.pending.model_dump(mode="json") if new.pending else None
        }
        if new.parked != old.parked:
            left_out["parked"] = [op.model_dump(mode="json") for op in new.parked]
        swarm["set"] = {**swarm.get("set", {}), **left_out}
    read = {node.node_id: node.seq for node in read_nodes}
    nodes = {
        changed["node_id"]: NodeChanges(read[changed["node_id"]], changed["changes"])
        for changed in record["nodes"]
        if changed["node_id"] in read
    }
    return CommitChanges(swarm, nodes)


def _keep_bounded(keys: OrderedDict[CommitKey, None], key: CommitKey) -> None:
    """Add `key`, forgetting the oldest beyond `APPLIED_CACHE_SIZE` (the caller holds the lock)."""
    keys[key] = None
    if len(keys) > APPLIED_CACHE_SIZE:
        keys.popitem(last=False)


def _kept_events(events: list[HistoryEvent], nodes: list[Node]) -> list[HistoryEvent]:
    """The events as a pending commit keeps them: a `node.updated` event of a node the commit
    writes keeps only the node's id, since the node document the commit writes holds the rest
    (`_full_events` puts it back: such an event shows the node as the commit wrote it, from
    the documents its committer wrote, or, after a crash, read back). Half of what a pending
    commit held."""
    written = {node.node_id for node in nodes}
    kept = []
    for event in events:
        if event.type == EventType.NODE_UPDATED:
            node_id = (event.data.get("node") or {}).get("node_id")
            if node_id in written:
                event = event.model_copy(update={"data": {"node_id": node_id}})
        kept.append(event)
    return kept


def _kept_as_id(event: HistoryEvent) -> bool:
    return event.type == EventType.NODE_UPDATED and "node" not in event.data


def _full_events(events: list[HistoryEvent], nodes: list[Node]) -> list[dict[str, Any]]:
    """The events of a pending commit as they are stored and published (JSON): a `node.updated`
    event kept as its node's id shows `nodes`' document of it (the commit's)."""
    written = {node.node_id: node for node in nodes}
    full = []
    for event in events:
        data = event.model_dump(mode="json")
        if _kept_as_id(event):
            node = written.get(event.data["node_id"])
            if node is None:
                # Only a delete removes a node a pending commit wrote (a later commit would
                # have applied this one first): the swarm is gone, with what it would write.
                raise SwarmNotFound(
                    f"{event.swarm_id}: node {event.data['node_id']} of commit {event.seq} is gone"
                )
            data["data"] = {"node": node.public_view()}
        full.append(data)
    return full


def _put_latest(nodes: dict[str, Node], node_id: str, node: Node) -> None:
    """Remember `node` as the most recent of its swarm's, forgetting the least recent beyond
    `LATEST_NODES_PER_SWARM` (forgetting one only costs its read, when it is needed)."""
    nodes.pop(node_id, None)
    nodes[node_id] = node
    while len(nodes) > LATEST_NODES_PER_SWARM:
        del nodes[next(iter(nodes))]


def _shallow(document: DocumentT) -> DocumentT:
    """A copy of a remembered document whose fields a decision may set freely. What they hold
    is shared: nothing changes a document's containers in place (a decision makes new ones, as
    `apply_step_result` and `ControlCommit` do, and copies a node before its step changes it),
    which the tests check (`SwarmCommitter.verify_remembered`). A deep copy each way cost as
    much as the read it saves."""
    return document.model_copy()


def _fingerprint(latest: _Latest) -> str:
    nodes = ",".join(node.model_dump_json() for node in latest.nodes.values())
    return f"{latest.swarm.model_dump_json()}|{nodes}"


def _by_node(records: Iterable[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        grouped[record["node_id"]].append(record)
    return list(grouped.items())


def tree_order(node: dict[str, Any]) -> tuple[Any, ...]:
    """How a tree's nodes are listed: by depth, then creation."""
    return (node["depth"], node["created_at"], node["node_id"])


def count_transition(
    counts: dict[str, int], before: Lifecycle | None, after: Lifecycle | None
) -> dict[str, int]:
    """The swarm's node counts by lifecycle after one node went from `before` (None: new) to
    `after` (None: deleted)."""
    changed = dict(counts)
    if before is not None:
        changed[before.value] = changed.get(before.value, 1) - 1
    if after is not None:
        changed[after.value] = changed.get(after.value, 0) + 1
    return {k: v for k, v in changed.items() if v}


def apply_step_result(swarm: Swarm, view: StepView, result: StepResult) -> Decision:
    """The commit of a node step: the new swarm document and the step's effects (pure).

    The swarm document is copied shallowly: its containers are replaced, never changed in place."""
    new = swarm.model_copy(update={"pending": None, "updated_at": view.now})
    new.usage = new.usage.plus(result.usage)
    new.node_count += result.nodes_reserved
    before: dict[str, Node] = {n.node_id: n for n in (view.node, view.parent) if n is not None}
    writes: list[Node] = []
    for node in result.new_nodes:
        new.node_counts = count_transition(new.node_counts, None, node.lifecycle)
        writes.append(node)
    for node in result.updated_nodes:
        old = before.get(node.node_id)
        if old is None:
            continue  # a node the step did not read cannot be written safely
        new.node_counts = count_transition(new.node_counts, old.lifecycle, node.lifecycle)
        writes.append(node)
        if node.lifecycle == Lifecycle.FAILED and new.error is None:
            new.error = f"node {node.name!r} failed: {node.error}"
    if result.swarm_status is not None:
        new.status = result.swarm_status
    if result.final_report is not None:
        new.final_report = result.final_report
    if result.error is not None:
        new.error = result.error
    effects = Effects(events=result.events, logs=result.logs, operations=result.operations)
    return Decision(
        Outcome.COMMITTED,
        new,
        effects,
        refresh_listing=listing_changed(swarm, new),
        nodes=writes,
        read_nodes=list(before.values()),
    )


class ControlCommit:
    """A commit that is not a node step (spawn, pause, resume, retry, rerun, idle, a user's
    message): the new swarm document, a `swarm.status` event first when the status changes or
    `status_data` is given, and whatever chat messages, node writes and deletes, events and
    operations the change adds."""

    def __init__(self, old: Swarm, now: datetime, **status_data: Any) -> None:
        self.old = old
        self.now = now
        self.seq = old.seq + 1
        self.swarm = old.model_copy(update={"pending": None, "updated_at": now})
        self._status_data = status_data
        self._effects = Effects()
        self._nodes: list[Node] = []
        self._read: list[Node] = []
        self._deleted: list[str] = []

    def event(self, type_: EventType, data: dict[str, Any]) -> None:
        self._effects.events.append(
            HistoryEvent(
                type=type_,
                swarm_id=self.old.swarm_id,
                seq=self.seq,
                index=len(self._effects.events),
                at=self.now,
                data=data,
            )
        )

    def chat(self, message: ChatMessage) -> None:
        self.event(EventType.CHAT_MESSAGE, message.model_dump(mode="json"))

    def write_node(self, node: Node, before: Node) -> None:
        """Write `node`, which the change read as `before`, and announce it."""
        self.swarm.node_counts = count_transition(
            self.swarm.node_counts, before.lifecycle, node.lifecycle
        )
        self._nodes.append(node)
        self._read.append(before)
        self.event(EventType.NODE_UPDATED, {"node": node.public_view()})

    def delete_node(self, node: Node) -> None:
        """Delete `node` (as the change read it) from the live tree; its chat and logs stay,
        and the history keeps it. The change announces it with its own event."""
        self.swarm.node_counts = count_transition(self.swarm.node_counts, node.lifecycle, None)
        self._deleted.append(node.node_id)

    def enqueue(self, *operations: Operation) -> None:
        self._effects.operations.extend(operations)

    def decision(self) -> Decision:
        if self.swarm.status != self.old.status or self._status_data:
            status = HistoryEvent(
                type=EventType.SWARM_STATUS,
                swarm_id=self.old.swarm_id,
                seq=self.seq,
                index=0,
                at=self.now,
                data={"status": self.swarm.status.value, **self._status_data},
            )
            for event in self._effects.events:
                event.index += 1
            self._effects.events.insert(0, status)
        return Decision(
            Outcome.COMMITTED,
            self.swarm,
            self._effects,
            refresh_listing=listing_changed(self.old, self.swarm),
            nodes=self._nodes,
            read_nodes=self._read,
            deleted_nodes=self._deleted,
        )


def listing_changed(old: Swarm, new: Swarm) -> bool:
    """Whether the swarm's listing entry shows something new (so it must be written again)."""
    fields = ("status", "spawned", "error", "final_report", "paused_reason")
    return any(getattr(old, f) != getattr(new, f) for f in fields) or (
        old.failed_nodes != new.failed_nodes
    )
