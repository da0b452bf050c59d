"""The OpenAPI document matches the routes the app registers, and is valid OpenAPI 3.1."""

from __future__ import annotations

import json

import azure.functions as func

from swarm_core.entrypoints import http_api
from swarm_core.openapi import OPERATIONS, openapi_document


def registered_routes() -> set[tuple[str, str]]:
    import function_app

    routes = set()
    for f in function_app.app.get_functions():
        trigger = f.get_trigger()
        route = getattr(trigger, "route", None)
        if route is None or not route.startswith("api/"):
            continue  # not HTTP, or the web console's static files
        for method in trigger.methods or []:
            routes.add((str(method).split(".")[-1].lower(), f"/{route.removeprefix('api/')}"))
    return routes


def test_the_document_lists_exactly_the_registered_routes():
    documented = {(op.method, op.path) for op in OPERATIONS}
    assert documented == registered_routes()
    doc = openapi_document()
    assert doc["openapi"] == "3.1.0"
    assert {
        (m, p.removeprefix("/api")) for p, ops in doc["paths"].items() for m in ops
    } == documented


def test_every_reference_resolves():
    doc = openapi_document()
    text = json.dumps(doc)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}:
        assert ref in doc["components"]["schemas"], ref


def test_served_at_api_openapi_json():
    req = func.HttpRequest(method="GET", url="http://localhost/api/openapi.json", body=b"")
    resp = http_api.openapi(req)
    assert resp.status_code == 200
    assert json.loads(resp.get_body())["info"]["title"] == "Swarm backend API"


def test_every_route_documents_the_problems_it_can_answer_and_typed_queries():
    doc = openapi_document()
    for path, operations in doc["paths"].items():
        for method, entry in operations.items():
            statuses = set(entry["responses"])
            if path in ("/api/health", "/api/openapi.json"):
                continue
            assert {"500", "503"} <= statuses, (method, path)
            if entry.get("security"):
                assert "401" in statuses, (method, path)
            if "requestBody" in entry:
                assert {"400", "413", "422"} <= statuses, (method, path)
            for param in entry["parameters"]:
                if param["name"] in ("limit", "after", "at"):
                    assert param["schema"]["type"] == "integer", (method, path, param)
    limit = next(
        p for p in doc["paths"]["/api/swarms"]["get"]["parameters"] if p["name"] == "limit"
    )
    assert limit["schema"]["maximum"] == 100


def test_the_document_describes_the_models_this_deployment_offers():
    from swarm_core.quotas import ModelPolicy

    llm = openapi_document(ModelPolicy(["gpt-4o-mini", "gpt-4o"], 4000))["components"]["schemas"][
        "LLMSettings"
    ]["properties"]
    assert llm["model"]["anyOf"][0]["enum"] == ["gpt-4o-mini", "gpt-4o"]
    assert llm["max_tokens"]["anyOf"][0]["maximum"] == 4000
    plain = openapi_document()["components"]["schemas"]["LLMSettings"]["properties"]
    assert "enum" not in plain["model"]["anyOf"][0]
    assert plain["max_tokens"]["anyOf"][0]["maximum"] == 100_000


def test_integers_and_numbers_are_described_as_json_schema_does():
    """Bounds are `minimum`/`maximum` everywhere (not pydantic's own `ge`/`le`)."""
    text = json.dumps(openapi_document())
    assert '"ge":' not in text and '"le":' not in text
