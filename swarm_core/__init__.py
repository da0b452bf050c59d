"""swarm_core: the engine that advances agent swarms one node step per operation.

The engine modules (models, actions, engine, offline LLM, ports) are pure: they import no Azure SDK
and no `azure.functions`. Adapters live in `swarm_core.adapters`; wiring in `swarm_core.bootstrap`.
"""

__version__ = "0.1.0"
