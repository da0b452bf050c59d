"""Values and documents of a swarm's parts: config, users, nodes, interrupts, chat messages,
history events, logs. (The swarm's own document, which carries operations, is `swarm_core.swarm`.)

Everything here is pydantic v2, JSON-serialisable, and knows nothing of storage. Every stored
document carries `schema_version` so that later versions can migrate old documents on read.
Identifiers that steps create (op ids, node ids, message ids) are derived deterministically from
the operation that creates them, so that re-running a step after a crash produces the same ids.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

SCHEMA_VERSION = 1


def utcnow() -> datetime:
    return datetime.now(UTC)


def derive_id(*parts: object, length: int = 24) -> str:
    """A deterministic identifier from its parts (the same parts always give the same id)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return digest[:length]


class Document(BaseModel):
    """Base of every stored document."""

    model_config = ConfigDict(extra="ignore")
    schema_version: int = SCHEMA_VERSION

    def deep_copy(self) -> Self:
        """A copy that shares nothing with this document. A document holds plain data (JSON
        values and models), so dumping it and validating the dump copies it, in a quarter of
        the time `model_copy(deep=True)` takes (which walks it with `copy.deepcopy`): a step
        copies its node, for the commit to tell what the step changed."""
        return self.model_validate(self.model_dump())


# --- configuration -------------------------------------------------------------------------


def json_integer(value: object) -> object:
    # JSON Schema's integer: 5 and 5.0 (what the OpenAPI document promises), never true, "5" or
    # 5.5 (the field is strict: those stay what they are and are refused).
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _json_number(value: object) -> object:
    # JSON Schema's number: 1 as well as 1.0, never true or "1".
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


# Bounds of an optional field go inside its Annotated, before the validator: given on the Field
# of a union, they appear in the JSON Schema as unknown `ge`/`le` keys.
JsonInt = Annotated[int, BeforeValidator(json_integer)]


class Limits(BaseModel):
    """Limits that stop runaway trees with a clear failure instead of a hang."""

    # Strict: an integer is an integer (not `true`, not "5").
    model_config = ConfigDict(extra="forbid", strict=True)
    max_depth: JsonInt = Field(default=3, ge=0, le=10)
    max_children: JsonInt = Field(default=4, ge=1, le=20)
    max_nodes: JsonInt = Field(default=60, ge=1, le=2000)
    max_steps: JsonInt = Field(default=2000, ge=1, le=100_000)
    max_follow_ups: JsonInt = Field(default=2, ge=0, le=1000)
    max_revisions: JsonInt = Field(default=1, ge=0, le=5)
    # Tokens (prompt + completion) the swarm may spend; checked before every LLM call. Spent,
    # the swarm pauses with `paused_reason`; raise it and resume. None: no budget.
    max_tokens_total: (
        Annotated[int, Field(ge=1, le=1_000_000_000), BeforeValidator(json_integer)] | None
    ) = None


class LLMSettings(BaseModel):
    """Model settings of an LLM call. Levels: the engine's defaults, then the user's, then the
    swarm's config (`merged_over`: a field set at a later level wins)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    model: str | None = Field(default=None, max_length=200)
    temperature: Annotated[float, Field(ge=0, le=2), BeforeValidator(_json_number)] | None = None
    max_tokens: Annotated[int, Field(ge=1, le=100_000), BeforeValidator(json_integer)] | None = None
    system_prompt: str | None = Field(default=None, max_length=8000)

    def merged_over(self, base: LLMSettings) -> LLMSettings:
        """These settings layered over `base`: a field set here wins."""
        data = base.model_dump()
        data.update({k: v for k, v in self.model_dump().items() if v is not None})
        return LLMSettings(**data)


class SwarmConfig(BaseModel):
    """Per-swarm configuration given at creation."""

    model_config = ConfigDict(extra="forbid", strict=True)
    limits: Limits = Field(default_factory=Limits)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    seed: JsonInt = Field(default=0, ge=0, le=2**31)
    # Shape of trees the offline LLM plans: breadth of a plan and how deep it still plans.
    offline_breadth: JsonInt = Field(default=3, ge=1, le=10)
    offline_depth: JsonInt = Field(default=2, ge=0, le=10)


# --- users -----------------------------------------------------------------------------------


class User(Document):
    """A user's credentials and profile; the password only as a bcrypt hash."""

    kind: Literal["user"] = "user"
    user_id: str
    username: str
    password_hash: str
    # The user's model settings for the swarms they create (a swarm's config wins where set).
    llm: LLMSettings = Field(default_factory=LLMSettings)
    # Tokens carry the version they were issued at; logging out moves it on (revokes them all).
    token_version: int = 0
    created_at: datetime = Field(default_factory=utcnow)


