"""Benchmark: engine steps per second and storage calls per step, in-memory adapters.

Runs the demo workload (the offline LLM, auto-answers) for a few tree shapes side by side and
prints, per shape: steps, wall time, steps/s, and the port calls per step by method. Storage calls
per step is what the Azure adapters turn into round trips, so it must stay small and flat.

    .venv/bin/python bench/engine.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from swarm_core.adapters.memory import (
    MemoryContentStore,
    MemoryEventPublisher,
    MemoryOperationQueue,
    MemorySwarmStore,
)
from swarm_core.bootstrap import build
from swarm_core.demo import AutoAnswerer
from swarm_core.models import Lifecycle, SwarmConfig, SwarmStatus
from swarm_core.offline_llm import OfflineScriptedLLM

GOAL = "Plan a 3-day trip to Lisbon"
SHAPES = {
    "demo (breadth 3, depth 2)": SwarmConfig(offline_breadth=3, offline_depth=2),
    "wide (breadth 6, depth 2)": SwarmConfig(
        offline_breadth=6, offline_depth=2, limits={"max_children": 6, "max_nodes": 200}
    ),
    "deep (breadth 3, depth 4)": SwarmConfig(
        offline_breadth=3, offline_depth=4, limits={"max_depth": 4, "max_nodes": 400}
    ),
}


class Counting:
    """Counts the calls made to a port, by method."""

    def __init__(self, target: Any, port: str, counts: Counter[str]) -> None:
        self._target, self._port, self._counts = target, port, counts

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._counts[f"{self._port}.{name}"] += 1
            return attr(*args, **kwargs)

        return call


def run(config: SwarmConfig) -> tuple[int, float, Counter[str], int]:
    counts: Counter[str] = Counter()
    store, content = MemorySwarmStore(), MemoryContentStore()
    queue = MemoryOperationQueue()
    app = build(
        Counting(store, "store", counts),
        Counting(content, "content", counts),
        Counting(queue, "queue", counts),
        Counting(MemoryEventPublisher(), "publish", counts),
        OfflineScriptedLLM(),
    )
    answer = AutoAnswerer()
    swarm = app.services.create_swarm("bench", GOAL, config)
    app.services.spawn("bench", swarm.swarm_id)
    counts.clear()  # count only the worker's steps
    messages = 0
    started = time.perf_counter()
    while True:
        message = queue.receive()
        if message is not None:
            app.worker.process(message.body)
            queue.ack(message)
            messages += 1
            continue
        waiting = [
            n for n in store.list_nodes(swarm.swarm_id) if n.lifecycle == Lifecycle.WAITING_FOR_USER
        ]
        if not waiting:
            break
        for node in waiting:
            app.services.post_user_message(
                "bench", swarm.swarm_id, node.node_id, answer(node.name, ""), None, queue.enqueue
            )
    elapsed = time.perf_counter() - started
    final = store.get_swarm(swarm.swarm_id)
    assert final is not None and final.value.status == SwarmStatus.COMPLETED
    return final.value.seq, elapsed, counts, messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="runs per shape (best is shown)")
    args = parser.parse_args()
    print(
        f"{'workload':<28}{'steps':>7}{'best s':>9}{'steps/s':>10}{'store/step':>12}"
        f"{'content/step':>14}{'queue/step':>12}{'all/step':>10}"
    )
    details = {}
    for name, config in SHAPES.items():
        best = min((run(config) for _ in range(args.repeat)), key=lambda r: r[1])
        steps, elapsed, counts, _ = best
        by_port = Counter()
        for key, n in counts.items():
            by_port[key.split(".")[0]] += n
        total = sum(counts.values())
        print(
            f"{name:<28}{steps:>7}{elapsed:>9.3f}{steps / elapsed:>10.0f}"
            f"{by_port['store'] / steps:>12.2f}{by_port['content'] / steps:>14.2f}"
            f"{by_port['queue'] / steps:>12.2f}{total / steps:>10.2f}"
        )
        details[name] = (steps, counts)
    name = next(iter(details))
    steps, counts = details[name]
    print(f"\nport calls per step, {name}:")
    for key, n in sorted(counts.items()):
        print(f"  {key:<28}{n / steps:>6.2f}")


if __name__ == "__main__":
    main()
