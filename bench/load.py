"""Benchmark: N swarms at once over HTTP on the local stack, driven as a frontend drives them.

For each level N (default 1, 4, 16, 32): N users each create and spawn a swarm (offline LLM),
then drive it as a page does, answering every open question, until every swarm is completed.
The page follows its swarm's live events as the console does (`--driver events`, the default:
on `interrupt.opened` it loads the chats and the asking node's chat and answers), or polls the
swarm and its chats every 0.25 s (`--driver poll`, ten times the API traffic). Per level:
wall time, committed steps per second, queue executions per committed step (the dev host's
`Executing 'Functions.advance_swarm'` lines over the steps the swarms committed; an execution
runs the steps its steps enqueue for it too) and step runs per committed step (the worker's
`step <outcome>` lines: above 1, a step ran again, as a duplicate or a lost race), CPU of the dev
host per committed step (both its processes, HTTP and queue, as `scripts/run.sh` runs it; and of
the emulators' processes, which share the machine's two cores), and the median / p90 of
`GET …/chats` and `POST …/messages`. Then every swarm is checked: its history has every seq
from 1 to its last exactly once per (seq, index), and no chat holds a message twice.

    .venv/bin/python bench/load.py [--levels 1,4,16,32] [--before REV] [--driver events|poll]

`--before REV` measures the git revision REV (a temporary worktree) the same way first and prints
both side by side. Starts the emulators itself and stops what it started.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from turns import (
    call,
    dev_host,
    live_events,
    side_by_side,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIG: dict[str, Any] = {}  # the defaults
ANSWER = "A relaxed pace, about 900 EUR, good food and one museum a day please."
POLL_SECONDS = 0.25  # how often the polling driver looks at its chats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--levels", default="1,4,16,32")
    parser.add_argument("--before", help="a git revision to measure first, side by side")
    parser.add_argument(
        "--driver",
        choices=sorted(DRIVERS),
        default="events",
        help="events: each page follows its swarm's live events, as the console does (default);"
        f" poll: each page polls its swarm and chats every {POLL_SECONDS} s",
    )
    args = parser.parse_args()
    levels = [int(n) for n in args.levels.split(",")]
    driver = DRIVERS[args.driver]
    results = side_by_side(args.before, lambda code, env: measure(code, levels, env, driver))
    print_table(results, levels)


def measure(
    code: Path, levels: list[int], stack_settings: dict[str, str], driver: Driver
) -> dict[int, Any]:
    out = {}
    for n in levels:
        out[n] = one_level(code, n, stack_settings, driver)
        print(f"{code.name} N={n}: {json.dumps(out[n])}", file=sys.stderr)
    return out


def one_level(code: Path, n: int, stack_settings: dict[str, str], driver: Driver) -> dict[str, Any]:
    with dev_host(code, "load", stack_settings) as host:
        return run_level(host.base, n, host.pids, host.log, driver)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Timings:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ms: dict[str, list[float]] = {"GET chats": [], "POST answer": []}

    def timed(self, what: str, base: str, *args: Any, **kwargs: Any) -> tuple[int, Any]:
        started = time.perf_counter()
        result = call(base, *args, **kwargs)
        with self.lock:
            self.ms[what].append((time.perf_counter() - started) * 1000)
        return result


def drive_polling(
    base: str, token: str, swarm_id: str, timings: Timings, deadline: float, _events: Any
) -> None:
    """A page that polls: every POLL_SECONDS the swarm's status and its chats, answering each
    open question once, until the swarm completes."""
    answered: set[tuple[str, int]] = set()
    while time.monotonic() < deadline:
        if _finished(base, token, swarm_id):
            return
        _answer_open_questions(base, token, swarm_id, timings, answered)
        time.sleep(POLL_SECONDS)
    raise SystemExit(f"swarm {swarm_id} did not complete in time")


def drive_by_events(
    base: str, token: str, swarm_id: str, timings: Timings, deadline: float, events: Any
) -> None:
    """A page as the console is one: it follows the swarm's live events (Web PubSub) and calls
    the API when they say so. On `interrupt.opened` it loads the chats and the asking node's
    chat, then answers; on a final `swarm.status` it is done. Should the events fall silent for
    QUIET_SECONDS (a lost connection), it looks at the swarm itself, as the console's catch-up
    does, so a lost event costs time, never the run."""
    import queue

    answered: set[tuple[str, int]] = set()
    while time.monotonic() < deadline:
        try:
            event = events.get(timeout=QUIET_SECONDS)
        except queue.Empty:
            if _finished(base, token, swarm_id):
                return
            _answer_open_questions(base, token, swarm_id, timings, answered)
            continue
        if event.get("type") == "interrupt.opened":
            _answer_open_questions(base, token, swarm_id, timings, answered)
        elif event.get("type") == "swarm.status" and event["data"].get("status") in FINAL:
            return
    raise SystemExit(f"swarm {swarm_id} did not complete in time")


Driver = Callable[[str, str, str, "Timings", float, Any], None]
FINAL = ("completed", "failed")
QUIET_SECONDS = 5.0
DRIVERS = {"events": drive_by_events, "poll": drive_polling}


def _finished(base: str, token: str, swarm_id: str) -> bool:
    return call(base, "GET", f"/swarms/{swarm_id}", token=token)[1]["status"] in FINAL


def _answer_open_questions(
    base: str, token: str, swarm_id: str, timings: Timings, answered: set[tuple[str, int]]
) -> None:
    """Load the chats and answer each open question once (a question is a node and the length
    of its chat when it asked)."""
    chats = timings.timed("GET chats", base, "GET", f"/swarms/{swarm_id}/chats", token=token)
    for chat in chats[1]["chats"]:
        if not chat["waiting_for_user"]:
            continue
        path = f"/swarms/{swarm_id}/chats/{chat['node_id']}"
        count = len(call(base, "GET", path, token=token)[1]["messages"])
        if (chat["node_id"], count) in answered:
            continue
        answered.add((chat["node_id"], count))
        timings.timed("POST answer", base, "POST", f"{path}/messages", {"content": ANSWER}, token)


def emulator_pids() -> list[int]:
    """The running emulators' processes (`start_stack` reuses the ones side_by_side started)."""
    from devstack.stack import start_stack

    return [s.pid for s in start_stack().services.values() if s.pid is not None]


