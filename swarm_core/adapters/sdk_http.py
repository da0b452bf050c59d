"""How every Azure SDK client of the app talks HTTP: bounded waits, and no scan of the
environment on every request.

Every call is bounded, so a dependency that hangs costs a request seconds, not minutes: a
connection must open within CONNECT, each response start within READ, and a Cosmos DB operation
(with the SDK's own retries) end within OPERATION.

`requests`, under the SDKs, reads the proxy settings from the environment on every request
(`trust_env`): over a hundred environment variables walked, about a millisecond a request, a
tenth of a step's time on the emulators. Without a proxy in the environment when the client is
built there is nothing to find, so the clients are built not to look; with one, they look as
before (it may exclude some hosts, which only a per-request look honours).

Under the SDKs' pipelines, `requests` and `urllib3` spend a fifth to a quarter of a call's CPU
(0.3 to 0.5 ms of 1.4 to 1.9 ms on Azurite) on what the SDKs never use: merging session
settings, cookie jars, hooks, redirects (the SDKs follow redirects themselves), the environment,
and urllib3's pool, retry and response layers (retries are off under the SDKs: their own retry
policies retry). `LeanSession` sends a request as the SDKs' transport makes it straight over a
kept-alive `http.client` connection of its own, and gives the transport the `requests.Response`
it expects, with failures raised as the `requests` exceptions the transport turns into the SDK's
errors (so its retry policies retry them as before). A request that asks for anything else (a
redirect, a proxy, the environment, cookies, a client certificate, a streamed upload, other
keywords) goes the full way through `requests`.

Responses are asked for unencoded (the session's `Accept-Encoding: identity`, either way): the
app's own blobs are never stored encoded, so a body arrives as it was written.

TLS is verified against the default CA bundle, or against one CA file when the settings name one
for a service (`STORAGE_CA_CERT`, `WEBPUBSUB_CA_CERT`: the local emulators' development CA, which
`python -m devstack` makes; unset in Azure).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import select
import ssl
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import requests
from azure.core.pipeline.transport import RequestsTransport
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import ProtocolError, ReadTimeoutError

CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 20
OPERATION_TIMEOUT_SECONDS = 30
SDK_TIMEOUTS = {"connection_timeout": CONNECT_TIMEOUT_SECONDS, "read_timeout": READ_TIMEOUT_SECONDS}


def uses_env_proxies() -> bool:
    """Whether the environment names a proxy (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, any case)."""
    return bool(urllib.request.getproxies_environment())


# Idle kept-alive connections kept per server (more are closed after use), as urllib3's pool
# under the SDKs keeps them; a process runs at most a few dozen requests at once.
MAX_IDLE_CONNECTIONS = 32
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ServerKey = tuple[str, str, int, Any]  # scheme, host, port, and how TLS is verified


class LeanSession(requests.Session):
    """A `requests.Session` that sends what SDK calls send over its own kept-alive
    `http.client` connections (module docstring).

    Taken only when the call is as the SDKs' transport makes it: no redirects followed, no
    proxies, no environment (`trust_env` off), no cookies or auth on the session, no client
    certificate, a body given whole (bytes, text or a file), no other keyword; otherwise
    `requests.Session.request` does all of it, as before. The session's default headers are
    sent under the request's own, as `requests` sends them."""

    def __init__(self) -> None:
        super().__init__()
        self.headers["Accept-Encoding"] = "identity"  # bodies as stored (module docstring)
        self._idle = _IdleConnections()
        self._tls: dict[Any, ssl.SSLContext] = {}

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        *,
        headers: Any = None,
        data: Any = None,
        files: Any = None,
        verify: Any = None,
        timeout: Any = None,
        cert: Any = None,
        allow_redirects: bool = True,
        proxies: Any = None,
        stream: bool | None = None,
        **other: Any,
    ) -> requests.Response:
        parts = urllib.parse.urlsplit(url)
        if (
            other
            or allow_redirects
            or proxies
            or self.trust_env
            or self.cookies
            or self.auth
            or files
            or _client_certificate(cert)
            or _client_certificate(self.cert)
            or not _whole_body(data)
            or parts.scheme not in _DEFAULT_PORTS
            or not parts.hostname
        ):
            return super().request(
                method,
                url,
                headers=headers,
                data=data,
                files=files,
                verify=verify,
                timeout=timeout,
                cert=cert,
                allow_redirects=allow_redirects,
                proxies=proxies,
                stream=stream,
                **other,
            )
        merged: CaseInsensitiveDict[Any] = CaseInsensitiveDict(self.headers)
        merged.update(headers or {})
        sent = {key: value for key, value in merged.items() if value is not None}
        body = data.encode("utf-8") if isinstance(data, str) else data
        verify = self.verify if verify is None else verify
        connect_timeout, read_timeout = _timeouts(timeout)
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
        server: _ServerKey = (parts.scheme, parts.hostname, port, verify)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

        connection = self._idle.take(server) or self._connect(server, connect_timeout)
        with _failing_as_requests_fails(connection.close):
            connection.sock.settimeout(read_timeout)
            connection.request(method, target, body=body, headers=sent)
            answer = connection.getresponse()
        response = requests.Response()
        response.status_code = answer.status
        response.reason = answer.reason
        response.url = url
        response.headers = _headers(answer)
        response.encoding = requests.utils.get_encoding_from_headers(response.headers)
        response.raw = _Body(answer, connection, self._idle, server, url)
        if not stream:
            response._content = response.raw.read()
            response._content_consumed = True
        return response

    def _connect(self, server: _ServerKey, timeout: float | None) -> http.client.HTTPConnection:
        scheme, host, port, verify = server
        connection: http.client.HTTPConnection
        if scheme == "https":
            connection = http.client.HTTPSConnection(
                host, port, timeout=timeout, context=self._tls_context(verify)
            )
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            connection.connect()
        except BaseException as exc:
            connection.close()
            if isinstance(exc, TimeoutError):
                raise requests.exceptions.ConnectTimeout(exc) from exc
            if isinstance(exc, OSError):
                raise requests.exceptions.ConnectionError(exc) from exc
            raise
        return connection

    def _tls_context(self, verify: Any) -> ssl.SSLContext:
        """The TLS settings `requests` uses for `verify`: the CA bundle it ships (True), a CA
        file or directory (a path), or none (False)."""
        key = verify if isinstance(verify, str) else bool(verify)
        context = self._tls.get(key)
        if context is None:
            if key is False:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            elif key is True:
                context = ssl.create_default_context(cafile=requests.utils.DEFAULT_CA_BUNDLE_PATH)
            elif os.path.isdir(key):
                context = ssl.create_default_context(capath=key)
            else:
                context = ssl.create_default_context(cafile=key)
            self._tls[key] = context
        return context

    def close(self) -> None:
        self._idle.close()
        super().close()


