"""How the SDK clients are built to talk HTTP (swarm_core/adapters/sdk_http.py)."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from azure.core.exceptions import (
    IncompleteReadError,
    ServiceRequestError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import HttpRequest, RequestsTransport

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
    """Answers a request with its own method, path, headers and body and the client's port, as
    JSON, over kept-alive HTTP/1.1. Some paths misbehave on purpose: `/hang-up` closes the
    connection after answering without saying so, `/say-close` says it closes it, `/slow` answers
    after a second, `/stall` stops mid-body for a second, `/short` promises more body than it
    sends, `/big` sends 256 KiB."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        path = self.path.split("?")[0]
        if path == "/slow":
            time.sleep(1)
        if path == "/stall":
            self.send_response(200)
            self.send_header("content-length", "100")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            time.sleep(1)
            self.close_connection = True
            return
        if path == "/short":
            self.send_response(200)
            self.send_header("content-length", "100")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.close_connection = True
            return
        reply = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode(),
                "port": self.client_address[1],
            }
        ).encode()
        if path == "/big":
            reply = b"x" * (256 * 1024)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.send_header("set-cookie", "affinity=1")
        if path == "/say-close":
            self.send_header("connection", "close")
        self.end_headers()
        self.wfile.write(reply)
        if path == "/hang-up":
            self.close_connection = True

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _answer

    def log_message(self, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that leaves a body unread hangs up on purpose


@pytest.fixture(scope="module")
def recorder() -> Iterator[str]:
    server = _Server(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _as_the_sdk_calls(
    session: requests.Session, url: str, path: str = "/dbs/x/docs?a=1&b=%2F", **extra: object
) -> requests.Response:
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
    return session.request("PUT", url + path, **arguments)  # type: ignore[arg-type]


def _lean() -> sdk_http.LeanSession:
    lean = sdk_http.LeanSession()
    lean.trust_env = False
    return lean


def test_the_lean_session_sends_what_requests_sends_but_asks_for_bodies_as_stored(recorder):
    plain, lean = requests.Session(), _lean()
    plain.trust_env = False
    seen_plain = _as_the_sdk_calls(plain, recorder).json()
    seen_lean = _as_the_sdk_calls(lean, recorder).json()
    assert seen_plain["headers"].pop("accept-encoding") == "gzip, deflate"
    assert seen_lean["headers"].pop("accept-encoding") == "identity"
    for seen in (seen_plain, seen_lean):
        del seen["port"]
    assert seen_lean == seen_plain
    assert seen_lean["headers"]["x-ms-version"] == "2020-01-01"
    assert seen_lean["headers"]["user-agent"], "the session's default headers are sent"
    assert seen_lean["body"] == '{"id": "x"}'
    text = _as_the_sdk_calls(lean, recorder, data='{"name": "Zoë"}').json()
    assert text["body"] == '{"name": "Zoë"}', "text goes as UTF-8, as requests sends it"


def test_the_lean_way_is_taken_for_calls_as_each_sdk_makes_them(recorder, monkeypatch):
    """Cosmos DB's client passes `cert=(None, None)` (no client certificate) and text bodies;
    the Storage clients pass `cert=None` and bytes: all of them take the lean way."""
    lean = _lean()
    monkeypatch.setattr(requests.Session, "request", None)  # the full way would fail
    for cert, data in (((None, None), '{"id": "x"}'), (None, b"x"), (None, None)):
        assert _as_the_sdk_calls(lean, recorder, cert=cert, data=data).status_code == 200


def test_the_lean_session_keeps_connections_alive_and_sends_no_cookies(recorder):
    lean = _lean()
    ports = {_as_the_sdk_calls(lean, recorder).json()["port"] for _ in range(5)}
    assert len(ports) == 1, "one kept-alive connection for requests one after another"
    assert "cookie" not in _as_the_sdk_calls(lean, recorder).json()["headers"]
    lean.close()
    assert _as_the_sdk_calls(lean, recorder).json()["port"] not in ports, "close closed it"


@pytest.mark.parametrize("path", ["/hang-up", "/say-close"])
def test_a_connection_the_server_closed_is_not_reused(recorder, path):
    lean = _lean()
    first = _as_the_sdk_calls(lean, recorder, path=path).json()["port"]
    time.sleep(0.1)  # the server's close reaches the client
    assert _as_the_sdk_calls(lean, recorder).json()["port"] != first


def test_a_streamed_body_gives_its_connection_back_once_read_and_drops_it_if_left(recorder):
    lean = _lean()
    port = _as_the_sdk_calls(lean, recorder).json()["port"]
    streamed = _as_the_sdk_calls(lean, recorder, path="/big", stream=True)
    assert b"".join(streamed.iter_content(4096)) == b"x" * 256 * 1024
    assert _as_the_sdk_calls(lean, recorder).json()["port"] == port, "read to the end: kept"
    left = _as_the_sdk_calls(lean, recorder, path="/big", stream=True)
    assert len(left.raw.read(1024)) == 1024
    left.close()
    assert _as_the_sdk_calls(lean, recorder).json()["port"] != port, "left unread: closed"


def test_many_threads_share_a_session_each_getting_its_own_answer(recorder):
    lean = _lean()

    def calls(worker: int) -> list[bool]:
        return [
            _as_the_sdk_calls(lean, recorder, path=f"/w{worker}/{n}").json()["path"]
            == f"/w{worker}/{n}"
            for n in range(25)
        ]

    with ThreadPoolExecutor(8) as pool:
        results = [ok for oks in pool.map(calls, range(8)) for ok in oks]
    assert results == [True] * 200


def _send(transport: RequestsTransport, url: str, **kwargs: object) -> object:
    with transport:
        return transport.send(HttpRequest("GET", url), **kwargs)


def test_failures_reach_the_sdk_as_its_own_errors(recorder):
    transport = sdk_http.transport()
    with pytest.raises(ServiceResponseTimeoutError):
        _send(transport, recorder + "/slow", read_timeout=0.2)
    with pytest.raises(IncompleteReadError):
        _send(sdk_http.transport(), recorder + "/short")
    with sdk_http.transport() as streaming:
        stalled = streaming.send(
            HttpRequest("GET", recorder + "/stall"), stream=True, read_timeout=0.2
        )
        with pytest.raises(ServiceResponseTimeoutError):
            b"".join(stalled.stream_download(None))
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    with pytest.raises(ServiceRequestError):
        _send(sdk_http.transport(), f"http://127.0.0.1:{port}/")
    answer = _send(sdk_http.transport(), recorder + "/after-the-failures")
    assert answer.status_code == 200  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "setup, extra",
    [
        (lambda s: setattr(s, "trust_env", True), {}),
        (lambda s: s.cookies.set("k", "v"), {}),
        (lambda s: None, {"allow_redirects": True}),
        (lambda s: None, {"params": {"q": "1"}}),
        (lambda s: None, {"data": iter([b"chunk"])}),
        (lambda s: None, {"cert": "client.pem"}),
        (lambda s: None, {"cert": ("client.pem", "client.key")}),
    ],
    ids=[
        "environment",
        "session cookies",
        "redirects",
        "other keywords",
        "streamed upload",
        "client certificate",
        "client certificate and key",
    ],
)
def test_the_lean_session_takes_the_full_way_for_what_it_skips(
    recorder, monkeypatch, tmp_path, setup, extra
):
    monkeypatch.chdir(tmp_path)  # where the client certificate files are (requests checks)
    (tmp_path / "client.pem").write_text("")
    (tmp_path / "client.key").write_text("")
    lean = _lean()
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
