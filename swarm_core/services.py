"""The swarm services: the commands and queries the HTTP layer and the timer call.

`SwarmServices` owns its collaborators (stores, the app's one committer, the operations queue,
client access to Web PubSub) and raises domain errors (`NotFound`, `InvalidState`,
`InvalidRequest`); the HTTP layer maps them to statuses. Every command checks that the swarm
belongs to the caller. Control changes (spawn, pause, resume, retry, rerun, idle, the tombstone
of a delete) commit through the same
committer as node steps, so they are serialised with the steps and their effects (events,
enqueued operations) are applied exactly once even after a crash. Reads change nothing:
`state(at=…)` starts from the snapshot the commits store every `snapshot_every` steps and replays
only the history between it and `at`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from swarm_core import conversation
from swarm_core.actions import plan
from swarm_core.commits import (
    ControlCommit,
    Decision,
    NodeDecide,
    Outcome,
    SwarmCommitter,
    SwarmNotFound,
    tree_order,
)
from swarm_core.forks import (
    NODES_PER_WRITE,
    Folded,
    IncompleteRecords,
    TreeReplay,
    commit_record,
    fold,
    fold_from,
    forked_op_id,
    renamed_operations,
)
from swarm_core.models import (
    FINISHED_STATUSES,
    ActionType,
    ChatMessage,
    ChatRole,
    ClientMessage,
    EventType,
    Interrupt,
    InterruptStatus,
    Lifecycle,
    LLMSettings,
    Node,
    SwarmConfig,
    SwarmStatus,
    derive_id,
    utcnow,
)
from swarm_core.operations import (
    parse_operation,
    rerun_node_id,
    rerun_op_id,
    rerun_spawn_operation,
    resume_operation,
    retry_operation,
    root_node_id,
    root_spawn_operation,
)
from swarm_core.ports import (
    MAX_COMMIT_NODES,
    STREAM_START,
    ClientAccess,
    ConflictError,
    ContentStore,
    OperationQueue,
    SwarmStore,
    Versioned,
    chat_stream,
    history_stream,
    log_stream,
)
from swarm_core.quotas import ModelPolicy, QuotaExceeded
from swarm_core.step_context import answered_event_data
from swarm_core.swarm import ForkOrigin, Swarm, SwarmSummary, budget_spent

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """A command or query the services refuse; the message says why."""


class InvalidRequest(ServiceError):
    """The request itself is wrong (HTTP 400)."""


class NotFound(ServiceError):
    """No such swarm or node for this caller (HTTP 404)."""


class InvalidState(ServiceError):
    """The request is not allowed in the swarm's or node's current state (HTTP 409)."""


@dataclass(frozen=True)
class Rerun:
    """A committed rerun: the swarm after it, the node it discarded and the node spawned in
    its place (parked until resume)."""

    swarm: Swarm
    node_id: str
    new_node_id: str


def branch_ids(tree: dict[str, Node], node_id: str) -> list[str]:
    """`node_id` and its descendants, parents first: every id the branch's nodes list as
    children, spawned (in `tree`) or only decided (their spawn not yet run)."""
    ids, i = [node_id], 0
    while i < len(ids):
        node = tree.get(ids[i])
        if node is not None:
            ids.extend(node.children_ids)
        i += 1
    return ids


@dataclass
class SwarmServices:
    store: SwarmStore
    content: ContentStore
    committer: SwarmCommitter
    queue: OperationQueue
    client_access: ClientAccess
    clock: Callable[[], datetime] = utcnow
    new_id: Callable[[], str] = field(default=lambda: uuid.uuid4().hex)
    # Maintenance: a commit unfinished this long is re-driven; a swarm whose live nodes all wait
    # for the user this long is announced as waiting_for_user.
    stuck_after: timedelta = timedelta(minutes=5)
    # A fork still a tombstone this long after it began was abandoned (its request died) and
    # is purged: far longer than copying any swarm takes, so a purge never races a fork.
    fork_abandoned_after: timedelta = timedelta(hours=1)
    idle_after: timedelta = timedelta(minutes=10)
    models: ModelPolicy = field(default_factory=ModelPolicy)
    swarms_per_user: int = 1000
    active_swarms_per_user: int = 1000

    # --- swarms -----------------------------------------------------------------------------

    def create_swarm(
        self,
        user_id: str,
        goal: str,
        config: SwarmConfig | None = None,
        user_llm: LLMSettings | None = None,
    ) -> Swarm:
        """A new swarm (not spawned). `user_llm`, the owner's model settings, goes under the
        config's own `llm`, and the result is stored with the swarm: later changes to the user's
        settings do not change a swarm that exists."""
        config = config or SwarmConfig()
        if user_llm is not None:
            config = config.model_copy(update={"llm": config.llm.merged_over(user_llm)})
        self.models.check(config.llm)
        self._check_swarm_quota(user_id)
        now = self.clock()
        swarm = Swarm(
            swarm_id=self.new_id(),
            user_id=user_id,
            goal=goal,
            config=config,
            created_at=now,
            updated_at=now,
        )
        self.store.create_swarm(swarm)
        self.store.put_summary(swarm.summary())
        return swarm

    def _check_swarm_quota(self, user_id: str) -> None:
        owned, _ = self.store.list_summaries(user_id, self.swarms_per_user)
        if len(owned) >= self.swarms_per_user:
            raise QuotaExceeded(
                f"you have {self.swarms_per_user} swarms, the most one user may have; "
                "delete one to create another"
            )

    def fork(
        self, user_id: str, swarm_id: str, at: int | None = None, reuse_llm: bool = True
    ) -> Swarm:
        """A new swarm of the caller's that is the source exactly as it was right after step
        `at` (default: its latest): tree, node contexts and continuations, chats, logs,
        history, open interrupts; its operations in flight then are parked (resuming the fork
        runs them). Paused, unless the source had finished by then (the copy keeps that
        status) or was not spawned yet (created). The source is not changed.

        In this order, so that a crash anywhere leaves either no fork or a whole one: a
        tombstone (listing entry, then document: nothing sees it, and maintenance purges it
        once `fork_abandoned_after` has passed); the copies of the streams and the node
        documents; the effects of the fork's first step (`swarm.forked` at seq `at + 1`, its
        commit record); then the swap of the tombstone for the fork, which is the commit; the
        listing entry last (maintenance puts it right if a crash comes between)."""
        source = self.get_swarm(user_id, swarm_id)
        at = source.seq if at is None else at
        if at > source.seq:
            raise InvalidState(f"the swarm has no step {at} yet: its latest is {source.seq}")
        if source.pending is not None:
            # Its records must be stored before they are read.
            try:
                self.committer.roll_forward(source, source.pending)
            except SwarmNotFound as exc:  # deleted meanwhile
                raise NotFound(f"swarm {swarm_id} not found") from exc
        try:
            folded = fold(self.content, swarm_id, at, self.committer.snapshot_every)
            if at == 0 < source.seq:  # as the source was created: its first record says
                folded.swarm = fold_from(self.content, swarm_id, None, 1).swarm
        except IncompleteRecords as exc:
            raise InvalidState(
                f"swarm {swarm_id} cannot be forked at step {at}: it is older than the "
                "records forks are made from"
            ) from exc
        self._check_swarm_quota(user_id)
        fork_id = self.new_id()
        copied = folded.renamed(swarm_id, fork_id)
        at_fork = self._forked_document(source, copied, at, reuse_llm)
        tombstone = at_fork.model_copy(update={"status": SwarmStatus.DELETED})
        try:
            self.store.put_summary(tombstone.summary())
            etag = self.store.create_swarm(tombstone)
            self.content.copy_swarm(swarm_id, fork_id, at)
            nodes = (
                [
                    # Its reuse of recorded answers starts over, in its own source's numbering.
                    node.model_copy(update={"recorded_seq": 0})
                    for node in copied.node_documents()
                ]
                if at > 0
                else []
            )
            for start in range(0, len(nodes), NODES_PER_WRITE):
                chunk = nodes[start : start + NODES_PER_WRITE]
                etag = self.store.replace_swarm(tombstone, etag, chunk)
            fork = self._commit_fork(Versioned(tombstone, etag), at_fork.status)
        except ConflictError as exc:
            # Purged as abandoned meanwhile (it took longer than `fork_abandoned_after`).
            raise InvalidState("the fork took too long and was abandoned; try again") from exc
        log.info("forked swarm_id=%s at=%s into %s", swarm_id, at, fork_id)
        return fork

    def _forked_document(self, source: Swarm, copied: Folded, at: int, reuse_llm: bool) -> Swarm:
        """The fork's document: the source's after step `at` (`copied`: its fold made the
        fork's), with the operations in flight parked, paused unless finished or created."""
        now, fork_id = self.clock(), copied.fork_id
        if copied.swarm is None:  # a source that never took a step
            document = Swarm(swarm_id=fork_id, user_id=source.user_id, goal=source.goal)
            document.config = source.config
        else:
            document = Swarm.model_validate(copied.swarm)
        if at == 0:
            document = Swarm(
                swarm_id=fork_id,
                user_id=source.user_id,
                goal=document.goal,
                config=document.config,
            )
        in_flight = copied.in_flight()
        if at == source.seq:
            # Operations that arrived after the step and parked without a commit (a poison
            # failure's, say) are in flight too.
            known = {op.op_id for op in in_flight}
            in_flight += [
                op
                for op in renamed_operations(source.parked, source.swarm_id, fork_id)
                if op.op_id not in known
            ]
        status = document.status
        if status in FINISHED_STATUSES:
            in_flight = []  # a finished swarm drops what arrives: none of it would run
        elif status != SwarmStatus.CREATED:
            status = SwarmStatus.PAUSED
        return document.model_copy(
            update={
                "status": status,
                "paused_reason": document.paused_reason
                if document.status == SwarmStatus.PAUSED
                else None,
                "parked": in_flight,
                "pending": None,
                "forked_from": ForkOrigin(swarm_id=source.swarm_id, seq=at),
                "reuse_llm": reuse_llm,
                "created_at": now,
                "updated_at": now,
            }
        )

    def _commit_fork(self, tombstone: Versioned[Swarm], status: SwarmStatus) -> Swarm:
        """The fork's first step: its effects while it is still a tombstone (nothing reads them
        yet; a purge takes them with the rest), all but the listing entry; then the swap, which
        is the commit (nothing is left to apply after it); then the listing entry."""
        origin = tombstone.value.forked_from
        assert origin is not None
        change = ControlCommit(tombstone.value, tombstone.value.created_at)
        change.swarm.status = status
        change.event(
            EventType.SWARM_FORKED,
            {
                "forked_from": origin.model_dump(),
                "reuse_llm": tombstone.value.reuse_llm,
                "parked": len(tombstone.value.parked),
            },
        )
        decision = change.decision()
        fork = change.swarm
        first = self.committer.seal(fork, origin.seq + 1, forked_op_id(fork.swarm_id), decision)
        listing, first.effects.summary = first.effects.summary, None
        # Its record takes the whole document (it differs from the source's at `at`, which
        # the copied records rebuild, in more than the tombstone does).
        self.committer.apply(fork, first, commit_record(first, None, fork, []))
        self.store.replace_swarm(fork, tombstone.etag)
        self.store.put_summary(listing or fork.summary())
        return fork

    def list_swarms(
        self, user_id: str, limit: int, continuation_token: str | None = None
    ) -> tuple[list[SwarmSummary], str | None]:
        """One page of the caller's swarms, newest first, and the token of the next page."""
        try:
            return self.store.list_summaries(user_id, limit, continuation_token)
        except ValueError as exc:
            raise InvalidRequest("invalid continuation token") from exc

    def get_swarm(self, user_id: str, swarm_id: str) -> Swarm:
        """The caller's swarm; someone else's is indistinguishable from a missing one (404)."""
        return _owned(self.store.get_swarm(swarm_id), user_id, swarm_id)

    def _swarm_and_nodes(self, user_id: str, swarm_id: str) -> tuple[Swarm, list[Node]]:
        """The caller's swarm and its nodes (one query)."""
        got, nodes = self.store.get_swarm_and_nodes(swarm_id)
        return _owned(got, user_id, swarm_id), nodes

    def _swarm_and_node(self, user_id: str, swarm_id: str, node_id: str) -> Versioned[Node]:
        """One node of the caller's swarm (read with the swarm document: one round trip)."""
        got, node = self.store.get_swarm_and_node(swarm_id, node_id)
        _owned(got, user_id, swarm_id)
        if node is None:
            raise NotFound(f"node {node_id} not found")
        return node

    def delete_swarm(self, user_id: str, swarm_id: str) -> None:
        """Delete the swarm for good, even while it runs.

        First the tombstone, a commit like any other: from then on no read or change sees the
        swarm, no step runs on it (the commit protocol drops its operations, and a commit that
        came before is no longer rolled forward), and the listing leaves it out. Then the purge
        deletes its blobs and nodes. A worker of another process that committed a step just
        before the tombstone may still be writing that step's effects; so the tombstone itself
        and anything written late go in a second purge, by the maintenance timer, once
        `stuck_after` has passed (the age at which a worker is presumed dead, as for roll
        forward). A crash anywhere in between leaves the tombstone, which maintenance purges;
        asked again, the delete finishes its first part and answers 404."""

        def decide(got: Versioned[Swarm]) -> Decision:
            change = ControlCommit(got.value, self.clock())
            change.swarm.status = SwarmStatus.DELETED
            change.swarm.parked = []
            return change.decision()

        try:
            tombstone = self._control(swarm_id, decide, user_id)
        except NotFound:
            # Missing, someone else's, or deleted already: an earlier delete of the caller's
            # may have stopped half-way, so finish its first part (its commit's listing entry
            # included) before answering 404.
            got = self.store.get_swarm(swarm_id)
            earlier = got.value if got is not None else None
            if earlier and earlier.user_id == user_id and earlier.status == SwarmStatus.DELETED:
                self.store.put_summary(earlier.summary())
                self._remove(earlier)
            raise
        self._remove(tombstone)

    def _remove(self, tombstone: Swarm) -> None:
        """What a delete does after its tombstone (whose commit wrote the listing entry): the
        blobs and nodes go."""
        self.content.delete_swarm(tombstone.swarm_id)
        self.store.delete_nodes(tombstone.swarm_id)

    def _purge(self, summary: SwarmSummary) -> None:
        """The final purge of a deleted swarm: its blobs, its documents, its listing entry last
        (the entry is how maintenance finds the swarm again if this is interrupted)."""
        self.content.delete_swarm(summary.swarm_id)
        self.store.delete_swarm(summary.swarm_id)
        self.store.delete_summary(summary.user_id, summary.swarm_id)
        log.info("purged swarm swarm_id=%s", summary.swarm_id)

    def _check_active_quota(self, user_id: str, swarm_id: str) -> None:
        """QuotaExceeded if the user has as many active (running or waiting for the user)
        swarms as one may, besides `swarm_id`. A soft limit: two starts at the same moment
        may both pass it."""
        owned, _ = self.store.list_summaries(user_id, self.swarms_per_user)
        active = [
            s
            for s in owned
            if s.status in (SwarmStatus.RUNNING, SwarmStatus.WAITING_FOR_USER)
            and s.swarm_id != swarm_id
        ]
        if len(active) >= self.active_swarms_per_user:
            raise QuotaExceeded(
                f"you have {len(active)} running swarms, the most one user may have; "
                "pause or delete one to start another"
            )

    def spawn(self, user_id: str, swarm_id: str) -> Swarm:
        self._check_active_quota(user_id, swarm_id)

        def decide(got: Versioned[Swarm]) -> Decision:
            swarm = got.value
            if swarm.spawned:
                raise InvalidState("the swarm is spawned already")
            change = ControlCommit(swarm, self.clock())
            change.swarm.status = SwarmStatus.RUNNING
            change.swarm.spawned = True
            change.swarm.root_node_id = root_node_id(swarm.swarm_id)
            change.swarm.node_count = 1
            change.enqueue(
                root_spawn_operation(swarm.swarm_id, swarm.goal, swarm.config.limits.max_depth)
            )
            return change.decision()

        return self._control(swarm_id, decide, user_id)

    def pause(self, user_id: str, swarm_id: str) -> Swarm:
        def decide(got: Versioned[Swarm]) -> Decision:
            swarm = got.value
            if swarm.status not in (SwarmStatus.RUNNING, SwarmStatus.WAITING_FOR_USER):
                raise InvalidState(f"a {swarm.status.value} swarm cannot be paused")
            change = ControlCommit(swarm, self.clock())
            change.swarm.status = SwarmStatus.PAUSED
            return change.decision()

        return self._control(swarm_id, decide, user_id)

    def resume(self, user_id: str, swarm_id: str, max_tokens_total: int | None = None) -> Swarm:
        """Run the parked operations again; `max_tokens_total` sets a new token budget first
        (a swarm that paused because its budget was spent resumes only with a higher one)."""
        self._check_active_quota(user_id, swarm_id)

        def decide(got: Versioned[Swarm]) -> Decision:
            swarm = got.value
            if swarm.status != SwarmStatus.PAUSED:
                raise InvalidState(f"a {swarm.status.value} swarm cannot be resumed")
            change = ControlCommit(swarm, self.clock(), parked=len(swarm.parked))
            if max_tokens_total is not None:
                limits = swarm.config.limits.model_copy(
                    update={"max_tokens_total": max_tokens_total}
                )
                change.swarm.config = swarm.config.model_copy(update={"limits": limits})
            if budget_spent(change.swarm):
                raise InvalidState(
                    f"the token budget is spent ({swarm.usage.total_tokens} tokens used): "
                    "resume with a higher limits.max_tokens_total"
                )
            change.swarm.status = SwarmStatus.RUNNING
            change.swarm.paused_reason = None
            change.swarm.parked = []
            change.enqueue(*swarm.parked)
            return change.decision()

        return self._control(swarm_id, decide, user_id)

    def retry_node(self, user_id: str, swarm_id: str, node_id: str) -> Swarm:
        """Run a failed node's failed operation again (a new op id, so it is not deduped)."""

        def decide(got: Versioned[Swarm]) -> Decision:
            current = self.store.get_node(swarm_id, node_id)
            if current is None:
                raise NotFound(f"node {node_id} not found")
            failed = current.value.failed_operation
            if current.value.lifecycle != Lifecycle.FAILED or failed is None:
                raise InvalidState("only a failed node can be retried")
            attempt = int(current.value.execution_memory.get("retries", 0)) + 1
            retry = retry_operation(parse_operation(failed), attempt)
            fixed = current.value.deep_copy()
            # Back where the failed operation found it (a failed resume: waiting for the user,
            # with the committed answers still unread).
            fixed.lifecycle = fixed.failed_lifecycle or Lifecycle.RUNNING
            fixed.failed_lifecycle = None
            fixed.error = None
            fixed.failed_operation = None
            fixed.execution_memory["retries"] = attempt
            change = ControlCommit(got.value, self.clock())
            if change.swarm.status == SwarmStatus.FAILED:
                change.swarm.status = SwarmStatus.RUNNING
            change.write_node(fixed, current.value)
            if change.swarm.failed_nodes == 0 and change.swarm.status != SwarmStatus.FAILED:
                change.swarm.error = None
            change.enqueue(retry)
            return change.decision()

        return self._control(swarm_id, decide, user_id)

    def rerun_node(
        self, user_id: str, swarm_id: str, node_id: str, directive: str | None = None
    ) -> Rerun:
        """Discard the node's branch and spawn the node again, on a paused swarm.

        One commit: the node and its descendants leave the live tree (their documents are
        deleted; their chats, logs and the history stay), their parked operations are dropped
        (the worker drops the ones still queued), their open questions are cancelled, the
        parent lists the new node in the old one's place and forgets the old report, and the
        new node's spawn (same parent, action and name; `directive` or the old one) is parked,
        so resume runs it. The rest of the tree keeps its work. The commit's id comes from the
        node, so a request retried after a crash answers the same and reruns nothing twice."""
        op_id = rerun_op_id(swarm_id, node_id)

        def decide(got: Versioned[Swarm]) -> Decision:
            swarm = got.value
            tree = {n.node_id: n for n in self.store.list_nodes(swarm_id)}
            node = tree.get(node_id)
            if node is None:
                new_node_id = rerun_node_id(op_id)
                if any(new_node_id in n.children_ids for n in tree.values()):
                    return Decision(Outcome.DUPLICATE)  # this rerun committed: a retry
                raise NotFound(f"node {node_id} not found")
            if swarm.status != SwarmStatus.PAUSED:
                finished = swarm.status in FINISHED_STATUSES
                raise InvalidState(
                    f"a {swarm.status.value} swarm cannot rerun a node"
                    + ("" if finished else ": pause it first")
                )
            if node.parent_id is None or node.parent_id not in tree:
                raise InvalidState("the root cannot be rerun: create a new swarm for the goal")
            discarded = branch_ids(tree, node_id)
            gone = [tree[i] for i in discarded if i in tree]  # the rest were never spawned
            if len(gone) + 1 > MAX_COMMIT_NODES:
                raise InvalidState(
                    f"the branch has {len(gone)} nodes; a rerun discards at most "
                    f"{MAX_COMMIT_NODES - 1}: rerun smaller branches"
                )
            spawn = rerun_spawn_operation(op_id, node, directive)
            parent = tree[node.parent_id]
            updated = parent.deep_copy()
            try:
                plan.replace_child(updated, node_id, spawn.node_id)
            except plan.RerunRefused as exc:
                raise InvalidState(f"node {node_id} cannot be rerun: {exc}") from exc
            change = ControlCommit(swarm, self.clock())
            change.event(
                EventType.NODE_RERUN,
                {
                    "node_id": node_id,
                    "new_node_id": spawn.node_id,
                    "parent_id": parent.node_id,
                    "directive": spawn.payload.directive,
                    "discarded": [n.node_id for n in gone],
                },
            )
            for old in gone:
                change.delete_node(old)
                if old.interrupt is not None and old.interrupt.status == InterruptStatus.OPEN:
                    cancelled = old.interrupt.model_copy(
                        update={"status": InterruptStatus.CANCELLED}
                    )
                    change.event(EventType.INTERRUPT_ANSWERED, answered_event_data(cancelled))
            updated.updated_at = change.now
            change.write_node(updated, parent)
            dropped = set(discarded)
            change.swarm.parked = [op for op in swarm.parked if op.node_id not in dropped]
            change.swarm.parked.append(spawn)
            # The branch's nodes (spawned or only decided) make room for the new one.
            change.swarm.node_count += 1 - len(discarded)
            change.swarm.reruns += 1
            if change.swarm.failed_nodes == 0:
                change.swarm.error = None
            return change.decision()

        swarm = self._control(swarm_id, decide, user_id, op_id=op_id)
        return Rerun(swarm=swarm, node_id=node_id, new_node_id=rerun_node_id(op_id))

    def _control(
        self,
        swarm_id: str,
        decide: Callable[[Versioned[Swarm]], Decision],
        user_id: str | None = None,
        op_id: str | None = None,
    ) -> Swarm:
        """Commit a control change (as `op_id`, else a new id). With `user_id`, only on that
        user's swarm: the ownership is checked on the read the commit makes anyway; someone
        else's swarm is a missing one."""
        return self._commit_control(swarm_id, None, lambda got, _: decide(got), user_id, op_id)

    def _control_on_node(
        self, swarm_id: str, node_id: str, decide: NodeDecide, user_id: str
    ) -> Swarm:
        """`_control` for a change of one node, read with the swarm document (one round trip)."""
        return self._commit_control(swarm_id, node_id, decide, user_id, None)

    def _commit_control(
        self,
        swarm_id: str,
        node_id: str | None,
        decide: NodeDecide,
        user_id: str | None,
        op_id: str | None,
    ) -> Swarm:
        def owned(got: Versioned[Swarm], node: Versioned[Node] | None) -> Decision:
            if user_id is not None and got.value.user_id != user_id:
                raise NotFound(f"swarm {swarm_id} not found")
            return decide(got, node)

        op_id = op_id or f"control-{uuid.uuid4().hex}"
        try:
            if node_id is None:
                return self.committer.run(swarm_id, op_id, lambda got: owned(got, None)).swarm
            return self.committer.run_on_node(swarm_id, op_id, node_id, owned).swarm
        except SwarmNotFound as exc:
            raise NotFound(f"swarm {swarm_id} not found") from exc

    # --- the user's replies --------------------------------------------------------------------

    def post_user_message(
        self,
        user_id: str,
        swarm_id: str,
        node_id: str,
        content: str,
        client_message_id: str | None,
    ) -> ClientMessage:
        """Commit the user's message to the node's chat; returns its id and seq.

        Committed means kept: the message is in the chat before this returns. If it answers the
        node's open interrupt, the same commit marks the interrupt answered and enqueues the
        resume; if the node is still working on an earlier answer, the message waits among its
        unread replies and goes to the node at its next resume. The same `client_message_id`
        with the same content is the same message (nothing new); with other content, or when the
        node's conversation is over or the swarm finished, InvalidState."""
        accepted: list[ClientMessage] = []

        def decide(got: Versioned[Swarm], read: Versioned[Node] | None) -> Decision:
            swarm = got.value
            if read is None:
                raise NotFound(f"node {node_id} not found")
            node = read.value
            try:
                if client_message_id is not None:
                    known = conversation.replayed(node, client_message_id, content)
                    if known is not None:
                        accepted.append(known)
                        return Decision(Outcome.DUPLICATE)
                if swarm.status in FINISHED_STATUSES:
                    raise conversation.MessageRefused(f"the swarm is {swarm.status.value}")
                change = ControlCommit(swarm, self.clock())
                message = ChatMessage(
                    message_id=derive_id(
                        swarm_id, node_id, "message", client_message_id or uuid.uuid4().hex
                    ),
                    node_id=node_id,
                    role=ChatRole.USER,
                    content=content,
                    created_at=change.now,
                    seq=change.seq,
                )
                updated = node.deep_copy()
                accepted_as = conversation.accept(updated, message, client_message_id)
            except conversation.MessageRefused as exc:
                raise InvalidState(str(exc)) from exc
            updated.chat_length += 1
            updated.last_message_at = change.now
            updated.updated_at = change.now
            interrupt = updated.interrupt
            assert interrupt is not None
            # The node (its question answered) is announced before the message: a page that
            # renders each live event as it comes never shows the new answer under a question
            # still marked open, which would invite a second answer.
            change.write_node(updated, read.value)
            if accepted_as != conversation.Accepted.UNREAD:
                # The event carries every answer so far (a later one adds to the list).
                change.event(EventType.INTERRUPT_ANSWERED, answered_event_data(interrupt))
            change.chat(message)
            if accepted_as == conversation.Accepted.ANSWERED:
                change.enqueue(resume_operation(swarm_id, node_id, interrupt.interrupt_id))
                if swarm.status == SwarmStatus.WAITING_FOR_USER:
                    change.swarm.status = SwarmStatus.RUNNING
            accepted.append(
                ClientMessage(
                    message_id=message.message_id,
                    seq=message.seq,
                    content_digest=conversation.digest(content),
                )
            )
            return change.decision()

        self._control_on_node(swarm_id, node_id, decide, user_id)
        return accepted[-1]

    def interrupts(self, user_id: str, swarm_id: str, status: str = "open") -> list[Interrupt]:
        """The swarm's open interrupts (questions waiting for the user), oldest first; with
        `status="all"` every interrupt the swarm ever opened, folded from its history."""
        if status == "open":
            _, nodes = self._swarm_and_nodes(user_id, swarm_id)
            found = [
                n.interrupt
                for n in nodes
                if n.interrupt is not None and n.interrupt.status == InterruptStatus.OPEN
            ]
            return sorted(found, key=lambda i: (i.created_at, i.interrupt_id))
        self.get_swarm(user_id, swarm_id)
        if status != "all":
            raise InvalidRequest("status must be open or all")
        folded: dict[str, Interrupt] = {}
        for event in self.content.read(history_stream(swarm_id)):
            if event["type"] == EventType.INTERRUPT_OPENED.value:
                opened = Interrupt.model_validate(event["data"])
                folded[opened.interrupt_id] = opened
            elif event["type"] == EventType.INTERRUPT_ANSWERED.value:
                known = folded.get(event["data"]["interrupt_id"])
                if known is not None:
                    known.status = InterruptStatus(event["data"]["status"])
                    known.answer_message_ids = list(event["data"]["answer_message_ids"])
                    known.answered_at = datetime.fromisoformat(event["at"])
        return list(folded.values())

    # --- maintenance -------------------------------------------------------------------------

    def maintain(
        self,
        stuck_after: timedelta | None = None,
        idle_after: timedelta | None = None,
        limit: int = 200,
    ) -> dict[str, int]:
        """Re-drive swarms whose latest commit was never finished (its worker died and no step
        came after it), rewrite listing entries found behind their swarm, mark swarms whose live
        nodes all wait for the user as `waiting_for_user` (announced with a `swarm.status`
        event), and finish the deletes (`delete_swarm`) that are older than `stuck_after`."""
        stuck_after = self.stuck_after if stuck_after is None else stuck_after
        idle_after = self.idle_after if idle_after is None else idle_after
        now = self.clock()
        counts = {"checked": 0, "redriven": 0, "relisted": 0, "waiting_for_user": 0, "purged": 0}
        for summary in self.store.list_active_summaries(limit):
            got = self.store.get_swarm(summary.swarm_id)
            counts["checked"] += 1
            if summary.status == SwarmStatus.DELETED and got and got.value.status != summary.status:
                # A listing entry behind its swarm: a fork that stopped right after its swap
                # (the entry goes last). The swarm document says what it is.
                self.store.put_summary(got.value.summary())
                continue
            if got is None or got.value.status == SwarmStatus.DELETED:
                # A deleted swarm, or a listing entry without its swarm (a late write of a
                # step's effects after the purge): purge once no worker can still be writing.
                # A fork that never got past its tombstone may be copying still: longer.
                deleted = summary if got is None else got.value
                wait = stuck_after
                if deleted.forked_from is not None and deleted.seq == deleted.forked_from.seq:
                    wait = max(stuck_after, self.fork_abandoned_after)
                if now - deleted.updated_at >= wait:
                    self._purge(summary)
                    counts["purged"] += 1
                continue
            swarm = got.value
            quiet = now - swarm.updated_at
            pending = swarm.pending
            if pending is not None and quiet >= stuck_after:
                # No step came after this commit for a while: its worker may have died before
                # applying it. Apply it (idempotent) and clear it, so it is done once.
                try:
                    if self.committer.roll_forward(swarm, pending, applier_dead=True):
                        counts["redriven"] += 1
                except SwarmNotFound:
                    continue  # deleted meanwhile: a later run purges what is left
                with contextlib.suppress(ConflictError):
                    self.store.replace_swarm(swarm.model_copy(update={"pending": None}), got.etag)
                pending = None
            if pending is None and swarm.status != summary.status:
                # A listing entry behind its swarm: the applier of a pause (or of the end) died
                # between the history batch and the entry, which goes last when it leaves the
                # statuses looked at here. Not while a commit may still be being applied: the
                # entry must not say `paused` before the rest of the pause is in place.
                self.store.put_summary(swarm.summary())
                counts["relisted"] += 1
                continue
            # Nothing runnable (parents only wait for children) and someone waits for the user.
            runnable = sum(
                swarm.node_counts.get(k.value, 0) for k in (Lifecycle.SPAWNED, Lifecycle.RUNNING)
            )
            waiting = swarm.node_counts.get(Lifecycle.WAITING_FOR_USER.value, 0)
            if (
                swarm.status == SwarmStatus.RUNNING
                and runnable == 0
                and waiting > 0
                and quiet >= idle_after
            ):
                with contextlib.suppress(InvalidState):
                    self._control(swarm.swarm_id, self._mark_waiting)
                    counts["waiting_for_user"] += 1
        return counts

    def _mark_waiting(self, got: Versioned[Swarm]) -> Decision:
        if got.value.status != SwarmStatus.RUNNING:
            raise InvalidState("no longer running")
        change = ControlCommit(got.value, self.clock())
        change.swarm.status = SwarmStatus.WAITING_FOR_USER
        return change.decision()

    # --- reads -------------------------------------------------------------------------------

    def state(self, user_id: str, swarm_id: str, at: int | None = None) -> dict[str, Any]:
        """The tree now, or as it was right after step `at`: the snapshot at or before `at`
        (stored by the commits every `snapshot_every` steps), then the history between them.
        `latest_seq` is the swarm's latest step (the end of a time slider)."""
        if at is not None and at < 0:
            raise InvalidRequest("`at` must be >= 0")
        if at is None:  # the tree now: one query
            swarm, nodes_now = self._swarm_and_nodes(user_id, swarm_id)
        else:  # a past tree needs only the swarm document, unless `at` is now
            swarm = self.get_swarm(user_id, swarm_id)
            nodes_now = self.store.list_nodes(swarm_id) if at >= swarm.seq else []
        if at is None or at >= swarm.seq:
            nodes = sorted((n.public_view() for n in nodes_now), key=tree_order)
            return {"seq": swarm.seq, "latest_seq": swarm.seq, "nodes": nodes}
        replay, _ = self._replayed(swarm_id, at, until_seq=at)
        nodes = sorted(replay.views.values(), key=tree_order)
        return {"seq": at, "latest_seq": swarm.seq, "nodes": nodes}

    def _replayed(
        self, swarm_id: str, after: int, until_seq: int, limit: int | None = None
    ) -> tuple[TreeReplay, list[dict[str, Any]]]:
        """The history replayed up to `until_seq` from the state snapshot at or before step
        `after` (from the start without one): the tree as the last batch replayed left it, and
        the events after `after` as they were published, whole batches, at most `limit` of them
        (unless one batch has more). Should the snapshot not fit the history after it, from
        the start."""
        snapshot = self._snapshot_before(swarm_id, after)
        stream = history_stream(swarm_id)
        while True:
            if snapshot is None:
                replay, mark = TreeReplay(), STREAM_START
            else:
                replay = TreeReplay(snapshot["nodes"], int(snapshot["seq"]))
                mark = snapshot["history"]
            events: list[dict[str, Any]] = []
            try:
                for batch in self.content.read_batches(stream, mark, replay.seq, until_seq):
                    shown = replay.take(batch)
                    if batch.seq <= after:
                        continue
                    if limit is not None and events and len(events) + len(shown) > limit:
                        break
                    events.extend(shown)
                return replay, events
            except IncompleteRecords:
                if snapshot is None:
                    raise
                log.warning(
                    "snapshot %s of swarm %s does not fit its history: replayed from the start",
                    snapshot["seq"],
                    swarm_id,
                    exc_info=True,
                )
                snapshot = None

    def _snapshot_before(self, swarm_id: str, at: int) -> dict[str, Any] | None:
        """The latest snapshot at or before `at`: where the commits put it (one read), else,
        when that one is missing (its commit's applier came late, or `snapshot_every` changed),
        the latest listed."""
        every = self.committer.snapshot_every
        expected = at - at % every
        if expected == 0:
            return None
        found = self.content.get_snapshot(swarm_id, expected)
        if found is not None and "history" in found:
            return found
        listed = self.content.latest_snapshot(swarm_id, at)
        return listed if listed is not None and "history" in listed else None

    def history(
        self, user_id: str, swarm_id: str, after: int = 0, limit: int = 500
    ) -> dict[str, Any]:
        """The events after step `after`, whole steps, at most `limit` of them (unless one step
        has more), as they were published: replayed from the state snapshot at or before
        `after`, which shows the `node.updated` events the history keeps as their node's id."""
        self.get_swarm(user_id, swarm_id)
        _, events = self._replayed(swarm_id, after, sys.maxsize, limit)
        next_after = events[-1]["seq"] if events else after
        return {"events": events, "next_after": next_after}

    def chats(self, user_id: str, swarm_id: str) -> list[dict[str, Any]]:
        _, nodes = self._swarm_and_nodes(user_id, swarm_id)
        out = []
        for node in nodes:
            if node.chat_length == 0 and node.action != ActionType.ASK_USER:
                continue
            out.append(
                {
                    "node_id": node.node_id,
                    "name": node.name,
                    "lifecycle": node.lifecycle.value,
                    "waiting_for_user": node.interrupt is not None
                    and node.interrupt.status == InterruptStatus.OPEN,
                    "last_message_at": node.last_message_at,
                }
            )
        return out

    def chat_messages(
        self, user_id: str, swarm_id: str, node_id: str, after: int = 0
    ) -> list[dict[str, Any]]:
        self._swarm_and_node(user_id, swarm_id, node_id)
        return self.content.read(chat_stream(swarm_id, node_id), after_seq=after)

    def node_detail(self, user_id: str, swarm_id: str, node_id: str) -> dict[str, Any]:
        got = self._swarm_and_node(user_id, swarm_id, node_id)
        entries = self.content.read(log_stream(swarm_id, node_id))
        return {
            **got.value.public_view(),
            "context": got.value.context,
            "logs": [e for e in entries if e.get("kind") == "log"],
            "journal": [e for e in entries if e.get("kind") == "journal"],
        }

    # --- live events -------------------------------------------------------------------------

    def client_url(self, user_id: str, swarm_id: str) -> tuple[str, datetime]:
        """A receive-only Web PubSub URL for the caller, joined to their swarm's group."""
        self.get_swarm(user_id, swarm_id)
        return self.client_access.client_access_url(user_id, swarm_id)


def _owned(got: Versioned[Swarm] | None, user_id: str, swarm_id: str) -> Swarm:
    """The swarm as read, if it is the user's and not deleted; else NotFound (someone else's
    swarm is indistinguishable from a missing one)."""
    if got is None or got.value.user_id != user_id or got.value.status == SwarmStatus.DELETED:
        raise NotFound(f"swarm {swarm_id} not found")
    return got.value
