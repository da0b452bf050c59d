"""The LLM port: one call in, one validated structured answer out.

Each action declares the pydantic model it expects back (`swarm_core.actions.schemas`); an
implementation returns data that validates against it. Two implementations: the offline scripted
LLM (`swarm_core.adapters.offline_llm`, the default) and the OpenAI adapter
(`swarm_core.adapters.openai_llm`).
"""

from __future__ import annotations

import re
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from swarm_core.models import LLMSettings, Usage


class LLMMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class LLMRequest(BaseModel):
    """One LLM call of an `llm` step (serialisable: the step's journal keeps it).

    The step writes the task, the settings and the facts from the node as it reads it
    (`swarm_core.engine.llm_request`: the operation names only the task); the prompt
    (`messages`) is written from them when the call is made
    (`swarm_core.actions.prompts.with_prompt`). Operations enqueued by earlier versions carry
    a whole request instead."""

    task: str
    messages: list[LLMMessage] = Field(default_factory=list)
    settings: LLMSettings = Field(default_factory=LLMSettings)
    seed: int = 0
    # Structured facts behind the prompt (goal, directive, depth, answers, ...). A real model reads
    # the messages; the offline LLM reads these.
    facts: dict[str, Any] = Field(default_factory=dict)
    swarm_id: str = ""
    node_id: str = ""
    op_id: str = ""


class LLMResult(BaseModel):
    """The answer: `data` validates against the task's response model."""

    data: dict[str, Any]
    content: str
    model: str
    usage: Usage = Field(default_factory=Usage)
    # Set when the answer is one the fork's source recorded (`swarm_core.forks`): the seq of
    # its journal entry there. No model was called and no tokens were spent.
    recorded_seq: int | None = None


def json_text(content: str) -> str:
    """The JSON of a model's answer: inside a ```json fence, as models in JSON mode sometimes
    wrap it anyway, else the answer as it is."""
    match = re.fullmatch(r"\s*```[A-Za-z]*\s*\n(.*?)\n?\s*```\s*", content, flags=re.DOTALL)
    return match.group(1) if match else content


class LLMError(Exception):
    """A failed call. Retryable errors are retried by the queue; permanent ones fail the node."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class LanguageModel(Protocol):
    """The LLM port."""

    def complete(self, request: LLMRequest, response_model: type[BaseModel]) -> LLMResult: ...
