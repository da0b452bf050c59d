"""The OpenAPI 3.1 document of the HTTP API, generated from the request/response models.

`OPERATIONS` lists every route once (method, path, models, statuses); a test checks it against
the functions the app registers, so the document cannot drift from the code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from swarm_core import __version__
from swarm_core import api_models as m
from swarm_core.quotas import ModelPolicy

PROBLEM = "application/problem+json"


@dataclass(frozen=True)
class ApiOperation:
    method: str
    path: str  # under /api, with {params}
    operation_id: str
    summary: str
    response: type[BaseModel] | None
    status: int = 200
    request: type[BaseModel] | None = None
    auth: bool = True
    query: tuple[str, ...] = ()
    errors: tuple[int, ...] = field(default=())
    body_optional: bool = False  # the request body may be left out


OPERATIONS: tuple[ApiOperation, ...] = (
    ApiOperation("get", "/health", "health", "Liveness", m.HealthResponse, auth=False),
    ApiOperation(
        "get", "/health/ready", "ready", "Readiness", m.ReadyResponse, auth=False, errors=(503,)
    ),
    ApiOperation("get", "/openapi.json", "openapi", "This document", None, auth=False),
    ApiOperation(
        "post",
        "/auth/signup",
        "signup",
        "Create an account",
        m.TokenResponse,
        201,
        m.Credentials,
        False,
        errors=(409, 422, 429),
    ),
    ApiOperation(
        "post",
        "/auth/login",
        "login",
        "Log in",
        m.TokenResponse,
        200,
        m.Credentials,
        False,
        errors=(401, 422, 429),
    ),
    ApiOperation("get", "/me", "me", "The caller", m.MeResponse),
    ApiOperation("post", "/auth/logout", "logout", "Revoke every token of the caller", None, 204),
    ApiOperation(
        "patch",
        "/me",
        "update_me",
        "Set the caller's model settings for new swarms",
        m.MeResponse,
        200,
        m.UpdateMe,
        errors=(413, 422),
    ),
    ApiOperation(
        "post",
        "/swarms",
        "create_swarm",
        "Create a swarm",
        m.SwarmSummaryResponse,
        201,
        m.CreateSwarm,
        errors=(413, 422, 429),
    ),
    ApiOperation(
        "get",
        "/swarms",
        "list_swarms",
        "The caller's swarms, newest first",
        m.SwarmListResponse,
        query=("limit", "continuation_token"),
    ),
    ApiOperation(
        "get", "/swarms/{swarm_id}", "get_swarm", "A swarm", m.SwarmDetailResponse, errors=(404,)
    ),
    ApiOperation(
        "delete",
        "/swarms/{swarm_id}",
        "delete_swarm",
        "Delete a swarm and its data",
        None,
        204,
        errors=(404,),
    ),
    ApiOperation(
        "post",
        "/swarms/{swarm_id}/spawn",
        "spawn_swarm",
        "Start the swarm",
        m.StatusResponse,
        202,
        errors=(404, 409, 429),
    ),
    ApiOperation(
        "post",
        "/swarms/{swarm_id}/pause",
        "pause_swarm",
        "Pause (work is parked)",
        m.StatusResponse,
        202,
        errors=(404, 409),
    ),
    ApiOperation(
        "post",
        "/swarms/{swarm_id}/resume",
        "resume_swarm",
        "Resume parked work",
        m.StatusResponse,
        202,
        m.ResumeSwarm,
        errors=(404, 409, 429),
        body_optional=True,
    ),
    ApiOperation(
        "post",
        "/swarms/{swarm_id}/fork",
        "fork_swarm",
        "A new swarm that is this one as it was after step `at` (default: the latest)",
        m.SwarmSummaryResponse,
        201,
        m.ForkSwarm,
        errors=(404, 409, 413, 422, 429),
        body_optional=True,
    ),
    ApiOperation(
        "get",
        "/swarms/{swarm_id}/state",
        "swarm_state",
        "The tree now or at seq",
        m.StateResponse,
        query=("at",),
        errors=(404,),
    ),
    ApiOperation(
        "get",
        "/swarms/{swarm_id}/history",
        "swarm_history",
        "Events after seq",
        m.HistoryResponse,
        query=("after", "limit"),
        errors=(404,),
    ),
    ApiOperation(
        "get",
        "/swarms/{swarm_id}/chats",
        "list_chats",
        "One entry per node chat",
        m.ChatListResponse,
        errors=(404,),
    ),
    ApiOperation(
        "get",
        "/swarms/{swarm_id}/chats/{node_id}",
        "chat_messages",
        "A node's chat",
        m.ChatMessagesResponse,
        query=("after",),
        errors=(404,),
    ),
    ApiOperation(
        "post",
        "/swarms/{swarm_id}/chats/{node_id}/messages",
        "post_message",
        "Commit the user's message to a node's chat",
        m.MessageAccepted,
        202,
        m.PostMessage,
        errors=(404, 409, 422),
    ),
    ApiOperation(
        "get",
        "/swarms/{swarm_id}/interrupts",
        "list_interrupts",
        "Questions waiting for the user (status=open) or all of them (status=all)",
        m.InterruptListResponse,
        query=("status",),
        errors=(400, 404),
    ),
    ApiOperation(
        "get",
        "/swarms/{swarm_id}/nodes/{node_id}",
        "get_node",
        "A node with its developer logs and journal",
        None,
        errors=(404,),
    ),
    ApiOperation(
        "post",
        "/swarms/{swarm_id}/nodes/{node_id}/retry",
        "retry_node",
        "Run a failed node's step again",
        m.StatusResponse,
        202,
        errors=(404, 409),
    ),
    ApiOperation(
        "post",
        "/swarms/{swarm_id}/nodes/{node_id}/rerun",
        "rerun_node",
        "Discard a node's branch and run the node again (a paused swarm)",
        m.RerunAccepted,
        202,
        m.RerunNode,
        errors=(404, 409, 422),
        body_optional=True,
    ),
    ApiOperation(
        "get",
        "/negotiate",
        "negotiate",
        "A receive-only Web PubSub URL for a swarm",
        m.NegotiateResponse,
        query=("swarm_id",),
        errors=(400, 404),
    ),
)


# The query parameters' schemas (the HTTP layer enforces the same bounds: `query_int`).
QUERY_SCHEMAS: dict[str, dict[str, Any]] = {
    "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
    "after": {"type": "integer", "minimum": 0, "maximum": 10**9},
    "at": {"type": "integer", "minimum": 0, "maximum": 10**9},
    "status": {"type": "string", "enum": ["open", "all"]},
    "continuation_token": {"type": "string"},
    "swarm_id": {"type": "string", "minLength": 1, "maxLength": 100},
}
# Where one route bounds a parameter tighter than the others.
QUERY_OVERRIDES: dict[tuple[str, str], dict[str, Any]] = {
    ("list_swarms", "limit"): {"type": "integer", "minimum": 1, "maximum": 100},
}


def implied_errors(op: ApiOperation) -> set[int]:
    """The problem statuses every route of its kind can answer, besides its own `errors`: 500
    and 503 wherever the app is built, 401 behind a token, 400/413/422 for a body, 400 for bad
    query values, 404 for a path parameter that cannot be an id."""
    if op.operation_id in ("health", "openapi"):
        return set()
    errors = {500, 503}
    if op.auth:
        errors.add(401)
    if op.request is not None:
        errors |= {400, 413, 422}
    if op.query:
        errors.add(400)
    if _path_params(op.path):
        errors.add(404)
    return errors


def _ref(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        schemas[name] = sub
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def openapi_document(models: ModelPolicy | None = None) -> dict[str, Any]:
    """The document; with the deployment's `models` policy, the model settings it describes are
    the ones this deployment accepts (its models, its `max_tokens` cap)."""
    schemas: dict[str, Any] = {}
    problem = {PROBLEM: {"schema": _ref(m.Problem, schemas)}}
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        params: list[dict[str, Any]] = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in _path_params(op.path)
        ]
        params += [
            {
                "name": q,
                "in": "query",
                "required": q == "swarm_id",
                "schema": QUERY_OVERRIDES.get((op.operation_id, q), QUERY_SCHEMAS[q]),
            }
            for q in op.query
        ]
        ok: dict[str, Any] = {"description": "OK"}
        if op.response is not None:
            ok["content"] = {"application/json": {"schema": _ref(op.response, schemas)}}
        elif op.status != 204:
            ok["content"] = {"application/json": {"schema": {"type": "object"}}}
        responses: dict[str, Any] = {str(op.status): ok}
        for status in sorted({*op.errors, *implied_errors(op)}):
            responses[str(status)] = {"description": "Problem", "content": problem}
        entry: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "parameters": params,
            "responses": responses,
        }
        if op.request is not None:
            entry["requestBody"] = {
                "required": not op.body_optional,
                "content": {"application/json": {"schema": _ref(op.request, schemas)}},
            }
        if op.auth:
            entry["security"] = [{"bearer": []}]
        paths.setdefault(f"/api{op.path}", {})[op.method] = entry
    if models is not None:
        _describe_policy(schemas["LLMSettings"]["properties"], models)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Swarm backend API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def _describe_policy(llm: dict[str, Any], models: ModelPolicy) -> None:
    # Each is `anyOf: [<the value's schema>, {"type": "null"}]`.
    max_tokens = llm["max_tokens"]["anyOf"][0]
    max_tokens["maximum"] = min(max_tokens["maximum"], models.max_tokens)
    if models.allowed_models:
        llm["model"]["anyOf"][0]["enum"] = list(models.allowed_models)


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]
