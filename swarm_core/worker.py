"""The worker: runs one queue message (one operation) with the commit protocol of DESIGN.md §4.

The commit protocol, per swarm:

1. Read the swarm document (with its ETag). If the operation is committed already, there is
   nothing to run: its commit record exists (effects all applied: ack), or it is the swarm's
   `pending` commit (effects maybe half applied: re-drive them, idempotently, and ack).
2. If the swarm's `pending` commit (another operation's) has no commit record yet, its worker may
   have crashed mid-way: apply its effects first (roll forward). So at most the latest commit is
   ever unfinished, and each commit's effects land before the next commit.
3. Paused swarm: park the operation on the swarm document (resume re-enqueues it). Finished
   swarm: drop it.
4. Read the node (and parent), make the operation's one LLM call if it is an `llm` operation, run
   the pure step, and **commit**: replace the swarm document iff its ETag is unchanged, with
   `seq + 1` and the step's effects as the new `pending`. Losing that race (412) means another step
   of this swarm committed first: retry from a fresh read (the LLM answer is kept, not re-asked).
5. Apply the effects: node writes (create, or replace iff at the ETag the step read), appends to
   chats/logs/history keyed by seq (appended at most once), enqueues (consumers dedupe by op_id),
   publishes; last, write the commit record, which marks the commit fully applied.

Every effect is idempotent, so re-driving after a crash at any point gives the crash-free result.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from swarm_core.actions.context import StepView
from swarm_core.actions.schemas import RESPONSE_MODELS
from swarm_core.engine import advance_one_step, nodes_to_read
from swarm_core.llm import LanguageModel, LLMError, LLMRequest, LLMResult
from swarm_core.models import (
    FINISHED_STATUSES,
    CommitRecord,
    Effects,
    Node,
    NodeWrite,
    Operation,
    OperationKind,
    PendingCommit,
    StepResult,
    Swarm,
    SwarmStatus,
    utcnow,
)
from swarm_core.ports import (
    ConflictError,
    ContentStore,
    EventPublisher,
    OperationQueue,
    SwarmStore,
    Versioned,
    chat_stream,
    history_stream,
    log_stream,
)

log = logging.getLogger(__name__)

APPLIED_CACHE_SIZE = 4096


class Outcome(StrEnum):
    COMMITTED = "committed"
    DUPLICATE = "duplicate"  # committed and applied before: nothing to do
    REDRIVEN = "redriven"  # committed before, effects re-applied
    PARKED = "parked"
    DROPPED = "dropped"


class TooManyConflicts(Exception):
    """Retried commits kept losing; the message is left for the queue to deliver again."""


class SwarmNotFound(Exception):
    pass


@dataclass
class Decision:
    """What a commit function decided on a fresh read of the swarm."""

    outcome: Outcome
    swarm: Swarm | None = None  # the new swarm document (without `pending`)
    effects: Effects = field(default_factory=Effects)


Decide = Callable[[Versioned[Swarm]], Decision]


class SwarmCommitter:
    """The commit loop shared by the worker (node steps) and the services (control changes)."""

    def __init__(
        self,
        store: SwarmStore,
        content: ContentStore,
        queue: OperationQueue,
        publisher: EventPublisher,
        max_attempts: int = 50,
    ) -> None:
        self.store = store
        self.content = content
        self.queue = queue
        self.publisher = publisher
        self.max_attempts = max_attempts
        # Commits this process applied completely (their commit record is written): the next
        # step of the swarm needs no read to know that. Only ever holds true facts, so it is
        # safe to lose (a new process reads the commit record instead).
        self._applied: OrderedDict[str, None] = OrderedDict()

    def run(self, swarm_id: str, op_id: str, decide: Decide) -> Outcome:
        for _ in range(self.max_attempts):
            got = self.store.get_swarm(swarm_id)
            if got is None:
                raise SwarmNotFound(swarm_id)
            swarm = got.value
            pending = swarm.pending
            if pending is not None and pending.op_id == op_id:
                self.apply(swarm, pending)
                return Outcome.REDRIVEN
            if self.store.get_commit(swarm_id, op_id) is not None:
                return Outcome.DUPLICATE
            if (
                pending is not None
                and pending.op_id not in self._applied
                and self.store.get_commit(swarm_id, pending.op_id) is None
            ):
                self.apply(swarm, pending)
            decision = decide(got)
            if decision.swarm is None:
                return decision.outcome
            new = decision.swarm
            if decision.outcome == Outcome.COMMITTED:
                new.seq = swarm.seq + 1
                new.pending = PendingCommit(op_id=op_id, seq=new.seq, effects=decision.effects)
            try:
                self.store.replace_swarm(new, got.etag)
            except ConflictError:
                log.info("commit conflict swarm_id=%s op_id=%s: retrying", swarm_id, op_id)
                continue
            if new.pending is not None and decision.outcome == Outcome.COMMITTED:
                self.apply(new, new.pending)
            return decision.outcome
        raise TooManyConflicts(f"op {op_id} on swarm {swarm_id}")

    def apply(self, swarm: Swarm, pending: PendingCommit) -> None:
        """Apply a commit's effects; safe to run any number of times, by anyone."""
        effects, seq, swarm_id = pending.effects, pending.seq, swarm.swarm_id
        for write in effects.node_writes:
            self.store.write_node(write.node, write.base_etag)
        for node_id, chat in _by_node(effects.chat_messages):
            self.content.append(chat_stream(swarm_id, node_id), seq, chat)
        for node_id, logs in _by_node(effects.logs):
            self.content.append(log_stream(swarm_id, node_id), seq, logs)
        events = [e.model_dump(mode="json") for e in effects.events]
        if events:
            self.content.append(history_stream(swarm_id), seq, events)
        for operation in effects.operations:
            self.queue.enqueue(operation)
        if events:
            try:
                self.publisher.publish(swarm_id, events)
            except Exception:
                # Clients catch up from the stored history (`history?after=`): never fail a step.
                log.warning("publish failed swarm_id=%s seq=%s", swarm_id, seq, exc_info=True)
        if effects.summary is not None:
            self.store.put_summary(effects.summary)
        self.store.put_commit(CommitRecord(swarm_id=swarm_id, op_id=pending.op_id, seq=seq))
        self._applied[pending.op_id] = None
        if len(self._applied) > APPLIED_CACHE_SIZE:
            self._applied.popitem(last=False)


