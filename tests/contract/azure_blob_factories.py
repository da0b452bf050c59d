"""The `azure` content-store factory of the contract suite: `BlobContentStore` on Azurite.

The Blob service client is made once per emulator stack (per session) and shared; every store
gets a container of its own, so no test sees another's blobs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from swarm_core.adapters.blob import BlobContentStore, build_blob_service
from swarm_core.settings import Settings

Factories = dict[str, Callable[[pytest.FixtureRequest], Any]]

# One Blob service client per emulator stack, keyed by the stack's state directory.
_blob_by_stack: dict[str, tuple[Settings, BlobServiceClient]] = {}


def session_blob_service(request: pytest.FixtureRequest) -> tuple[Settings, BlobServiceClient]:
    """The session's storage settings and Blob service client (on the session's Azurite)."""
    stack = request.getfixturevalue("emulator_stack")
    key = str(stack.state_dir)
    if key not in _blob_by_stack:
        settings = Settings(AzureWebJobsStorage=stack.settings["AzureWebJobsStorage"])
        _blob_by_stack[key] = (settings, build_blob_service(settings))
    return _blob_by_stack[key]


def fresh_blob_store(request: pytest.FixtureRequest, **options: Any) -> BlobContentStore:
    """A `BlobContentStore` on a new container (`swarms-<hex>`) of the session's Azurite."""
    settings, service = session_blob_service(request)
    container = f"swarms-{uuid.uuid4().hex[:12]}"
    store = BlobContentStore(
        settings.model_copy(update={"swarm_container": container}),
        service_client=service,
        **options,
    )
    store.ensure_container()
    return store


def register_blob(content_stores: Factories) -> None:
    content_stores["azure"] = fresh_blob_store
