"""Readiness: whether the app's dependencies answer (Cosmos DB, Blob, Queue, Web PubSub), each
asked one cheap authenticated question at once, with a short timeout, so a hanging dependency is
reported as such instead of holding the probe. `GET /api/health/ready` answers with it; liveness
(`/api/health`) asks nothing of anyone."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

PROBE_TIMEOUT_SECONDS = 3.0


def probes(adapters: Any) -> dict[str, Callable[[], None]]:
    """The dependencies the adapters reach, by name, each with its probe (an adapter that
    reaches nothing, as the in-memory ones, has none)."""
    named = {
        "cosmos": adapters.store,
        "blob": adapters.content,
        "queue": adapters.queue,
        "webpubsub": adapters.publisher,
    }
    return {name: port.probe for name, port in named.items() if hasattr(port, "probe")}


async def check(
    checks: dict[str, Callable[[], None]], timeout: float = PROBE_TIMEOUT_SECONDS
) -> dict[str, str]:
    """ "ok", or what is wrong, per dependency; all asked at once (threads: the SDKs block)."""

    async def one(probe: Callable[[], None]) -> str:
        try:
            await asyncio.wait_for(asyncio.to_thread(probe), timeout)
        except TimeoutError:
            return f"no answer within {timeout:g} s"
        except Exception as exc:  # any failure is the answer: that dependency is not ready
            return f"unavailable ({type(exc).__name__})"
        return "ok"

    results = await asyncio.gather(*(one(probe) for probe in checks.values()))
    return dict(zip(checks, results, strict=True))
