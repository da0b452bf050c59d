"""The structured answers each LLM task must give, as pydantic models.

`RESPONSE_MODELS` maps an `llm` operation's task name to its model; LLM adapters validate against
it (and the OpenAI adapter sends its JSON schema as the response format).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from swarm_core.models import ActionType


class Subtask(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=120)
    directive: str = Field(min_length=1, max_length=4000)
    action: ActionType


class PlanResponse(BaseModel):
    """`plan`: questions for the user first, or sub-directives (each routed to an action)."""

    model_config = ConfigDict(extra="forbid")
    rationale: str = Field(max_length=4000)
    questions: list[str] = Field(default_factory=list, max_length=5)
    subtasks: list[Subtask] = Field(default_factory=list, max_length=20)


class AskResponse(BaseModel):
    """`ask`: the message to send the user."""

    model_config = ConfigDict(extra="forbid")
    message: str = Field(min_length=1, max_length=4000)


class JudgeResponse(BaseModel):
    """`judge`: does the user's answer suffice? If not, a follow-up; if so, a report."""

    model_config = ConfigDict(extra="forbid")
    sufficient: bool
    follow_up: str | None = Field(default=None, max_length=4000)
    report: str | None = Field(default=None, max_length=8000)


class ExecuteResponse(BaseModel):
    """`execute`: the leaf's work, as a report."""

    model_config = ConfigDict(extra="forbid")
    report: str = Field(min_length=1, max_length=16000)


class ReviewResponse(BaseModel):
    """`review`: consolidate the children's reports; report upward or revise with more subtasks."""

    model_config = ConfigDict(extra="forbid")
    decision: Literal["report", "revise"]
    report: str = Field(max_length=16000)
    subtasks: list[Subtask] = Field(default_factory=list, max_length=20)


RESPONSE_MODELS: dict[str, type[BaseModel]] = {
    "plan": PlanResponse,
    "ask": AskResponse,
    "judge": JudgeResponse,
    "execute": ExecuteResponse,
    "review": ReviewResponse,
}
