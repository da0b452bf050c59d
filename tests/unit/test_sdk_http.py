"""How the SDK clients are built to talk HTTP (swarm_core/adapters/sdk_http.py)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest
import requests

from swarm_core.adapters import sdk_http


def test_without_a_proxy_in_the_environment_requests_do_not_scan_it(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    options = sdk_http.client_options()
    assert options["connection_timeout"] == sdk_http.CONNECT_TIMEOUT_SECONDS
    assert options["read_timeout"] == sdk_http.READ_TIMEOUT_SECONDS
    transport = options["transport"]
    transport.open()
    try:
        assert transport.session.trust_env is False
    finally:
        transport.close()


@pytest.mark.parametrize("name", ["HTTPS_PROXY", "https_proxy", "ALL_PROXY"])
def test_with_a_proxy_in_the_environment_requests_honour_it(monkeypatch, name):
    monkeypatch.setenv(name, "http://proxy.example:3128")
    transport = sdk_http.client_options()["transport"]
    transport.open()
    try:
        assert transport.session.trust_env is True
    finally:
        transport.close()


def test_given_options_win():
    mine = object()
    options = sdk_http.client_options(transport=mine, read_timeout=1)
    assert options["transport"] is mine and options["read_timeout"] == 1


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every request with its own method, path, headers and body, as JSON."""

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        reply = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode(),
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.send_header("set-cookie", "affinity=1")
        self.end_headers()
        self.wfile.write(reply)

    do_GET = do_PUT = do_POST = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def recorder() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _as_the_sdk_calls(session: requests.Session, url: str, **extra: object) -> requests.Response:
    # The arguments RequestsTransport.send gives the session.
    arguments: dict[str, object] = {
        "headers": {"x-ms-version": "2020-01-01", "Content-Type": "application/json"},
        "data": b'{"id": "x"}',
        "files": None,
        "verify": True,
        "timeout": (5, 20),
        "cert": None,
        "allow_redirects": False,
        "proxies": None,
        "stream": False,
    }
    arguments.update(extra)
    return session.request("PUT", url + "/dbs/x/docs?a=1&b=%2F", **arguments)  # type: ignore[arg-type]


def test_the_lean_session_sends_what_requests_sends(recorder):
    plain, lean = requests.Session(), sdk_http.LeanSession()
    plain.trust_env = lean.trust_env = False
    seen_plain = _as_the_sdk_calls(plain, recorder).json()
    seen_lean = _as_the_sdk_calls(lean, recorder).json()
    assert seen_lean == seen_plain
    assert seen_lean["headers"]["x-ms-version"] == "2020-01-01"
    assert seen_lean["headers"]["accept-encoding"], "the session's default headers are sent"
    assert seen_lean["body"] == '{"id": "x"}'


def test_the_lean_session_keeps_no_cookies_and_streams_on_request(recorder):
    lean = sdk_http.LeanSession()
    lean.trust_env = False
    first = _as_the_sdk_calls(lean, recorder)
    assert "cookie" not in _as_the_sdk_calls(lean, recorder).json()["headers"]
    assert first.cookies.get("affinity") == "1", "the response still shows its cookies"
    streamed = _as_the_sdk_calls(lean, recorder, stream=True)
    assert streamed.raw.read() and streamed.status_code == 200


@pytest.mark.parametrize(
    "setup, extra",
    [
        (lambda s: setattr(s, "trust_env", True), {}),
        (lambda s: s.cookies.set("k", "v"), {}),
        (lambda s: None, {"allow_redirects": True}),
        (lambda s: None, {"params": {"q": "1"}}),
    ],
    ids=["environment", "session cookies", "redirects", "other keywords"],
)
def test_the_lean_session_takes_the_full_way_for_what_it_skips(recorder, monkeypatch, setup, extra):
    lean = sdk_http.LeanSession()
    lean.trust_env = False
    setup(lean)
    full_way = []
    original = requests.Session.request

    def spy(self: requests.Session, *args: object, **kwargs: object) -> requests.Response:
        full_way.append(True)
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(requests.Session, "request", spy)
    assert _as_the_sdk_calls(lean, recorder, **extra).status_code == 200
    assert full_way == [True]


def test_the_transport_runs_on_a_lean_session_set_up_as_the_sdk_sets_up_its_own():
    transport = sdk_http.client_options()["transport"]
    transport.open()
    try:
        assert isinstance(transport.session, sdk_http.LeanSession)
        assert type(transport.session.get_adapter("https://x/")).__name__ == (
            "BiggerBlockSizeHTTPAdapter"
        )
    finally:
        transport.close()