def _by_node(items: Iterable[Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        grouped[item.node_id].append(item.model_dump(mode="json"))
    return list(grouped.items())


class SwarmWorker:
    """Runs operations: `process(message)` is what the queue trigger calls for each message."""

    def __init__(
        self,
        store: SwarmStore,
        content: ContentStore,
        queue: OperationQueue,
        publisher: EventPublisher,
        llm: LanguageModel,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.llm = llm
        self.clock = clock
        self.committer = SwarmCommitter(store, content, queue, publisher)

    def process(self, message: str | bytes) -> Outcome:
        operation = Operation.model_validate_json(message)
        llm_answer: list[LLMResult | LLMError] = []
        try:
            outcome = self.committer.run(
                operation.swarm_id,
                operation.op_id,
                lambda got: self._decide(operation, got, llm_answer),
            )
        except SwarmNotFound:
            log.info("dropped op_id=%s: swarm %s is gone", operation.op_id, operation.swarm_id)
            return Outcome.DROPPED
        log.debug(
            "op %s swarm_id=%s node_id=%s op_id=%s",
            outcome.value,
            operation.swarm_id,
            operation.node_id,
            operation.op_id,
        )
        return outcome

    def _decide(
        self, operation: Operation, got: Versioned[Swarm], llm_answer: list[LLMResult | LLMError]
    ) -> Decision:
        swarm = got.value
        if swarm.status in FINISHED_STATUSES or not swarm.spawned:
            log.info("dropped op_id=%s: swarm is %s", operation.op_id, swarm.status.value)
            return Decision(Outcome.DROPPED)
        if swarm.status == SwarmStatus.PAUSED:
            if any(p.op_id == operation.op_id for p in swarm.parked):
                return Decision(Outcome.PARKED)
            parked = swarm.model_copy(deep=True)
            parked.parked.append(operation)
            parked.pending = swarm.pending
            return Decision(Outcome.PARKED, parked)
        node_id, with_parent = nodes_to_read(operation)
        node = self.store.get_node(swarm.swarm_id, node_id) if node_id else None
        parent = None
        if with_parent and node is not None and node.value.parent_id:
            parent = self.store.get_node(swarm.swarm_id, node.value.parent_id)
        step_op = operation
        llm_result = None
        if operation.kind == OperationKind.LLM and node is not None:
            if not llm_answer:
                llm_answer.append(self._call_llm(operation))
            answer = llm_answer[0]
            if isinstance(answer, LLMError):
                step_op = operation.model_copy(
                    update={
                        "kind": OperationKind.FAIL,
                        "payload": {
                            "error": f"LLM call failed: {answer}",
                            "operation": operation.model_dump(mode="json"),
                        },
                    }
                )
            else:
                llm_result = answer
        view = StepView(
            swarm=swarm,
            node=node.value if node else None,
            parent=parent.value if parent else None,
            now=self.clock(),
            llm_result=llm_result,
        )
        result = advance_one_step(step_op, view)
        etags = {v.value.node_id: v.etag for v in (node, parent) if v is not None}
        new_swarm, effects = apply_result(swarm, view, result, etags)
        return Decision(Outcome.COMMITTED, new_swarm, effects)

    def _call_llm(self, operation: Operation) -> LLMResult | LLMError:
        """The operation's one LLM call. Retryable errors propagate (the queue retries the
        message); a permanent error becomes the node's failure."""
        request = LLMRequest.model_validate(operation.payload["request"])
        response_model = RESPONSE_MODELS[request.task]
        try:
            return self.llm.complete(request, response_model)
        except LLMError as exc:
            if exc.retryable:
                raise
            return exc


def apply_result(
    swarm: Swarm, view: StepView, result: StepResult, etags: dict[str, str]
) -> tuple[Swarm, Effects]:
    """The new swarm document and the effects of a step's result (pure)."""
    new = swarm.model_copy(deep=True)
    new.pending = None
    new.updated_at = view.now
    new.usage = new.usage.plus(result.usage)
    new.node_count += result.nodes_reserved
    counts = dict(new.node_counts)
    before: dict[str, Node] = {n.node_id: n for n in (view.node, view.parent) if n is not None}
    writes: list[NodeWrite] = []
    for node in result.new_nodes:
        counts[node.lifecycle.value] = counts.get(node.lifecycle.value, 0) + 1
        writes.append(NodeWrite(node=node, base_etag=None))
    for node in result.updated_nodes:
        old = before.get(node.node_id)
        if old is None:
            continue  # a node the step did not read cannot be written safely
        counts[old.lifecycle.value] = counts.get(old.lifecycle.value, 1) - 1
        counts[node.lifecycle.value] = counts.get(node.lifecycle.value, 0) + 1
        writes.append(NodeWrite(node=node, base_etag=etags[node.node_id]))
    new.node_counts = {k: v for k, v in counts.items() if v}
    status_changed = result.swarm_status is not None and result.swarm_status != swarm.status
    if result.swarm_status is not None:
        new.status = result.swarm_status
    if result.final_report is not None:
        new.final_report = result.final_report
    if result.error is not None:
        new.error = result.error
    effects = Effects(
        node_writes=writes,
        chat_messages=result.chat_messages,
        events=result.events,
        logs=result.logs,
        operations=result.operations,
    )
    if status_changed:
        summary = new.summary()
        summary.seq = swarm.seq + 1
        effects.summary = summary
    return new, effects
