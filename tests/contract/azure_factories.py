"""The `azure` factories of the contract suite: the Azure adapters on the session's local emulators.

`register_cosmos` adds the Cosmos DB swarm and user stores; `register_blob` (in
`azure_blob_factories`, when present) adds the Blob content store. The Cosmos client and a
database of its own are made once per test session (creating them costs round trips); every
test then gets fresh store objects on them, and the tests keep apart by using unique ids.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from swarm_core.adapters.cosmos import (
    CosmosAttemptStore,
    CosmosClients,
    CosmosSwarmStore,
    CosmosUserStore,
)
from swarm_core.settings import Settings

Factories = dict[str, Callable[[pytest.FixtureRequest], Any]]

# One CosmosClients per emulator stack (i.e. per session), keyed by the stack's state directory.
_cosmos_by_stack: dict[str, CosmosClients] = {}


def session_cosmos(request: pytest.FixtureRequest) -> CosmosClients:
    """The session's Cosmos clients on a fresh database (`contract-<hex>`) with its containers."""
    stack = request.getfixturevalue("emulator_stack")
    key = str(stack.state_dir)
    clients = _cosmos_by_stack.get(key)
    if clients is None:
        settings = Settings(**stack.settings, COSMOS_DATABASE=f"contract-{uuid.uuid4().hex[:10]}")
        clients = CosmosClients(settings)
        clients.ensure_containers()
        _cosmos_by_stack[key] = clients
    return clients


def register_cosmos(swarm_stores: Factories, user_stores: Factories) -> None:
    def swarm_store(request: pytest.FixtureRequest) -> CosmosSwarmStore:
        return CosmosSwarmStore(session_cosmos(request))

    def user_store(request: pytest.FixtureRequest) -> CosmosUserStore:
        return CosmosUserStore(session_cosmos(request))

    swarm_stores["azure"] = swarm_store
    user_stores["azure"] = user_store


def register(swarm_stores: Factories, content_stores: Factories, user_stores: Factories) -> None:
    register_cosmos(swarm_stores, user_stores)
    try:
        from tests.contract.azure_blob_factories import register_blob
    except ImportError as exc:
        if exc.name != "tests.contract.azure_blob_factories":
            raise  # the module is there but broken: say so
    else:
        register_blob(content_stores)


def register_attempts(attempt_stores: Factories) -> None:
    def attempt_store(request: pytest.FixtureRequest) -> CosmosAttemptStore:
        return CosmosAttemptStore(session_cosmos(request))

    attempt_stores["azure"] = attempt_store
