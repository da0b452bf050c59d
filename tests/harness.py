"""Test harness: a scenario driver that plays queue and user, crash injection around every port
call, and a comparable summary of a swarm's final state.

A crash is an `InjectedCrash` (a BaseException, like a killed process: no `except Exception` in
the product swallows it). The driver then leaves the message unacknowledged, so it is delivered
again later, exactly as a storage queue does after the visibility timeout.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from swarm_core.adapters.blob import BlobContentStore
from swarm_core.adapters.cosmos import CosmosClients
from swarm_core.adapters.memory import QueueMessage
from swarm_core.adapters.offline_llm import OfflineScriptedLLM
from swarm_core.bootstrap import Adapters, MemoryAdapters, SwarmApp, build_app, build_in_memory
from swarm_core.forks import fold, swarm_document
from swarm_core.in_process import run_until_settled, waiting_nodes
from swarm_core.llm import LLMRequest, LLMResult
from swarm_core.models import Node, SwarmConfig, SwarmStatus
from swarm_core.ports import chat_stream, history_stream, log_stream
from swarm_core.settings import Settings

FIXED_NOW = datetime(2026, 1, 1, tzinfo=UTC)
USER = "user-1"
GOAL = "Plan a 3-day trip to Lisbon"
SECOND_SHORT_ANSWER = "Maybe Sintra?"
LONG_ANSWER = "A relaxed pace, about 900 EUR in total, good food and one museum a day please."


class InjectedCrash(BaseException):
    """The process died here."""


class CrashPlan:
    """Numbers every port call; crashes once, before (even position) or after (odd) a call."""

    def __init__(self, position: int | None = None) -> None:
        self.position = position
        self.calls = 0
        self.fired: str | None = None

    def around(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        index = self.calls
        self.calls += 1
        if self.position == 2 * index:
            self.position = None
            self.fired = f"before {name} (call {index})"
            raise InjectedCrash(self.fired)
        try:
            result = fn(*args, **kwargs)
        except Exception as failed:
            # A call that failed (a commit that lost the ETag race) can be crashed after too.
            if self.position == 2 * index + 1:
                self.position = None
                self.fired = f"after {name} (call {index}, failed)"
                raise InjectedCrash(self.fired) from failed
            raise
        if self.position == 2 * index + 1:
            self.position = None
            self.fired = f"after {name} (call {index})"
            raise InjectedCrash(self.fired)
        return result


class Faulty:
    """Wraps a port: every method call goes through the crash plan."""

    def __init__(self, target: Any, plan: CrashPlan, port: str) -> None:
        self._target = target
        self._plan = plan
        self._port = port

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._plan.around(f"{self._port}.{name}", attr, *args, **kwargs)

        return call


class RecordingLLM:
    """The offline LLM, recording each call and whether its operation had committed already."""

    def __init__(self, store: Any) -> None:
        self.inner = OfflineScriptedLLM()
        self.store = store
        self.calls: Counter[str] = Counter()
        self.nodes: dict[str, str] = {}  # op id -> the node it called the model for
        self.calls_after_commit: list[str] = []

    def complete(self, request: LLMRequest, response_model: Any) -> LLMResult:
        got = self.store.get_swarm(request.swarm_id)
        llm_op = self._llm_op_id(request)
        if got is not None:
            pending = got.value.pending
            node = self.store.get_node(request.swarm_id, request.node_id)
            committed = node is not None and llm_op in node.value.recent_op_ids
            if committed or (pending is not None and pending.op_id == llm_op):
                self.calls_after_commit.append(llm_op)
        self.calls[llm_op] += 1
        self.nodes[llm_op] = request.node_id
        return self.inner.complete(request, response_model)

    @staticmethod
    def _llm_op_id(request: LLMRequest) -> str:
        return request.op_id


def scenario_answer(node_name: str, replies_so_far: int) -> str:
    """The scenario's user: the clarifying node's first answer is too short (a follow-up)."""
    if node_name == "Clarify preferences" and replies_so_far == 0:
        return "Not sure."
    return LONG_ANSWER


def remembering_process(settings: Settings, adapters: Adapters, **options: Any) -> SwarmApp:
    """An app of its own on `adapters`, as a process is: it remembers what its last commits
    left, as on Azure's storage, and checks that nothing changes what it remembers."""
    app = build_app(settings, adapters, remember_latest=True, **options)
    app.committer.verify_remembered = True
    return app


