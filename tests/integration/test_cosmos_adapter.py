"""The Cosmos DB stores beyond the contract suite: lost commits, container setup, credentials and
the number of round trips each port method costs (the worker pays them on every step)."""

from __future__ import annotations

import json
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.pipeline.transport import RequestsTransport
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from devstack.stack import StackInfo
from swarm_core.adapters import sdk_http
from swarm_core.adapters.cosmos import (
    INDEXED_PATHS,
    NODES,
    PARTITION_KEYS,
    CosmosClients,
    CosmosSwarmStore,
    CosmosUserStore,
    cosmos_credential,
    node_item_changes,
    patch_operations,
)
from swarm_core.forks import changes
from swarm_core.models import (
    Continuation,
    Interrupt,
    InterruptStatus,
    Lifecycle,
    Node,
    Usage,
    User,
)
from swarm_core.ports import CommitChanges, ConflictError, NodeChanges
from swarm_core.settings import Settings
from swarm_core.swarm import Swarm, SwarmSummary

pytestmark = pytest.mark.emulators

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


# Outcomes the SDK retries on its own (a dropped connection, throttling, a timeout, an
# unavailable replica): the machine's weather, not what a method costs.
TRANSIENT = {"connection error", "408", "429", "449", "503"}


class CountingTransport(RequestsTransport):  # type: ignore[misc]
    """Counts the HTTP requests the SDK sends: one per round trip. `requests` has them all;
    `retried` those that ended in an outcome the SDK retries (they do not count as a cost)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.requests: list[str] = []
        self.bodies: list[Any] = []
        self.retried: list[str] = []

    def send(self, request: Any, **kwargs: Any) -> Any:
        line = f"{request.method} {request.url}"
        self.requests.append(line)
        self.bodies.append(request.body)
        try:
            response = super().send(request, **kwargs)
        except Exception:
            self.retried.append(f"{line}: connection error")
            raise
        if str(response.status_code) in TRANSIENT:
            self.retried.append(f"{line}: {response.status_code}")
        return response


def _settings(stack: StackInfo, database: str) -> Settings:
    return Settings(**stack.settings, COSMOS_DATABASE=database)


@pytest.fixture(scope="module")
def database(emulator_stack: StackInfo) -> str:
    """A database of this module's own, with its containers."""
    name = _id("cosmos-adapter-")
    CosmosClients(_settings(emulator_stack, name)).ensure_containers()
    return name


@pytest.fixture()
def counted(emulator_stack: StackInfo, database: str) -> Iterator[tuple[CosmosClients, Any]]:
    transport = CountingTransport()
    clients = CosmosClients(
        _settings(emulator_stack, database), client_options={"transport": transport}
    )
    yield clients, transport


def a_swarm() -> Swarm:
    return Swarm(swarm_id=_id("s"), user_id=_id("u"), goal="g", created_at=T0, updated_at=T0)


# ------------------------------------------------------------------------------ lost commits


def test_a_commit_that_loses_to_another_writer_is_a_conflict_error(
    emulator_stack: StackInfo, database: str
) -> None:
    ours = CosmosSwarmStore(CosmosClients(_settings(emulator_stack, database)))
    theirs = CosmosSwarmStore(CosmosClients(_settings(emulator_stack, database)))  # another worker
    swarm = a_swarm()
    ours.create_swarm(swarm)
    read = ours.get_swarm(swarm.swarm_id)
    assert read is not None

    theirs.replace_swarm(read.value.model_copy(update={"seq": 1, "goal": "theirs"}), read.etag)
    with pytest.raises(ConflictError) as lost:
        ours.replace_swarm(read.value.model_copy(update={"seq": 1, "goal": "ours"}), read.etag)
    assert getattr(lost.value.__cause__, "status_code", None) == 412
    after = ours.get_swarm(swarm.swarm_id)
    assert after is not None and after.value.goal == "theirs"

    # A swarm deleted under a step: the commit loses the same way (404), it never crashes.
    ours.delete_swarm(swarm.swarm_id)
    with pytest.raises(ConflictError) as gone:
        ours.replace_swarm(after.value.model_copy(update={"seq": 2}), after.etag)
    assert getattr(gone.value.__cause__, "status_code", None) == 404


