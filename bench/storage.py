"""Benchmark: storage round trips and bytes written per step on the local emulators, early in a
long user conversation (around step 10) and late in it (around step 1,000), side by side.

The scenario is one conversation that never ends early: the user keeps answering too briefly, so
the node follows up again and again (three commits per exchange: the answer, the resume, the
judgement). The worker runs on the real Cosmos DB, Blob and Queue adapters; every HTTP request
they make is counted by a transport wrapper. O(1) per step means the two columns match.

    .venv/bin/python bench/storage.py [--late 1000] [--window 20]

Starts the emulators itself (`devstack`) and stops what it started.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from azure.core.pipeline.transport import RequestsTransport

from devstack.stack import start_stack
from swarm_core.adapters.blob import BlobContentStore, build_blob_service
from swarm_core.adapters.cosmos import CosmosClients, CosmosSwarmStore
from swarm_core.adapters.memory import (
    MemoryAttemptStore,
    MemoryClientAccess,
    MemoryEventPublisher,
    MemoryUserStore,
)
from swarm_core.adapters.offline_llm import OfflineScriptedLLM
from swarm_core.adapters.queue import (
    StorageOperationQueue,
    base64_queue_client,
    build_queue_service,
    decode_operation_message,
)
from swarm_core.bootstrap import Adapters, build_app
from swarm_core.models import Lifecycle, SwarmConfig
from swarm_core.settings import Settings


class CountingTransport(RequestsTransport):  # type: ignore[misc]
    """Counts requests and the bytes of their bodies, per service."""

    def __init__(self, service: str, totals: dict[str, list[int]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.totals = totals

    def send(self, request: Any, **kwargs: Any) -> Any:
        body = request.body if isinstance(request.body, bytes | bytearray) else b""
        if isinstance(request.body, str):
            body = request.body.encode()
        self.totals[self.service][0] += 1
        self.totals[self.service][1] += len(body)
        return super().send(request, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--late", type=int, default=1000, help="the late window starts here")
    parser.add_argument("--window", type=int, default=20, help="steps per window (5 per exchange)")
    args = parser.parse_args()
    stack = start_stack()
    try:
        run(stack.settings, args.late, args.window)
    finally:
        stack.stop()


def run(stack_settings: dict[str, str], late: int, window: int) -> None:
    name = f"bench{uuid.uuid4().hex[:8]}"
    settings = Settings(
        **stack_settings, COSMOS_DATABASE=name, SWARM_CONTAINER=name, SWARM_QUEUE=name
    )
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    cosmos = CosmosClients(
        settings, client_options={"transport": CountingTransport("cosmos", totals)}
    )
    cosmos.ensure_containers()
    content = BlobContentStore(
        settings,
        service_client=build_blob_service(settings, transport=CountingTransport("blob", totals)),
    )
    content.ensure_container()
    queue_service = build_queue_service(settings, transport=CountingTransport("queue", totals))
    queue = StorageOperationQueue(settings, content, service_client=queue_service)
    queue.ensure_queues()
    receiver = base64_queue_client(build_queue_service(settings), settings.swarm_queue)
    config = SwarmConfig(
        offline_breadth=2, offline_depth=1, limits={"max_follow_ups": 1000, "max_steps": 5000}
    )
    adapters = Adapters(
        store=CosmosSwarmStore(cosmos),
        content=content,
        queue=queue,
        publisher=MemoryEventPublisher(),
        users=MemoryUserStore(),
        llm=OfflineScriptedLLM(),
        client_access=MemoryClientAccess(),
        attempts=MemoryAttemptStore(),
    )
    app = build_app(settings, adapters)
    swarm = app.services.create_swarm("bench", "Plan a 3-day trip to Lisbon", config)
    app.services.spawn("bench", swarm.swarm_id)
    per_step: dict[int, tuple[int, int]] = {}
    started = time.perf_counter()
    seq = 0
    while seq < late + window + 1:
        messages = list(receiver.receive_messages(messages_per_page=32, visibility_timeout=60))
        if not messages:
            waiting = [
                n
                for n in adapters.store.list_nodes(swarm.swarm_id)
                if n.lifecycle == Lifecycle.WAITING_FOR_USER
            ]
            if not waiting:
                raise SystemExit(f"the conversation ended early at step {seq}")
            for node in waiting:  # too short on purpose: the node follows up again
                app.services.post_user_message("bench", swarm.swarm_id, node.node_id, "ok", None)
            continue
        for message in messages:
            before = {k: list(v) for k, v in totals.items()}
            app.worker.process(decode_operation_message(message.content, content))
            receiver.delete_message(message)
            got = adapters.store.get_swarm(swarm.swarm_id)
            assert got is not None
            seq = got.value.seq
            requests = sum(v[0] - before.get(k, [0, 0])[0] for k, v in totals.items()) - 1
            written = sum(v[1] - before.get(k, [0, 0])[1] for k, v in totals.items())
            per_step[seq] = (requests, written)  # minus the bench's own get_swarm above
    elapsed = time.perf_counter() - started

    def window_stats(start: int) -> tuple[float, float]:
        rows = [per_step[s] for s in range(start, start + window) if s in per_step]
        return statistics.mean(r[0] for r in rows), statistics.mean(r[1] for r in rows)

    early_rt, early_bytes = window_stats(10)
    late_rt, late_bytes = window_stats(late)
    print(
        f"one conversation, {seq} steps in {elapsed:.1f} s ({seq / elapsed:.0f} steps/s) "
        f"on Cosmos DB server + Azurite"
    )
    print(
        f"{'':<28}{'steps 10..' + str(10 + window - 1):>16}"
        f"{'steps ' + str(late) + '..' + str(late + window - 1):>20}{'change':>10}"
    )
    print(
        f"{'round trips per step':<28}{early_rt:>16.2f}{late_rt:>20.2f}"
        f"{(late_rt / early_rt - 1) * 100:>9.1f}%"
    )
    print(
        f"{'bytes written per step':<28}{early_bytes:>16.0f}{late_bytes:>20.0f}"
        f"{(late_bytes / early_bytes - 1) * 100:>9.1f}%"
    )


if __name__ == "__main__":
    main()
