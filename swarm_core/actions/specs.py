"""The action space as data: every action a node can run, its description (what the `plan`
task reads when it routes a subtask) and its termination policy.

A leaf module: the step context, the prompts and the operations read it; the functions that run
an action are registered in `swarm_core.actions.catalogue`.
"""

from __future__ import annotations

from dataclasses import dataclass

from swarm_core.models import ActionType, TerminationPolicy


@dataclass(frozen=True)
class ActionSpec:
    action: ActionType
    description: str
    termination_policy: TerminationPolicy


SPECS: dict[ActionType, ActionSpec] = {
    ActionType.PLAN: ActionSpec(
        ActionType.PLAN,
        "Split a broad directive into sub-directives (asking the user first when preferences "
        "matter), delegate each to a child agent, then review their reports.",
        TerminationPolicy.REVIEW_CHILDREN,
    ),
    ActionType.ASK_USER: ActionSpec(
        ActionType.ASK_USER,
        "Ask the user for information only they have (preferences, constraints, decisions), "
        "follow up until the answer suffices, and report it.",
        TerminationPolicy.SIMPLE,
    ),
    ActionType.EXECUTE: ActionSpec(
        ActionType.EXECUTE,
        "Do a focused piece of work directly (research, drafting, calculation) and report.",
        TerminationPolicy.SIMPLE,
    ),
}


def catalogue_description() -> str:
    """The actions as one line each task prompt can quote."""
    return "; ".join(f"`{s.action.value}`: {s.description}" for s in SPECS.values())