def test_etags_are_passed_on_as_the_service_gives_them(
    emulator_stack: StackInfo, database: str
) -> None:
    clients = CosmosClients(_settings(emulator_stack, database))
    store, raw = CosmosSwarmStore(clients), clients.container(NODES)
    swarm = a_swarm()
    created = store.create_swarm(swarm)
    assert created == raw.read_item("swarm", partition_key=swarm.swarm_id)["_etag"]
    replaced = store.replace_swarm(swarm.model_copy(update={"seq": 1}), created)
    assert replaced == raw.read_item("swarm", partition_key=swarm.swarm_id)["_etag"]
    got = store.get_swarm(swarm.swarm_id)
    assert got is not None and got.etag == replaced and got.value.seq == 1


# ------------------------------------------------------------------- commits that write changes


def committed(store: CosmosSwarmStore, swarm: Swarm, node: Node) -> tuple[Swarm, str]:
    """The swarm and its node stored by a first commit (whole documents); the new ETag."""
    etag = store.create_swarm(swarm)
    first = swarm.model_copy(update={"seq": 1})
    return first, store.replace_swarm(first, etag, [node.model_copy(update={"seq": 1})])


def commit_changes(old: Swarm, new: Swarm, read: Node, written: Node) -> CommitChanges:
    """What the committer gives the store: the changes from the documents read."""
    swarm = changes(old.model_dump(mode="json"), new.model_dump(mode="json"))
    node = changes(read.model_dump(mode="json"), written.model_dump(mode="json"))
    return CommitChanges(swarm, {read.node_id: NodeChanges(read.seq, node)})


def a_talking_node(**fields: Any) -> Node:
    """A node deep in a conversation: a full window of 300-character turns, 64 recent op ids."""
    defaults: dict[str, Any] = {
        "node_id": "n1",
        "swarm_id": _id("s"),
        "action": "ask_user",
        "name": "n",
        "directive": "d",
        "context": {"conversation": [{"role": "agent", "content": "q" * 300}] * 6},
        "recent_op_ids": [f"op{i:02d}" for i in range(64)],
    }
    return Node(**{**defaults, **fields})


def test_a_commit_patches_what_changed_and_stores_the_documents_it_was_given(
    counted: tuple[CosmosClients, CountingTransport],
) -> None:
    clients, transport = counted
    store = CosmosSwarmStore(clients)
    node = a_talking_node(
        context={"conversation": [{"role": "agent", "content": "q" * 300}] * 6, "a/b~c": 1},
        execution_memory={"follow_ups": 1, "gone": True},
    )
    window = node.recent_op_ids
    swarm, etag = committed(store, a_swarm().model_copy(update={"swarm_id": node.swarm_id}), node)
    read = store.get_node(swarm.swarm_id, "n1")
    assert read is not None
    # A step's changes: a window slid on, keys set, merged (one needing escapes) and unset.
    conversation = [*read.value.context["conversation"][1:], {"role": "user", "content": "a"}]
    written = read.value.model_copy(
        update={
            "seq": 2,
            "context": {**read.value.context, "conversation": conversation, "a/b~c": 2},
            "execution_memory": {"follow_ups": 2},
            "recent_op_ids": [*window[1:], "op64"],
        }
    )
    new = swarm.model_copy(update={"seq": 2, "goal": "g2"})
    transport.requests.clear()
    transport.bodies.clear()
    sent = commit_changes(swarm, new, read.value, written)
    etag = store.replace_swarm(new, etag, [written], changes=sent)
    [batch] = [json.loads(body) for body in transport.bodies]  # one request: the batch
    # Patched, not written whole: the window's 64 ids and 300-character turns stay home.
    assert [op["operationType"] for op in batch] == ["Patch", "Patch"]
    assert len(json.dumps(batch)) < len(written.model_dump_json()) / 2
    assert store.get_node(swarm.swarm_id, "n1").value == written  # type: ignore[union-attr]
    assert store.get_swarm(swarm.swarm_id).value == new  # type: ignore[union-attr]

    # More changes than one patch takes: the parts that take the most operations for their
    # size are set whole (here the twelve keys of `execution_memory`, as one operation).
    many = written.model_copy(
        update={"seq": 3, "execution_memory": {f"k{i}": i for i in range(12)}}
    )
    newer = new.model_copy(update={"seq": 3})
    sent = commit_changes(new, newer, written, many)
    assert patch_operations(node_item_changes(sent.nodes["n1"].changes)) is None
    transport.bodies.clear()
    etag = store.replace_swarm(newer, etag, [many], changes=sent)
    [batch] = [json.loads(body) for body in transport.bodies]
    patch = batch[1]["resourceBody"]["operations"]
    assert {"op": "set", "path": "/execution_memory", "value": many.execution_memory} in patch
    assert store.get_node(swarm.swarm_id, "n1").value == many  # type: ignore[union-attr]

    # A document older than the model (no `execution_memory` stored): a patch into the part
    # it lacks is refused by the service, and the commit goes again, whole.
    older = {**many.model_dump(mode="json"), "id": "node:n1"}
    del older["execution_memory"]
    clients.container(NODES).upsert_item(older)
    read = store.get_node(swarm.swarm_id, "n1")
    # The model's default stands in for it.
    assert read is not None and read.value == many.model_copy(update={"execution_memory": {}})
    grown = many.model_copy(update={"seq": 4, "execution_memory": {"k0": 1}})
    newer, old = newer.model_copy(update={"seq": 4}), newer
    sent = commit_changes(old, newer, read.value, grown)
    assert patch_operations(sent.nodes["n1"].changes) is not None
    etag = store.replace_swarm(newer, etag, [grown], changes=sent)
    assert store.get_node(swarm.swarm_id, "n1").value == grown  # type: ignore[union-attr]
    assert "execution_memory" in clients.container(NODES).read_item("node:n1", swarm.swarm_id)
    many = grown

    # A node not as the commit read it (written outside a commit): refused, nothing written.
    clients.container(NODES).upsert_item(
        {**many.model_dump(mode="json"), "seq": 9, "id": "node:n1"}
    )
    stale = many.model_copy(update={"seq": 5, "name": "m"})
    newest = newer.model_copy(update={"seq": 5})
    with pytest.raises(ConflictError):
        store.replace_swarm(
            newest, etag, [stale], changes=commit_changes(newer, newest, many, stale)
        )
    assert store.get_swarm(swarm.swarm_id).value == newer  # type: ignore[union-attr]
    assert store.get_node(swarm.swarm_id, "n1").value.seq == 9  # type: ignore[union-attr]


