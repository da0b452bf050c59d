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

TLS is verified against the default CA bundle, or against one CA file when the settings name one
for a service (`STORAGE_CA_CERT`, `WEBPUBSUB_CA_CERT`: the local emulators' development CA, which
`python -m devstack` makes; unset in Azure).
"""

from __future__ import annotations

import urllib.request
from typing import Any

from azure.core.pipeline.transport import RequestsTransport

CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 20
OPERATION_TIMEOUT_SECONDS = 30
SDK_TIMEOUTS = {"connection_timeout": CONNECT_TIMEOUT_SECONDS, "read_timeout": READ_TIMEOUT_SECONDS}


def uses_env_proxies() -> bool:
    """Whether the environment names a proxy (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, any case)."""
    return bool(urllib.request.getproxies_environment())


def transport(transport_class: type[RequestsTransport] = RequestsTransport, **kwargs: Any) -> Any:
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
