"""The functions of every action, by action type: what the engine dispatches `action` steps to.

Descriptions and termination policies are data in `swarm_core.actions.specs`; `plan` also routes
(each subtask it returns names the action that should handle it), so `route` is folded into it.
"""

from __future__ import annotations

from collections.abc import Mapping

from swarm_core.actions import ask_user, execute, plan
from swarm_core.models import ActionType
from swarm_core.step_context import ActionFunction

FUNCTIONS: dict[ActionType, Mapping[str, ActionFunction]] = {
    ActionType.PLAN: plan.FUNCTIONS,
    ActionType.ASK_USER: ask_user.FUNCTIONS,
    ActionType.EXECUTE: execute.FUNCTIONS,
}
