"""Benchmark: the tree at any step (`GET …/state?at=N`) of an old swarm, and a fork of it after
any step (`POST …/fork {at: N}`), on the emulators.

Builds one swarm of `--steps` committed steps on the emulators, with the checkout being measured:
the `ask_user` conversation of bench/turns.py (every answer judged insufficient) for up to 2,800
steps (a conversation has at most 1,000 follow-ups), then pause and resume commands until the
swarm has its steps (each commits a step with its event, as a user's click does). Then it times
`state(at=N)` through the services (what the HTTP route calls) at N = 10, 1,000, 5,000 and
10,000 (below the swarm's latest step): the first read at N, then the median and max over
`--repeat` reads (a version that stores what it replayed is fast again only from the second), and
the storage requests of the first read. Then, where the checkout has forks, it forks the swarm
after the same steps (`--forks` times each; each fork is a new swarm with copies of the streams up
to N): the median and max milliseconds, and the storage requests and kilobytes written of one.

    .venv/bin/python bench/state.py [--steps 10000] [--repeat 20] [--before REV]

`--before REV` measures the git revision REV (a temporary worktree) the same way first and prints
both side by side. Starts the emulators itself and stops what it started.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from turns import (
    Api,
    PaddedLLM,
    answer,
    emulator_app,
    measure_in_child,
    side_by_side,
    start_conversation,
)

ROOT = Path(__file__).resolve().parents[1]
MARKS = (10, 1_000, 5_000, 10_000)
CONVERSATION_STEPS = 2_800


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--forks", type=int, default=3)
    parser.add_argument("--before", help="a git revision to measure first, side by side")
    parser.add_argument("--code", help=argparse.SUPPRESS)  # the checkout to measure (internal)
    args = parser.parse_args()
    if args.code:
        print(json.dumps(measure(Path(args.code), args.steps, args.repeat, args.forks)))
        return
    print_table(side_by_side(args.before, lambda code, env: run_child(code, args, env)))


def run_child(code: Path, args: argparse.Namespace, stack_settings: dict[str, str]) -> Any:
    flags = ["--steps", str(args.steps), "--repeat", str(args.repeat), "--forks", str(args.forks)]
    return measure_in_child(Path(__file__), code, stack_settings, flags)


def measure(code: Path, steps: int, repeat: int, forks: int) -> dict[str, Any]:
    sys.path.insert(0, str(code))
    api = Api()
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    app, store, receive, _ = emulator_app(api, PaddedLLM(api.offline_llm()), totals)
    swarm, drain = start_conversation(app, receive)
    started = time.perf_counter()
    drain()
    conversation = min(steps, CONVERSATION_STEPS)
    while (seq := app.services.get_swarm("bench", swarm.swarm_id).seq) < conversation:
        waiting = api.waiting(store, swarm.swarm_id)
        if not waiting:
            raise SystemExit(f"the conversation ended at seq {seq}")
        api.answer(app, swarm.swarm_id, waiting[0].node_id, answer(seq))
        drain()
    while seq < steps + 1:
        app.services.pause("bench", swarm.swarm_id)
        seq = app.services.resume("bench", swarm.swarm_id).seq
    built = time.perf_counter() - started
    rows: dict[str, Any] = {"steps": seq, "build_s": built}
    for mark in MARKS:
        at = min(mark, seq - 1)
        times = []
        requests = 0
        for i in range(repeat + 1):
            before = sum(v[0] for v in totals.values())
            t0 = time.perf_counter()
            state = app.services.state("bench", swarm.swarm_id, at=at)
            times.append((time.perf_counter() - t0) * 1000)
            if i == 0:
                requests = sum(v[0] for v in totals.values()) - before
        assert state["seq"] == at and state["nodes"], "a tree at every step"
        rows[str(mark)] = {
            "at": at,
            "first_ms": times[0],
            "median_ms": statistics.median(times[1:]),
            "max_ms": max(times[1:]),
            "requests": requests,
        }
    if hasattr(app.services, "fork"):
        for mark in MARKS:
            at = min(mark, seq - 1)
            times, requests, written = [], 0, 0
            for i in range(forks):
                counted = [sum(v[0] for v in totals.values()), sum(v[1] for v in totals.values())]
                t0 = time.perf_counter()
                app.services.fork("bench", swarm.swarm_id, at)
                times.append((time.perf_counter() - t0) * 1000)
                if i == 0:
                    requests = sum(v[0] for v in totals.values()) - counted[0]
                    written = sum(v[1] for v in totals.values()) - counted[1]
            rows[f"fork {mark}"] = {
                "at": at,
                "median_ms": statistics.median(times),
                "max_ms": max(times),
                "requests": requests,
                "kb_written": written / 1024,
            }
    return rows


def print_table(results: dict[str, dict[str, Any]]) -> None:
    names = list(results)
    width = 34
    print("\nstate?at=N on the emulators (one swarm; ms per read through the services)")
    print(f"{'':32}" + "".join(f"{n:>{width}}" for n in names))
    first = results[names[0]]
    print(f"{'steps in the swarm':32}" + "".join(f"{results[n]['steps']:>{width}}" for n in names))
    for mark in MARKS:
        key = str(mark)
        if key not in first:
            continue
        for label, field, fmt in (
            ("first read ms", "first_ms", "{:.1f}"),
            ("median ms", "median_ms", "{:.1f}"),
            ("max ms", "max_ms", "{:.1f}"),
            ("requests (first read)", "requests", "{}"),
        ):
            cells = "".join(
                f"{fmt.format(results[n][key][field]):>{width}}" for n in names if key in results[n]
            )
            print(f"{'at=' + str(first[key]['at']) + ': ' + label:32}{cells}")
    print("\nfork after step N on the emulators (a new swarm, paused; ms per fork)")
    for mark in MARKS:
        key = f"fork {mark}"
        for label, field, fmt in (
            ("median ms", "median_ms", "{:.0f}"),
            ("max ms", "max_ms", "{:.0f}"),
            ("requests", "requests", "{}"),
            ("KB written", "kb_written", "{:.0f}"),
        ):
            cells = "".join(
                f"{(fmt.format(results[n][key][field]) if key in results[n] else '—'):>{width}}"
                for n in names
            )
            at = next((results[n][key]["at"] for n in names if key in results[n]), mark)
            print(f"{'at=' + str(at) + ': ' + label:32}{cells}")


if __name__ == "__main__":
    main()
