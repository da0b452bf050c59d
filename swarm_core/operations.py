"""Operations: what one queue message asks a worker to do, as typed payloads.

An operation is an envelope (`op_id`, `kind`, `swarm_id`, `node_id`) around a payload whose type
the `kind` selects (a pydantic discriminated union). The wire form is
`{"op_id", "kind", "swarm_id", "node_id", "payload": {...}}`. Operations are made by the named
constructors at the bottom (`spawn_operation`, `fail_operation`, ...) or by
`StepContext.enqueue(payload, node_id)`, and read back with `parse_operation`, so a payload is
built and parsed in one place and a malformed one is a validation error, never a `KeyError`.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator
from pydantic_core import to_jsonable_python

from swarm_core.actions.specs import SPECS
from swarm_core.llm import LLMRequest
from swarm_core.models import ActionType, Node, TerminationPolicy, derive_id


class OperationKind(StrEnum):
    SPAWN = "spawn"
    ACTION = "action"
    LLM = "llm"
    USER_REPLY = "user_reply"
    TERMINATE = "terminate"
    FAIL = "fail"


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpawnPayload(Payload):
    """Create the node and run its action's `start`."""

    parent_id: str | None
    depth: int = Field(ge=0)
    action: ActionType
    name: str
    directive: str
    termination_policy: TerminationPolicy
    context: dict[str, Any] = Field(default_factory=dict)


class ActionPayload(Payload):
    """Run one function of the node's action."""

    function: str
    args: dict[str, Any] = Field(default_factory=dict)


class LLMPayload(Payload):
    """Make the one LLM call of the node's `task`, then run `next_function` with `completion`
    in `args`. The request is written when the call is made, from the node as that step reads
    it (`swarm_core.engine.llm_request`): the operation, the commit that enqueues it and the
    history stay small. `request` is the whole request, as operations enqueued by earlier
    versions carry it instead of `task`."""

    task: str | None = None
    next_function: str
    args: dict[str, Any] = Field(default_factory=dict)
    request: LLMRequest | None = None

    @model_validator(mode="after")
    def _names_its_call(self) -> LLMPayload:
        if (self.task is None) == (self.request is None):
            raise ValueError("an llm operation has a task or (older ones) a request, not both")
        return self


class UserReplyPayload(Payload):
    """Resume the node's continuation with the user's messages that answer `interrupt_id`
    (committed to the chat already, when the API accepted them)."""

    interrupt_id: str


class TerminatePayload(Payload):
    """The node is done with `report`; its parent's termination policy takes it from here."""

    report: str


class FailPayload(Payload):
    """Mark the node failed with `error`; `operation` (JSON) is what a retry runs again."""

    error: str
    operation: dict[str, Any] | None = None


class OperationBase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    op_id: str
    swarm_id: str
    node_id: str
    # The W3C trace context of the span that enqueued it (`telemetry`); None when not tracing.
    traceparent: str | None = Field(default=None, max_length=100)

    def child_op_id(self, index: int) -> str:
        """The id of the `index`-th operation this operation's step enqueues."""
        return derive_id(self.op_id, "op", index)


class SpawnOperation(OperationBase):
    kind: Literal[OperationKind.SPAWN] = OperationKind.SPAWN
    payload: SpawnPayload


class ActionOperation(OperationBase):
    kind: Literal[OperationKind.ACTION] = OperationKind.ACTION
    payload: ActionPayload


class LLMOperation(OperationBase):
    kind: Literal[OperationKind.LLM] = OperationKind.LLM
    payload: LLMPayload


class UserReplyOperation(OperationBase):
    kind: Literal[OperationKind.USER_REPLY] = OperationKind.USER_REPLY
    payload: UserReplyPayload


class TerminateOperation(OperationBase):
    kind: Literal[OperationKind.TERMINATE] = OperationKind.TERMINATE
    payload: TerminatePayload


class FailOperation(OperationBase):
    kind: Literal[OperationKind.FAIL] = OperationKind.FAIL
    payload: FailPayload


Operation = Annotated[
    SpawnOperation
    | ActionOperation
    | LLMOperation
    | UserReplyOperation
    | TerminateOperation
    | FailOperation,
    Field(discriminator="kind"),
]
AnyPayload = (
    SpawnPayload | ActionPayload | LLMPayload | UserReplyPayload | TerminatePayload | FailPayload
)

_ADAPTER: TypeAdapter[Operation] = TypeAdapter(Operation)


def compact_json(operation: Operation) -> str:
    """The operation's JSON without the fields of the operation and of its payload that are at
    their defaults, which `parse_operation` puts back (its `kind`, which says what it is,
    stays; values inside a field, such as `args`, stay whole): a queue message's body."""
    data = operation.model_dump(mode="json")
    _drop_defaults(data, operation)
    _drop_defaults(data["payload"], operation.payload)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _drop_defaults(data: dict[str, Any], model: BaseModel) -> None:
    for name, field in type(model).model_fields.items():
        if name == "kind" or field.is_required() or name not in data:
            continue
        default = to_jsonable_python(field.get_default(call_default_factory=True))
        if data[name] == default:
            del data[name]


