"""The step context: what an action function sees during one step and the only way it says what
should happen.

An action function gets a `StepContext`, changes `ctx.node` (and, for termination, `ctx.parent`),
and calls `ctx.call_llm`, `ctx.ask_user`, `ctx.terminate`, `ctx.spawn_children`, `ctx.chat` or
`ctx.log`. Nothing here does I/O: `finish()` turns it all into a `StepResult` with ids derived from
the operation, so that the same step on the same view always gives the same result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from swarm_core import conversation
from swarm_core.llm import LLMRequest, LLMResult
from swarm_core.models import (
    ActionType,
    ChatMessage,
    ChatRole,
    Continuation,
    EventType,
    HistoryEvent,
    Interrupt,
    Lifecycle,
    LogEntry,
    Node,
    SwarmStatus,
    Usage,
    derive_id,
)
from swarm_core.operations import (
    ActionPayload,
    AnyPayload,
    LLMPayload,
    Operation,
    TerminatePayload,
    make_operation,
    resume_operation,
    spawn_payload,
)
from swarm_core.swarm import Swarm

# Op ids kept per node for duplicate detection: far more than the operations that can be in
# flight for one node at once (a node's operations mostly follow one another).
RECENT_OP_IDS = 64


class StepResult(BaseModel):
    """What one step decided; the committer turns it into a commit and its effects."""

    updated_nodes: list[Node] = Field(default_factory=list)
    new_nodes: list[Node] = Field(default_factory=list)
    operations: list[Operation] = Field(default_factory=list)
    chat_messages: list[ChatMessage] = Field(default_factory=list)
    events: list[HistoryEvent] = Field(default_factory=list)
    logs: list[LogEntry] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    nodes_reserved: int = 0
    swarm_status: SwarmStatus | None = None
    final_report: str | None = None
    error: str | None = None


class StepFailure(Exception):
    """The node's step cannot succeed (bad model output, unknown function): fail the node."""


class SwarmLimitExceeded(Exception):
    """A limit of the swarm's config was hit: the swarm fails with this message."""


@dataclass
class StepView:
    """What the worker read for the step: the swarm, the target node and its parent."""

    swarm: Swarm
    node: Node | None
    parent: Node | None
    now: datetime
    llm_result: LLMResult | None = None
    # The request `llm_result` answers (an `llm` step's: the worker wrote it and made the call).
    llm_request: LLMRequest | None = None


@dataclass(frozen=True)
class ChildSpec:
    """A child the step decided to spawn."""

    name: str
    directive: str
    action: ActionType