class Rig:
    """Two apps on the same in-memory adapters, as two processes would be: the worker's sees them
    through `Faulty` wrappers (it crashes), the HTTP side's sees them directly (it does not).
    `store`/`content` may be other implementations of the ports (the emulator-backed ones)."""

    def __init__(self, plan: CrashPlan, store: Any = None, content: Any = None) -> None:
        self.plan = plan
        raw = MemoryAdapters()
        if store is not None:
            raw.store = store
        if content is not None:
            raw.content = content
        self.store, self.content, self.queue = raw.store, raw.content, raw.queue
        self.publisher = raw.publisher
        self.llm = RecordingLLM(raw.store)
        raw.llm = self.llm
        ids = itertools.count(1)
        # Snapshots often, so that crashes land in their effects too. A crashed applier is
        # dead at once (the clock stands still here, so no commit would ever age): whoever
        # finds its commit unfinished rolls it forward without waiting.
        settings = Settings(
            BCRYPT_ROUNDS=4,
            AUTH_SECRET="harness-" + "k" * 32,
            SNAPSHOT_EVERY=4,
            ROLL_FORWARD_AFTER_SECONDS=0,
        )
        self.http_app = build_in_memory(
            adapters=raw,
            settings=settings,
            clock=lambda: FIXED_NOW,
            new_id=lambda: f"swarm{next(ids):04d}",  # one length: forks keep positions
        )
        faulty = Adapters(**{name: Faulty(port, plan, name) for name, port in vars(raw).items()})
        self.worker_app = remembering_process(settings, faulty, clock=lambda: FIXED_NOW)
        # The user's messages go through an API process of their own, which crashes too.
        self.user_app = remembering_process(settings, faulty, clock=lambda: FIXED_NOW)
        self.services = self.http_app.services
        self.worker = self.worker_app.worker
        self.user_crashes = 0


def one_step_per_delivery(plan: CrashPlan) -> Rig:
    """A rig whose worker runs only the step each message brings (`RUN_NEXT_STEPS=0`)."""
    rig = Rig(plan)
    rig.worker.run_next_steps = 0
    return rig


@dataclass
class ScenarioRun:
    rig: Rig
    swarm_id: str
    crashes: int
    deliveries: int


class CrashingDelivery:
    """Delivers a message to the rig's worker as a queue does: a crash leaves it to be
    delivered again (released, as when its visibility timeout runs out), else it is done.
    `twice`: every message is delivered a second time after it succeeded."""

    def __init__(self, rig: Rig, twice: bool = False) -> None:
        self.rig = rig
        self.twice = twice
        self.crashes = 0

    def __call__(self, message: QueueMessage) -> None:
        try:
            self.rig.worker.process(message.body)
            if self.twice:
                self.rig.worker.process(message.body)
        except InjectedCrash:
            self.crashes += 1
            self.rig.queue.release(message)
            self.rig.queue.release_held()  # the steps it ran next: their holds run out too
            return
        self.rig.queue.ack(message)


def run_scenario(
    plan: CrashPlan | None = None,
    config: SwarmConfig | None = None,
    deliver_twice: bool = False,
    max_deliveries: int = 20_000,
    make_rig: Callable[[CrashPlan], Rig] = Rig,
) -> ScenarioRun:
    """Create, spawn and drive the scenario swarm to its end, redelivering after crashes.

    `make_rig` gives the adapters (in memory by default; the emulator-backed ones in
    `tests/faults/test_crash_recovery_azure.py`)."""
    rig = make_rig(plan or CrashPlan())
    swarm = rig.services.create_swarm(USER, GOAL, config or scenario_config())
    rig.services.spawn(USER, swarm.swarm_id)
    deliver = CrashingDelivery(rig, deliver_twice)
    deliveries = run_until_settled(
        rig.http_app,
        swarm.swarm_id,
        scenario_user(rig, swarm.swarm_id),
        deliver=deliver,
        max_deliveries=max_deliveries,
    )
    return ScenarioRun(rig, swarm.swarm_id, deliver.crashes + rig.user_crashes, deliveries)


def scenario_user(rig: Rig, swarm_id: str) -> Any:
    """The scenario's user. The clarifying node's first question gets two short messages in a
    row (both committed before the node resumes; together still too short: a follow-up).
    A post that crashes is posted again with the same client message id, as a client retries."""

    def post(node: Node, client_message_id: str, content: str) -> None:
        while True:
            try:
                rig.user_app.services.post_user_message(
                    USER, swarm_id, node.node_id, content, client_message_id
                )
                return
            except InjectedCrash:
                rig.user_crashes += 1

    def answer(node: Node, chat: list[dict[str, Any]]) -> None:
        replies = sum(1 for m in chat if m["role"] == "user")
        post(node, f"{node.node_id}-{replies}", scenario_answer(node.name, replies))
        if node.name == "Clarify preferences" and replies == 0:
            post(node, f"{node.node_id}-{replies}-more", SECOND_SHORT_ANSWER)

    return answer


