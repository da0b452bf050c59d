"""HTTP-triggered functions behind a real HTTP server (aiohttp), as the host serves them.

Every request under the route prefix is matched against the functions' route templates (most
specific first), turned into an ``azure.functions.HttpRequest`` and handed to the function; the
``HttpResponse`` it returns becomes the HTTP response, with the worker's Content-Type rule
(``mimetype; charset=...`` for text types). As ASP.NET does, query and header values that repeat
are joined with ','. Differences from the real host, on purpose: a known route with the wrong
method answers 405 with ``Allow`` (the host answers 404; a catch-all route such as the web
console's ``{*path}`` does not count for a path another route matches, so it neither takes such a
request nor shows up in its ``Allow``), and an unhandled exception answers 500
with a small JSON body (the host's body is empty); function keys are not checked, as with
``func start``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import azure.functions as func
from aiohttp import web
from multidict import CIMultiDict, MultiMapping

from devhost.functions import FunctionInvoker, RegisteredFunction, new_invocation_id
from devhost.routes import RouteTemplate

logger = logging.getLogger(__name__)

MAX_REQUEST_BODY = 100 * 1024 * 1024  # the host's request size limit
_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass(frozen=True)
class HttpRoute:
    function: RegisteredFunction
    template: RouteTemplate
    methods: frozenset[str] | None  # None: every method

    @classmethod
    def for_function(cls, function: RegisteredFunction) -> HttpRoute:
        # The decorator defaults a missing route to the function name when the app is indexed.
        route = function.trigger.get("route") or function.name
        methods = function.trigger.get("methods")
        allowed = frozenset(str(m).upper() for m in methods) if methods else None
        return cls(function, RouteTemplate(str(route)), allowed)

    def describe_methods(self) -> str:
        return ",".join(sorted(self.methods)) if self.methods else "ALL"


def _joined(values: MultiMapping[str]) -> dict[str, str]:
    joined: dict[str, str] = {}
    for key in values:
        if key not in joined:
            joined[key] = ",".join(values.getall(key))
    return joined


def _to_http_response(result: object, function_name: str) -> web.Response:
    if result is None:
        return web.Response(status=204)
    if isinstance(result, str):
        return web.Response(
            status=200, body=result.encode(), headers={"Content-Type": "text/plain; charset=utf-8"}
        )
    if not isinstance(result, func.HttpResponse):
        raise TypeError(
            f"function {function_name} returned {type(result).__name__}, "
            "expected azure.functions.HttpResponse or str"
        )
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in result.headers.items():
        if name.lower() not in _HOP_BY_HOP:
            headers.add(name, value)
    if "Content-Type" not in headers:
        mimetype = result.mimetype
        headers["Content-Type"] = (
            f"{mimetype}; charset={result.charset}" if mimetype.startswith("text/") else mimetype
        )
    return web.Response(status=result.status_code, body=result.get_body(), headers=headers)


def _internal_error(function_name: str, invocation_id: str) -> web.Response:
    body = {"error": "Internal Server Error", "function": function_name, "id": invocation_id}
    return web.Response(
        status=500, text=json.dumps(body), content_type="application/json", charset="utf-8"
    )


class HttpFunctionServer:
    """The aiohttp application that dispatches requests to HTTP-triggered functions."""

    def __init__(
        self, routes: Iterable[HttpRoute], route_prefix: str, invoker: FunctionInvoker
    ) -> None:
        # Most specific template first, like ASP.NET routing; ties in a stable, readable order.
        self.routes = sorted(routes, key=lambda r: (r.template.precedence, r.template.template))
        self.route_prefix = route_prefix.strip("/")
        self._invoker = invoker

    def application(self) -> web.Application:
        app = web.Application(client_max_size=MAX_REQUEST_BODY)
        # Every path, a decoded newline in it included (`.` would stop there, and aiohttp would
        # answer its own plain-text 404 where the Functions host runs the route).
        app.router.add_route("*", r"/{tail:[\s\S]*}", self.handle)
        return app

    def _relative_path(self, raw_path: str) -> str | None:
        if not self.route_prefix:
            return raw_path
        prefix = "/" + self.route_prefix
        if raw_path.lower() == prefix.lower():
            return ""
        if raw_path.lower().startswith(prefix.lower() + "/"):
            return raw_path[len(prefix) :]
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = self._relative_path(request.rel_url.raw_path)
        if path is None:
            return web.Response(status=404)
        method = request.method.upper()
        allowed: set[str] = set()
        specific_match = False
        for route in self.routes:  # most specific first: catch-all routes come last
            route_params = route.template.match(path)
            if route_params is None:
                continue
            if route.template.catch_all:
                if specific_match:
                    break  # the path is another route's: a wrong method is a 405 of that route
            else:
                specific_match = True
            if route.methods is not None and method not in route.methods:
                allowed |= route.methods
                continue
            return await self._call(route.function, request, route_params)
        if allowed:
            return web.Response(status=405, headers={"Allow": ", ".join(sorted(allowed))})
        return web.Response(status=404)

    async def _call(
        self, function: RegisteredFunction, request: web.Request, route_params: dict[str, str]
    ) -> web.StreamResponse:
        invocation_id = new_invocation_id()
        headers = _joined(request.headers)
        # As Azure's front end does: append the address of the peer to X-Forwarded-For, so
        # the app finds the client's address where it does in Azure (auth.client_address).
        peer = f"{request.remote}:0" if request.remote else ""
        sent = next((k for k in headers if k.lower() == "x-forwarded-for"), None)
        forwarded = [v for v in (headers.pop(sent, "") if sent else "", peer) if v]
        if forwarded:
            headers["X-Forwarded-For"] = ", ".join(forwarded)
        http_request = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=headers,
            params=_joined(request.rel_url.query),
            route_params=route_params,
            body=await request.read(),
        )
        reason = f"HTTP {request.method} {request.rel_url.path}"
        try:
            result = await self._invoker.invoke(
                function, http_request, reason=reason, invocation_id=invocation_id
            )
        except Exception:  # logged with its traceback by the invoker; the caller gets a 500
            return _internal_error(function.name, invocation_id)
        try:
            return _to_http_response(result, function.name)
        except (TypeError, ValueError) as exc:
            logger.error("Function %s returned an unusable response: %s", function.name, exc)
            return _internal_error(function.name, invocation_id)
