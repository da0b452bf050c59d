"""The Azure Functions app: creates the app object and registers the HTTP routes.

Importing this module is cheap and never fails for a missing setting: clients are created lazily.
"""

import json

import azure.functions as func

from swarm_core import __version__

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="health", methods=["GET"])
def health(req: func.HttpRequest) -> func.HttpResponse:
    """Liveness probe: answers without touching any store."""
    body = {"status": "ok", "version": __version__}
    return func.HttpResponse(json.dumps(body), status_code=200, mimetype="application/json")
