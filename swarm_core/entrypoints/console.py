"""The web console: the static files of `web/` (built into `web/dist` by `scripts/bootstrap.sh`),
served by the function app at `/`, beside the API under `/api`.

One catch-all HTTP function (`{*path}`: the API's literal routes come before a catch-all, on the
Functions host as on the dev host) answers the paths the API does not; an `api` path that reaches
it names no route of the API and gets the host's plain 404, as before the console existed. (A
regex constraint on the catch-all would keep it off `api` paths, but the host's regex constraint
does not match the empty path, so it would leave `/` to the host's own page.) It serves files
from the build only, never outside it, with a strict
Content-Security-Policy on the page: scripts, styles and fetches from this origin only, plus the
Web PubSub endpoint's WebSocket origin (from the settings) for live events.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import azure.functions as func

from swarm_core.settings import Settings, SettingsError, load_settings

log = logging.getLogger(__name__)

bp = func.Blueprint()

CONSOLE_DIR = Path(__file__).resolve().parents[2] / "web" / "dist"

CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".map": "application/json",
    ".txt": "text/plain",
    ".woff2": "font/woff2",
}
# Vite names what it builds into assets/ by content hash: a name never changes its bytes.
IMMUTABLE = "public, max-age=31536000, immutable"
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def websocket_origin(settings: Settings) -> str | None:
    """The origin (`ws://host:port`, `wss://host`) of the client URLs `GET /api/negotiate` hands
    out: the Web PubSub endpoint, from the endpoint setting or the connection string."""
    endpoint, port = settings.webpubsub_endpoint, None
    if not endpoint and settings.webpubsub_connection_string:
        fields = {
            key.strip().lower(): value.strip()
            for key, _, value in (
                part.partition("=") for part in settings.webpubsub_connection_string.split(";")
            )
        }
        endpoint, port = fields.get("endpoint"), fields.get("port")
    if not endpoint:
        return None
    url = urlsplit(endpoint)
    if not url.hostname:
        return None
    scheme = "wss" if url.scheme == "https" else "ws"
    port = port or (str(url.port) if url.port else None)
    return f"{scheme}://{url.hostname}" + (f":{port}" if port else "")


def content_security_policy(ws_origin: str | None) -> str:
    connect = "'self'" + (f" {ws_origin}" if ws_origin else "")
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"font-src 'self'; connect-src {connect}; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


def console_file(root: Path, path: str) -> Path | None:
    """The built file a request path names (`` → index.html), or None when there is none: a
    path that leaves the build (`..`, backslashes, absolute) names nothing."""
    parts = PurePosixPath(path.strip("/")).parts
    if any(p in ("..", ".") or "\\" in p or "\x00" in p for p in parts):
        return None
    target = root.joinpath(*parts) if parts else root / "index.html"
    try:
        resolved = target.resolve()
    except (OSError, RuntimeError):
        return None
    if not resolved.is_relative_to(root.resolve()) or not resolved.is_file():
        return None
    return resolved


def _page_csp() -> str:
    try:
        return content_security_policy(websocket_origin(load_settings()))
    except SettingsError:  # not configured: the page still loads, without live events
        return content_security_policy(None)


def is_api_path(path: str) -> bool:
    first = path.strip("/").split("/", 1)[0]
    return first.lower() == "api"


@bp.route(route="{*path}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def console(req: func.HttpRequest) -> func.HttpResponse:
    # Async: a static file never waits behind the thread pool that steps and bcrypt fill.
    path = req.route_params.get("path") or ""
    if is_api_path(path):
        return func.HttpResponse(status_code=404)  # no route of the API: the host's answer
    if not (CONSOLE_DIR / "index.html").is_file():
        return func.HttpResponse(
            "The console is not built: run `bash scripts/bootstrap.sh`.\n",
            status_code=503,
            mimetype="text/plain",
        )
    found = console_file(CONSOLE_DIR, path)
    if found is None:
        return func.HttpResponse("Not found\n", status_code=404, mimetype="text/plain")
    headers = dict(SECURITY_HEADERS)
    mimetype = CONTENT_TYPES.get(found.suffix.lower(), "application/octet-stream")
    if mimetype == "text/html":
        headers["Content-Security-Policy"] = _page_csp()
        headers["Cache-Control"] = "no-cache"
    elif found.parent.name == "assets":
        headers["Cache-Control"] = IMMUTABLE
    else:
        headers["Cache-Control"] = "no-cache"
    return func.HttpResponse(found.read_bytes(), mimetype=mimetype, headers=headers)
