"""End to end over real HTTP and WebSocket: the dev host serving `function_app.py` on the local
emulators (Azurite, the Cosmos DB server, the Web PubSub dev emulator), a client written from
DESIGN.md §6 only, and the official `azure-messaging-webpubsubclient` receiving the events.

The whole flow runs twice: in key mode (connection strings, as a developer runs it) and in
identity mode, the deployed configuration: the settings of infra/app/api.bicep (no key), the app
in production mode, the dev host's queue trigger and every SDK client signing in with the managed
identity that devstack serves, against emulators that have local auth off. The identity run then
reads what every emulator received and requires that each request carried a bearer token from
the development identity, never an account key or a signature made with one."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import jwt
import pytest
from azure.messaging.webpubsubclient import WebPubSubClient, WebPubSubClientCredential
from azure.messaging.webpubsubclient.models import OnGroupDataMessageArgs

from devstack.identity import DEV_CLIENT_ID, DevCredential
from devstack.stack import StackInfo
from swarm_core.adapters.blob import BlobContentStore
from swarm_core.adapters.cosmos import CosmosClients
from swarm_core.settings import Settings

pytestmark = pytest.mark.emulators

ROOT = Path(__file__).resolve().parents[2]
SMALL = {"offline_breadth": 2, "offline_depth": 1}
ANSWER = "A relaxed pace, about 900 EUR, good food and one museum a day please."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DevHost:
    """`python -m devhost` in a subprocess, as a developer runs it."""

    def __init__(self, env: dict[str, str], host_json: Path) -> None:
        self.port = free_port()
        self.env = env
        self.host_json = host_json
        self.base = f"http://127.0.0.1:{self.port}/api"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = host_json.parent / f"devhost-{self.port}.log"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devhost",
                "--port",
                str(self.port),
                "--host-json",
                str(self.host_json),
                # A killed host's in-flight messages come back after this (the host: 10 min).
                "--processing-visibility",
                "4",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.base}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
        raise AssertionError("dev host did not start:\n" + self.log.read_text()[-3000:])

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def fast_host_json(tmp: Path) -> Path:
    host_json = tmp / "host.json"
    config = json.loads((ROOT / "host.json").read_text())
    config["extensions"]["queues"].update(
        {"maxPollingInterval": "00:00:00.200", "visibilityTimeout": "00:00:01", "batchSize": 4}
    )
    host_json.write_text(json.dumps(config))
    return host_json


def own_names() -> dict[str, str]:
    """Queue, container and database of one host (other tests may share the emulators)."""
    suffix = uuid.uuid4().hex[:8]
    return {
        "SWARM_QUEUE": f"ops-{suffix}",
        "SWARM_POISON_QUEUE": f"ops-{suffix}-poison",
        "SWARM_CONTAINER": f"swarms-{suffix}",
        "COSMOS_DATABASE": f"e2e-{suffix}",
        "SIGNUPS_PER_ADDRESS_PER_HOUR": "1000",
        "MAINTENANCE_SCHEDULE": "0 0 0 1 1 *",
        "LLM_PROVIDER": "offline",
    }


@pytest.fixture(scope="module")
def host(emulator_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevHost]:
    tmp = tmp_path_factory.mktemp("e2e")
    env = {
        **os.environ,
        **emulator_stack.settings,
        **own_names(),
        "SWARM_ENV": "development",
        "AUTH_SECRET": "e2e-" + uuid.uuid4().hex * 2,
        "BCRYPT_ROUNDS": "4",
        # A killed host's held steps (run next in a step's invocation) come back after this,
        # as its in-flight messages do (`--processing-visibility`).
        "RUN_NEXT_HOLD_SECONDS": "4",
    }
    dev = DevHost(env, fast_host_json(tmp))
    dev.start()
    yield dev
    dev.stop()


# What a key-based setting is called; none of them may reach the app in identity mode.
KEY_SETTINGS = ("AzureWebJobsStorage", "COSMOS_KEY", "WEBPUBSUB_CONNECTION_STRING")


@pytest.fixture(scope="module")
def keyless_host(
    identity_stack: StackInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevHost]:
    """The dev host with the deployment's settings: production, identity-based, no key."""
    settings = {**identity_stack.settings, **own_names(), "SWARM_ENV": "production"}
    settings["AUTH_SECRET"] = "e2e-" + uuid.uuid4().hex * 2
    assert not set(KEY_SETTINGS) & set(settings)
    # In Azure the deployment creates the database, containers and queues (the app's identity has
    # data rights only); here the test does, signed in as the same identity.
    deployed = Settings(**{k: v for k, v in settings.items() if not k.startswith("IDENTITY_")})
    credential = DevCredential(identity_stack.issuer)
    CosmosClients(deployed, credential=credential).ensure_containers()
    BlobContentStore(deployed, credential=credential).ensure_container()
    env = {k: v for k, v in os.environ.items() if k not in KEY_SETTINGS}
    env.update(settings)
    # The host trusts the emulators' CA as a machine trusts an installed one.
    env["SSL_CERT_FILE"] = settings["STORAGE_CA_CERT"]
    dev = DevHost(env, fast_host_json(tmp_path_factory.mktemp("e2e-identity")))
    dev.start()
    yield dev
    dev.stop()