def test_a_step_that_asks_again_is_one_patch_with_its_progress_set_whole(
    counted: tuple[CosmosClients, CountingTransport],
) -> None:
    """An llm step that asks the user again changes some twenty properties of its node: its
    progress fields (lifecycle, continuation, chat counters, times), conversation window,
    interrupt, usage, memory and recent op ids. It is still one patch, a fraction of the node."""
    clients, transport = counted
    store = CosmosSwarmStore(clients)
    asked = Interrupt(
        interrupt_id="i1", node_id="n1", node_name="n", question="q" * 300, created_at=T0
    )
    node = a_talking_node(
        lifecycle=Lifecycle.RUNNING,
        execution_memory={"follow_ups": 1},
        interrupt=asked.model_copy(
            update={
                "status": InterruptStatus.ANSWERED,
                "answer_message_ids": ["m1"],
                "answered_at": T0,
            }
        ),
        chat_length=2,
        chat_seq=1,
    )
    window = node.recent_op_ids
    swarm, etag = committed(store, a_swarm().model_copy(update={"swarm_id": node.swarm_id}), node)
    stored = clients.container(NODES).read_item("node:n1", swarm.swarm_id)
    assert stored["progress"]["lifecycle"] == "running" and "lifecycle" not in stored
    read = store.get_node(swarm.swarm_id, "n1")
    assert read is not None and read.value == node.model_copy(update={"seq": 1})

    question = {"role": "agent", "content": "r" * 300}
    later = T0 + timedelta(minutes=1)
    written = read.value.model_copy(
        update={
            "seq": 2,
            "lifecycle": Lifecycle.WAITING_FOR_USER,
            "continuation": Continuation(function_to_call="on_answer"),
            "context": {"conversation": [*read.value.context["conversation"][1:], question]},
            "execution_memory": {"follow_ups": 2},
            "usage": Usage(prompt_tokens=10, completion_tokens=5, llm_calls=1),
            "interrupt": asked.model_copy(
                update={"interrupt_id": "i2", "question": "r" * 300, "created_at": later}
            ),
            "recent_op_ids": [*window[1:], "op64"],
            "chat_length": 3,
            "chat_seq": 2,
            "last_message_at": later,
            "updated_at": later,
        }
    )
    new = swarm.model_copy(update={"seq": 2})
    sent = commit_changes(swarm, new, read.value, written)
    assert patch_operations(node_item_changes(sent.nodes["n1"].changes)) is None, "over 10"
    transport.bodies.clear()
    store.replace_swarm(new, etag, [written], changes=sent)
    [batch] = [json.loads(body) for body in transport.bodies]
    assert [op["operationType"] for op in batch] == ["Patch", "Patch"]
    operations = batch[1]["resourceBody"]["operations"]
    assert len(operations) <= 10
    assert {op["path"] for op in operations} >= {"/progress", "/interrupt", "/usage"}
    assert len(json.dumps(batch[1])) < len(written.model_dump_json()) / 2
    assert store.get_node(swarm.swarm_id, "n1").value == written  # type: ignore[union-attr]


