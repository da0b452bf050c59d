"""swarm_core: the engine that advances agent swarms one node step per operation.

The engine modules (models, operations, step context, actions, engine, ports) are pure: they
import no Azure SDK and no `azure.functions`. Adapters live in `swarm_core.adapters`; the app is
built in `swarm_core.bootstrap`; docs/architecture.md maps the rest.
"""

__version__ = "0.1.0"
