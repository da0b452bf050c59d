"""The console's static-file function: what it serves, what it refuses, and its headers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import azure.functions as func
import pytest

from devhost.routes import RouteTemplate
from swarm_core.entrypoints import console
from swarm_core.settings import Settings


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>console</title>")
    (tmp_path / "assets" / "index-abc123.js").write_text("console.log(1)")
    (tmp_path.parent / "secret.txt").write_text("outside the build")
    monkeypatch.setattr(console, "CONSOLE_DIR", tmp_path)
    return tmp_path


def get(path: str) -> func.HttpResponse:
    req = func.HttpRequest(
        method="GET", url=f"http://localhost/{path}", route_params={"path": path}, body=b""
    )
    return asyncio.run(console.console(req))


def test_the_page_and_its_assets(built: Path) -> None:
    page = get("")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    assert page.get_body().startswith(b"<!doctype html>")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert page.headers["Cache-Control"] == "no-cache"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    script = get("assets/index-abc123.js")
    assert script.status_code == 200
    assert script.mimetype == "text/javascript"
    assert "immutable" in script.headers["Cache-Control"]


@pytest.mark.parametrize(
    "path",
    [
        "missing.js",
        "../secret.txt",
        "assets/../../secret.txt",
        "..%2Fsecret.txt",
        "a\\..\\b",
        "assets",
    ],
)
def test_nothing_outside_the_build_nor_missing(built: Path, path: str) -> None:
    assert get(path).status_code == 404


def test_not_built_says_how_to_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console, "CONSOLE_DIR", tmp_path / "dist")
    answer = get("")
    assert answer.status_code == 503
    assert b"scripts/bootstrap.sh" in answer.get_body()


def test_the_route_takes_every_path_and_leaves_api_paths_alone(built: Path) -> None:
    (function,) = console.bp._function_builders  # one function in the blueprint
    route = function.build().get_trigger().route
    assert route == "{*path}", "a plain catch-all: it matches `/` on the Functions host too"
    template = RouteTemplate(route)
    assert template.match("") == {}
    assert template.match("/assets/index-abc.js") == {"path": "assets/index-abc.js"}
    for path in ("api", "api/", "api/nope", "API/swarms/x/unknown"):
        answer = get(path)
        assert answer.status_code == 404 and answer.get_body() == b"", path
    assert get("apiary").status_code == 404  # not an api path: a missing file


@pytest.mark.parametrize(
    ("values", "origin"),
    [
        (
            {"webpubsub_endpoint": "https://swarm-abc.webpubsub.azure.com"},
            "wss://swarm-abc.webpubsub.azure.com",
        ),
        (
            {
                "webpubsub_connection_string": "Endpoint=http://127.0.0.1:7080;AccessKey=k;Version=1.0;"
            },
            "ws://127.0.0.1:7080",
        ),
        (
            {"webpubsub_connection_string": "Endpoint=http://localhost;Port=8080;AccessKey=k;"},
            "ws://localhost:8080",
        ),
        ({}, None),
    ],
)
def test_the_page_may_connect_to_the_web_pubsub_origin(
    values: dict[str, str], origin: str | None
) -> None:
    unset = {"webpubsub_endpoint": None, "webpubsub_connection_string": None}
    found = console.websocket_origin(Settings(**{**unset, **values}))
    assert found == origin
    csp = console.content_security_policy(found)
    assert f"connect-src 'self' {origin};" in csp if origin else "connect-src 'self';" in csp
