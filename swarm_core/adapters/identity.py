"""The app's Entra ID credential in Azure: one `DefaultAzureCredential` per process, pinned to the
user-assigned managed identity by `AZURE_CLIENT_ID`, shared by every client (and so is its token
cache). Imported lazily: the local stack in key mode uses connection strings and never needs it.

`swarm_core.bootstrap` may give the adapters another `TokenCredential` instead (one for the whole
app, as this one is); the adapters take whichever they are given and never ask which it is. In
the local identity mode the default one is used unchanged: `python -m devstack` serves the
managed-identity endpoint Azure Functions gives an app (`IDENTITY_ENDPOINT`, `IDENTITY_HEADER`),
so `DefaultAzureCredential` finds the managed identity there."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from swarm_core.adapters import sdk_http
from swarm_core.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

_credentials: dict[str | None, TokenCredential] = {}
_lock = threading.Lock()


def app_credential(settings: Settings) -> TokenCredential:
    with _lock:
        credential = _credentials.get(settings.azure_client_id)
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential(managed_identity_client_id=settings.azure_client_id)
            _credentials[settings.azure_client_id] = credential
        return credential


def storage_service(
    client_class: Any,
    settings: Settings,
    uri_setting: str,
    credential: TokenCredential | None = None,
    **options: Any,
) -> Any:
    """A Storage service client (Blob or Queue): by connection string (local key mode), else by
    the account's service URI with `credential` (default: the app's managed identity). Built as
    `sdk_http` says, verifying TLS against `STORAGE_CA_CERT` when set."""
    options = sdk_http.client_options(ca_file=settings.storage_ca_cert, **options)
    if settings.storage_connection_string:
        return client_class.from_connection_string(settings.storage_connection_string, **options)
    settings.require(uri_setting)
    account_url = str(getattr(settings, uri_setting))
    return client_class(
        account_url=account_url, credential=credential or app_credential(settings), **options
    )