def http(
    host: DevHost, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{host.base}{path}", data=data, method=method)
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


def user(host: DevHost) -> str:
    name = f"u{uuid.uuid4().hex[:10]}"
    status, body = http(host, "POST", "/auth/signup", {"username": name, "password": "pw-123456"})
    assert status == 201, body
    status, body = http(host, "POST", "/auth/login", {"username": name, "password": "pw-123456"})
    assert status == 200, body
    return str(body["access_token"])


class Events:
    """The official Web PubSub client, connected with a URL from /negotiate."""

    def __init__(self, url: str) -> None:
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self.client = WebPubSubClient(
            credential=WebPubSubClientCredential(client_access_url_provider=lambda: url)
        )
        self.client.subscribe("group-message", self._on_message)
        self.client.open()

    def _on_message(self, args: OnGroupDataMessageArgs) -> None:
        data = args.data if isinstance(args.data, dict) else json.loads(args.data)
        self.queue.put(data)

    def close(self) -> None:
        self.client.close()


def answer_until_done(
    host: DevHost,
    token: str,
    swarm_id: str,
    timeout: float = 120,
    events: Events | None = None,
    until: str = "completed",
) -> dict[str, Any]:
    """Play the user: answer every node waiting for the user until the swarm is `until`."""
    answered: set[tuple[str, int]] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, swarm = http(host, "GET", f"/swarms/{swarm_id}", token=token)
        assert status == 200
        if swarm["status"] in (until, "failed"):
            return swarm
        _, chats = http(host, "GET", f"/swarms/{swarm_id}/chats", token=token)
        for chat in chats["chats"]:
            if not chat["waiting_for_user"]:
                continue
            _, msgs = http(host, "GET", f"/swarms/{swarm_id}/chats/{chat['node_id']}", token=token)
            key = (chat["node_id"], len(msgs["messages"]))
            if key in answered:
                continue
            answered.add(key)
            status, body = http(
                host,
                "POST",
                f"/swarms/{swarm_id}/chats/{chat['node_id']}/messages",
                {"content": ANSWER, "client_message_id": f"{key[0]}-{key[1]}"},
                token,
            )
            assert status in (202, 409), body
        time.sleep(0.3)
    raise AssertionError(f"swarm {swarm_id} did not finish: {swarm}")


def create(host: DevHost, token: str, config: dict[str, Any] | None = None) -> str:
    status, body = http(
        host,
        "POST",
        "/swarms",
        {"goal": "Plan a 3-day trip to Lisbon", "config": config or SMALL},
        token,
    )
    assert status == 201 and body["status"] == "created" and body["spawned"] is False
    return str(body["swarm_id"])


def assert_no_duplicates_or_gaps(host: DevHost, token: str, swarm_id: str) -> None:
    _, state = http(host, "GET", f"/swarms/{swarm_id}/state", token=token)
    _, history = http(host, "GET", f"/swarms/{swarm_id}/history?after=0&limit=1000", token=token)
    seqs = sorted({e["seq"] for e in history["events"]})
    assert seqs == list(range(1, state["seq"] + 1)), "one batch of events per step, no gap"
    keys = [(e["seq"], e["index"]) for e in history["events"]]
    assert len(keys) == len(set(keys)), "no event stored twice"
    _, chats = http(host, "GET", f"/swarms/{swarm_id}/chats", token=token)
    for chat in chats["chats"]:
        _, msgs = http(host, "GET", f"/swarms/{swarm_id}/chats/{chat['node_id']}", token=token)
        ids = [m["message_id"] for m in msgs["messages"]]
        assert len(ids) == len(set(ids)), "no chat message twice"
        roles = [m["role"] for m in msgs["messages"]]
        assert roles[0] == "agent" and roles.count("user") >= 1


def test_a_whole_swarm_with_live_events(host: DevHost) -> None:
    a_whole_swarm_with_live_events(host)


def test_a_whole_swarm_keyless_with_the_managed_identity_only(
    keyless_host: DevHost, identity_stack: StackInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The browser's side: the negotiated URL is wss:// on the emulator's certificate.
    monkeypatch.setenv("WEBSOCKET_CLIENT_CA_BUNDLE", identity_stack.settings["WEBPUBSUB_CA_CERT"])
    a_whole_swarm_with_live_events(keyless_host)

    # Every request any emulator got carried a token of the app's managed identity.
    seen = emulator_authorizations(identity_stack.state_dir)
    issuer = identity_stack.issuer
    audiences: dict[str, set[str]] = {}
    for service, requests in seen.items():
        assert requests, f"{service} saw no request"
        for method, path, authorization in requests:
            assert "SharedKey" not in authorization and "type=master" not in authorization
            if not authorization and method == "GET" and path.rstrip("/") in STACK_PROBES:
                continue  # devstack's readiness probe: anonymous, it carries nothing
            bearer = bearer_token(service, authorization)
            assert bearer, (service, method, path, authorization[:40])
            assert jwt.get_unverified_header(bearer)["kid"] == "devstack"
            try:
                claims = issuer.verify(bearer)  # signed by the development issuer ...
            except jwt.PyJWTError as exc:
                raise AssertionError((service, method, path, str(exc))) from exc
            assert claims["appid"] == DEV_CLIENT_ID  # ... for the app's identity
            audiences.setdefault(service, set()).add(claims["aud"])
    assert audiences["storage"] == {"https://storage.azure.com"}
    assert audiences["webpubsub"] == {"https://webpubsub.azure.com"}
    assert audiences["cosmos"] == {"https://127.0.0.1"}  # the account's own scope
    # Negotiation asked the service for the client token: the app holds no key to sign one.
    assert any(path.endswith("/:generateToken") for _, path, _ in seen["webpubsub"])
    # Blob and queue requests both went by bearer (the trigger's polling among them).
    paths = {path for _, path, _ in seen["storage"]}
    assert any("/messages" in path for path in paths)


# devstack asks each emulator `GET /` (anonymously) to know it is up.
STACK_PROBES = ("", "https://127.0.0.1")


def emulator_authorizations(state_dir: Path) -> dict[str, list[tuple[str, str, str]]]:
    """(method, path, Authorization) of each request the emulators logged (`record_auth`)."""
    seen: dict[str, list[tuple[str, str, str]]] = {"storage": [], "cosmos": [], "webpubsub": []}
    for service, name in (("cosmos", "cosmos-auth.log"), ("webpubsub", "webpubsub-auth.log")):
        for line in (state_dir / name).read_text().splitlines():
            entry = json.loads(line)
            seen[service].append((entry["method"], entry["path"], entry["authorization"]))
    # Azurite's debug log: "... RequestMethod=GET RequestURL=... RequestHeaders:{...} ClientIP=".
    pattern = re.compile(r"RequestMethod=(\S+) RequestURL=(\S+) RequestHeaders:(\{.*\}) ClientIP=")
    for line in (state_dir / "azurite-debug.log").read_text(errors="replace").splitlines():
        match = pattern.search(line)
        if match:
            headers = json.loads(match.group(3))
            seen["storage"].append(
                (match.group(1), match.group(2), headers.get("authorization", ""))
            )
    return seen


def bearer_token(service: str, authorization: str) -> str:
    """The JWT of an Entra ID authorization as each service's protocol carries it, else ""."""
    if service == "cosmos":
        fields = parse_qs(unquote(authorization))
        if fields.get("type") == ["aad"] and fields.get("ver") == ["1.0"]:
            return fields.get("sig", [""])[0]
        return ""
    scheme, _, token = authorization.partition(" ")
    return token if scheme == "Bearer" else ""


def a_whole_swarm_with_live_events(host: DevHost) -> None:
    token = user(host)
    status, me = http(host, "GET", "/me", token=token)
    assert status == 200 and me["user_id"]
    swarm_id = create(host, token)
    status, neg = http(host, "GET", f"/negotiate?swarm_id={swarm_id}", token=token)
    assert status == 200 and neg["url"].startswith("ws")
    events = Events(neg["url"])
    try:
        status, body = http(host, "POST", f"/swarms/{swarm_id}/spawn", token=token)
        assert status == 202 and body == {"swarm_id": swarm_id, "status": "running"}
        final = answer_until_done(host, token, swarm_id)
        assert final["status"] == "completed" and final["final_report"]
        received: list[dict[str, Any]] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                received.append(events.queue.get(timeout=0.5))
            except queue.Empty:
                if any(e["type"] == "swarm.completed" for e in received):
                    break
    finally:
        events.close()
    types = {e["type"] for e in received}
    assert {"node.spawned", "chat.message", "swarm.completed", "swarm.status"} <= types
    seqs = sorted({e["seq"] for e in received})
    assert seqs == list(range(seqs[0], final["seq"] + 1)), "live events carry seq without gaps"
    # A client that missed events (here: it drops seqs 3..6) catches up from the history.
    kept = {(e["seq"], e["index"]) for e in received if not 3 <= e["seq"] <= 6}
    _, page = http(host, "GET", f"/swarms/{swarm_id}/history?after=2&limit=1000", token=token)
    filled = kept | {(e["seq"], e["index"]) for e in page["events"]}
    assert filled == {(e["seq"], e["index"]) for e in received}
    assert_no_duplicates_or_gaps(host, token, swarm_id)


def test_another_user_cannot_see_or_negotiate(host: DevHost) -> None:
    owner, intruder = user(host), user(host)
    swarm_id = create(host, owner)
    for method, path in [
        ("GET", f"/swarms/{swarm_id}"),
        ("POST", f"/swarms/{swarm_id}/spawn"),
        ("GET", f"/swarms/{swarm_id}/history"),
        ("DELETE", f"/swarms/{swarm_id}"),
        ("GET", f"/negotiate?swarm_id={swarm_id}"),
    ]:
        status, body = http(host, method, path, token=intruder)
        assert status == 404, (method, path, body)
    assert http(host, "GET", f"/swarms/{swarm_id}", token=owner)[0] == 200
    status, body = http(host, "POST", "/swarms", {"goal": 3}, owner)
    assert status == 422 and body["status"] == 422


def test_pause_parks_work_and_resume_finishes_it(host: DevHost) -> None:
    token = user(host)
    swarm_id = create(host, token)
    http(host, "POST", f"/swarms/{swarm_id}/spawn", token=token)
    status, body = http(host, "POST", f"/swarms/{swarm_id}/pause", token=token)
    assert status == 202 and body["status"] == "paused"
    time.sleep(2)  # queued work arrives while paused and is parked
    _, paused = http(host, "GET", f"/swarms/{swarm_id}", token=token)
    assert paused["status"] == "paused"
    seq = paused["seq"]
    time.sleep(1)
    assert http(host, "GET", f"/swarms/{swarm_id}", token=token)[1]["seq"] == seq
    assert http(host, "POST", f"/swarms/{swarm_id}/pause", token=token)[0] == 409
    status, body = http(host, "POST", f"/swarms/{swarm_id}/resume", token=token)
    assert status == 202 and body["status"] == "running"
    assert answer_until_done(host, token, swarm_id)["status"] == "completed"
    assert_no_duplicates_or_gaps(host, token, swarm_id)


def test_killing_the_host_mid_run_loses_and_duplicates_nothing(host: DevHost) -> None:
    token = user(host)
    swarm_id = create(host, token, {"offline_breadth": 3, "offline_depth": 2})
    http(host, "POST", f"/swarms/{swarm_id}/spawn", token=token)
    deadline = time.monotonic() + 60
    while http(host, "GET", f"/swarms/{swarm_id}", token=token)[1]["seq"] < 4:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    host.kill()  # mid-run: messages in flight, maybe a commit half applied
    host.start()
    assert answer_until_done(host, token, swarm_id)["status"] == "completed"
    assert_no_duplicates_or_gaps(host, token, swarm_id)


def test_five_answers_at_once_are_all_kept_and_all_seen(host: DevHost) -> None:
    """Five different answers posted at the same moment to one waiting node: five 202s, five
    messages in the chat in seq order, every one given to the node; posted again with their
    client ids, nothing changes."""
    token = user(host)
    swarm_id = create(host, token)
    http(host, "POST", f"/swarms/{swarm_id}/spawn", token=token)
    deadline = time.monotonic() + 60
    while True:
        _, open_ = http(host, "GET", f"/swarms/{swarm_id}/interrupts?status=open", token=token)
        if open_["items"]:
            break
        assert time.monotonic() < deadline, "no question came"
        time.sleep(0.1)
    node_id = open_["items"][0]["node_id"]
    # Paused, the node cannot resume in between: it must get all five answers at once.
    assert http(host, "POST", f"/swarms/{swarm_id}/pause", token=token)[0] == 202
    path = f"/swarms/{swarm_id}/chats/{node_id}/messages"
    bodies = [
        {
            "content": f"Answer {i}: a relaxed pace, about 900 EUR, good food",
            "client_message_id": f"a{i}",
        }
        for i in range(5)
    ]

    def post_all() -> list[tuple[int, Any]]:
        results: list[tuple[int, Any]] = [(0, None)] * len(bodies)
        barrier = threading.Barrier(len(bodies))

        def post(i: int) -> None:
            barrier.wait()
            results[i] = http(host, "POST", path, bodies[i], token)

        threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        return results

    first = post_all()
    assert [status for status, _ in first] == [202] * 5, first
    _, chat = http(host, "GET", f"/swarms/{swarm_id}/chats/{node_id}", token=token)
    users = [m for m in chat["messages"] if m["role"] == "user"]
    assert sorted(m["message_id"] for m in users) == sorted(b["message_id"] for _, b in first)
    assert [m["seq"] for m in users] == sorted(m["seq"] for m in users)
    assert {m["seq"] for m in users} == {b["seq"] for _, b in first}
    again = post_all()
    assert [(s, b["message_id"], b["seq"]) for s, b in again] == [
        (s, b["message_id"], b["seq"]) for s, b in first
    ]
    assert http(host, "POST", f"/swarms/{swarm_id}/resume", token=token)[0] == 202
    answer_until_done(host, token, swarm_id)
    _, chat = http(host, "GET", f"/swarms/{swarm_id}/chats/{node_id}", token=token)
    assert len([m for m in chat["messages"] if m["role"] == "user"]) == 5, "nothing new"
    _, node = http(host, "GET", f"/swarms/{swarm_id}/nodes/{node_id}", token=token)
    said = " ".join(m["content"] for m in node["context"]["conversation"] if m["role"] == "user")
    assert all(b["content"] in said for b in bodies), "the node saw every answer"
    assert_no_duplicates_or_gaps(host, token, swarm_id)


def test_a_fork_mid_run_replays_the_recorded_answers(host: DevHost) -> None:
    """Over HTTP on the dev host and the emulators: a swarm forked while a question is open
    holds the source's tree and chats as they were, and, resumed and answered the same way,
    reaches the same final report without a model call (every journal entry after the fork
    point says "reused")."""
    token = user(host)
    swarm_id = create(host, token)
    http(host, "POST", f"/swarms/{swarm_id}/spawn", token=token)
    done = answer_until_done(host, token, swarm_id)
    assert done["status"] == "completed"
    _, history = http(host, "GET", f"/swarms/{swarm_id}/history?after=0&limit=1000", token=token)
    at = next(e["seq"] for e in history["events"] if e["type"] == "interrupt.opened")
    other = user(host)
    assert http(host, "POST", f"/swarms/{swarm_id}/fork", {"at": at}, other)[0] == 404
    status, fork = http(host, "POST", f"/swarms/{swarm_id}/fork", {"at": at}, token)
    assert status == 201, fork
    fork_id = fork["swarm_id"]
    assert fork["status"] == "paused" and fork["forked_from"] == {"swarm_id": swarm_id, "seq": at}
    for seq in range(1, at + 1):
        mine = http(host, "GET", f"/swarms/{fork_id}/state?at={seq}", token=token)[1]
        theirs = http(host, "GET", f"/swarms/{swarm_id}/state?at={seq}", token=token)[1]
        assert mine["nodes"] == theirs["nodes"], seq
    _, interrupts = http(host, "GET", f"/swarms/{fork_id}/interrupts", token=token)
    assert interrupts["items"], "the question open after step `at` is open in the fork"
    assert http(host, "POST", f"/swarms/{fork_id}/resume", token=token)[0] == 202
    finished = answer_until_done(host, token, fork_id)
    assert finished["status"] == "completed"
    assert finished["final_report"] == done["final_report"]
    assert_no_duplicates_or_gaps(host, token, fork_id)
    _, state = http(host, "GET", f"/swarms/{fork_id}/state", token=token)
    journal = [
        entry
        for node in state["nodes"]
        for entry in http(host, "GET", f"/swarms/{fork_id}/nodes/{node['node_id']}", token=token)[
            1
        ]["journal"]
        if entry["seq"] > at
    ]
    assert journal and all("reused" in entry["message"] for entry in journal)
    # The source is as it was.
    assert http(host, "GET", f"/swarms/{swarm_id}", token=token)[1] == done


def test_a_rerun_branch_runs_again_and_its_parent_reviews_the_new_report(host: DevHost) -> None:
    """Only the root's own question is answered, so the swarm cannot finish while a finished
    branch is paused and rerun; then the new node runs, and the final report has its report."""
    owner, intruder = user(host), user(host)
    swarm_id = create(host, owner, {"offline_breadth": 3, "offline_depth": 2})
    http(host, "POST", f"/swarms/{swarm_id}/spawn", token=owner)
    deadline, answered = time.monotonic() + 60, False
    while True:
        assert time.monotonic() < deadline, "no branch finished"
        _, state = http(host, "GET", f"/swarms/{swarm_id}/state", token=owner)
        done = [
            n
            for n in state["nodes"]
            if n["depth"] == 1 and n["action"] != "ask_user" and n["lifecycle"] == "terminated"
        ]
        if done:
            break
        _, open_ = http(host, "GET", f"/swarms/{swarm_id}/interrupts", token=owner)
        for question in open_["items"]:
            if question["node_name"] == "Clarify preferences" and not answered:
                path = f"/swarms/{swarm_id}/chats/{question['node_id']}/messages"
                assert http(host, "POST", path, {"content": ANSWER}, owner)[0] == 202
                answered = True
        time.sleep(0.1)
    old = done[0]
    path = f"/swarms/{swarm_id}/nodes/{old['node_id']}/rerun"
    directive = {"directive": "Find cheap and cheerful places to eat near the river"}
    status, body = http(host, "POST", path, directive, owner)
    assert status == 409 and "pause it first" in body["detail"]
    assert http(host, "POST", f"/swarms/{swarm_id}/pause", token=owner)[0] == 202
    assert http(host, "POST", path, directive, intruder)[0] == 404
    status, rerun = http(host, "POST", path, directive, owner)
    assert status == 202 and rerun["status"] == "paused", rerun
    assert http(host, "POST", path, directive, owner) == (202, rerun), "asked again: the same"
    _, state = http(host, "GET", f"/swarms/{swarm_id}/state", token=owner)
    ids = {n["node_id"] for n in state["nodes"]}
    assert old["node_id"] not in ids and not set(old["children_ids"]) & ids
    root = next(n for n in state["nodes"] if n["parent_id"] is None)
    assert rerun["new_node_id"] in root["children_ids"]
    assert http(host, "POST", f"/swarms/{swarm_id}/resume", token=owner)[0] == 202
    swarm = answer_until_done(host, owner, swarm_id)
    assert swarm["status"] == "completed", swarm
    _, new = http(host, "GET", f"/swarms/{swarm_id}/nodes/{rerun['new_node_id']}", token=owner)
    assert new["directive"] == directive["directive"] and new["lifecycle"] == "terminated"
    assert new["report"].splitlines()[0] in swarm["final_report"]
    assert http(host, "GET", f"/swarms/{swarm_id}/nodes/{old['node_id']}", token=owner)[0] == 404
    _, history = http(host, "GET", f"/swarms/{swarm_id}/history?after=0&limit=1000", token=owner)
    reruns = [e for e in history["events"] if e["type"] == "node.rerun"]
    assert [e["data"]["new_node_id"] for e in reruns] == [rerun["new_node_id"]]
    assert_no_duplicates_or_gaps(host, owner, swarm_id)