def _client_certificate(cert: Any) -> bool:
    """Whether `cert` names a client certificate: a file, or a (cert, key) pair; Cosmos DB's
    client passes `(None, None)` for none."""
    return bool(cert) and (isinstance(cert, str) or any(cert))


def _whole_body(data: Any) -> bool:
    """Whether `http.client` sends `data` as `requests` would: none, bytes, text or a file."""
    return data is None or isinstance(data, bytes | bytearray | str) or hasattr(data, "read")


def _timeouts(timeout: Any) -> tuple[float | None, float | None]:
    if isinstance(timeout, tuple):
        return timeout[0], timeout[1]
    return timeout, timeout


def _headers(answer: http.client.HTTPResponse) -> CaseInsensitiveDict[str]:
    """The response's headers, a repeated one joined with commas (as urllib3 gives them)."""
    headers: CaseInsensitiveDict[str] = CaseInsensitiveDict()
    for key, value in answer.getheaders():
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


@contextlib.contextmanager
def _failing_as_requests_fails(
    drop_connection: Callable[[], None], *, mid_body_of: str | None = None
) -> Iterator[None]:
    """Send a request or read an answer: on any failure the connection is dropped, and a
    network failure is raised as the `requests` exception the SDK's transport turns into its
    own error (a timeout, a cut-short body, a broken connection). A timeout `mid_body_of` a
    response is raised as requests raises urllib3's there; anything else is raised as it is."""
    try:
        yield
    except (OSError, http.client.HTTPException) as exc:
        drop_connection()
        if isinstance(exc, TimeoutError) and mid_body_of is not None:
            # urllib3's timeout names its pool; there is none here.
            timed_out = ReadTimeoutError(None, mid_body_of, f"Read timed out. ({exc})")  # type: ignore[arg-type]
            raise requests.exceptions.ConnectionError(timed_out) from exc
        if isinstance(exc, TimeoutError):
            raise requests.exceptions.ReadTimeout(exc) from exc
        if isinstance(exc, http.client.IncompleteRead):
            broken = ProtocolError(f"Connection broken: IncompleteRead({exc!r})", exc)
            raise requests.exceptions.ChunkedEncodingError(broken) from exc
        raise requests.exceptions.ConnectionError(
            ProtocolError("Connection aborted.", exc)
        ) from exc
    except BaseException:
        drop_connection()
        raise


