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

Under the SDKs' pipelines, `requests.Session.request` spends a quarter of a call's CPU on what
the SDKs never use: merging session settings, cookie jars, hooks, redirects (the SDKs follow
redirects themselves) and the environment. `LeanSession` prepares the request and hands it to the
connection adapter directly; a request that asks for any of those goes the full way.

TLS is verified against the default CA bundle, or against one CA file when the settings name one
for a service (`STORAGE_CA_CERT`, `WEBPUBSUB_CA_CERT`: the local emulators' development CA, which
`python -m devstack` makes; unset in Azure).
"""

from __future__ import annotations

import urllib.request
from typing import Any

import requests
from azure.core.pipeline.transport import RequestsTransport
from requests.hooks import default_hooks
from requests.structures import CaseInsensitiveDict

CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 20
OPERATION_TIMEOUT_SECONDS = 30
SDK_TIMEOUTS = {"connection_timeout": CONNECT_TIMEOUT_SECONDS, "read_timeout": READ_TIMEOUT_SECONDS}


def uses_env_proxies() -> bool:
    """Whether the environment names a proxy (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, any case)."""
    return bool(urllib.request.getproxies_environment())


class LeanSession(requests.Session):
    """A `requests.Session` whose `request` skips what SDK calls never need (module docstring).

    Taken only when the call is as the SDKs' transport makes it: no redirects followed, no
    proxies, no environment (`trust_env` off), no cookies or auth on the session, no other
    keyword; otherwise `requests.Session.request` does all of it, as before. The session's
    default headers are sent as `requests` sends them, under the request's own."""

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
        if other or allow_redirects or proxies or self.trust_env or self.cookies or self.auth:
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
        prepared = requests.PreparedRequest()
        prepared.prepare_method(method)
        prepared.prepare_url(url, None)
        prepared.prepare_headers({k: v for k, v in merged.items() if v is not None})
        prepared.prepare_body(data, files)
        prepared.hooks = default_hooks()
        response = self.get_adapter(url).send(
            prepared,
            stream=bool(stream),
            timeout=timeout,
            verify=self.verify if verify is None else verify,
            cert=self.cert if cert is None else cert,
            proxies={},
        )
        if not stream:
            response.content  # noqa: B018 - read the body now, as requests does unless streaming
        return response


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
