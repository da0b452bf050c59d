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

from swarm_core.adapters.memory import QueueMessage
from swarm_core.bootstrap import Adapters, MemoryAdapters, build_app, build_in_memory
from swarm_core.demo import AutoAnswerer
from swarm_core.in_process import reply_through_services, run_until_settled
from swarm_core.models import SwarmConfig, SwarmStatus

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
    """One swarm to its end. The worker's app sees counting ports; the user's side (an app of
    its own, as the HTTP functions would be) sees them directly, so only steps are counted."""
    counts: Counter[str] = Counter()
    raw = MemoryAdapters()
    counting = Adapters(
        store=Counting(raw.store, "store", counts),
        content=Counting(raw.content, "content", counts),
        queue=Counting(raw.queue, "queue", counts),
        publisher=Counting(raw.publisher, "publish", counts),
        users=raw.users,
        llm=raw.llm,
        client_access=raw.client_access,
        attempts=raw.attempts,
    )
    http_app = build_in_memory(adapters=raw)
    worker = build_app(http_app.settings, counting).worker
    answerer = AutoAnswerer()
    swarm = http_app.services.create_swarm("bench", GOAL, config)
    http_app.services.spawn("bench", swarm.swarm_id)
    counts.clear()  # count only the worker's steps

    def deliver(message: QueueMessage) -> None:
        worker.process(message.body)
        raw.queue.ack(message)

    answer = reply_through_services(
        http_app, "bench", swarm.swarm_id, lambda node, chat: answerer(node.name, "")
    )
    started = time.perf_counter()
    messages = run_until_settled(http_app, swarm.swarm_id, answer, deliver=deliver)
    elapsed = time.perf_counter() - started
    final = raw.store.get_swarm(swarm.swarm_id)
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