# --------------------------------------------------------------------------- container setup


def test_ensure_containers_is_idempotent(emulator_stack: StackInfo) -> None:
    clients = CosmosClients(_settings(emulator_stack, _id("ensure-")))
    clients.ensure_containers()
    clients.ensure_containers()
    CosmosClients(_settings(emulator_stack, clients.database_name)).ensure_containers()
    database = clients.client().get_database_client(clients.database_name)
    found = {c["id"]: c["partitionKey"]["paths"] for c in database.list_containers()}
    assert found == {name: [path] for name, path in PARTITION_KEYS.items()}
    # Each indexes only what the queries use (as Bicep declares it).
    policies = {c["id"]: c["indexingPolicy"] for c in database.list_containers()}
    for name, paths in INDEXED_PATHS.items():
        assert [p["path"] for p in policies[name]["includedPaths"]] == list(paths)
        assert policies[name]["excludedPaths"] == [{"path": "/*"}]


def test_stores_do_not_connect_until_used() -> None:
    made: list[Any] = []
    clients = CosmosClients(
        Settings(COSMOS_ENDPOINT="https://127.0.0.1:1", COSMOS_KEY="a2V5"),
        client_factory=lambda *a, **k: made.append(a),
    )
    CosmosSwarmStore(clients)
    CosmosUserStore(clients)
    assert made == []


# ------------------------------------------------------------------------------- credentials


def test_managed_identity_builds_a_keyless_client_with_default_azure_credential() -> None:
    settings = Settings(
        COSMOS_ENDPOINT="https://swarm-account.documents.azure.com:443/",
        AZURE_CLIENT_ID="00000000-0000-0000-0000-000000000001",
    )
    assert settings.cosmos_key is None
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def client_factory(*args: Any, **kwargs: Any) -> object:
        calls.append((args, kwargs))
        return object()

    clients = CosmosClients(settings, client_factory=client_factory)  # type: ignore[arg-type]
    first = clients.client()
    assert clients.client() is first, "one client per thread"
    [(args, kwargs)] = calls
    endpoint, credential = args
    assert endpoint == "https://swarm-account.documents.azure.com:443/"
    assert isinstance(credential, DefaultAzureCredential)
    assert any(isinstance(c, ManagedIdentityCredential) for c in credential.credentials)
    assert set(kwargs) == {"transport", "timeout", "connection_timeout", "read_timeout"}
    assert kwargs["timeout"] == sdk_http.OPERATION_TIMEOUT_SECONDS, "every call is bounded"


def test_a_key_is_used_when_set() -> None:
    settings = Settings(COSMOS_ENDPOINT="https://127.0.0.1:8081", COSMOS_KEY="a2V5")
    assert cosmos_credential(settings) == "a2V5"


# ------------------------------------------------------------------------------- round trips


