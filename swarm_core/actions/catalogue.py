"""The functions of every action, by action type: what the engine dispatches `action` steps to,
and the facts of their LLM tasks.

Descriptions and termination policies are data in `swarm_core.actions.specs`; `plan` also routes
(each subtask it returns names the action that should handle it), so `route` is folded into it.
"""

from __future__ import annotations

from collections.abc import Mapping

from swarm_core.actions import ask_user, execute, plan
from swarm_core.models import ActionType
from swarm_core.step_context import ActionFunction, FactsFunction

FUNCTIONS: dict[ActionType, Mapping[str, ActionFunction]] = {
    ActionType.PLAN: plan.FUNCTIONS,
    ActionType.ASK_USER: ask_user.FUNCTIONS,
    ActionType.EXECUTE: execute.FUNCTIONS,
}

# The facts of every action's LLM tasks (what an `llm` step writes its request from).
FACTS: dict[ActionType, Mapping[str, FactsFunction]] = {
    ActionType.PLAN: plan.FACTS,
    ActionType.ASK_USER: ask_user.FACTS,
    ActionType.EXECUTE: execute.FACTS,
}
