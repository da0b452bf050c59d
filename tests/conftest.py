"""Shared fixtures: the local emulator stack, started by the tests themselves (session-scoped)."""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `pytest` run without `python -m` (which adds the cwd)
    sys.path.insert(0, str(ROOT))

from devstack.stack import Ports, StackInfo, start_stack  # noqa: E402


def _free_ports(count: int) -> list[int]:
    """Ports the OS considers free now, none of them the stack's defaults."""
    defaults = set(vars(Ports()).values())
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < count:
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            if port not in defaults:
                ports.append(port)
        return ports


@pytest.fixture(scope="session")
def emulator_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInfo]:
    """Azurite, the Cosmos DB server and the Web PubSub emulator on free, non-default ports.

    A developer's own stack (default ports, `.devstack/`) is left alone: this one has its own
    state directory and stops what it started at the end of the session.
    """
    blob, queue, table, cosmos, webpubsub = _free_ports(5)
    ports = Ports(blob=blob, queue=queue, table=table, cosmos=cosmos, webpubsub=webpubsub)
    info = start_stack(
        ports, state_dir=tmp_path_factory.mktemp("devstack"), bind_to_caller=True, identity=False
    )
    try:
        yield info
    finally:
        info.stop()


@pytest.fixture(scope="session")
def identity_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInfo]:
    """The emulators in identity mode (local auth off, HTTPS, a local managed identity) on free
    ports, each logging the Authorization header of every request it gets (`record_auth`)."""
    blob, queue, table, cosmos, webpubsub, identity = _free_ports(6)
    ports = Ports(blob, queue, table, cosmos, webpubsub, identity)
    info = start_stack(
        ports,
        state_dir=tmp_path_factory.mktemp("devstack-identity"),
        bind_to_caller=True,
        identity=True,
        record_auth=True,
    )
    try:
        yield info
    finally:
        info.stop()
