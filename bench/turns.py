"""Benchmark: what one conversation turn costs — the user's answer and the agent's next question.

One `ask_user` conversation that never ends (a 300-character question, a 200-character answer,
every answer judged insufficient; texts of English letter frequencies, another every turn). Per
exchange, averaged over the 50 exchanges from turns 10, 100 and 500 and the 50 up to turn 1,000 (a
conversation's last: at most 1,000 follow-ups; 50 exchanges hold three snapshots, written every 50
commits, exactly their share): milliseconds, storage requests by service and bytes written, in
memory (port calls; the time from a second run that counts nothing) and on the emulators (HTTP
requests to the Cosmos DB server and Azurite), the queue trigger's own (receive, delete) counted as
`trigger`. Then, over HTTP on the local stack (emulators + dev host, offline LLM): the latency from
`POST …/messages` to the agent's next message, as a browser sees it (its `chat.message` event over
Web PubSub, with the official client and a URL from /negotiate), median and p90 over 30 exchanges.

    .venv/bin/python bench/turns.py [--turns 1000] [--http 30] [--before REV]

`--before REV` measures the git revision REV (a temporary worktree) the same way first and prints
both side by side. Starts the emulators itself and stops what it started.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
MARKS = (10, 100, 500, 1000)
# Exchanges averaged from each mark: 150 commits (an exchange is 3), three whole periods of the
# snapshot written every 50 commits, so every mark carries its share of them, as every exchange
# does over time. (A window of a few exchanges held one snapshot or none, which read as growth.)
WINDOW = 50
ANSWER_CHARS = 200
QUESTION_PAD = 300
# Letters in their frequency in English: text of them is about as compressible as English (a
# little less), so what a step writes compressed is not flattered by repeated filler.
LETTERS = "etaoinshrdlcumwfgypbvkjxqz"
LETTER_WEIGHTS = (
    127,
    91,
    82,
    75,
    70,
    67,
    63,
    61,
    60,
    43,
    40,
    28,
    28,
    24,
    24,
    22,
    20,
    20,
    19,
    15,
    10,
    8,
    2,
    2,
    1,
    1,
)


def text(seed: str, length: int, separator: str = " ") -> str:
    """`length` characters of words, a different text for every seed (deterministic)."""
    rng = random.Random(seed)
    out = ""
    while len(out) < length:
        word = "".join(rng.choices(LETTERS, LETTER_WEIGHTS, k=rng.randint(2, 9)))
        out = f"{out}{separator}{word}" if out else word
    return out[:length]


def answer(turn: int) -> str:
    """The user's answer at a turn: one long hyphenated word, which the offline judge finds
    too short every time, another every turn (a conversation does not repeat itself)."""
    return text(f"answer {turn}", ANSWER_CHARS, separator="-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--http", type=int, default=30, help="exchanges timed over HTTP (0: none)")
    parser.add_argument("--before", help="a git revision to measure first, side by side")
    parser.add_argument("--code", help=argparse.SUPPRESS)  # the checkout to measure (internal)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.code or args.json:
        print(json.dumps(measure(Path(args.code or ROOT), args.turns, args.http)))
        return
    print_table(side_by_side(args.before, lambda code, env: run_child(code, args, env)))


def side_by_side(
    before: str | None, run_child: Callable[[Path, dict[str, str]], Any]
) -> dict[str, Any]:
    """On the emulators (started here, stopped after): `run_child(checkout, settings)` on the
    revision `before` (a temporary worktree) when given, then on this checkout."""
    sys.path.insert(0, str(ROOT))
    from devstack.stack import start_stack

    stack = start_stack()
    try:
        results: dict[str, Any] = {}
        with contextlib.ExitStack() as cleanup:
            if before:
                tree = cleanup.enter_context(worktree(before))
                results[f"before ({before})"] = run_child(tree, stack.settings)
            results["now"] = run_child(ROOT, stack.settings)
        return results
    finally:
        stack.stop()


@contextlib.contextmanager
def worktree(revision: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="turns-before-"))
    subprocess.run(
        ["git", "worktree", "add", "-q", "--detach", str(path), revision], cwd=ROOT, check=True
    )
    os.symlink(ROOT / "node_modules", path / "node_modules")
    try:
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False)


def run_child(
    code: Path, args: argparse.Namespace, stack_settings: dict[str, str]
) -> dict[str, Any]:
    flags = ["--turns", str(args.turns), "--http", str(args.http)]
    result: dict[str, Any] = measure_in_child(Path(__file__), code, stack_settings, flags)
    return result


def measure_in_child(
    script: Path, code: Path, stack_settings: dict[str, str], flags: list[str]
) -> Any:
    """Run `script --code CODE FLAGS` in a process of its own (with `code`'s `swarm_core` on
    the path) and return the JSON it prints last."""
    env = {**os.environ, **stack_settings, "PYTHONPATH": str(code)}
    command = [sys.executable, str(script.resolve()), "--code", str(code), *flags]
    out = subprocess.run(command, cwd=code, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"measuring {code} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- one checkout ---------------------------------------------------------------------------


def measure(code: Path, turns: int, http_turns: int) -> dict[str, Any]:
    sys.path.insert(0, str(code))
    api = Api()
    memory = conversation(api, turns, "memory")
    # The time in memory from a run of its own, on the ports as they are: counting the bytes
    # of every write serialises each document once more, which is not the product's cost.
    timed = conversation(api, turns, "memory", count=False)
    for mark, figures in memory.items():
        figures["ms"] = timed[mark]["ms"]
    return {
        "memory": memory,
        "emulators": conversation(api, turns, "emulators"),
        "http": http_latency(code, http_turns) if http_turns else None,
    }


class Api:
    """The few calls this benchmark makes, on the current layout or the one before it."""

    def __init__(self) -> None:
        from swarm_core import bootstrap

        self.new = hasattr(bootstrap, "build_app")
        self.bootstrap = bootstrap

    def offline_llm(self) -> Any:
        try:
            from swarm_core.adapters.offline_llm import OfflineScriptedLLM
        except ImportError:
            from swarm_core.offline_llm import OfflineScriptedLLM  # type: ignore[no-redef]
        return OfflineScriptedLLM()

    def app(
        self, store: Any, content: Any, queue: Any, publisher: Any, llm: Any, remote: bool = False
    ) -> Any:
        from swarm_core.settings import Settings

        if not self.new:
            return self.bootstrap.build(store, content, queue, publisher, llm)
        from swarm_core.adapters import memory

        extra = {}
        if "attempts" in self.bootstrap.Adapters.__dataclass_fields__:
            extra["attempts"] = memory.MemoryAttemptStore()
        adapters = self.bootstrap.Adapters(
            store=store,
            content=content,
            queue=queue,
            publisher=publisher,
            users=memory.MemoryUserStore(),
            llm=llm,
            client_access=memory.MemoryClientAccess(),
            **extra,
        )
        settings = Settings(AUTH_SECRET="bench-" + "k" * 32)
        parallel = getattr(self.bootstrap, "AZURE_PARALLEL_EFFECTS", 0)
        if remote and parallel:  # as build_azure builds it for remote storage
            options: dict[str, Any] = {"parallel_effects": parallel}
            if "remember_latest" in inspect.signature(self.bootstrap.build_app).parameters:
                options["remember_latest"] = True
            return self.bootstrap.build_app(settings, adapters, **options)
        return self.bootstrap.build_app(settings, adapters)

    def answer(self, app: Any, swarm_id: str, node_id: str, text: str) -> None:
        if self.new:
            app.services.post_user_message("bench", swarm_id, node_id, text, None)
        else:
            app.services.post_user_message(
                "bench", swarm_id, node_id, text, None, app.queue.enqueue
            )

    def waiting(self, store: Any, swarm_id: str) -> list[Any]:
        nodes = store.list_nodes(swarm_id)
        if self.new:
            return [n for n in nodes if n.interrupt is not None and n.interrupt.status == "open"]
        return [n for n in nodes if n.lifecycle == "waiting_for_user"]


class PaddedLLM:
    """The offline LLM, its questions padded to 300 characters (as a real model writes them)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.questions = 0

    def complete(self, request: Any, response_model: Any) -> Any:
        result = self.inner.complete(request, response_model)
        key = {"ask": "message", "judge": "follow_up"}.get(request.task)
        if key and result.data.get(key):
            self.questions += 1
            padding = text(f"question {self.questions}", QUESTION_PAD)
            result.data[key] = f"{result.data[key]} {padding}"[:QUESTION_PAD]
        return result


