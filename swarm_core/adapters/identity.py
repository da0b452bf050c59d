"""The app's Entra ID credential in Azure: one `DefaultAzureCredential` per process, pinned to the
user-assigned managed identity by `AZURE_CLIENT_ID`, shared by every client (and so is its token
cache). Imported lazily: the local stack uses connection strings and never needs it."""

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


def storage_service(client_class: Any, settings: Settings, uri_setting: str, **options: Any) -> Any:
    """A Storage service client (Blob or Queue): by connection string locally, by the account's
    service URI and the app's managed identity in Azure. Built as `sdk_http` says."""
    options = sdk_http.client_options(**options)
    if settings.storage_connection_string:
        return client_class.from_connection_string(settings.storage_connection_string, **options)
    settings.require(uri_setting)
    account_url = str(getattr(settings, uri_setting))
    return client_class(account_url=account_url, credential=app_credential(settings), **options)