def settle(pids: list[int], timeout: float = 300.0) -> None:
    """Wait until the emulators are idle (under a tenth of a core for a second): deleting the
    previous level's database and container keeps them busy for a while after the calls return
    (over a minute after N = 32), which would be billed to this level."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = sum(cpu_seconds(p) for p in pids)
        time.sleep(1.0)
        if sum(cpu_seconds(p) for p in pids) - before < 0.1:
            return
    raise SystemExit("the emulators did not settle")


def run_level(
    base: str, n: int, pids: tuple[int, ...], log_path: Path, driver: Driver
) -> dict[str, Any]:
    swarms = []
    for i in range(n):
        user = f"u{uuid.uuid4().hex[:10]}{i}"
        token = call(base, "POST", "/auth/signup", {"username": user, "password": "pw-123456"})[1][
            "access_token"
        ]
        swarm_id = call(base, "POST", "/swarms", {"goal": "Plan a trip", "config": CONFIG}, token)[
            1
        ]["swarm_id"]
        # The page's live events, connected before the swarm starts (as the console's page is).
        events = live_events(base, swarm_id, token) if driver is drive_by_events else None
        swarms.append((token, swarm_id, events))
    executions_before, runs_before = _executions(log_path), _step_runs(log_path)
    emulators = emulator_pids()
    settle(emulators)
    cpu_before = sum(cpu_seconds(pid) for pid in pids)
    emulators_before = sum(cpu_seconds(p) for p in emulators)
    timings = Timings()
    started = time.monotonic()
    for token, swarm_id, _ in swarms:
        call(base, "POST", f"/swarms/{swarm_id}/spawn", token=token)
    threads = [
        threading.Thread(target=driver, args=(base, t, s, timings, started + 900, e))
        for t, s, e in swarms
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    for _, _, events in swarms:
        if events is not None:
            events.close()
    time.sleep(1.0)  # the last messages' executions end (a duplicate redelivered late counts)
    cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
    emulators_cpu = sum(cpu_seconds(p) for p in emulators) - emulators_before
    executions = _executions(log_path) - executions_before
    runs = _step_runs(log_path) - runs_before
    steps = 0
    problems = []
    for token, swarm_id, _ in swarms:
        detail = call(base, "GET", f"/swarms/{swarm_id}", token=token)[1]
        steps += detail["seq"]
        problems += check_swarm(base, token, swarm_id, detail)
    if problems:
        raise SystemExit("inconsistent swarms:\n" + "\n".join(problems[:20]))

    def pct(values: list[float], q: int) -> float:
        return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]

    return {
        "wall_s": wall,
        "steps": steps,
        "steps_per_s": steps / wall,
        "executions_per_step": executions / steps,
        "runs_per_step": runs / steps,
        "cpu_ms_per_step": cpu * 1000 / steps,
        "emulators_cpu_ms_per_step": emulators_cpu * 1000 / steps,
        **{
            f"{what} {stat}": pct(values, q)
            for what, values in timings.ms.items()
            if values
            for stat, q in (("median", 50), ("p90", 90))
        },
    }


def _executions(log_path: Path) -> int:
    return log_path.read_text(errors="replace").count("Executing 'Functions.advance_swarm'")


# The worker's line for each step it runs, delivered or run next in the same invocation.
STEP_RUN = re.compile(r"\bstep (?:committed|duplicate|redriven|parked|dropped) swarm_id=")


def _step_runs(log_path: Path) -> int:
    return len(STEP_RUN.findall(log_path.read_text(errors="replace")))


def check_swarm(base: str, token: str, swarm_id: str, detail: dict[str, Any]) -> list[str]:
    """Every seq from 1 to the last in the history, no (seq, index) twice, no chat message twice."""
    problems = []
    if detail["status"] != "completed":
        problems.append(f"{swarm_id}: {detail['status']}")
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        page = call(base, "GET", f"/swarms/{swarm_id}/history?after={after}", token=token)[1]
        events += page["events"]
        if not page["events"] or page["next_after"] == after:
            break
        after = page["next_after"]
    keys = [(e["seq"], e["index"]) for e in events]
    if len(keys) != len(set(keys)):
        problems.append(f"{swarm_id}: an event twice in the history")
    if {e["seq"] for e in events} != set(range(1, detail["seq"] + 1)):
        problems.append(f"{swarm_id}: the history has gaps")
    for chat in call(base, "GET", f"/swarms/{swarm_id}/chats", token=token)[1]["chats"]:
        path = f"/swarms/{swarm_id}/chats/{chat['node_id']}"
        ids = [m["message_id"] for m in call(base, "GET", path, token=token)[1]["messages"]]
        if len(ids) != len(set(ids)):
            problems.append(f"{swarm_id}: a message twice in {chat['node_id']}'s chat")
    return problems


def print_table(results: dict[str, dict[int, dict[str, Any]]], levels: list[int]) -> None:
    names = list(results)
    rows = [
        ("wall to all done (s)", "wall_s", "{:.1f}"),
        ("committed steps", "steps", "{:.0f}"),
        ("committed steps/s", "steps_per_s", "{:.1f}"),
        ("queue executions / step", "executions_per_step", "{:.2f}"),
        ("step runs / step", "runs_per_step", "{:.2f}"),
        ("host CPU ms / step", "cpu_ms_per_step", "{:.1f}"),
        ("emulators CPU ms / step", "emulators_cpu_ms_per_step", "{:.1f}"),
        ("GET chats median ms", "GET chats median", "{:.0f}"),
        ("GET chats p90 ms", "GET chats p90", "{:.0f}"),
        ("POST answer median ms", "POST answer median", "{:.0f}"),
        ("POST answer p90 ms", "POST answer p90", "{:.0f}"),
    ]
    print("N swarms at once over HTTP, every question answered (offline LLM)")
    for n in levels:
        print(f"\nN = {n}")
        print(f"{'':<28}" + "".join(f"{name:>26}" for name in names))
        for label, key, fmt in rows:
            cells = [
                fmt.format(results[name][n][key]) if key in results[name][n] else "-"
                for name in names
            ]
            print(f"{label:<28}" + "".join(f"{c:>26}" for c in cells))


if __name__ == "__main__":
    main()