WRITES = ("create", "replace", "write", "append", "put", "enqueue", "delete")


def json_size(value: Any) -> int:
    if hasattr(value, "model_dump_json"):
        return len(value.model_dump_json())
    if isinstance(value, list | tuple | dict):
        return len(json.dumps(value, default=str))
    return 0


class Counting:
    """Counts the calls made to a port and the JSON bytes its write calls carry (in memory, one
    call stands for one request)."""

    def __init__(self, target: Any, counts: Counter[str]) -> None:
        self.target = target
        self.counts = counts

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.target, name)
        if not callable(attr) or name in ("receive", "ack", "release", "decode_message"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.counts[name] += 1
            if name.startswith(WRITES):
                self.counts["bytes"] += sum(json_size(a) for a in args)
            return attr(*args, **kwargs)

        return call


def conversation(api: Api, turns: int, where: str, count: bool = True) -> dict[str, Any]:
    """Run the conversation to `turns` exchanges; per-exchange figures at the marks (in memory
    without `count`, only the time: nothing counted)."""

    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    llm = PaddedLLM(api.offline_llm())
    if where == "memory":
        from swarm_core.adapters.memory import (
            MemoryContentStore,
            MemoryEventPublisher,
            MemoryOperationQueue,
            MemorySwarmStore,
        )

        raw_store, raw_content, queue = (
            MemorySwarmStore(),
            MemoryContentStore(),
            MemoryOperationQueue(),
        )
        counts: Counter[str] = Counter()
        if count:
            store, content = Counting(raw_store, counts), Counting(raw_content, counts)
            app = api.app(store, content, Counting(queue, counts), MemoryEventPublisher(), llm)
        else:
            app = api.app(raw_store, raw_content, queue, MemoryEventPublisher(), llm)

        def receive() -> list[tuple[str, Callable[[], None]]]:
            # The queue trigger's calls count too (as `trigger`): a step run next in the
            # worker's own invocation saves them, and its worker settles it instead.
            counts["trigger"] += count
            got = queue.receive()
            if got is None:
                return []

            def done() -> None:
                counts["trigger"] += count
                queue.ack(got)

            return [(got.body, done)]

        def snapshot() -> tuple[int, int, dict[str, int]]:
            requests = sum(v for k, v in counts.items() if k != "bytes")
            trigger = counts["trigger"]
            return requests, counts["bytes"], {"ports": requests - trigger, "trigger": trigger}
    else:
        app, store, receive, snapshot = emulator_app(api, llm, totals)
        raw_store = store
    swarm, drain = start_conversation(app, receive)
    drain()
    per_turn: dict[int, tuple[float, int, int, dict[str, int]]] = {}
    for turn in range(1, turns + 1):
        waiting = api.waiting(raw_store, swarm.swarm_id)
        if not waiting:
            raise SystemExit(f"the conversation ended at turn {turn}")
        before = snapshot()
        started = time.perf_counter()
        api.answer(app, swarm.swarm_id, waiting[0].node_id, answer(turn))
        drain()
        ms = (time.perf_counter() - started) * 1000
        after = snapshot()
        by_service = {k: after[2].get(k, 0) - before[2].get(k, 0) for k in after[2]}
        per_turn[turn] = (ms, after[0] - before[0], after[1] - before[1], by_service)
    marks = {}
    for mark in MARKS:
        first = max(1, min(mark, turns - WINDOW + 1))  # the last window ends at the last turn
        rows = [per_turn[t] for t in range(first, first + WINDOW) if t in per_turn]
        if not rows:
            continue
        marks[str(mark)] = {
            "ms": statistics.mean(r[0] for r in rows),
            "requests": statistics.mean(r[1] for r in rows),
            "bytes": statistics.mean(r[2] for r in rows),
            "by_service": {k: statistics.mean(r[3].get(k, 0) for r in rows) for k in rows[0][3]},
        }
    return marks


def start_conversation(
    app: Any, receive: Callable[[], list[tuple[str, Callable[[], None]]]]
) -> tuple[Any, Callable[[], None]]:
    """Create and spawn the benchmark's swarm (an `ask_user` conversation of up to 1,000
    follow-ups); also the function that runs every queued step (`receive` gives them)."""
    from swarm_core.models import SwarmConfig

    config = SwarmConfig(
        offline_breadth=2,
        offline_depth=1,
        limits={"max_follow_ups": 1000, "max_steps": 100_000},
    )
    swarm = app.services.create_swarm("bench", "Plan a 3-day trip to Lisbon", config)
    app.services.spawn("bench", swarm.swarm_id)

    def drain() -> None:
        while batch := receive():
            for body, done in batch:
                app.worker.process(body)
                done()

    return swarm, drain


def emulator_app(api: Api, llm: Any, totals: dict[str, list[int]]) -> tuple[Any, Any, Any, Any]:
    from azure.core.pipeline.transport import RequestsTransport

    from swarm_core.adapters.blob import BlobContentStore, build_blob_service
    from swarm_core.adapters.cosmos import CosmosClients, CosmosSwarmStore
    from swarm_core.adapters.memory import MemoryEventPublisher
    from swarm_core.adapters.queue import (
        StorageOperationQueue,
        base64_queue_client,
        build_queue_service,
        decode_operation_message,
    )
    from swarm_core.settings import Settings

    try:  # the transport the checkout's clients get (older checkouts: the SDK's default)
        from swarm_core.adapters.sdk_http import uses_env_proxies

        as_built: dict[str, Any] = {"use_env_settings": uses_env_proxies()}
    except ImportError:
        as_built = {}

    class CountingTransport(RequestsTransport):  # type: ignore[misc]
        def __init__(self, service: str, **kwargs: Any) -> None:
            super().__init__(**{**as_built, **kwargs})
            self.service = service

        def send(self, request: Any, **kwargs: Any) -> Any:
            body = request.body if isinstance(request.body, bytes | bytearray) else b""
            if isinstance(request.body, str):
                body = request.body.encode()
            totals[self.service][0] += 1
            totals[self.service][1] += len(body)
            return super().send(request, **kwargs)

    name = f"turns{uuid.uuid4().hex[:8]}"
    settings = Settings(COSMOS_DATABASE=name, SWARM_CONTAINER=name, SWARM_QUEUE=name)
    cosmos = CosmosClients(settings, client_options={"transport": CountingTransport("cosmos")})
    cosmos.ensure_containers()
    content = BlobContentStore(
        settings, service_client=build_blob_service(settings, transport=CountingTransport("blob"))
    )
    content.ensure_container()
    queue = StorageOperationQueue(
        settings,
        content,
        service_client=build_queue_service(settings, transport=CountingTransport("queue")),
    )
    queue.ensure_queues()
    # What the host's queue trigger does (receive, delete) counts too, as `trigger`.
    receiver = base64_queue_client(
        build_queue_service(settings, transport=CountingTransport("trigger")),
        settings.swarm_queue,
    )
    store = CosmosSwarmStore(cosmos)
    app = api.app(store, content, queue, MemoryEventPublisher(), llm, remote=True)

    def receive() -> list[tuple[str, Callable[[], None]]]:
        # One page, one request, as the trigger's each poll is (a list would ask for the next).
        pages = receiver.receive_messages(messages_per_page=32, visibility_timeout=60).by_page()
        messages = list(next(pages, []))
        return [
            (decode_operation_message(m.content, content), lambda m=m: receiver.delete_message(m))
            for m in messages
        ]

    def snapshot() -> tuple[int, int, dict[str, int]]:
        return (
            sum(v[0] for v in totals.values()),
            sum(v[1] for v in totals.values()),
            {k: v[0] for k, v in totals.items()},
        )

    return app, store, receive, snapshot


# --- over HTTP ------------------------------------------------------------------------------


class RunningHost(NamedTuple):
    base: str  # the API's base URL
    pids: tuple[int, ...]  # of its processes
    name: str  # of its own database, container and queue
    log: Path  # of all its processes


@contextlib.contextmanager
def dev_host(code: Path, prefix: str, env: dict[str, str] | None = None) -> Iterator[RunningHost]:
    """The dev host serving `code` on a free port, on a database, container and queue of its own:
    two processes, one for the HTTP functions and one for the others, as `scripts/run.sh` runs
    it (as Flex Consumption scales the app); one process for a checkout older than that."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        **(env or {}),
        "PYTHONPATH": str(code),
        "SWARM_ENV": "development",
        "AUTH_SECRET": "bench-" + "k" * 40,
        "BCRYPT_ROUNDS": "4",
        "SIGNUPS_PER_ADDRESS_PER_HOUR": "100000",
        "COSMOS_DATABASE": name,
        "SWARM_CONTAINER": name,
        "SWARM_QUEUE": name,
        "SWARM_POISON_QUEUE": f"{name}-poison",
        "MAINTENANCE_SCHEDULE": "0 0 0 1 1 *",
        "PYTHON_THREADPOOL_THREAD_COUNT": "24",  # as infra/app/api.bicep sets it
    }
    log_path = Path(tempfile.gettempdir()) / f"{prefix}-devhost-{port}.log"
    command = [sys.executable, "-m", "devhost", "--port", str(port), "--settings", "none.json"]
    split = "--triggers" in (code / "devhost" / "__main__.py").read_text()
    commands = [[*command, "--triggers", "http"], [*command, "--triggers", "queue,timer"]]
    with log_path.open("ab") as log:  # appended to by both processes, a line at a time
        hosts = [
            subprocess.Popen(argv, cwd=code, env=env, stdout=log, stderr=subprocess.STDOUT)
            for argv in (commands if split else [command])
        ]
        base = f"http://127.0.0.1:{port}/api"

        def healthy() -> bool:
            if any(host.poll() is not None for host in hosts):
                raise SystemExit(f"the dev host exited; see {log_path}")
            try:
                return call(base, "GET", "/health")[0] == 200
            except OSError:
                return False

        try:
            wait_for(healthy, 60)
            yield RunningHost(base, tuple(host.pid for host in hosts), name, log_path)
        finally:
            for host in hosts:
                host.terminate()
            for host in hosts:
                host.wait(timeout=30)
            drop_resources(name, env)


def drop_resources(name: str, settings: Mapping[str, str]) -> None:
    """Delete what a bench's dev host made: its database, blob container and queues. Azurite
    keeps everything in memory and searches it on every request: left there, one run's data
    slows the emulators for every later run (a third more emulator CPU per step, measured)."""
    from azure.cosmos import CosmosClient, SSLConfiguration
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueServiceClient

    storage = settings.get("AzureWebJobsStorage")
    if not storage:  # identity mode: the bench does not clean up there
        return
    with contextlib.suppress(Exception):
        BlobServiceClient.from_connection_string(storage).delete_container(name)
    queues = QueueServiceClient.from_connection_string(storage)
    for queue in (name, f"{name}-poison"):
        with contextlib.suppress(Exception):
            queues.delete_queue(queue)
    tls = SSLConfiguration()
    tls.SSLCaCerts = settings.get("COSMOS_CA_CERT")
    with contextlib.suppress(Exception):
        cosmos = CosmosClient(settings["COSMOS_ENDPOINT"], settings["COSMOS_KEY"], ssl_config=tls)
        cosmos.delete_database(name)


def http_latency(code: Path, exchanges: int) -> dict[str, float]:
    """POST an answer → the agent's next message in the chat, on a dev host serving `code`."""
    with dev_host(code, "turnshttp") as (base, _, name, _):
        token = call(base, "POST", "/auth/signup", {"username": name, "password": "correct horse"})[
            1
        ]["access_token"]
        config = {"offline_breadth": 2, "offline_depth": 1, "limits": {"max_follow_ups": 1000}}
        swarm_id = call(base, "POST", "/swarms", {"goal": "Plan a trip", "config": config}, token)[
            1
        ]["swarm_id"]
        events = live_events(base, swarm_id, token)
        call(base, "POST", f"/swarms/{swarm_id}/spawn", token=token)
        latencies = []
        node_id = None

        def question() -> bool:
            nonlocal node_id
            chats = call(base, "GET", f"/swarms/{swarm_id}/chats", token=token)[1]["chats"]
            asking = [c for c in chats if c["waiting_for_user"]]
            if asking:
                node_id = asking[0]["node_id"]
            return bool(asking)

        wait_for(question, 30)
        try:
            for turn in range(exchanges + 1):
                while not events.empty():  # what came before this answer
                    events.get_nowait()
                started = time.perf_counter()
                call(
                    base,
                    "POST",
                    f"/swarms/{swarm_id}/chats/{node_id}/messages",
                    {"content": answer(turn)},
                    token,
                )
                # The agent's next message, as a browser sees it: its live event.
                while True:
                    event = events.get(timeout=30)
                    data = event.get("data", {})
                    if (
                        event.get("type") == "chat.message"
                        and data.get("role") == "agent"
                        and data.get("node_id") == node_id
                    ):
                        break
                latencies.append((time.perf_counter() - started) * 1000)
        finally:
            events.close()
        latencies = latencies[1:]  # the first exchange warms the host up
        return {
            "median": statistics.median(latencies),
            "p90": statistics.quantiles(latencies, n=10)[-1],
        }


class LiveEvents:
    """The swarm's live events, with the official Web PubSub client and a URL from /negotiate
    (what a browser does); `get` and `empty` as a queue's. Each event comes once: one published
    again (a commit applied a second time) is dropped by its seq and index, as the console drops
    it — else a latency would end at the copy of an earlier message."""

    def __init__(self, url: str) -> None:
        import queue

        from azure.messaging.webpubsubclient import WebPubSubClient, WebPubSubClientCredential

        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._seen: set[tuple[Any, Any]] = set()
        self.get, self.empty, self.get_nowait = (
            self._queue.get,
            self._queue.empty,
            self._queue.get_nowait,
        )
        self._client = WebPubSubClient(
            credential=WebPubSubClientCredential(client_access_url_provider=lambda: url)
        )
        self._client.subscribe("group-message", self._on_message)
        self._client.open()

    def _on_message(self, args: Any) -> None:
        data = args.data if isinstance(args.data, dict) else json.loads(args.data)
        events = data if isinstance(data, list) else [data]
        for event in events:
            position = (event.get("seq"), event.get("index"))
            if position in self._seen:
                continue
            self._seen.add(position)
            self._queue.put(event)

    def close(self) -> None:
        self._client.close()


def live_events(base: str, swarm_id: str, token: str) -> LiveEvents:
    status, negotiated = call(base, "GET", f"/negotiate?swarm_id={swarm_id}", token=token)
    if status != 200:
        raise SystemExit(f"negotiate answered {status}: {negotiated}")
    return LiveEvents(negotiated["url"])


def call(
    base: str, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    request = urllib.request.Request(
        base + path, method=method, data=None if body is None else json.dumps(body).encode()
    )
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            text = resp.read()
            return resp.status, json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def wait_for(condition: Callable[[], bool], timeout: float, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(every)


# --- the table ----------------------------------------------------------------------------------


def print_table(results: dict[str, dict[str, Any]]) -> None:
    names = list(results)
    print(f"one conversation; per exchange, averaged over {WINDOW} exchanges from each turn")
    print(f"(at the last turn, the {WINDOW} up to it)")
    header = f"{'':<34}" + "".join(f"{n:>46}" for n in names)
    for where in ("memory", "emulators"):
        print(f"\n{where}")
        print(header)
        for mark in MARKS:
            key = str(mark)
            if not all(key in results[n][where] for n in names):
                continue
            rows = {
                f"turn {mark}: ms": lambda r: f"{r['ms']:.1f}",
                f"turn {mark}: requests": lambda r: f"{r['requests']:.1f}",
                f"turn {mark}: bytes written": lambda r: f"{r['bytes']:.0f}",
            }
            if where == "emulators":
                rows[f"turn {mark}: by service"] = lambda r: " ".join(
                    f"{k} {v:.1f}" for k, v in sorted(r["by_service"].items())
                )
            for label, fmt in rows.items():
                print(f"{label:<34}" + "".join(f"{fmt(results[n][where][key]):>46}" for n in names))
    if any(results[n]["http"] is None for n in names):
        return  # --http 0
    print("\nover HTTP, POST answer -> the agent's next message (ms)")
    print(header)
    for stat in ("median", "p90"):
        print(f"{stat:<34}" + "".join(f"{results[n]['http'][stat]:>46.0f}" for n in names))


if __name__ == "__main__":
    main()