class StepContext:
    def __init__(self, operation: Operation, view: StepView) -> None:
        self.op = operation
        self.swarm = view.swarm
        self.limits = view.swarm.config.limits
        self.now = view.now
        self.seq = view.swarm.seq + 1
        self.llm_result = view.llm_result
        self.llm_request = view.llm_request
        # Copies: the view stays as read, so the worker can tell what changed.
        self.node: Node | None = view.node.deep_copy() if view.node else None
        self.parent: Node | None = view.parent.deep_copy() if view.parent else None
        self._touched: dict[str, Node] = {}
        self._new_nodes: list[Node] = []
        self._operations: list[Operation] = []
        self._chat: list[ChatMessage] = []
        self._events: list[HistoryEvent] = []
        self._logs: list[LogEntry] = []
        self.nodes_reserved = 0
        self.result = StepResult()

    # --- node access ---------------------------------------------------------------------

    def require_node(self) -> Node:
        if self.node is None:
            raise StepFailure(f"node {self.op.node_id} does not exist")
        return self.node

    def touch(self, node: Node) -> None:
        """Mark a node of the view as changed (it will be written and announced)."""
        node.updated_at = self.now
        self._touched[node.node_id] = node

    # --- what a step can do --------------------------------------------------------------

    def enqueue(self, payload: AnyPayload, node_id: str) -> Operation:
        """Enqueue the operation `payload` stands for, on `node_id`, with a derived op id."""
        op = make_operation(
            self.op.child_op_id(len(self._operations)), self.swarm.swarm_id, node_id, payload
        )
        self._operations.append(op)
        return op

    def call_action(self, node: Node, function: str, args: dict[str, Any] | None = None) -> None:
        self.enqueue(ActionPayload(function=function, args=args or {}), node.node_id)

    def call_llm(self, task: str, next_function: str, args: dict[str, Any] | None = None) -> None:
        """Ask for one LLM call of `task` (an `llm` operation); `next_function` gets the
        completion. The request is written when the call is made, from the node as that step
        reads it: the facts by the action's `FACTS[task]` (`swarm_core.engine.llm_request`)."""
        node = self.require_node()
        payload = LLMPayload(task=task, next_function=next_function, args=args or {})
        self.enqueue(payload, node.node_id)

    def ask_user(
        self, question: str, next_function: str, args: dict[str, Any] | None = None
    ) -> None:
        """Ask the user `question` and end the step: the question goes to the node's chat, an
        interrupt opens, and the node waits with its continuation (`next_function`, `args`).
        Replies the user sent while the node was working answer it at once."""
        node = self.require_node()
        node.continuation = Continuation(function_to_call=next_function, args=args or {})
        node.lifecycle = Lifecycle.WAITING_FOR_USER
        conversation.remember(node, "agent", question)
        self.chat(node, ChatRole.AGENT, question)
        interrupt_id = derive_id(self.op.op_id, "interrupt")
        interrupt = conversation.open_interrupt(node, interrupt_id, question, self.now)
        self.event(EventType.INTERRUPT_OPENED, interrupt.model_dump(mode="json"))
        if conversation.answer_with_unread(node, self.now):
            self.interrupt_answered(node)
        self.touch(node)

    def take_unread_replies(self) -> int:
        """Give the node the user's replies it has not read (into its conversation); how many."""
        node = self.require_node()
        replies = conversation.take_unread(node)
        if replies:
            self.touch(node)
            self.log(node, f"read {len(replies)} more message(s) from the user")
        return len(replies)

    def interrupt_answered(self, node: Node) -> None:
        """Announce the node's answered interrupt and resume the node."""
        interrupt = node.interrupt
        assert interrupt is not None
        self.event(EventType.INTERRUPT_ANSWERED, answered_event_data(interrupt))
        self._operations.append(
            resume_operation(self.swarm.swarm_id, node.node_id, interrupt.interrupt_id)
        )

    def terminate(self, report: str) -> None:
        """Report `report` upward (a `terminate` operation); the node's conversation is over."""
        node = self.require_node()
        node.reporting = True
        self.touch(node)
        self.enqueue(TerminatePayload(report=report), node.node_id)

    def spawn_children(self, children: list[ChildSpec]) -> list[str]:
        """Decide children of the node (spawn operations); returns their ids.

        Applies the limits: children beyond `max_children` are dropped (logged), children at
        `max_depth` cannot plan further (they execute), and exceeding `max_nodes` fails the swarm.
        """
        node = self.require_node()
        room = self.limits.max_children - len(node.children_ids)
        if len(children) > room:
            self.log(
                node,
                f"plan asked for {len(children)} children; max_children allows {max(room, 0)} more",
                level="warning",
            )
            children = children[: max(room, 0)]
        if not children:
            return []
        reserved = self.swarm.node_count + self.nodes_reserved + len(children)
        if reserved > self.limits.max_nodes:
            raise SwarmLimitExceeded(
                f"max_nodes limit reached: the swarm would have {reserved} nodes "
                f"(limit {self.limits.max_nodes})"
            )
        ids: list[str] = []
        depth = node.depth + 1
        for child in children:
            action = child.action
            if action == ActionType.PLAN and depth >= self.limits.max_depth:
                action = ActionType.EXECUTE
                self.log(node, f"child {child.name!r} is at max_depth {depth}: it executes")
            child_id = derive_id(self.op.op_id, "node", len(ids))
            ids.append(child_id)
            payload = spawn_payload(
                parent_id=node.node_id,
                depth=depth,
                action=action,
                name=child.name,
                directive=child.directive,
            )
            self.enqueue(payload, child_id)
        node.children_ids.extend(ids)
        self.nodes_reserved += len(ids)
        self.touch(node)
        return ids

    def add_node(self, node: Node) -> None:
        self._new_nodes.append(node)
        self.event(EventType.NODE_SPAWNED, {"node": node.public_view()})

    def chat(self, node: Node, role: ChatRole, content: str, message_id: str | None = None) -> None:
        message = ChatMessage(
            message_id=message_id or derive_id(self.op.op_id, "msg", len(self._chat)),
            node_id=node.node_id,
            role=role,
            content=content,
            created_at=self.now,
            seq=self.seq,
        )
        self._chat.append(message)
        node.chat_length += 1
        node.last_message_at = self.now
        self.touch(node)
        self.event(EventType.CHAT_MESSAGE, message.model_dump(mode="json"))

    def log(
        self,
        node: Node,
        message: str,
        *,
        level: str = "info",
        kind: str = "log",
        data: dict[str, Any] | None = None,
    ) -> None:
        self._logs.append(
            LogEntry.model_validate(
                {
                    "node_id": node.node_id,
                    "kind": kind,
                    "level": level,
                    "message": message,
                    "data": data or {},
                    "at": self.now,
                    "seq": self.seq,
                }
            )
        )

    def event(self, type_: EventType, data: dict[str, Any]) -> None:
        self._events.append(
            HistoryEvent(
                type=type_,
                swarm_id=self.swarm.swarm_id,
                seq=self.seq,
                index=len(self._events),
                at=self.now,
                data=data,
            )
        )

    def set_swarm_status(self, status: SwarmStatus, **data: Any) -> None:
        if status == self.swarm.status and not data:
            return
        self.result.swarm_status = status
        self.event(EventType.SWARM_STATUS, {"status": status.value, **data})

    # --- result ----------------------------------------------------------------------------

    def finish(self) -> StepResult:
        if self.node is not None:
            # The step's op id goes into its node's recent ones: a redelivered message of this
            # operation is then known as a duplicate from the node read its step needs anyway.
            recent = [*self.node.recent_op_ids, self.op.op_id]
            self.node.recent_op_ids = recent[-RECENT_OP_IDS:]
            self.touch(self.node)
        elif not self._events:
            # Every committed step leaves at least one event, so a gap in `seq` is a real gap.
            self.event(EventType.SWARM_STATUS, {"status": self.swarm.status.value})
        # Lifecycle changes are in these events (the history); the node's log does not repeat them.
        for node in self._touched.values():
            self.event(EventType.NODE_UPDATED, {"node": node.public_view()})
        self.result.updated_nodes = list(self._touched.values())
        self.result.new_nodes = self._new_nodes
        self.result.operations = self._operations
        self.result.chat_messages = self._chat
        self.result.events = self._events
        self.result.logs = self._logs
        self.result.nodes_reserved = self.nodes_reserved
        return self.result


# An action's function: it reads the context and records what should happen; `args` are the
# operation's arguments (for a continuation, what it saved; after an LLM call, `completion`).
ActionFunction = Callable[[StepContext, dict[str, Any]], None]

# The facts of one of an action's LLM tasks, from the swarm and the node as the `llm` step
# reads them (what the step that asked for the call committed).
FactsFunction = Callable[[Swarm, Node], dict[str, Any]]


def answered_event_data(interrupt: Interrupt) -> dict[str, Any]:
    """The data of an `interrupt.answered` event."""
    return interrupt.model_dump(
        mode="json", include={"interrupt_id", "node_id", "status", "answer_message_ids"}
    )
