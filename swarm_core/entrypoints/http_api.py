"""The HTTP API (docs/api.md): thin functions that parse, authenticate, call a service and map
the result. They never run a node step: work goes to the operations queue.
"""

from __future__ import annotations

import asyncio

import azure.functions as func

from swarm_core import __version__, readiness
from swarm_core.adapters.outages import RETRY_AFTER_SECONDS
from swarm_core.api_models import (
    ChatEntry,
    ChatListResponse,
    ChatMessagesResponse,
    CreateSwarm,
    Credentials,
    ForkSwarm,
    HealthResponse,
    HistoryResponse,
    InterruptListResponse,
    InterruptResponse,
    MeResponse,
    MessageAccepted,
    NegotiateResponse,
    PostMessage,
    ReadyResponse,
    RerunAccepted,
    RerunNode,
    ResumeSwarm,
    StateResponse,
    StatusResponse,
    SwarmDetailResponse,
    SwarmListResponse,
    SwarmSummaryResponse,
    TokenResponse,
    UpdateMe,
)
from swarm_core.auth import IssuedToken, client_address
from swarm_core.bootstrap import SwarmApp
from swarm_core.entrypoints.http_common import (
    HttpProblem,
    authenticate,
    authenticate_user,
    endpoint,
    json_response,
    no_content,
    parse_body,
    problem_response,
    query_int,
    route_param,
)
from swarm_core.openapi import openapi_document
from swarm_core.quotas import ModelPolicy
from swarm_core.runtime import get_app
from swarm_core.settings import SettingsError, load_settings
from swarm_core.swarm import Swarm

bp = func.Blueprint()
ANON = func.AuthLevel.ANONYMOUS


def _token(issued: IssuedToken) -> TokenResponse:
    return TokenResponse(
        user_id=issued.user.user_id,
        username=issued.user.username,
        access_token=issued.access_token,
        expires_in=issued.expires_in,
    )


def _summary(swarm: Swarm) -> SwarmSummaryResponse:
    return SwarmSummaryResponse.model_validate(swarm.summary().model_dump())


def _detail(swarm: Swarm) -> SwarmDetailResponse:
    return SwarmDetailResponse.model_validate(
        {**swarm.model_dump(), "failed_nodes": swarm.failed_nodes}
    )


def _status(swarm: Swarm) -> StatusResponse:
    return StatusResponse(swarm_id=swarm.swarm_id, status=swarm.status)


# --- health, auth ---------------------------------------------------------------------------


@bp.route(route="api/health", methods=["GET"], auth_level=ANON)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    # Async: it runs on the worker's event loop, never queued behind the thread pool that
    # bcrypt and storage calls can fill. It builds nothing and asks no dependency.
    return json_response(HealthResponse(status="ok", version=__version__))


