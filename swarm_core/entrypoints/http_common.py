"""What every HTTP function shares: parse and validate the request, authenticate, answer JSON, and
turn every error into an `application/problem+json` response (never a bare 500 for bad input).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import azure.functions as func
from pydantic import BaseModel, ValidationError

from swarm_core import telemetry
from swarm_core.adapters.outages import RETRY_AFTER_SECONDS, is_outage
from swarm_core.auth import AuthError, Throttled, UsernameTaken
from swarm_core.bootstrap import SwarmApp
from swarm_core.models import User
from swarm_core.quotas import NotAllowed, QuotaExceeded
from swarm_core.runtime import get_app
from swarm_core.services import InvalidRequest, InvalidState, NotFound, ServiceError
from swarm_core.settings import SettingsError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
# No request model nests deeper than a few levels; anything deeper is refused before parsing.
MAX_JSON_DEPTH = 32
M = TypeVar("M", bound=BaseModel)

# The services' domain errors as HTTP statuses and problem titles.
SERVICE_ERRORS: dict[type[ServiceError], tuple[int, str]] = {
    InvalidRequest: (400, "Bad request"),
    NotFound: (404, "Not found"),
    InvalidState: (409, "Conflict"),
}


class HttpProblem(Exception):
    def __init__(self, status: int, title: str, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.extra = extra


def problem_response(
    status: int,
    title: str,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> func.HttpResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return func.HttpResponse(
        json.dumps(body, default=str),
        status_code=status,
        mimetype="application/problem+json",
        headers=headers,
    )


def json_response(body: Any, status: int = 200) -> func.HttpResponse:
    text = body.model_dump_json() if isinstance(body, BaseModel) else json.dumps(body, default=str)
    return func.HttpResponse(text, status_code=status, mimetype="application/json")


def no_content() -> func.HttpResponse:
    return func.HttpResponse(status_code=204)


def _validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]


def nesting_depth(body: bytes) -> int:
    """How deep the JSON text's arrays and objects nest (brackets inside strings do not count).
    Measured before parsing: the parser recurses, and a few KB of `[[[[…` would exhaust it."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def parse_body(req: func.HttpRequest, model: type[M]) -> M:
    body = req.get_body() or b""
    if len(body) > MAX_BODY_BYTES:
        raise HttpProblem(413, "Payload too large", f"the body is over {MAX_BODY_BYTES} bytes")
    if nesting_depth(body) > MAX_JSON_DEPTH:
        raise HttpProblem(
            400, "Malformed JSON", f"the body nests deeper than {MAX_JSON_DEPTH} levels"
        )
    try:
        data = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise HttpProblem(400, "Malformed JSON", str(exc)) from exc
    if not isinstance(data, dict):
        raise HttpProblem(422, "Invalid request", "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise HttpProblem(422, "Invalid request", errors=_validation_errors(exc)) from exc


def query_int(
    req: func.HttpRequest, name: str, default: int | None, low: int, high: int
) -> int | None:
    raw = req.params.get(name)
    if raw is None:  # given empty, it is no integer: a 400, as the OpenAPI document says
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise HttpProblem(400, "Invalid query parameter", f"{name} must be an integer") from exc
    if not low <= value <= high:
        raise HttpProblem(400, "Invalid query parameter", f"{name} must be in {low}..{high}")
    return value


def route_param(req: func.HttpRequest, name: str) -> str:
    value = str(req.route_params.get(name) or "")
    if not value or len(value) > 100:
        raise HttpProblem(404, "Not found")
    return value


def authenticate_user(req: func.HttpRequest, app: SwarmApp) -> User:
    """The caller, from `Authorization: Bearer <token>`."""
    header = req.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("a bearer token is required")
    return app.auth.authenticate(token.strip())


def authenticate(req: func.HttpRequest, app: SwarmApp) -> str:
    """The caller's user id."""
    return authenticate_user(req, app).user_id


Handler = Callable[[func.HttpRequest, SwarmApp], func.HttpResponse]


def endpoint(handler: Handler) -> Callable[[func.HttpRequest], func.HttpResponse]:
    """Wrap a handler: give it the app and map every error to a problem response."""

    # Not functools.wraps: the Functions worker reads the signature (`req` only) for bindings.
    def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        path = urlsplit(req.url).path
        with telemetry.http_span(handler.__name__, req.method, path, req.route_params) as span:
            response = _handled(req)
            telemetry.answered(span, response.status_code)
            return response

    def _handled(req: func.HttpRequest) -> func.HttpResponse:
        try:
            return handler(req, get_app())
        except HttpProblem as exc:
            return problem_response(exc.status, exc.title, exc.detail, **exc.extra)
        except ValidationError as exc:
            return problem_response(422, "Invalid request", errors=_validation_errors(exc))
        except AuthError as exc:
            return problem_response(
                401, "Unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"}
            )
        except Throttled as exc:
            return problem_response(
                429, "Too many requests", str(exc), headers={"Retry-After": str(exc.retry_after)}
            )
        except NotAllowed as exc:
            return problem_response(422, "Not allowed", str(exc), allowed=exc.allowed)
        except QuotaExceeded as exc:
            return problem_response(429, "Quota exceeded", str(exc))
        except UsernameTaken:
            return problem_response(409, "Conflict", "the username is taken")
        except ServiceError as exc:
            status, title = SERVICE_ERRORS.get(type(exc), (400, "Bad request"))
            return problem_response(status, title, str(exc))
        except SettingsError as exc:
            log.error("configuration error: %s", exc)
            return problem_response(
                503,
                "Service not configured",
                str(exc),
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        except Exception as exc:
            if is_outage(exc):
                log.warning("dependency unavailable in %s: %r", handler.__name__, exc)
                return problem_response(
                    503,
                    "Service unavailable",
                    "a storage service is unreachable or overloaded; try again shortly",
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                )
            log.exception("unhandled error in %s", handler.__name__)
            return problem_response(500, "Internal server error")

    wrapper.__name__ = handler.__name__
    wrapper.__qualname__ = handler.__qualname__
    wrapper.__doc__ = handler.__doc__
    return wrapper