def test_round_trips_per_method(counted: tuple[CosmosClients, CountingTransport]) -> None:
    clients, transport = counted
    store, users = CosmosSwarmStore(clients), CosmosUserStore(clients)
    # The first call on each container also reads its definition (once per process).
    warm = a_swarm()
    store.create_swarm(warm)
    store.put_summary(warm.summary())
    users.get_user(_id("nobody"))

    swarm = a_swarm()
    node = Node(node_id="n1", swarm_id=swarm.swarm_id, action="execute", name="n", directive="d")
    node2 = node.model_copy(update={"node_id": "n2"})
    user = User(user_id=_id("u"), username=_id("alice"), password_hash="$2b$12$hash")
    summary = swarm.summary()
    costs: dict[str, int] = {}
    sent: dict[str, list[str]] = {}  # shown when the costs differ

    def trips(name: str, call: Any) -> Any:
        before, retried = len(transport.requests), len(transport.retried)
        result = call()
        costs[name] = len(transport.requests) - before - (len(transport.retried) - retried)
        sent[name] = transport.requests[before:] + transport.retried[retried:]
        return result

    trips("create_swarm", lambda: store.create_swarm(swarm))
    read = trips("get_swarm", lambda: store.get_swarm(swarm.swarm_id))
    etag = trips("replace_swarm", lambda: store.replace_swarm(swarm, read.etag))
    etag = trips("replace_swarm(+nodes)", lambda: store.replace_swarm(swarm, etag, [node, node2]))
    trips("get_node", lambda: store.get_node(swarm.swarm_id, "n1"))
    trips("list_nodes", lambda: store.list_nodes(swarm.swarm_id))
    trips("put_summary(new)", lambda: store.put_summary(summary))
    newer: SwarmSummary = summary.model_copy(update={"seq": 2})
    trips("put_summary(update)", lambda: store.put_summary(newer))
    trips("put_summary(older)", lambda: store.put_summary(summary))
    trips("get_summary", lambda: store.get_summary(swarm.user_id, swarm.swarm_id))
    trips("list_summaries", lambda: store.list_summaries(swarm.user_id, 10))
    trips("delete_summary", lambda: store.delete_summary(swarm.user_id, swarm.swarm_id))
    trips("create_user", lambda: users.create_user(user))
    trips("get_user", lambda: users.get_user(user.username))
    trips("delete_swarm", lambda: store.delete_swarm(swarm.swarm_id))

    assert costs == {
        "create_swarm": 1,
        "get_swarm": 1,
        "replace_swarm": 1,
        "replace_swarm(+nodes)": 1,  # one transactional batch
        "get_node": 1,
        "list_nodes": 1,
        "put_summary(new)": 2,  # read, create
        "put_summary(update)": 2,  # read, conditional replace
        "put_summary(older)": 1,  # read only: the stored one is newer
        "get_summary": 1,
        "list_summaries": 1,
        "delete_summary": 1,
        "create_user": 1,
        "get_user": 1,
        "delete_swarm": 4,  # one query, one delete per document (swarm, two nodes)
    }, sent


def test_ids_cosmos_cannot_hold_are_not_found_and_not_stored(
    counted: tuple[CosmosClients, CountingTransport],
) -> None:
    clients, transport = counted
    store, users = CosmosSwarmStore(clients), CosmosUserStore(clients)
    for bad in ("", "a/b", "..", "x?y", "a#b", "a\\b", "x" * 300):
        assert users.get_user(bad) is None
        assert store.get_summary("u1", bad) is None
        store.delete_summary("u1", bad)
        with pytest.raises(ValueError):
            users.create_user(User(user_id="u", username=bad, password_hash="h"))
    assert transport.requests == [], "refused before any round trip"


def test_a_bad_continuation_token_is_a_value_error(
    counted: tuple[CosmosClients, CountingTransport],
) -> None:
    store = CosmosSwarmStore(counted[0])
    with pytest.raises(ValueError):
        store.list_summaries("u1", 10, "not base64 !")
    with pytest.raises(ValueError):
        store.list_summaries("u1", 0)


def test_threads_sharing_the_stores_do_not_race_in_the_sdk(
    emulator_stack: StackInfo, database: str
) -> None:
    """Threads of one process (concurrent invocations of one host) share the stores. The SDK's
    client writes to the headers of its latest response after every call, so one client shared
    by threads fails now and then with `RuntimeError: OrderedDict mutated during iteration`; a
    tiny switch interval makes that interleaving likely (it failed on every run before each
    thread got its own client)."""
    store = CosmosSwarmStore(CosmosClients(_settings(emulator_stack, database)))
    errors: list[str] = []

    def work() -> None:
        try:
            for _ in range(60):
                swarm = Swarm(swarm_id=_id("race-"), user_id="u", goal="g", created_at=T0)
                store.create_swarm(swarm)
                assert store.get_swarm(swarm.swarm_id) is not None
                with pytest.raises(ConflictError):
                    store.replace_swarm(swarm, '"stale"')
                assert store.get_node(swarm.swarm_id, "missing") is None
                store.delete_swarm(swarm.swarm_id)
        except Exception as exc:  # collected, asserted on below
            errors.append(repr(exc))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []


def test_each_thread_has_a_client_of_its_own(emulator_stack: StackInfo, database: str) -> None:
    clients = CosmosClients(_settings(emulator_stack, database))
    seen: list[object] = []
    thread = threading.Thread(target=lambda: seen.append(clients.client()))
    thread.start()
    thread.join()
    assert clients.client() is clients.client()
    assert seen[0] is not clients.client()