@bp.route(route="api/health/ready", methods=["GET"], auth_level=ANON)
async def ready(req: func.HttpRequest) -> func.HttpResponse:
    """200 when every dependency answers; 503 with `Retry-After` naming those that do not."""
    try:
        app = await asyncio.to_thread(get_app)
    except SettingsError as exc:
        return problem_response(
            503,
            "Service not configured",
            str(exc),
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    checks = await readiness.check(readiness.probes(app.adapters))
    down = sorted(name for name, result in checks.items() if result != "ok")
    if down:
        return problem_response(
            503,
            "Not ready",
            f"unavailable: {', '.join(down)}",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            checks=checks,
        )
    return json_response(ReadyResponse(status="ready", version=__version__, checks=checks))


@bp.route(route="api/auth/signup", methods=["POST"], auth_level=ANON)
@endpoint
def signup(req: func.HttpRequest, app: SwarmApp) -> func.HttpResponse:
    body = parse_body(req, Credentials)
    address = client_address(req.headers.get("x-forwarded-for", ""), app.settings.forwarded_hops)
    return json_response(_token(app.auth.signup(body.username, body.password, address)), 201)


@bp.route(route="api/auth/login", methods=["POST"], auth_level=ANON)
@endpoint
def login(req: func.HttpRequest, app: SwarmApp) -> func.HttpResponse:
    body = parse_body(req, Credentials)
    address = client_address(req.headers.get("x-forwarded-for", ""), app.settings.forwarded_hops)
    return json_response(_token(app.auth.login(body.username, body.password, address)))


@bp.route(route="api/me", methods=["GET"], auth_level=ANON)
@endpoint
def me(req: func.HttpRequest, app: SwarmApp) -> func.HttpResponse:
    user = authenticate_user(req, app)
    return json_response(MeResponse.model_validate(user.model_dump()))


@bp.route(route="api/auth/logout", methods=["POST"], auth_level=ANON)
@endpoint
def logout(req: func.HttpRequest, app: SwarmApp) -> func.HttpResponse:
    app.auth.logout(authenticate_user(req, app))
    return no_content()


@bp.route(route="api/me", methods=["PATCH"], auth_level=ANON)
@endpoint
def update_me(req: func.HttpRequest, app: SwarmApp) -> func.HttpResponse:
    user = authenticate_user(req, app)
    body = parse_body(req, UpdateMe)
    user = app.auth.set_llm_settings(user, body.llm)
    return json_response(MeResponse.model_validate(user.model_dump()))


# --- swarms ---------------------------------------------------------------------------------


@bp.route(route="api/swarms", methods=["POST"], auth_level=ANON)
@endpoint
def create_swarm(req: func.HttpRequest, app: SwarmApp) -> func.HttpResponse:
    user = authenticate_user(req, app)
    body = parse_body(req, CreateSwarm)
    swarm = app.services.create_swarm(user.user_id, body.goal, body.config, user.llm)
    return json_response(_summary(swarm), 201)


@bp.route(route="api/swarms", methods=["GET"], auth_level=ANON)
@endpoint
def list_swarms(req: func.HttpRequest, app: SwarmApp) -> func.HttpResponse:
    user_id = authenticate(req, app)
    limit = query_int(req, "limit", 20, 1, 100) or 20
    token = req.params.get("continuation_token") or None
    items, next_token = app.services.list_swarms(user_id, limit, token)
    page = [SwarmSummaryResponse.model_validate(s.model_dump()) for s in items]
    return json_response(SwarmListResponse(items=page, continuation_token=next_token))


@bp.route(route="api/swarms/{swarm_id}", methods=["GET"], auth_level=ANON)
@endpoint
def get_swarm(req: func.HttpRequest, app: SwarmApp) -> func.HttpResponse:
    user_id = authenticate(req, app)
    return json_response(_detail(app.services.get_swarm(user_id, route_param(req, "swarm_id"))))


@bp.route(route="api/swarms/{swarm_id}", methods=["DELETE"], auth_level=ANON)
@endpoint
def delete_swarm(req: func.HttpRequest, app: SwarmApp) -> func.HttpResponse:
    user_id = authenticate(req, app)
    app.services.delete_swarm(user_id, route_param(req, "swarm_id"))
    return no_content()


@bp.route(route="api/swarms/{swarm_id}/spawn", methods=["POST"], auth_level=ANON)
@endpoint
def spawn_swarm(req: func.HttpRequest, app: SwarmApp) -> func.HttpResponse:
    user_id = authenticate(req, app)
    swarm = app.services.spawn(user_id, route_param(req, "swarm_id"))
    return json_response(_status(swarm), 202)


@bp.route(route="api/swarms/{swarm_id}/pause", methods=["POST"], auth_level=ANON)
@endpoint
def pause_swarm(req: func.HttpRequest, app: SwarmApp) -> func.HttpResponse:
    user_id = authenticate(req, app)
    return json_response(_status(app.services.pause(user_id, route_param(req, "swarm_id"))), 202)


@bp.route(route="api/swarms/{swarm_id}/resume", methods=["POST"], auth_level=ANON)
@endpoint
def resume_swarm(req: func.HttpRequest, app: SwarmApp) -> func.HttpResponse:
    user_id = authenticate(req, app)
    # The body is optional: none (or {}) resumes as is.
    body = parse_body(req, ResumeSwarm) if req.get_body() else ResumeSwarm()
    budget = body.limits.max_tokens_total if body.limits else None
    swarm = app.services.resume(user_id, route_param(req, "swarm_id"), budget)
    return json_response(_status(swarm), 202)


@bp.route(route="api/swarms/{swarm_id}/fork", methods=["POST"], auth_level=ANON)
@endpoint
def fork_swarm(req: func.HttpRequest, app: SwarmApp) -> func.HttpResponse:
    user_id = authenticate(req, app)
    # The body is optional: none (or {}) forks after the latest step, reusing recorded answers.
    body = parse_body(req, ForkSwarm) if req.get_body() else ForkSwarm()
    fork = app.services.fork(user_id, route_param(req, "swarm_id"), body.at, body.reuse_llm)
    return json_response(_summary(fork), 201)


@bp.route(route="api/swarms/{swarm_id}/state", methods=["GET"], auth_level=ANON)
@endpoint
def swarm_state(req: func.HttpRequest, app: SwarmApp) -> func.HttpResponse:
    user_id = authenticate(req, app)
    at = query_int(req, "at", None, 0, 10**9)
    state = app.services.state(user_id, route_param(req, "swarm_id"), at)
    return json_response(StateResponse.model_validate(state))


@bp.route(route="api/swarms/{swarm_id}/history", methods=["GET"], auth_level=ANON)
@endpoint
def swarm_history(req: func.HttpRequest, app: SwarmApp) -> func.HttpResponse:
    user_id = authenticate(req, app)
    after = query_int(req, "after", 0, 0, 10**9) or 0
    limit = query_int(req, "limit", 500, 1, 1000) or 500
    page = app.services.history(user_id, route_param(req, "swarm_id"), after, limit)
    return json_response(HistoryResponse.model_validate(page))


@bp.route(route="api/swarms/{swarm_id}/chats", methods=["GET"], auth_level=ANON)
@endpoint
def list_chats(req: func.HttpRequest, app: SwarmApp) -> func.HttpResponse:
    user_id = authenticate(req, app)
    chats = app.services.chats(user_id, route_param(req, "swarm_id"))
    return json_response(ChatListResponse(chats=[ChatEntry.model_validate(c) for c in chats]))


@bp.route(route="api/swarms/{swarm_id}/chats/{node_id}", methods=["GET"], auth_level=ANON)
@endpoint
def chat_messages(req: func.HttpRequest, app: SwarmApp) -> func.HttpResponse:
    user_id = authenticate(req, app)
    after = query_int(req, "after", 0, 0, 10**9) or 0
    messages = app.services.chat_messages(
        user_id, route_param(req, "swarm_id"), route_param(req, "node_id"), after
    )
    return json_response(ChatMessagesResponse(messages=messages))


@bp.route(route="api/swarms/{swarm_id}/chats/{node_id}/messages", methods=["POST"], auth_level=ANON)
@endpoint
def post_message(req: func.HttpRequest, app: SwarmApp) -> func.HttpResponse:
    user_id = authenticate(req, app)
    body = parse_body(req, PostMessage)
    accepted = app.services.post_user_message(
        user_id,
        route_param(req, "swarm_id"),
        route_param(req, "node_id"),
        body.content,
        body.client_message_id,
    )
    return json_response(MessageAccepted(message_id=accepted.message_id, seq=accepted.seq), 202)


@bp.route(route="api/swarms/{swarm_id}/interrupts", methods=["GET"], auth_level=ANON)
@endpoint
def list_interrupts(req: func.HttpRequest, app: SwarmApp) -> func.HttpResponse:
    user_id = authenticate(req, app)
    status = req.params.get("status", "open")  # given empty, it is neither: a 400
    found = app.services.interrupts(user_id, route_param(req, "swarm_id"), status)
    items = [InterruptResponse.model_validate(i.model_dump()) for i in found]
    return json_response(InterruptListResponse(items=items))


@bp.route(route="api/swarms/{swarm_id}/nodes/{node_id}", methods=["GET"], auth_level=ANON)
@endpoint
def get_node(req: func.HttpRequest, app: SwarmApp) -> func.HttpResponse:
    user_id = authenticate(req, app)
    detail = app.services.node_detail(
        user_id, route_param(req, "swarm_id"), route_param(req, "node_id")
    )
    return json_response(detail)


@bp.route(route="api/swarms/{swarm_id}/nodes/{node_id}/retry", methods=["POST"], auth_level=ANON)
@endpoint
def retry_node(req: func.HttpRequest, app: SwarmApp) -> func.HttpResponse:
    user_id = authenticate(req, app)
    swarm = app.services.retry_node(
        user_id, route_param(req, "swarm_id"), route_param(req, "node_id")
    )
    return json_response(_status(swarm), 202)


@bp.route(route="api/swarms/{swarm_id}/nodes/{node_id}/rerun", methods=["POST"], auth_level=ANON)
@endpoint
def rerun_node(req: func.HttpRequest, app: SwarmApp) -> func.HttpResponse:
    user_id = authenticate(req, app)
    # The body is optional: none (or {}) reruns the node with its directive.
    body = parse_body(req, RerunNode) if req.get_body() else RerunNode()
    rerun = app.services.rerun_node(
        user_id, route_param(req, "swarm_id"), route_param(req, "node_id"), body.directive
    )
    accepted = RerunAccepted(
        swarm_id=rerun.swarm.swarm_id,
        node_id=rerun.node_id,
        new_node_id=rerun.new_node_id,
        status=rerun.swarm.status,
    )
    return json_response(accepted, 202)


@bp.route(route="api/negotiate", methods=["GET"], auth_level=ANON)
@endpoint
def negotiate(req: func.HttpRequest, app: SwarmApp) -> func.HttpResponse:
    user_id = authenticate(req, app)
    swarm_id = req.params.get("swarm_id", "")
    if not swarm_id or len(swarm_id) > 100:
        raise HttpProblem(400, "Missing swarm_id", "negotiate needs ?swarm_id=")
    url, expires_at = app.services.client_url(user_id, swarm_id)  # 404 unless the caller's
    return json_response(NegotiateResponse(url=url, expires_at=expires_at))


@bp.route(route="api/openapi.json", methods=["GET"], auth_level=ANON)
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    # The settings only (no app is built, nothing connects): the models this deployment offers.
    try:
        llm = load_settings().llm
        models: ModelPolicy | None = ModelPolicy(llm.allowed_models(), llm.llm_max_tokens_limit)
    except SettingsError:  # LLMConfigurationError included
        models = None  # not configured: the document without them
    return json_response(openapi_document(models))
