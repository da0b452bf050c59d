"""The action space: every action a node can run, with its description and termination policy.

`plan` also routes: each subtask it returns names the action that should handle it, chosen from
this catalogue's descriptions (so `route` is folded into `plan`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from swarm_core.actions import ask_user, execute, plan
from swarm_core.actions.context import StepContext
from swarm_core.models import ActionType, TerminationPolicy

ActionFunction = Callable[[StepContext, dict[str, Any]], None]


@dataclass(frozen=True)
class ActionSpec:
    action: ActionType
    description: str
    termination_policy: TerminationPolicy
    functions: Mapping[str, ActionFunction]


CATALOGUE: dict[ActionType, ActionSpec] = {
    ActionType.PLAN: ActionSpec(
        ActionType.PLAN,
        "Split a broad directive into sub-directives (asking the user first when preferences "
        "matter), delegate each to a child agent, then review their reports.",
        TerminationPolicy.REVIEW_CHILDREN,
        plan.FUNCTIONS,
    ),
    ActionType.ASK_USER: ActionSpec(
        ActionType.ASK_USER,
        "Ask the user for information only they have (preferences, constraints, decisions), "
        "follow up until the answer suffices, and report it.",
        TerminationPolicy.SIMPLE,
        ask_user.FUNCTIONS,
    ),
    ActionType.EXECUTE: ActionSpec(
        ActionType.EXECUTE,
        "Do a focused piece of work directly (research, drafting, calculation) and report.",
        TerminationPolicy.SIMPLE,
        execute.FUNCTIONS,
    ),
}


def catalogue_description() -> str:
    return "; ".join(f"`{s.action.value}`: {s.description}" for s in CATALOGUE.values())
