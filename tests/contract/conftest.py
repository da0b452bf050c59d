"""Adapter factories for the contract suite: every port implementation passes the same tests.

`memory` adapters need nothing; `azure` adapters run on the local emulators (the session's
`emulator_stack`). Each factory returns a fresh, isolated store (its own database / container).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from swarm_core.adapters.memory import (
    MemoryAttemptStore,
    MemoryContentStore,
    MemorySwarmStore,
    MemoryUserStore,
)
from tests.contract import azure_factories

SWARM_STORES: dict[str, Callable[[pytest.FixtureRequest], Any]] = {
    "memory": lambda request: MemorySwarmStore(),
}
CONTENT_STORES: dict[str, Callable[[pytest.FixtureRequest], Any]] = {
    "memory": lambda request: MemoryContentStore(),
}
USER_STORES: dict[str, Callable[[pytest.FixtureRequest], Any]] = {
    "memory": lambda request: MemoryUserStore(),
}
ATTEMPT_STORES: dict[str, Callable[[pytest.FixtureRequest], Any]] = {
    "memory": lambda request: MemoryAttemptStore(),
}


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


azure_factories.register(SWARM_STORES, CONTENT_STORES, USER_STORES)
azure_factories.register_attempts(ATTEMPT_STORES)


@pytest.fixture(params=sorted(SWARM_STORES))
def swarm_store(request: pytest.FixtureRequest) -> Any:
    return SWARM_STORES[request.param](request)


@pytest.fixture(params=sorted(CONTENT_STORES))
def content_store(request: pytest.FixtureRequest) -> Any:
    return CONTENT_STORES[request.param](request)


@pytest.fixture(params=sorted(USER_STORES))
def user_store(request: pytest.FixtureRequest) -> Any:
    return USER_STORES[request.param](request)


@pytest.fixture(params=sorted(ATTEMPT_STORES))
def attempt_store(request: pytest.FixtureRequest) -> Any:
    return ATTEMPT_STORES[request.param](request)