def answer_waiting(rig: Rig, swarm_id: str) -> bool:
    """Reply to every node waiting for the user; False when there is nobody to answer."""
    answer = scenario_user(rig, swarm_id)
    waiting = waiting_nodes(rig.http_app, swarm_id)
    for node in waiting:
        answer(node, rig.content.read(chat_stream(swarm_id, node.node_id)))
    return bool(waiting)


def scenario_config() -> SwarmConfig:
    return SwarmConfig(seed=0, offline_breadth=3, offline_depth=2)


def _strip(value: Any, keys: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_strip(v, keys) for v in value]
    return value


def _without(record: dict[str, Any], *keys: str) -> str:
    """The record without its order-dependent fields (at any depth), as comparable text."""
    return json.dumps(_strip(record, keys), sort_keys=True)


def final_state(run: ScenarioRun) -> dict[str, Any]:
    """Everything a user could see of the swarm, in a form two runs can be compared by.

    Step order may differ between runs (a redelivered message comes back later), so history and
    logs are compared as multisets without their seq (and node views without their recent op
    ids); chats are per node and in order."""
    rig, swarm_id = run.rig, run.swarm_id
    got = rig.store.get_swarm(swarm_id)
    assert got is not None
    swarm = got.value
    # A node's recent op ids and the seqs of its last write and last chat append depend on the
    # order of deliveries (which child's report came last names the operation that runs the
    # parent next): bookkeeping, not something a user sees. Whatever the order, a node's chat
    # ends at its `chat_seq` (`chat_seq_behind`).
    stored = rig.store.list_nodes(swarm_id)
    nodes = {
        n.node_id: n.model_dump(mode="json", exclude={"recent_op_ids", "seq", "chat_seq"})
        for n in stored
    }
    raw_chats = {n.node_id: rig.content.read(chat_stream(swarm_id, n.node_id)) for n in stored}
    chats = {
        node_id: [_without(m, "seq") for m in messages] for node_id, messages in raw_chats.items()
    }
    logs = Counter(
        _without(e, "seq")
        for node_id in nodes
        for e in rig.content.read(log_stream(swarm_id, node_id))
    )
    history = rig.content.read(history_stream(swarm_id))
    events = Counter(_without(e, "seq", "index", "recent_op_ids") for e in history)
    return {
        "status": swarm.status,
        "seq": swarm.seq,
        "final_report": swarm.final_report,
        "node_count": swarm.node_count,
        "node_counts": swarm.node_counts,
        "usage": swarm.usage.model_dump(),
        "parked": swarm.parked,
        "nodes": nodes,
        "chats": chats,
        "chat_seq_behind": chat_seq_behind(stored, raw_chats),
        "logs": logs,
        "events": events,
    }


