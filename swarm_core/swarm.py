"""The swarm's own documents: `Swarm` (the runtime document every step commits on), its listing
projection `SwarmSummary`, and what a commit carries (`PendingCommit`, `Effects`).

Kept apart from `swarm_core.models` because the swarm document holds operations (parked ones and
the pending commit's), and operations are built from the models.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_serializer, field_validator

from swarm_core.models import (
    Document,
    HistoryEvent,
    Lifecycle,
    LogEntry,
    SwarmConfig,
    SwarmStatus,
    Usage,
    utcnow,
)
from swarm_core.operations import Operation
from swarm_core.packing import deflate, inflate


class Effects(BaseModel):
    """What a committed step changes beyond the documents its commit wrote (the swarm document
    and its nodes, at once); re-applied idempotently. The chat messages are the data of its
    `chat.message` events, so they are not kept twice."""

    events: list[HistoryEvent] = Field(default_factory=list)
    logs: list[LogEntry] = Field(default_factory=list)
    operations: list[Operation] = Field(default_factory=list)
    summary: SwarmSummary | None = None
    # Store a snapshot of the tree as it is after this commit (every `snapshot_every` seqs).
    snapshot: bool = False
    # For the commit's record (`swarm_core.forks`): the nodes it wrote (whoever applies it after
    # a crash reads them back) and deleted, and the operations it consumed (the one that
    # committed, and the one a poison failure stands for).
    node_ids: list[str] = Field(default_factory=list)
    deleted_node_ids: list[str] = Field(default_factory=list)
    consumed: list[str] = Field(default_factory=list)
    # Per node whose chat the commit appends to and whose document it writes: the seq of the
    # chat's batch before (the node's `chat_seq` before the commit), a hint for the append.
    chat_after: dict[str, int] = Field(default_factory=dict)


class PendingCommit(BaseModel):
    """A committed step whose effects may not all be applied yet (see `swarm_core.commits`).

    Stored (as JSON), its effects are packed: their JSON deflated (`swarm_core.packing`) and
    base64-encoded. They are the bulk of the swarm document (a step's messages, events and LLM
    journal, whose texts repeat one another), which every commit writes, and nothing queries
    them: packed, a commit writes a third to a half of the bytes (Cosmos DB charges a write by
    its size)."""

    op_id: str
    seq: int
    effects: Effects

    @field_serializer("effects", when_used="json")
    def _pack(self, effects: Effects) -> str:
        return base64.b64encode(deflate(effects.model_dump_json().encode())).decode("ascii")

    @field_validator("effects", mode="before")
    @classmethod
    def _unpack(cls, value: Any) -> Any:
        if isinstance(value, str):  # packed; a dict is a document stored before packing
            return Effects.model_validate_json(inflate(base64.b64decode(value)))
        return value


class ForkOrigin(BaseModel):
    """Where a fork came from: its source swarm and the step it was copied after."""

    swarm_id: str
    seq: int


class Swarm(Document):
    """The swarm's runtime document: its status, its commit point (`seq`) and its parked work.

    Every step of the swarm commits by replacing this document conditionally (ETag), together
    with the nodes the step changed, all or nothing; that serialises the steps of one swarm.
    `pending` holds the other effects of the latest commit so that anyone can finish applying
    them after a crash.
    """

    kind: Literal["swarm"] = "swarm"
    swarm_id: str
    user_id: str
    goal: str
    status: SwarmStatus = SwarmStatus.CREATED
    spawned: bool = False
    root_node_id: str | None = None
    config: SwarmConfig = Field(default_factory=SwarmConfig)
    seq: int = 0
    node_count: int = 0
    node_counts: dict[str, int] = Field(default_factory=dict)
    # Reruns committed on the swarm. Until the first, no operation can be for a node a rerun
    # discarded, and a spawn step need not read its parent to know (`SwarmWorker`).
    reruns: int = 0
    usage: Usage = Field(default_factory=Usage)
    final_report: str | None = None
    error: str | None = None
    # Why a swarm paused by itself (its token budget is spent); None when the user paused it.
    paused_reason: str | None = None
    parked: list[Operation] = Field(default_factory=list)
    pending: PendingCommit | None = None
    forked_from: ForkOrigin | None = None
    # A fork takes the source's recorded LLM answers for identical requests (no model call).
    reuse_llm: bool = True
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def failed_nodes(self) -> int:
        return self.node_counts.get(Lifecycle.FAILED.value, 0)

    def summary(self) -> SwarmSummary:
        return SwarmSummary(
            swarm_id=self.swarm_id,
            user_id=self.user_id,
            goal=self.goal,
            status=self.status,
            spawned=self.spawned,
            seq=self.seq,
            failed_nodes=self.failed_nodes,
            error=self.error,
            paused_reason=self.paused_reason,
            forked_from=self.forked_from,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )


class SwarmSummary(Document):
    """One swarm as listed for its user (a projection of `Swarm`, kept for paging by user)."""

    kind: Literal["summary"] = "summary"
    swarm_id: str
    user_id: str
    goal: str
    status: SwarmStatus
    spawned: bool
    seq: int
    # Nodes that failed (each can be retried) and the swarm's error: its own failure, else the
    # first failed node's.
    failed_nodes: int = 0
    error: str | None = None
    paused_reason: str | None = None
    forked_from: ForkOrigin | None = None
    created_at: datetime
    updated_at: datetime


def budget_spent(swarm: Swarm) -> bool:
    """Whether the swarm has used its token budget (`limits.max_tokens_total`), if it has one.
    Checked before an LLM call, so a swarm overshoots its budget by at most one call."""
    budget = swarm.config.limits.max_tokens_total
    return budget is not None and swarm.usage.total_tokens >= budget


Effects.model_rebuild()
