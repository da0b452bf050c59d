"""The one place where ports are wired to adapters.

`build_in_memory()` wires the in-memory adapters and the offline LLM (demo, unit tests,
benchmarks); tests pass their own adapters to inject faults. The Azure wiring comes with the
function app.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from swarm_core.adapters.memory import (
    MemoryContentStore,
    MemoryEventPublisher,
    MemoryOperationQueue,
    MemorySwarmStore,
)
from swarm_core.llm import LanguageModel
from swarm_core.models import utcnow
from swarm_core.offline_llm import OfflineScriptedLLM
from swarm_core.ports import ContentStore, EventPublisher, OperationQueue, SwarmStore
from swarm_core.services import SwarmServices
from swarm_core.worker import SwarmCommitter, SwarmWorker


@dataclass
class SwarmApp:
    store: SwarmStore
    content: ContentStore
    queue: OperationQueue
    publisher: EventPublisher
    llm: LanguageModel
    worker: SwarmWorker
    services: SwarmServices


def build(
    store: SwarmStore,
    content: ContentStore,
    queue: OperationQueue,
    publisher: EventPublisher,
    llm: LanguageModel,
    clock: Callable[[], datetime] = utcnow,
) -> SwarmApp:
    worker = SwarmWorker(store, content, queue, publisher, llm, clock=clock)
    committer = SwarmCommitter(store, content, queue, publisher)
    services = SwarmServices(store, content, committer, clock=clock)
    return SwarmApp(store, content, queue, publisher, llm, worker, services)


@dataclass
class InMemorySwarmApp(SwarmApp):
    queue: MemoryOperationQueue
    publisher: MemoryEventPublisher


def build_in_memory(
    llm: LanguageModel | None = None, clock: Callable[[], datetime] = utcnow
) -> InMemorySwarmApp:
    queue = MemoryOperationQueue()
    publisher = MemoryEventPublisher()
    app = build(
        MemorySwarmStore(),
        MemoryContentStore(),
        queue,
        publisher,
        llm or OfflineScriptedLLM(),
        clock,
    )
    return InMemorySwarmApp(
        app.store, app.content, queue, publisher, app.llm, app.worker, app.services
    )
