"""Prompts of the LLM tasks: the plain-English messages a real model reads.

An `llm` step's request carries the task's structured `facts` (written from the node,
`swarm_core.engine.llm_request`); `with_prompt` writes the messages from them when the call is
made (the offline LLM reads the facts instead), and the node's journal records the messages so
the frontend can show the prompts used.
"""

from __future__ import annotations

import json
from typing import Any

from swarm_core.actions.specs import catalogue_description
from swarm_core.llm import LLMMessage, LLMRequest
from swarm_core.models import LLMSettings

DEFAULT_SYSTEM_PROMPT = (
    "You are one agent in a tree of agents working on a user's goal. Be concrete and brief. "
    "Answer with JSON only, matching the schema you are given."
)

TASK_INSTRUCTIONS = {
    "plan": (
        "Decompose the directive. If you cannot plan well without the user's preferences, return "
        "up to 3 `questions` and no subtasks. Otherwise return 2-{max_children} `subtasks`, each "
        "routed to one action: {catalogue}"
    ),
    "ask": "Write the message that asks the user what this directive needs from them.",
    "judge": (
        "Judge whether the user's answers suffice for the directive. If not, set sufficient=false "
        "and write a short `follow_up` question. If so, set sufficient=true and write a `report` "
        "that states what the user wants."
    ),
    "execute": "Carry out the directive and write a clear, useful report of the result.",
    "review": (
        "Review the reports of the sub-agents. Either consolidate them into one report for the "
        "directive (decision=report), or, if something essential is missing, decision=revise with "
        "the extra `subtasks` needed."
    ),
}


def build_messages(task: str, settings: LLMSettings, facts: dict[str, Any]) -> list[LLMMessage]:
    instruction = TASK_INSTRUCTIONS[task].format(
        max_children=facts.get("max_children", 4), catalogue=catalogue_description()
    )
    user = f"{instruction}\n\nFacts:\n{json.dumps(facts, sort_keys=True, ensure_ascii=False)}"
    return [
        LLMMessage(role="system", content=settings.system_prompt or DEFAULT_SYSTEM_PROMPT),
        LLMMessage(role="user", content=user),
    ]


def with_prompt(request: LLMRequest) -> LLMRequest:
    """The request with its prompt written (the same facts always give the same prompt)."""
    if request.messages:
        return request
    messages = build_messages(request.task, request.settings, request.facts)
    return request.model_copy(update={"messages": messages})