# --- swarm and nodes ---------------------------------------------------------------------------


class SwarmStatus(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    WAITING_FOR_USER = "waiting_for_user"
    COMPLETED = "completed"
    FAILED = "failed"
    # The tombstone of a deleted swarm, until its purge removes the document too: no read or
    # change sees it (404), no step runs on it, the listing leaves it out.
    DELETED = "deleted"


FINISHED_STATUSES = frozenset({SwarmStatus.COMPLETED, SwarmStatus.FAILED})
# The statuses whose listing entries the maintenance timer looks at (`list_active_summaries`).
MAINTAINED_STATUSES = frozenset(
    {SwarmStatus.RUNNING, SwarmStatus.WAITING_FOR_USER, SwarmStatus.DELETED}
)


class Lifecycle(StrEnum):
    SPAWNED = "spawned"
    RUNNING = "running"
    WAITING_FOR_CHILDREN = "waiting_for_children"
    WAITING_FOR_USER = "waiting_for_user"
    TERMINATED = "terminated"
    FAILED = "failed"


DONE_LIFECYCLES = frozenset({Lifecycle.TERMINATED, Lifecycle.FAILED})


class ActionType(StrEnum):
    PLAN = "plan"
    ASK_USER = "ask_user"
    EXECUTE = "execute"


class TerminationPolicy(StrEnum):
    SIMPLE = "simple"
    REVIEW_CHILDREN = "review_children"
    CUSTOM = "custom"


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    llm_calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def plus(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            llm_calls=self.llm_calls + other.llm_calls,
        )


class Continuation(BaseModel):
    """What resumes a node blocked on the user: the function to call and its saved context."""

    function_to_call: str
    args: dict[str, Any] = Field(default_factory=dict)


class InterruptStatus(StrEnum):
    OPEN = "open"
    ANSWERED = "answered"
    CANCELLED = "cancelled"


class Interrupt(BaseModel):
    """A question a node put to the user. Open until a message of the user answers it; the
    answer is committed to the chat when the API accepts it, before the node resumes."""

    interrupt_id: str
    node_id: str
    node_name: str
    question: str
    created_at: datetime
    status: InterruptStatus = InterruptStatus.OPEN
    answer_message_ids: list[str] = Field(default_factory=list)
    answered_at: datetime | None = None


class UnreadReply(BaseModel):
    """A user's message committed to the node's chat that the node has not taken yet."""

    message_id: str
    content: str
    seq: int


class ClientMessage(BaseModel):
    """What a `client_message_id` was accepted as: a replay with the same content is the same
    message; with other content it is a conflict."""

    message_id: str
    seq: int
    content_digest: str


class Node(Document):
    """One agent node of a swarm's tree."""

    kind: Literal["node"] = "node"
    node_id: str
    swarm_id: str
    # The seq of the commit that last wrote the node (a snapshot knows by it whether the tree
    # it read is the tree right after its own seq).
    seq: int = 0
    parent_id: str | None = None
    children_ids: list[str] = Field(default_factory=list)
    depth: int = 0
    action: ActionType
    name: str
    directive: str
    lifecycle: Lifecycle = Lifecycle.SPAWNED
    termination_policy: TerminationPolicy = TerminationPolicy.SIMPLE
    report: str | None = None
    error: str | None = None
    # What the action knows: the plan, questions asked, answers, reports of children, ...
    context: dict[str, Any] = Field(default_factory=dict)
    # Bookkeeping of the action's progress (counters, phase); survives between steps.
    execution_memory: dict[str, Any] = Field(default_factory=dict)
    continuation: Continuation | None = None
    usage: Usage = Field(default_factory=Usage)
    # The operation that failed, kept so that the user can retry it.
    failed_operation: dict[str, Any] | None = None
    # The lifecycle the failed operation found the node in: a retry puts the node back there.
    failed_lifecycle: Lifecycle | None = None
    # The node's latest question to the user (earlier ones are in the history).
    interrupt: Interrupt | None = None
    # Set when the node decided to terminate: its conversation takes no more messages.
    reporting: bool = False
    # The user's committed messages the node has not taken yet (given at its next resume).
    unread_replies: list[UnreadReply] = Field(default_factory=list)
    # The latest client message ids accepted on this node's chat (a bounded window).
    client_messages: dict[str, ClientMessage] = Field(default_factory=dict)
    # Ids of the latest operations whose steps committed on this node (a bounded window):
    # a redelivered message of one of them is a duplicate, found on the read the step needs anyway.
    recent_op_ids: list[str] = Field(default_factory=list)
    # In a fork: the seq, in the source's journal of this node, of the last recorded LLM answer
    # the node reused (the next reuse looks after it).
    recorded_seq: int = 0
    chat_length: int = 0
    # The seq of the commit that last appended to the node's chat (0: none): the next append
    # tells the content store where the chat should end (`ContentStore.append`'s `after_seq`).
    chat_seq: int = 0
    last_message_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    def public_view(self) -> dict[str, Any]:
        """The node as clients see it in state snapshots and events."""
        return self.model_dump(mode="json", include=set(PUBLIC_NODE_FIELDS))


# What of a node clients see (`Node.public_view`): whole fields of its document, so the view of
# a document changed by a commit record is the record applied to the view (`public_fields`).
PUBLIC_NODE_FIELDS = (
    "node_id",
    "parent_id",
    "children_ids",
    "depth",
    "action",
    "name",
    "directive",
    "lifecycle",
    "termination_policy",
    "report",
    "error",
    "usage",
    "interrupt",
    "chat_length",
    "created_at",
    "updated_at",
)


def public_fields(document: dict[str, Any]) -> dict[str, Any]:
    """A node document (JSON), or a view with more than its fields, cut to its public view."""
    return {key: document[key] for key in PUBLIC_NODE_FIELDS if key in document}


# --- content: chats, history, logs ------------------------------------------------------------


class ChatRole(StrEnum):
    AGENT = "agent"
    USER = "user"


class ChatMessage(BaseModel):
    message_id: str
    node_id: str
    role: ChatRole
    content: str
    created_at: datetime
    seq: int = 0


class EventType(StrEnum):
    SWARM_STATUS = "swarm.status"
    NODE_SPAWNED = "node.spawned"
    NODE_UPDATED = "node.updated"
    CHAT_MESSAGE = "chat.message"
    SWARM_COMPLETED = "swarm.completed"
    NODE_FAILED = "node.failed"
    INTERRUPT_OPENED = "interrupt.opened"
    INTERRUPT_ANSWERED = "interrupt.answered"
    SWARM_FORKED = "swarm.forked"
    NODE_RERUN = "node.rerun"


class HistoryEvent(BaseModel):
    """One event of a swarm's history; published to clients as it is stored."""

    type: EventType
    swarm_id: str
    seq: int
    index: int = 0
    at: datetime
    data: dict[str, Any] = Field(default_factory=dict)


class LogEntry(BaseModel):
    """A developer log or journal line of one node (prompts and responses live here)."""

    node_id: str
    kind: Literal["log", "journal"] = "log"
    level: Literal["debug", "info", "warning", "error"] = "info"
    message: str
    data: dict[str, Any] = Field(default_factory=dict)
    at: datetime
    seq: int = 0
