"""The worker: one queue message, one node step — read, LLM call, step, commit.

`process(message)` is what the queue trigger calls. It decides on a read of the swarm and the
operation's node (one round trip; a `spawn` reads its node, which it makes, apart), or, where
storage is remote, on the documents as this process's last commit of the swarm left them (no
read; proven current by the commit, and read fresh before the LLM call or doing nothing), via the
commit protocol of `swarm_core.commits`: a paused swarm parks the operation on the swarm
document (resume re-enqueues it), a finished or deleted swarm drops it; otherwise it reads the
node's parent for a `terminate`, drops an operation whose node a rerun discarded, makes
the operation's one LLM call if it is an `llm` operation (outside the swarm's lock: `CallFirst`),
runs the pure step and commits the result. A lost commit race decides again on a fresh read
with the LLM answer it already has (never asked twice), as long as the fresh read writes the
same request (an answer is only used for the request it answers). `fail_poisoned` is what the poison
queue's trigger calls for an operation that failed on every delivery.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from swarm_core import telemetry
from swarm_core.actions.prompts import with_prompt
from swarm_core.actions.schemas import RESPONSE_MODELS
from swarm_core.commits import (
    CallFirst,
    CommitRun,
    ControlCommit,
    Decision,
    Outcome,
    SwarmCommitter,
    SwarmNotFound,
    apply_step_result,
)
from swarm_core.engine import advance_one_step, llm_request, needs_parent
from swarm_core.forks import recorded_answer
from swarm_core.llm import LanguageModel, LLMError, LLMRequest, LLMResult
from swarm_core.models import FINISHED_STATUSES, Node, SwarmStatus, derive_id, utcnow
from swarm_core.operations import (
    FailOperation,
    LLMOperation,
    Operation,
    SpawnOperation,
    fail_operation,
    parse_operation,
    spawned_by,
)
from swarm_core.ports import HeldMessage, SwarmStore, Versioned
from swarm_core.step_context import StepFailure, StepView
from swarm_core.swarm import Swarm, budget_spent

log = logging.getLogger(__name__)

# An `llm` step's call: the request the worker wrote and what the model answered.
LLMAnswer = tuple[LLMRequest, LLMResult | LLMError]
# A step run next that fails goes back to the queue this much later, as a failed delivery does
# (host.json's `queues.visibilityTimeout`).
NEXT_STEP_RETRY_SECONDS = 10


class SwarmWorker:
    """Runs operations, one step each, through the app's one committer."""

    def __init__(
        self,
        store: SwarmStore,
        committer: SwarmCommitter,
        llm: LanguageModel,
        clock: Callable[[], datetime] = utcnow,
        run_next_steps: int = 0,
    ) -> None:
        self.store = store
        self.committer = committer
        self.llm = llm
        self.clock = clock
        # Steps run after the one delivered, each the first operation its previous step
        # enqueued (`RUN_NEXT_STEPS`): a node's steps follow one another without a trip through
        # the queue (its polling is most of a step's latency); a long chain still goes back to
        # the queue now and then, so that one swarm does not keep a worker to itself.
        self.run_next_steps = run_next_steps

    def process(self, message: str | bytes, dequeue_count: int = 1) -> Outcome:
        """Run the operation in `message` (its JSON), then the operations its step enqueued
        for itself to run next, up to `RUN_NEXT_STEPS`. Exceptions leave the message to the
        queue; a next step's failure leaves that step's operation to the queue."""
        outcome, held = self._step(parse_operation(message), dequeue_count, self.run_next_steps > 0)
        queue = self.committer.queue
        for ran in range(1, self.run_next_steps + 1):
            if held is None:
                break
            try:
                _, next_held = self._step(held.operation, 0, ran < self.run_next_steps)
            except Exception as failed:
                # As a delivery that fails: the queue retries it after a while.
                queue.settle(held, done=False, delay_seconds=NEXT_STEP_RETRY_SECONDS)
                if isinstance(failed, AssertionError):
                    raise  # a bug (and the tests' checks) surfaces, as in `SwarmCommitter._run`
                log.warning(
                    "next step op_id=%s failed: left to the queue",
                    held.operation.op_id,
                    exc_info=True,
                )
                break
            queue.settle(held, done=True)
            held = next_held
        return outcome

    def _step(
        self, operation: Operation, dequeue_count: int, run_next: bool
    ) -> tuple[Outcome, HeldMessage | None]:
        """One step; with `run_next`, the operation its commit enqueued for this worker to run
        next, held (dequeue_count 0 in the log: a step run so, not delivered)."""
        started = time.perf_counter()
        llm_answer: list[LLMAnswer] = []
        held = None
        with telemetry.step_span(operation) as span:
            try:
                run = self._commit(operation, llm_answer, run_next)
                outcome, seq, held = run.outcome, run.seq, run.held
            except SwarmNotFound:
                outcome, seq = Outcome.DROPPED, 0
            span.set_attribute("swarm.seq", seq)
            span.set_attribute("swarm.outcome", outcome.value)
        log.info(
            "step %s swarm_id=%s node_id=%s op_id=%s kind=%s seq=%s ms=%.1f dequeue_count=%s",
            outcome.value,
            operation.swarm_id,
            operation.node_id,
            operation.op_id,
            operation.kind.value,
            seq,
            (time.perf_counter() - started) * 1000,
            dequeue_count,
        )
        return outcome, held

    def fail_poisoned(self, operation: Operation) -> Outcome:
        """The queue gave up on `operation`: fail its node (the user can retry)."""
        failure = fail_operation(
            operation,
            f"{operation.kind.value} step failed on every retry (op_id {operation.op_id}); "
            "see the logs. Retry the node to run it again.",
            op_id=derive_id(operation.op_id, "poison"),
        )
        outcome = self.process(failure.model_dump_json())
        log.warning(
            "poisoned op_id=%s swarm_id=%s node_id=%s: %s",
            operation.op_id,
            operation.swarm_id,
            operation.node_id,
            outcome.value,
        )
        return outcome

    def _commit(
        self, operation: Operation, llm_answer: list[LLMAnswer], run_next: bool = False
    ) -> CommitRun:
        swarm_id, op_id = operation.swarm_id, operation.op_id
        # A step decides on the documents as this process's last commit of the swarm left
        # them when it has them (`latest`): no read on the common path.
        if isinstance(operation, SpawnOperation):
            # Its node is made by this step: read it (a duplicate) only where the swarm admits
            # the step, instead of failing a combined read on every spawn.
            def read_node() -> Versioned[Node] | None:
                return self.committer.get_node(swarm_id, operation.node_id)

            return self.committer.run(
                swarm_id,
                op_id,
                lambda got: self._decide(operation, got, read_node, llm_answer, run_next),
                latest=True,
            )
        return self.committer.run_on_node(
            swarm_id,
            op_id,
            operation.node_id,
            lambda got, node: self._decide(operation, got, lambda: node, llm_answer, run_next),
            latest=True,
        )

    def _decide(
        self,
        operation: Operation,
        got: Versioned[Swarm],
        read_node: Callable[[], Versioned[Node] | None],
        llm_answer: list[LLMAnswer],
        run_next: bool = False,
    ) -> Decision:
        swarm = got.value
        if swarm.status in FINISHED_STATUSES or not swarm.spawned:
            log.info("dropped op_id=%s: swarm is %s", operation.op_id, swarm.status.value)
            return Decision(Outcome.DROPPED)
        if swarm.status == SwarmStatus.PAUSED:
            if any(p.op_id == operation.op_id for p in swarm.parked):
                return Decision(Outcome.PARKED)
            parked = swarm.deep_copy()
            parked.parked.append(operation)
            return Decision(Outcome.PARKED, parked)
        node = read_node()
        if node is not None and (
            isinstance(operation, SpawnOperation) or operation.op_id in node.value.recent_op_ids
        ):
            return Decision(Outcome.DUPLICATE)  # its step committed (its node says so)
        if node is None and self._discarded(swarm, operation):
            log.info(
                "dropped op_id=%s swarm_id=%s node_id=%s: a rerun discarded the node",
                operation.op_id,
                swarm.swarm_id,
                operation.node_id,
            )
            return Decision(Outcome.DROPPED)
        parent = None
        if needs_parent(operation) and node is not None and node.value.parent_id:
            parent = self.committer.get_node(swarm.swarm_id, node.value.parent_id)
        step_op = operation
        llm_result = asked = None
        if isinstance(operation, LLMOperation) and node is not None:
            try:
                request = llm_request(swarm, node.value, operation)
            except StepFailure:
                request = None  # no call: the step fails the node, saying why
            if llm_answer and llm_answer[0][0] != request:
                # An answer is only used for the request it answers: this decision reads the
                # node otherwise than the one that asked (it decided on documents this process
                # remembered, out of date, or the node changed since): ask again.
                llm_answer.clear()
            if request is not None and not llm_answer:
                recorded = recorded_answer(self.committer.content, swarm, node.value, request)
                if recorded is not None:
                    llm_answer.append((request, recorded))
                elif budget_spent(swarm):
                    return self._pause_for_budget(swarm, operation)
                else:
                    # Made without holding the swarm's lock; then the step decides again.
                    raise CallFirst(lambda: llm_answer.append((request, self._call_llm(request))))
            if llm_answer:
                asked, answer = llm_answer[0]
                if isinstance(answer, LLMError):
                    step_op = fail_operation(operation, f"LLM call failed: {answer}")
                else:
                    llm_result = answer
        view = StepView(
            swarm=swarm,
            node=node.value if node else None,
            parent=parent.value if parent else None,
            now=self.clock(),
            llm_result=llm_result,
            llm_request=asked,
        )
        result = advance_one_step(step_op, view)
        decision = apply_step_result(swarm, view, result)
        if isinstance(operation, FailOperation) and operation.payload.operation is not None:
            # A poison failure stands for the operation that failed: that one is done too.
            decision.effects.consumed.append(str(operation.payload.operation["op_id"]))
        if run_next and decision.effects.operations:
            # The node's next step (or its first child's) follows at once, here: no trip
            # through the queue. The others go to the queue, for other workers.
            decision.run_next = decision.effects.operations[0].op_id
        return decision

    def _discarded(self, swarm: Swarm, operation: Operation) -> bool:
        """Whether the operation is for a node that a rerun took out of the tree (with its
        branch), whose node therefore does not exist: it must do nothing. Every operation but
        a spawn comes after its node exists, so for those a missing node is a discarded one. A
        spawn's node does not exist until it commits: it is discarded when its parent no longer
        lists it, which only a rerun does, so only a swarm that had one reads the parent."""
        spawn = spawned_by(operation)
        if spawn is None:
            return True
        if swarm.reruns == 0 or spawn.parent_id is None:
            return False
        parent = self.committer.get_node(swarm.swarm_id, spawn.parent_id)
        return parent is None or operation.node_id not in parent.value.children_ids

    def _pause_for_budget(self, swarm: Swarm, operation: Operation) -> Decision:
        """The token budget is spent: pause the swarm, saying why, and park the operation
        (resume, with a higher budget, runs it)."""
        limit = swarm.config.limits.max_tokens_total
        reason = (
            f"the token budget is spent: {swarm.usage.total_tokens} of {limit} tokens used; "
            "raise limits.max_tokens_total to resume"
        )
        change = ControlCommit(swarm, self.clock(), reason=reason)
        change.swarm.status = SwarmStatus.PAUSED
        change.swarm.paused_reason = reason
        change.swarm.parked = [*swarm.parked, operation]
        log.info("paused swarm_id=%s: %s", swarm.swarm_id, reason)
        return change.decision()

    def _call_llm(self, request: LLMRequest) -> LLMResult | LLMError:
        """The operation's one LLM call. Retryable errors propagate (the queue retries the
        message); a permanent error becomes the node's failure."""
        prompted = with_prompt(request)
        try:
            return self.llm.complete(prompted, RESPONSE_MODELS[prompted.task])
        except LLMError as exc:
            if exc.retryable:
                raise
            return exc