class _IdleConnections:
    """The kept-alive connections not in use, per server; shared by the threads of a session."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_server: dict[_ServerKey, list[http.client.HTTPConnection]] = {}

    def take(self, server: _ServerKey) -> http.client.HTTPConnection | None:
        """The latest idle connection to `server` still open, or None."""
        while True:
            with self._lock:
                idle = self._by_server.get(server)
                if not idle:
                    return None
                connection = idle.pop()
            if not _dropped(connection):
                return connection
            connection.close()

    def give(self, server: _ServerKey, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._by_server.setdefault(server, [])
            if len(idle) < MAX_IDLE_CONNECTIONS:
                idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            everything = [c for idle in self._by_server.values() for c in idle]
            self._by_server.clear()
        for connection in everything:
            connection.close()


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """Whether the server closed an idle connection (as urllib3 checks before reusing one): an
    idle connection has nothing to read unless it was closed."""
    sock = connection.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class _Body:
    """A response's body as `requests.Response.raw`: read failures are raised as `requests`
    raises them, and once the body is read to its end the connection is kept for the next
    request (closed instead if the server said it closes it, or if the body is left unread)."""

    def __init__(
        self,
        answer: http.client.HTTPResponse,
        connection: http.client.HTTPConnection,
        idle: _IdleConnections,
        server: _ServerKey,
        url: str,
    ) -> None:
        self._answer = answer
        self._connection: http.client.HTTPConnection | None = connection
        self._idle = idle
        self._server = server
        self._url = url

    def read(self, amt: int | None = None, **_: Any) -> bytes:
        with _failing_as_requests_fails(self._discard, mid_body_of=self._url):
            data = self._answer.read(amt)
        if self._answer.isclosed():
            self._release()
        return data

    def close(self) -> None:
        if self._answer.isclosed():
            self._release()
        else:
            self._discard()
        self._answer.close()

    def _release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._answer.will_close:
            connection.close()
        else:
            self._idle.give(self._server, connection)

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


class LeanRequestsTransport(RequestsTransport):  # type: ignore[misc]
    """The SDK's `RequestsTransport` on a `LeanSession`, set up as it sets up its own."""

    session: requests.Session | None

    def open(self) -> None:
        if not self.session and self._session_owner and not self._has_been_opened:
            self.session = LeanSession()
            self._init_session(self.session)
        super().open()


def transport(
    transport_class: type[RequestsTransport] = LeanRequestsTransport, **kwargs: Any
) -> Any:
    """A transport for one SDK client (a client owns and closes its transport)."""
    return transport_class(use_env_settings=uses_env_proxies(), **kwargs)


def client_options(*, ca_file: str | None = None, **options: Any) -> dict[str, Any]:
    """Keyword arguments for an SDK client: the timeouts and a transport, unless given; the
    transport verifies TLS against `ca_file` when one is given."""
    merged = {**SDK_TIMEOUTS, **options}
    if "transport" not in merged:
        merged["transport"] = (
            transport(connection_verify=ca_file) if ca_file is not None else transport()
        )
    return merged
