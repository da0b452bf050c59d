"""The app's Entra ID credential in Azure: one `DefaultAzureCredential` per process, pinned to the
user-assigned managed identity by `AZURE_CLIENT_ID`, shared by every client (and so is its token
cache). Imported lazily: the local stack uses connection strings and never needs it."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

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