def parse_operation(data: str | bytes | dict[str, Any]) -> Operation:
    """An operation from its JSON text or dict; a pydantic ValidationError if malformed."""
    if isinstance(data, dict):
        return _ADAPTER.validate_python(data)
    return _ADAPTER.validate_json(data)


def make_operation(op_id: str, swarm_id: str, node_id: str, payload: AnyPayload) -> Operation:
    """The operation of the kind that `payload`'s type stands for."""
    ids = {"op_id": op_id, "swarm_id": swarm_id, "node_id": node_id}
    match payload:
        case SpawnPayload():
            return SpawnOperation(**ids, payload=payload)
        case ActionPayload():
            return ActionOperation(**ids, payload=payload)
        case LLMPayload():
            return LLMOperation(**ids, payload=payload)
        case UserReplyPayload():
            return UserReplyOperation(**ids, payload=payload)
        case TerminatePayload():
            return TerminateOperation(**ids, payload=payload)
        case FailPayload():
            return FailOperation(**ids, payload=payload)


# --- named constructors ----------------------------------------------------------------------


def spawn_payload(
    *, parent_id: str | None, depth: int, action: ActionType, name: str, directive: str
) -> SpawnPayload:
    """A node to create; its termination policy is its action's."""
    return SpawnPayload(
        parent_id=parent_id,
        depth=depth,
        action=action,
        name=name,
        directive=directive,
        termination_policy=SPECS[action].termination_policy,
    )


def root_spawn_operation(swarm_id: str, goal: str, max_depth: int) -> Operation:
    """The spawn of a swarm's root node: it plans the goal (or executes it when max_depth is 0)."""
    action = ActionType.PLAN if max_depth > 0 else ActionType.EXECUTE
    payload = spawn_payload(parent_id=None, depth=0, action=action, name="Root", directive=goal)
    return make_operation(derive_id(swarm_id, "spawn"), swarm_id, root_node_id(swarm_id), payload)


def root_node_id(swarm_id: str) -> str:
    return derive_id(swarm_id, "root")


def fail_operation(failed: Operation, error: str, op_id: str | None = None) -> Operation:
    """Fail `failed`'s node with `error`, keeping `failed` so that a retry can run it again.

    By default the fail operation takes `failed`'s own id: it is what that operation's step
    committed instead (a permanent LLM error); the poison handler passes a derived id."""
    payload = FailPayload(error=error, operation=failed.model_dump(mode="json"))
    return make_operation(op_id or failed.op_id, failed.swarm_id, failed.node_id, payload)


def resume_operation(swarm_id: str, node_id: str, interrupt_id: str) -> UserReplyOperation:
    """Resume the node whose `interrupt_id` the user answered (one per interrupt)."""
    return UserReplyOperation(
        op_id=derive_id(interrupt_id, "resume"),
        swarm_id=swarm_id,
        node_id=node_id,
        payload=UserReplyPayload(interrupt_id=interrupt_id),
    )


def spawned_by(operation: Operation) -> SpawnPayload | None:
    """The spawn `operation` runs: its own payload, or for the failure of a spawn (its node
    never existed) the failed spawn's; None for an operation on an existing node."""
    if isinstance(operation, SpawnOperation):
        return operation.payload
    if isinstance(operation, FailOperation) and operation.payload.operation is not None:
        failed = parse_operation(operation.payload.operation)
        if isinstance(failed, SpawnOperation):
            return failed.payload
    return None


def rerun_op_id(swarm_id: str, node_id: str) -> str:
    """The commit id of the rerun of `node_id`. A node is rerun at most once (the rerun takes it
    out of the tree), so the id is the rerun's own, and a request retried after a crash finds
    that commit instead of making a second."""
    return derive_id(swarm_id, node_id, "rerun")


def rerun_spawn_operation(op_id: str, node: Node, directive: str | None) -> SpawnOperation:
    """The spawn of the node a rerun (commit `op_id`) puts in the place of `node`: a new id,
    derived from the rerun, the same parent, depth, action and name, and `directive` (None:
    the old node's)."""
    payload = spawn_payload(
        parent_id=node.parent_id,
        depth=node.depth,
        action=node.action,
        name=node.name,
        directive=node.directive if directive is None else directive,
    )
    return SpawnOperation(
        op_id=derive_id(op_id, "spawn"),
        swarm_id=node.swarm_id,
        node_id=rerun_node_id(op_id),
        payload=payload,
    )


def rerun_node_id(op_id: str) -> str:
    """The id of the node that the rerun committed as `op_id` spawns."""
    return derive_id(op_id, "node")


def retry_operation(failed: Operation, attempt: int) -> Operation:
    """`failed` again under a new id (so it is not taken for the delivery that failed)."""
    return failed.model_copy(update={"op_id": derive_id(failed.op_id, "retry", attempt)})
