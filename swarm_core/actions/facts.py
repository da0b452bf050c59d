"""Facts every LLM task gets about its node: the structured part of a prompt.

A real model reads them as JSON in the prompt (`swarm_core.actions.prompts`); the offline LLM
reads them directly.
"""

from __future__ import annotations

from typing import Any

from swarm_core.models import Node
from swarm_core.swarm import Swarm


def node_facts(swarm: Swarm, node: Node) -> dict[str, Any]:
    return {
        "goal": swarm.goal,
        "directive": node.directive,
        "name": node.name,
        "depth": node.depth,
        "is_root": node.parent_id is None,
        "user_context": node.context.get("user_context", []),
    }
