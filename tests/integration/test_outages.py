"""A dependency outage answers 503 problem+json with `Retry-After`, never 500, and the app
recovers by itself when the dependency is back: Cosmos DB taken down for real (its server
stopped), with the HTTP functions running on the Azure adapters."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import time
import uuid
from typing import Any

import azure.functions as func
import pytest

from devstack.stack import start_stack
from swarm_core.bootstrap import build_azure
from swarm_core.entrypoints import http_api
from swarm_core.runtime import use_app
from swarm_core.settings import load_settings
from tests.conftest import _free_ports

pytestmark = pytest.mark.emulators


def call(fn: Any, method: str, body: Any = None, token: str | None = None) -> tuple[int, Any, Any]:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    req = func.HttpRequest(
        method=method,
        url="http://localhost/api/x",
        headers=headers,
        body=b"" if body is None else json.dumps(body).encode(),
    )
    resp = fn(req)
    if inspect.isawaitable(resp):  # an async function: run on a loop, as the worker does
        resp = asyncio.run(resp)
    return resp.status_code, json.loads(resp.get_body() or b"null"), resp


def test_cosmos_down_is_a_503_with_retry_after_and_the_app_recovers(emulator_stack, tmp_path):
    # A Cosmos DB server of this test's own: stopping it leaves the session's stack alone.
    (port,) = _free_ports(1)
    ports = dataclasses.replace(emulator_stack.ports, cosmos=port)
    cosmos = start_stack(ports, state_dir=tmp_path, services=["cosmos"], bind_to_caller=True)
    name = f"outage{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        **{**emulator_stack.settings, **_cosmos_settings(cosmos.settings)},
        COSMOS_DATABASE=name,
        SWARM_CONTAINER=name,
        AUTH_SECRET="outage-" + "k" * 32,
        BCRYPT_ROUNDS=4,
    )
    app = build_azure(settings)
    use_app(app)
    try:
        status, body, _ = call(http_api.signup, "POST", {"username": name, "password": "p" * 10})
        assert status == 201, body
        token = body["access_token"]
        assert call(http_api.create_swarm, "POST", {"goal": "g"}, token)[0] == 201
        status, ready, _ = call(http_api.ready, "GET")
        assert status == 200, ready
        assert ready["checks"] == dict.fromkeys(("cosmos", "blob", "queue", "webpubsub"), "ok")

        cosmos.stop()  # the outage
        status, ready, resp = call(http_api.ready, "GET")
        assert status == 503 and ready["detail"] == "unavailable: cosmos", ready
        assert ready["checks"]["cosmos"] != "ok" and ready["checks"]["blob"] == "ok"
        assert int(resp.headers["Retry-After"]) > 0
        assert call(http_api.health, "GET")[0] == 200, "liveness asks no dependency"
        started = time.monotonic()
        for fn, method, payload in (
            (http_api.list_swarms, "GET", None),
            (http_api.create_swarm, "POST", {"goal": "g"}),
            (http_api.login, "POST", {"username": name, "password": "p" * 10}),
        ):
            status, problem, resp = call(fn, method, payload, token)
            assert status == 503, (fn.__name__, problem)
            assert resp.mimetype == "application/problem+json"
            assert int(resp.headers["Retry-After"]) > 0
        print(f"\n3 requests during the outage answered 503 in {time.monotonic() - started:.1f}s")

        # Back (the local server keeps data in memory only: it comes back empty, so the test
        # recreates what the infrastructure provides). The same app, not restarted, recovers.
        cosmos = start_stack(ports, state_dir=tmp_path, services=["cosmos"], bind_to_caller=True)
        build_azure(settings)  # ensures the database and containers, as deployment does
        assert call(http_api.ready, "GET")[0] == 200
        status, body, _ = call(http_api.signup, "POST", {"username": name, "password": "p" * 10})
        assert status == 201, body
        assert call(http_api.create_swarm, "POST", {"goal": "g"}, body["access_token"])[0] == 201
    finally:
        use_app(None)
        cosmos.stop()


def _cosmos_settings(settings: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in settings.items() if k.startswith("COSMOS_")}
