"""The Azure Functions app: creates the app object and registers the blueprints.

Importing this module is cheap and never fails for a missing setting: the runtime (clients,
stores) is built lazily by the first invocation (`swarm_core.runtime.get_app`).
"""

import azure.functions as func

from swarm_core.entrypoints import http_api, maintenance, queue_worker

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(http_api.bp)
app.register_functions(queue_worker.bp)
app.register_functions(maintenance.bp)
