"""The Azure Functions app: creates the app object and registers the blueprints (the API under
`/api`, host.json's routePrefix being empty so that the web console can be served at `/`).

Importing this module is cheap and never fails for a missing setting: the runtime (clients,
stores) is built lazily by the first invocation (`swarm_core.runtime.get_app`).
"""

import azure.functions as func

from swarm_core.adapters import tracing
from swarm_core.entrypoints import console, http_api, maintenance, queue_worker

# Traces to Application Insights when APPLICATIONINSIGHTS_CONNECTION_STRING is set (no connection
# is made here: the exporter sends in the background); off otherwise.
tracing.configure_from_environment()

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(http_api.bp)
app.register_functions(queue_worker.bp)
app.register_functions(maintenance.bp)
# The web console at `/`: every path outside /api.
app.register_functions(console.bp)
