"""Cost control: which models and how many tokens per call a user may ask for (from settings),
and how many swarms one user may have, and have active at once. The services and auth apply it;
the HTTP layer answers `NotAllowed` with 422 (naming what is allowed) and `QuotaExceeded` with
429."""

from __future__ import annotations

from dataclasses import dataclass, field

from swarm_core.models import LLMSettings


class NotAllowed(Exception):
    """The request asks for something the operator does not allow; `allowed` says what is."""

    def __init__(self, message: str, allowed: list[str]) -> None:
        super().__init__(message)
        self.allowed = allowed


class QuotaExceeded(Exception):
    """The user has reached a quota; the message says which."""


@dataclass(frozen=True)
class ModelPolicy:
    # The models a user may name (empty: any); the first is the default one.
    allowed_models: list[str] = field(default_factory=list)
    max_tokens: int = 100_000

    def check(self, llm: LLMSettings) -> None:
        if llm.model is not None and self.allowed_models and llm.model not in self.allowed_models:
            raise NotAllowed(f"the model {llm.model!r} is not offered here", self.allowed_models)
        if llm.max_tokens is not None and llm.max_tokens > self.max_tokens:
            raise NotAllowed(
                f"max_tokens may be at most {self.max_tokens}", [f"max_tokens <= {self.max_tokens}"]
            )
