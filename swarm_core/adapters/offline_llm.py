"""The offline scripted LLM: a real, deterministic implementation of the LLM port with no model.

It is the default when no model is configured. For a given goal, seed and config it always gives
the same answers, varied enough to grow real trees: the root asks the user about their
preferences first; plans have 2..`offline_breadth` subtasks, routed to `plan` while
`offline_depth` allows, to `ask_user` on some nodes and to `execute` otherwise; a too-short
answer from the user gets a follow-up; reviews sometimes revise once; reports are readable text.
It reads the request's structured `facts`, not the prompt text.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from swarm_core.llm import LLMRequest, LLMResult
from swarm_core.models import Usage, derive_id

MODEL_NAME = "offline-scripted-v1"

FACETS = [
    ("Research the options", "research the main options and what distinguishes them"),
    ("Set the budget", "estimate the costs and propose a budget with a margin"),
    ("Draft the schedule", "draft a realistic schedule with the key milestones"),
    ("Check constraints and risks", "list the constraints and risks and how to handle each"),
    ("Pick the essentials", "pick the few essentials that matter most"),
    ("Prepare logistics", "work out the logistics: bookings, tools and who does what"),
    ("Find local knowledge", "collect practical tips that only locals or experts know"),
]

QUESTION_TEMPLATES = [
    "Before I {verb}, what matters most to you? Budget, dates, pace, must-haves?",
    "To {verb}, I need your preferences: what would make the result great for you?",
    "Quick question so I can {verb}: any constraints I should respect (time, money, people)?",
]

FINDINGS = [
    "the best value comes from deciding the fixed points first and filling around them",
    "two options stand out; the cheaper one covers most needs with less risk",
    "booking early saves roughly 15-25% and keeps the better choices available",
    "a buffer of about 10% of time and money absorbs the usual surprises",
    "grouping nearby tasks together saves the most time",
    "the main risk is overcommitting; a lighter plan is more likely to be followed",
    "local advice beats generic lists: ask on the spot and adapt",
]

MIN_ANSWER_WORDS = 4


def _pick(*parts: object, modulo: int) -> int:
    return int(derive_id(*parts, length=8), 16) % modulo


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


class OfflineScriptedLLM:
    """Deterministic scripted answers for every task (`plan`, `ask`, `judge`, `execute`,
    `review`); usage is estimated at four characters a token."""

    def __init__(self, model_name: str = MODEL_NAME) -> None:
        self.model_name = model_name

    def complete(self, request: LLMRequest, response_model: type[BaseModel]) -> LLMResult:
        handler = getattr(self, f"_{request.task}", None)
        if handler is None:
            raise ValueError(f"the offline LLM has no script for task {request.task!r}")
        data: dict[str, Any] = handler(request.facts, request.seed)
        validated = response_model.model_validate(data)
        content = json.dumps(validated.model_dump(mode="json"), ensure_ascii=False)
        prompt_chars = sum(len(m.content) for m in request.messages)
        usage = Usage(
            prompt_tokens=max(1, prompt_chars // 4),
            completion_tokens=max(1, len(content) // 4),
            llm_calls=1,
        )
        return LLMResult(
            data=validated.model_dump(mode="json"),
            content=content,
            model=self.model_name,
            usage=usage,
        )

    # --- tasks -----------------------------------------------------------------------------

    def _plan(self, facts: dict[str, Any], seed: int) -> dict[str, Any]:
        directive = str(facts["directive"])
        if facts.get("is_root") and not facts.get("asked_user"):
            return {
                "rationale": "The user's preferences shape every part of this; ask first.",
                "questions": [
                    "What matters most to you for this goal (budget, dates, pace, must-haves)?"
                ],
                "subtasks": [],
            }
        breadth = max(1, int(facts.get("breadth", 3)))
        count = 2 + _pick(seed, directive, "count", modulo=max(1, breadth - 1))
        count = min(count, breadth, int(facts.get("max_children", count)))
        deeper = bool(facts.get("can_plan_deeper")) and int(facts.get("depth", 0)) + 1 < int(
            facts.get("plan_depth", 2)
        )
        start = _pick(seed, directive, "facet", modulo=len(FACETS))
        context = facts.get("user_context") or []
        hint = (
            f" Take into account what the user said: {_short(context[-1], 120)}" if context else ""
        )
        subtasks = []
        for i in range(count):
            title, what = FACETS[(start + i) % len(FACETS)]
            roll = _pick(seed, directive, "route", i, modulo=6)
            if deeper and (i == 0 or roll == 0):
                action = "plan"
            elif roll in (1, 2) and not facts.get("is_root"):
                action = "ask_user"
            else:
                action = "execute"
            subtasks.append(
                {
                    "name": title,
                    "directive": f"For '{_short(facts['goal'], 80)}': {what}.{hint}",
                    "action": action,
                }
            )
        return {
            "rationale": f"Split '{_short(directive)}' into {count} parts.",
            "questions": [],
            "subtasks": subtasks,
        }

    def _ask(self, facts: dict[str, Any], seed: int) -> dict[str, Any]:
        directive = str(facts["directive"])
        template = QUESTION_TEMPLATES[_pick(seed, directive, "ask", modulo=len(QUESTION_TEMPLATES))]
        message = template.format(verb=f"work on '{_short(facts.get('name') or directive, 50)}'")
        if "?" in directive and facts.get("name") == "Clarify preferences":
            message = directive.split(" (for:")[0]
        return {"message": message}

    def _judge(self, facts: dict[str, Any], seed: int) -> dict[str, Any]:
        conversation = facts.get("conversation") or []
        answers = [m["content"] for m in conversation if m.get("role") == "user"]
        last = answers[-1] if answers else ""
        follow_ups = int(facts.get("follow_ups", 0))
        if len(last.split()) < MIN_ANSWER_WORDS and follow_ups < int(
            facts.get("max_follow_ups", 2)
        ):
            return {
                "sufficient": False,
                "follow_up": (
                    f"Thanks! '{_short(last, 40)}' is a bit short for me to act on. Could you "
                    "say a little more, for example your budget, timing or anything to avoid?"
                ),
                "report": None,
            }
        said = " / ".join(_short(a, 200) for a in answers) or "(no answer)"
        return {"sufficient": True, "follow_up": None, "report": f"The user wants: {said}"}

    def _execute(self, facts: dict[str, Any], seed: int) -> dict[str, Any]:
        directive = str(facts["directive"])
        picks = sorted({_pick(seed, directive, "find", i, modulo=len(FINDINGS)) for i in range(3)})
        lines = [f"{FINDINGS[picks[0]].capitalize()}."]
        lines += [f"- Also: {FINDINGS[p]}." for p in picks[1:]]
        context = facts.get("user_context") or []
        if context:
            lines.append(f"- Fits the user's wishes: {_short(context[-1], 100)}")
        lines.append(f"- Next step: act on the first finding for '{_short(facts['goal'], 60)}'.")
        return {"report": "\n".join(lines)}

    def _review(self, facts: dict[str, Any], seed: int) -> dict[str, Any]:
        directive = str(facts["directive"])
        reports = facts.get("child_reports") or []
        body = "\n".join(
            f"- {r['name']}: {_short(r['report'].splitlines()[0] if r['report'] else '', 160)}"
            for r in reports
        )
        names = ", ".join(r["name"] for r in reports)
        if facts.get("is_root"):
            report = f"Final plan for '{_short(directive, 100)}':\n{body}"
        else:
            report = f"Covered {names}.\n{body}"
        revise = (
            not facts.get("is_root")
            and int(facts.get("revisions", 0)) < int(facts.get("max_revisions", 0))
            and _pick(seed, directive, "revise", modulo=3) == 0
        )
        if revise:
            return {
                "decision": "revise",
                "report": report,
                "subtasks": [
                    {
                        "name": "Fill the gaps",
                        "directive": f"Fill the gaps left in: {_short(directive, 120)}",
                        "action": "execute",
                    }
                ],
            }
        return {"decision": "report", "report": report, "subtasks": []}
