"""Request and response models of the HTTP API (docs/api.md); the OpenAPI document is generated
from these. Requests forbid unknown fields and carry sensible size limits."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from swarm_core.models import JsonInt, LLMSettings, SwarmConfig, SwarmStatus, Usage, json_integer
from swarm_core.swarm import ForkOrigin


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class Credentials(Request):
    """Sign up or log in."""

    username: str = Field(min_length=3, max_length=64, pattern=r"^[\w.\-@]+$")
    password: str = Field(min_length=8, max_length=1024)


class CreateSwarm(Request):
    """A new swarm: its goal and optional config (limits, model settings, seed)."""

    goal: str = Field(min_length=1, max_length=4000, pattern=r"\S")  # not blank
    config: SwarmConfig | None = None


class ResumeLimits(Request):
    """The limits a resume may change."""

    max_tokens_total: JsonInt = Field(ge=1, le=1_000_000_000, strict=True)


class ResumeSwarm(Request):
    """Resume, optionally with a new token budget (`limits.max_tokens_total`)."""

    limits: ResumeLimits | None = None


class ForkSwarm(Request):
    """A fork: after which step (default: the latest) and whether it reuses recorded answers."""

    model_config = ConfigDict(extra="forbid", strict=True)
    # Bounds inside the Annotated (see swarm_core.models.JsonInt), so the schema shows them.
    at: Annotated[int, Field(ge=0, le=10**9), BeforeValidator(json_integer)] | None = None
    reuse_llm: bool = True


class RerunNode(Request):
    """Rerun a node's branch; `directive` replaces the node's (left out or null: the same)."""

    directive: str | None = Field(default=None, min_length=1, max_length=4000, pattern=r"\S")


class PostMessage(Request):
    """The user's reply on a node's chat; `client_message_id` makes a replay harmless."""

    content: str = Field(min_length=1, max_length=8000, pattern=r"\S")  # not blank
    client_message_id: str | None = Field(
        default=None, min_length=1, max_length=100, pattern=r"^[\w.\-:]+$"
    )


class TokenResponse(BaseModel):
    user_id: str
    username: str
    access_token: str
    token_type: str = "Bearer"
    expires_in: int


class UpdateMe(Request):
    """The caller's model settings for the swarms they create from now on (replaced whole)."""

    llm: LLMSettings


class MeResponse(BaseModel):
    user_id: str
    username: str
    created_at: datetime
    llm: LLMSettings


class SwarmSummaryResponse(BaseModel):
    swarm_id: str
    goal: str
    status: SwarmStatus
    spawned: bool
    # Failed nodes (each can be retried) and the error: the swarm's own, else the first node's.
    failed_nodes: int = 0
    error: str | None = None
    # Why the swarm paused by itself (its token budget is spent); null when the user paused it.
    paused_reason: str | None = None
    # A fork's source swarm and the step it was copied after; null for a swarm created anew.
    forked_from: ForkOrigin | None = None
    created_at: datetime
    updated_at: datetime


class SwarmDetailResponse(SwarmSummaryResponse):
    root_node_id: str | None
    seq: int
    node_counts: dict[str, int]
    node_count: int
    usage: Usage
    final_report: str | None
    config: SwarmConfig


class SwarmListResponse(BaseModel):
    items: list[SwarmSummaryResponse]
    continuation_token: str | None


class StatusResponse(BaseModel):
    swarm_id: str
    status: SwarmStatus


class RerunAccepted(BaseModel):
    """The rerun is committed: `node_id` left the tree, `new_node_id` is its new node (spawned
    when the swarm resumes); `status` is the swarm's (paused)."""

    swarm_id: str
    node_id: str
    new_node_id: str
    status: SwarmStatus


class StateResponse(BaseModel):
    seq: int
    # The swarm's latest step: a time slider runs from 0 to it.
    latest_seq: int
    nodes: list[dict[str, Any]]


class HistoryResponse(BaseModel):
    events: list[dict[str, Any]]
    next_after: int


class ChatEntry(BaseModel):
    node_id: str
    name: str
    lifecycle: str
    waiting_for_user: bool
    last_message_at: datetime | None


class ChatListResponse(BaseModel):
    chats: list[ChatEntry]


class ChatMessagesResponse(BaseModel):
    messages: list[dict[str, Any]]


class MessageAccepted(BaseModel):
    """The message is in the chat, at `seq`."""

    message_id: str
    seq: int


class InterruptResponse(BaseModel):
    interrupt_id: str
    node_id: str
    node_name: str
    question: str
    created_at: datetime
    status: str
    answer_message_ids: list[str]
    answered_at: datetime | None = None


class InterruptListResponse(BaseModel):
    items: list[InterruptResponse]


class NegotiateResponse(BaseModel):
    url: str
    expires_at: datetime


class HealthResponse(BaseModel):
    status: str
    version: str


class ReadyResponse(BaseModel):
    """Every dependency answered: `checks` is "ok" per dependency (cosmos, blob, queue,
    webpubsub; none for the in-memory adapters)."""

    status: str
    version: str
    checks: dict[str, str]


class Problem(BaseModel):
    """RFC 9457 problem details (`application/problem+json`)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[dict[str, Any]] | None = None