def chat_seq_behind(nodes: list[Node], chats: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The nodes whose chat does not end at their `chat_seq` (the hint a node's next chat
    append gives the content store): none, whatever the order of deliveries."""
    return [
        n.node_id
        for n in nodes
        if n.chat_seq != max((m["seq"] for m in chats[n.node_id]), default=0)
    ]


def records_from(
    content: Any, stream: str, mark: Mapping[str, Any], after_seq: int, until_seq: int
) -> list[dict[str, Any]]:
    """The records of a content store's batches read from a mark (`read_batches`)."""
    return [r for b in content.read_batches(stream, mark, after_seq, until_seq) for r in b.records]


def commits_from(
    content: Any, stream: str, mark: Mapping[str, Any], after_seq: int, until_seq: int
) -> list[dict[str, Any]]:
    """The commit records of a content store's batches read from a mark (`read_batches`)."""
    batches = content.read_batches(stream, mark, after_seq, until_seq)
    return [b.commit for b in batches if b.commit is not None]


def published_events(run: ScenarioRun) -> list[dict[str, Any]]:
    """Every event published, once each, in order (a re-driven commit publishes its events
    again): what the history API must show."""
    once = {(e["seq"], e["index"]): e for e in run.rig.publisher.published[run.swarm_id]}
    return [once[key] for key in sorted(once)]


def history_differing_from_published(run: ScenarioRun) -> list[int]:
    """The seqs whose events the history API (which replays the `node.updated` events the
    stored history keeps as the node's id) shows otherwise than they were published."""
    shown = run.rig.services.history(USER, run.swarm_id, limit=10**9)["events"]
    published = published_events(run)
    by_seq: dict[int, list[list[dict[str, Any]]]] = defaultdict(lambda: [[], []])
    for side, events in enumerate((shown, published)):
        for event in events:
            by_seq[event["seq"]][side].append(event)
    return sorted(seq for seq, (a, b) in by_seq.items() if a != b)


def replayed_states(run: ScenarioRun) -> dict[int, list[dict[str, Any]]]:
    """The tree after each seq, built from the events as they were published, whole nodes
    (the reference `state?at=` must give, whatever snapshot it starts from)."""
    tree: dict[str, dict[str, Any]] = {}
    states: dict[int, list[dict[str, Any]]] = {}
    for event in published_events(run):
        if event["type"] in ("node.spawned", "node.updated"):
            tree[event["data"]["node"]["node_id"]] = event["data"]["node"]
        elif event["type"] == "node.rerun":
            for node_id in event["data"]["discarded"]:
                del tree[node_id]
        states[event["seq"]] = sorted(
            tree.values(), key=lambda n: (n["depth"], n["created_at"], n["node_id"])
        )
    return states


def states_differing_from_replay(run: ScenarioRun) -> list[int]:
    """The seqs at which `state?at=` differs from the replay of the whole history."""
    return [
        seq
        for seq, nodes in replayed_states(run).items()
        if run.rig.services.state(USER, run.swarm_id, seq)["nodes"] != nodes
    ]


def records_differing_from_documents(run: ScenarioRun) -> list[str]:
    """Where the fold of the swarm's commit records (what a fork is made of) differs from the
    documents as stored now: the swarm document's fields and the node ids that differ."""
    rig, swarm_id = run.rig, run.swarm_id
    swarm = rig.store.get_swarm(swarm_id).value
    folded = fold(rig.content, swarm_id, swarm.seq, rig.http_app.committer.snapshot_every)
    live = {n.node_id: n.model_dump(mode="json") for n in rig.store.list_nodes(swarm_id)}
    differing = [k for k, v in swarm_document(swarm).items() if (folded.swarm or {}).get(k) != v]
    differing += [
        i for i in live.keys() | folded.nodes.keys() if live.get(i) != folded.nodes.get(i)
    ]
    return differing


def crash_problems(
    run: ScenarioRun, expected: dict[str, Any], expected_seqs: list[int]
) -> list[str]:
    """How a run crashed once differs from the crash-free one (`expected`: its `final_state`,
    `expected_seqs`: its `history_seqs`); empty when it does not."""
    problems = []
    if run.rig.plan.fired is None:
        problems.append("the crash never fired")
    if run.crashes != 1:
        problems.append(f"{run.crashes} crashes")
    if final_state(run) != expected:
        problems.append("final state differs")
    if history_seqs(run) != expected_seqs:
        problems.append("history seqs differ")
    if differing := history_differing_from_published(run):
        problems.append(f"the history shows other events than were published at {differing[:5]}")
    if differing := states_differing_from_replay(run):
        problems.append(f"state?at= differs from the history at seqs {differing[:5]}")
    if differing := records_differing_from_documents(run):
        problems.append(f"the commit records rebuild other documents: {differing[:5]}")
    if run.rig.llm.calls_after_commit:
        problems.append(f"LLM re-called after commit: {run.rig.llm.calls_after_commit}")
    if len(run.rig.queue):
        problems.append("messages left in the queue")
    return problems


def history_seqs(run: ScenarioRun) -> list[int]:
    return sorted({e["seq"] for e in run.rig.content.read(history_stream(run.swarm_id))})


def assert_completed(run: ScenarioRun) -> None:
    got = run.rig.store.get_swarm(run.swarm_id)
    assert got is not None
    assert got.value.status == SwarmStatus.COMPLETED, got.value.error
    nodes = run.rig.store.list_nodes(run.swarm_id)
    chats = {n.node_id: run.rig.content.read(chat_stream(run.swarm_id, n.node_id)) for n in nodes}
    assert chat_seq_behind(nodes, chats) == [], "a node's chat ends after its chat_seq"


def emulator_storage(
    stack_settings: dict[str, str], prefix: str
) -> tuple[CosmosClients, BlobContentStore]:
    """A Cosmos DB database and a blob container of their own on the emulators (named `prefix`
    and a random suffix), created: a run that reuses swarm ids shares no storage with another."""
    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    settings = Settings(**stack_settings, COSMOS_DATABASE=name, SWARM_CONTAINER=name)
    clients = CosmosClients(settings)
    clients.ensure_containers()
    content = BlobContentStore(settings)
    content.ensure_container()
    return clients, content
