"""The dev host (devhost/) serving a sample app over real HTTP and a real Azurite queue.

The first tests are pure (route templates, NCRONTAB, host.json and local settings); the others
run ``tests/integration/devhost_sample_app.py`` in a host on a background thread, and once
through ``python -m devhost`` in a subprocess, against the session's emulator stack. Queue
timings come from a test host.json: visibilityTimeout 1 s, maxDequeueCount 3, polling <= 0.5 s.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from devhost import HostHandle, start_host_in_thread
from devhost.config import (
    HostConfigError,
    load_host_options,
    load_local_settings,
    parse_timespan,
    resolve_setting_refs,
)
from devhost.functions import indexed_functions
from devhost.ncrontab import parse_schedule
from devhost.queue_listener import connect
from devhost.routes import RouteTemplate
from devstack.stack import StackInfo

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_APP = "tests.integration.devhost_sample_app:app"
DEADLINE = 15.0  # seconds any single expected event may take


def wait_for(predicate: Callable[[], Any], timeout: float = DEADLINE, interval: float = 0.1) -> Any:
    """Poll until ``predicate`` returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@dataclass
class Reply:
    status: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call(method: str, url: str, body: bytes | None = None, **headers: str) -> Reply:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Reply(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, error.headers, error.read())


# ------------------------------------------------------------------------- route templates


def test_route_parameters_are_decoded_and_literals_ignore_case() -> None:
    route = RouteTemplate("swarms/{swarm_id}/chats/{node_id}")
    assert route.match("/Swarms/s%201/CHATS/n1") == {"swarm_id": "s 1", "node_id": "n1"}
    assert route.match("/swarms/s1/chats/n1/") == {"swarm_id": "s1", "node_id": "n1"}
    assert route.match("/swarms/s1/chats") is None
    assert route.match("/swarms/a%2Fb/chats/n") == {"swarm_id": "a%2Fb", "node_id": "n"}


def test_route_constraints_optional_default_and_catch_all() -> None:
    typed = RouteTemplate("items/{id:int}/{rest?}")
    assert typed.match("/items/42") == {"id": "42"}
    assert typed.match("/items/42/x") == {"id": "42", "rest": "x"}
    assert typed.match("/items/abc") is None
    assert typed.match("/items/99999999999") is None  # int is 32-bit
    assert RouteTemplate("p/{n=7}").match("/p") == {"n": "7"}
    assert RouteTemplate("files/{*path}").match("/files/a/b/c.txt") == {"path": "a/b/c.txt"}
    assert RouteTemplate("files/{*path}").match("/files") == {}
    zip_code = RouteTemplate(r"zip/{code:regex(^\d{{5}}$)}")
    assert zip_code.match("/zip/12345") == {"code": "12345"}
    assert zip_code.match("/zip/1234") is None
    assert RouteTemplate("c/{code:alpha:length(3)}").match("/c/abc") == {"code": "abc"}
    assert RouteTemplate("c/{code:alpha:length(3)}").match("/c/abcd") is None
    assert RouteTemplate("").match("") == {}


def test_route_precedence_prefers_literals_then_constraints() -> None:
    templates = [RouteTemplate(t) for t in ("items/{*rest}", "items/{id}", "items/{id:int}")]
    templates.append(RouteTemplate("items/new"))
    ordered = [t.template for t in sorted(templates, key=lambda t: t.precedence)]
    assert ordered == ["items/new", "items/{id:int}", "items/{id}", "items/{*rest}"]


def test_bad_route_templates_are_refused() -> None:
    for template in ("a/{x", "a/{x:nosuch}", "a/{x}/{x}", "a//b"):
        with pytest.raises(HostConfigError):
            RouteTemplate(template)


# ------------------------------------------------------------------------------- NCRONTAB


def _next(expression: str, after: datetime) -> datetime:
    return parse_schedule(expression).next_after(after)


def test_ncrontab_six_fields() -> None:
    at = datetime(2025, 3, 14, 12, 0, 7, 500, tzinfo=UTC)  # a Friday
    assert _next("*/15 * * * * *", at) == datetime(2025, 3, 14, 12, 0, 15, tzinfo=UTC)
    assert _next("*/1 * * * * *", at) == datetime(2025, 3, 14, 12, 0, 8, tzinfo=UTC)
    assert _next("0 */5 * * * *", at) == datetime(2025, 3, 14, 12, 5, tzinfo=UTC)
    assert _next("0 30 9 * * 1-5", at) == datetime(2025, 3, 17, 9, 30, tzinfo=UTC)  # Monday
    assert _next("0 30 9 * Jan Mon", at) == datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
    assert _next("0 0 9-17 * * *", at) == datetime(2025, 3, 14, 13, tzinfo=UTC)
    assert _next("5,10 0 0 1 * *", at) == datetime(2025, 4, 1, 0, 0, 5, tzinfo=UTC)
    assert _next("0 0 0 29 2 *", at) == datetime(2028, 2, 29, tzinfo=UTC)
    assert _next("0 0 0 31 12 *", datetime(2025, 12, 31, 1, tzinfo=UTC)) == datetime(
        2026, 12, 31, tzinfo=UTC
    )
    interval = parse_schedule("00:00:05")
    assert interval.next_after(at) == datetime(2025, 3, 14, 12, 0, 12, 500, tzinfo=UTC)


def test_ncrontab_refuses_what_the_host_refuses() -> None:
    for expression in ("* * * * *", "60 * * * * *", "* * * 30 2 *", "*/0 * * * * *", "x"):
        with pytest.raises(HostConfigError):
            parse_schedule(expression)


# ------------------------------------------------------------------------ configuration


def test_local_settings_never_override_the_environment(tmp_path: Path) -> None:
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": {"A": "file", "B": "file", "N": 3}}))
    environ = {"A": "shell"}
    assert sorted(load_local_settings(settings, environ)) == ["B", "N"]
    assert environ == {"A": "shell", "B": "file", "N": "3"}


def test_host_options_from_host_json_and_environment(tmp_path: Path) -> None:
    host_json = tmp_path / "host.json"
    host_json.write_text(
        json.dumps(
            {
                "version": "2.0",
                "extensions": {
                    "queues": {
                        "batchSize": 8,
                        "visibilityTimeout": "00:00:10",
                        "maxDequeueCount": 2,
                    }
                },
            }
        )
    )
    env = {"AzureFunctionsJobHost__extensions__http__routePrefix": "v1"}
    options = load_host_options(host_json, env)
    assert options.route_prefix == "v1"
    assert options.queues.batch_size == 8
    assert options.queues.new_batch_threshold == 4
    assert options.queues.visibility_timeout == 10.0
    assert options.queues.max_dequeue_count == 2
    assert options.queues.max_polling_interval == 60.0
    assert options.queues.message_encoding == "base64"
    assert load_host_options(tmp_path / "missing.json", {}).route_prefix == "api"
    assert parse_timespan("1.00:00:01.5") == 86401.5
    assert parse_timespan(2000, number_unit=0.001) == 2.0
    assert resolve_setting_refs("%Q%-x", {"Q": "jobs"}) == "jobs-x"
    with pytest.raises(HostConfigError):
        resolve_setting_refs("%MISSING%", {})


def test_queue_connection_string_or_identity() -> None:
    by_identity = connect(
        None,
        {
            "AzureWebJobsStorage__queueServiceUri": "https://acct.queue.core.windows.net",
            "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000001",
        },
    )
    assert by_identity.service.url.startswith("https://acct.queue.core.windows.net")
    assert isinstance(by_identity.credential, DefaultAzureCredential)
    asyncio.run(by_identity.close())
    # __credential=managedidentity: the managed identity only, as the Functions host reads it.
    by_managed_identity = connect(
        None,
        {
            "AzureWebJobsStorage__queueServiceUri": "https://acct.queue.core.windows.net",
            "AzureWebJobsStorage__credential": "managedidentity",
            "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000001",
        },
    )
    assert isinstance(by_managed_identity.credential, ManagedIdentityCredential)
    assert "managed identity" in by_managed_identity.description
    asyncio.run(by_managed_identity.close())
    by_string = connect("Jobs", {"AzureWebJobsJobs": "UseDevelopmentStorage=true"})
    assert by_string.service.account_name == "devstoreaccount1"
    assert by_string.credential is None
    asyncio.run(by_string.close())
    with pytest.raises(HostConfigError):
        connect("Missing", {})


def test_functions_are_indexed_once_per_app() -> None:
    from tests.integration.devhost_sample_app import app

    assert indexed_functions(app) is indexed_functions(app)


# ----------------------------------------------------------------- the host, on Azurite


def _test_host_json(directory: Path) -> Path:
    document = json.loads((ROOT / "host.json").read_text())
    # The sample app's routes sit under the host's default prefix (the project's own app uses
    # none, to serve its console at `/`).
    document.setdefault("extensions", {})["http"] = {"routePrefix": "api"}
    document["extensions"]["queues"] = {
        "batchSize": 4,
        "newBatchThreshold": 2,
        "maxPollingInterval": "00:00:00.500",
        "visibilityTimeout": "00:00:01",
        "maxDequeueCount": 3,
        "messageEncoding": "base64",
    }
    path = directory / "host.json"
    path.write_text(json.dumps(document, indent=2))
    return path


def _records(directory: Path, name: str) -> list[dict[str, Any]]:
    path = directory / name
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class SampleHost:
    handle: HostHandle
    queue_name: str
    records: Path
    connection: str

    @property
    def base_url(self) -> str:
        return self.handle.base_url

    def queue(self, name: str | None = None, *, base64_encoded: bool = True) -> QueueClient:
        policy = TextBase64EncodePolicy() if base64_encoded else None
        return QueueClient.from_connection_string(
            self.connection, name or self.queue_name, message_encode_policy=policy
        )

    def attempts(self, body: str) -> list[dict[str, Any]]:
        return [r for r in _records(self.records, "queue.jsonl") if r["body"] == body]


@pytest.fixture(scope="module")
def sample_host(
    emulator_stack: StackInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SampleHost]:
    host = start_sample_host(emulator_stack, tmp_path_factory.mktemp("devhost"))
    try:
        yield host
    finally:
        host.handle.stop()


def start_sample_host(
    emulator_stack: StackInfo,
    directory: Path,
    settings: dict[str, str] | None = None,
    **options: Any,
) -> SampleHost:
    """The sample app in a host on a background thread, on a queue and records of its own."""
    records = directory / "records"
    records.mkdir()
    queue_name = f"devhost-{uuid.uuid4().hex[:10]}"
    connection = emulator_stack.settings["AzureWebJobsStorage"]
    handle = start_host_in_thread(
        SAMPLE_APP,
        env={
            "AzureWebJobsStorage": connection,
            "SAMPLE_QUEUE": queue_name,
            "SAMPLE_RECORD_DIR": str(records),
            **(settings or {}),
        },
        host_json=_test_host_json(directory),
        shutdown_timeout=5.0,
        **options,
    )
    return SampleHost(handle, queue_name, records, connection)


@pytest.mark.emulators
def test_route_and_query_parameters(sample_host: SampleHost) -> None:
    url = f"{sample_host.base_url}/swarms/s-1/chats/node%201?a=1&a=2&b=x"
    reply = call("GET", url, **{"X-Sample": "hi"})
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/json"
    echoed = reply.json()
    assert echoed["method"] == "GET"
    assert echoed["route_params"] == {"swarm_id": "s-1", "node_id": "node 1"}
    assert echoed["params"] == {"a": "1,2", "b": "x"}
    assert echoed["url"] == url
    assert echoed["header"] == "hi"


@pytest.mark.emulators
def test_constrained_route_and_invocation_context(sample_host: SampleHost) -> None:
    reply = call("GET", f"{sample_host.base_url}/items/42/more")
    assert reply.json() == {
        "route_params": {"item_id": "42", "rest": "more"},
        "function_name": "typed_item",
        "has_invocation_id": True,
    }
    assert call("GET", f"{sample_host.base_url}/items/42").json()["route_params"] == {
        "item_id": "42"
    }
    assert call("GET", f"{sample_host.base_url}/items/forty-two").status == 404


@pytest.mark.emulators
def test_post_to_an_async_function(sample_host: SampleHost) -> None:
    body = json.dumps({"name": "thing"}).encode()
    reply = call(
        "POST", f"{sample_host.base_url}/items", body, **{"Content-Type": "application/json"}
    )
    assert reply.status == 201
    assert reply.json() == {"created": {"name": "thing"}}
    assert reply.headers["Location"] == "/api/items/1"
    assert reply.headers["X-Sample"] == "yes"
    assert call("POST", f"{sample_host.base_url}/items", b"not json").status == 400


@pytest.mark.emulators
def test_text_response_gets_a_charset(sample_host: SampleHost) -> None:
    reply = call("GET", f"{sample_host.base_url}/text")
    assert reply.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert reply.body.decode("utf-8") == "héllo"


@pytest.mark.emulators
def test_unknown_route_404_and_wrong_method_405(sample_host: SampleHost) -> None:
    assert call("GET", f"{sample_host.base_url}/no/such/route").status == 404
    root = sample_host.base_url.removesuffix("/api")
    assert call("GET", f"{root}/swarms/s/chats/n").status == 404  # outside the route prefix
    reply = call("DELETE", f"{sample_host.base_url}/swarms/s/chats/n")
    assert reply.status == 405
    assert reply.headers["Allow"] == "GET"


@pytest.mark.emulators
def test_a_catch_all_takes_only_paths_no_other_route_matches(sample_host: SampleHost) -> None:
    assert call("GET", f"{sample_host.base_url}/files/a/b.txt").body == b"file a/b.txt"
    assert call("POST", f"{sample_host.base_url}/files/upload").status == 201
    for method in ("GET", "PUT"):  # files/upload is POST's: the GET catch-all does not take it
        reply = call(method, f"{sample_host.base_url}/files/upload")
        assert reply.status == 405 and reply.headers["Allow"] == "POST", method


@pytest.mark.emulators
def test_unhandled_exception_is_a_500(sample_host: SampleHost) -> None:
    for method in ("GET", "PATCH"):  # no methods on the trigger: all of them
        reply = call(method, f"{sample_host.base_url}/boom")
        assert reply.status == 500
        assert reply.json()["function"] == "boom"
    assert call("GET", f"{sample_host.base_url}/text").status == 200  # the host lives on


@pytest.mark.emulators
def test_queue_message_is_processed_once_and_deleted(sample_host: SampleHost) -> None:
    body = f"hello {uuid.uuid4().hex}"
    client = sample_host.queue()
    client.send_message(body)
    attempts = wait_for(lambda: sample_host.attempts(body))
    assert attempts[0]["dequeue_count"] == 1
    assert attempts[0]["id"]
    wait_for(lambda: client.get_queue_properties().approximate_message_count == 0)
    assert len(sample_host.attempts(body)) == 1


@pytest.mark.emulators
def test_failing_message_is_retried_then_poisoned(sample_host: SampleHost) -> None:
    body = f"please fail {uuid.uuid4().hex}"
    client = sample_host.queue()
    client.send_message(body)
    poison = sample_host.queue(f"{sample_host.queue_name}-poison", base64_encoded=False)

    def poisoned() -> list[str]:
        texts = [m.content for m in poison.peek_messages(max_messages=32)]
        return [t for t in texts if base64.b64decode(t).decode() == body]

    assert wait_for(poisoned) == [base64.b64encode(body.encode()).decode()]
    assert [a["dequeue_count"] for a in sample_host.attempts(body)] == [1, 2, 3]
    wait_for(lambda: client.get_queue_properties().approximate_message_count == 0)


@pytest.mark.emulators
def test_message_that_is_not_base64_goes_to_poison_unrun(sample_host: SampleHost) -> None:
    text = f"not base64 {uuid.uuid4().hex}!"
    sample_host.queue(base64_encoded=False).send_message(text)
    poison = sample_host.queue(f"{sample_host.queue_name}-poison", base64_encoded=False)
    wait_for(lambda: text in [m.content for m in poison.peek_messages(max_messages=32)])
    assert not any(text in r["body"] for r in _records(sample_host.records, "queue.jsonl"))


@pytest.mark.emulators
def test_timer_fires_every_second(sample_host: SampleHost) -> None:
    start = len(_records(sample_host.records, "timer.jsonl"))
    runs = wait_for(lambda: _records(sample_host.records, "timer.jsonl")[start + 1 :], timeout=5)
    assert runs[0]["past_due"] is False


@pytest.mark.emulators
def test_disabled_functions_are_not_run(emulator_stack: StackInfo, tmp_path: Path) -> None:
    """`AzureWebJobs.<name>.Disabled`: an HTTP function's route answers 404, a queue is not
    polled, a timer does not fire; the app's other functions run."""
    host = start_sample_host(
        emulator_stack,
        tmp_path,
        {
            "AzureWebJobs.plain_text.Disabled": "true",
            "AzureWebJobs.record_message.Disabled": "1",
            "AzureWebJobs.every_second.Disabled": "True",
            "AzureWebJobs.echo_chat.Disabled": "false",
        },
    )
    handle = host.handle
    try:
        assert call("GET", f"{handle.base_url}/text").status == 404
        assert call("GET", f"{handle.base_url}/swarms/s1/chats/c1").status == 200
        queue = host.queue()
        queue.create_queue()
        queue.send_message("left alone")
        time.sleep(2.5)  # five polls of an enabled listener (maxPollingInterval 0.5 s)
        assert queue.get_queue_properties().approximate_message_count == 1
        assert host.attempts("left alone") == []
        # The module's host records into the same place while this one's settings are in the
        # environment: ask this host which timers it runs instead.
        assert handle.devhost.timers == [] and handle.devhost.listeners == []
        names = {function.name for function in handle.devhost.functions}
        assert "echo_chat" in names and not names & {"plain_text", "record_message"}
    finally:
        handle.stop()


@pytest.mark.emulators
def test_a_host_process_runs_only_the_triggers_it_is_given(
    emulator_stack: StackInfo, tmp_path: Path
) -> None:
    """`--triggers queue`: the queue function runs, no HTTP server, no timer; an unknown kind
    is refused."""
    host = start_sample_host(emulator_stack, tmp_path, triggers=["queue"])
    handle = host.handle
    try:
        assert handle.devhost.http is not None and handle.devhost.port == 0, "no HTTP server"
        assert handle.devhost.timers == []
        assert {f.trigger_type for f in handle.devhost.functions} == {"queueTrigger"}
        body = f"queue only {uuid.uuid4().hex}"
        host.queue().send_message(body)
        wait_for(lambda: host.attempts(body))
    finally:
        handle.stop()
    with pytest.raises(HostConfigError, match="unknown trigger"):
        start_host_in_thread(SAMPLE_APP, triggers=["http", "blob"])


# ------------------------------------------------------------------- the command line


def _read_lines(stream: Any, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


@pytest.mark.emulators
def test_command_line_loads_settings_serves_and_stops_on_sigterm(
    emulator_stack: StackInfo, tmp_path: Path
) -> None:
    records = tmp_path / "records"
    records.mkdir()
    queue_name = f"devhost-cli-{uuid.uuid4().hex[:8]}"
    settings = tmp_path / "local.settings.json"
    values = {
        "AzureWebJobsStorage": emulator_stack.settings["AzureWebJobsStorage"],
        "SAMPLE_QUEUE": queue_name,
        "SAMPLE_RECORD_DIR": str(records),
        "SAMPLE_GREETING": "from settings",
    }
    settings.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    env = {k: v for k, v in os.environ.items() if k not in values}
    env["SAMPLE_GREETING"] = "from the shell"  # set: the file must not override it
    command = [sys.executable, "-m", "devhost", "--app", SAMPLE_APP, "--port", "0"]
    command += ["--settings", str(settings), "--host-json", str(_test_host_json(tmp_path))]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True).start()
        banner: list[str] = []

        def listening() -> str | None:
            while not lines.empty():
                banner.append(lines.get())
                if banner[-1].startswith("Functions host listening on "):
                    return banner[-1].removeprefix("Functions host listening on ").strip()
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            return None

        base_url = wait_for(listening)
        assert f"record_message: queueTrigger (queue '{queue_name}')" in "".join(banner)
        assert any("echo_chat: [GET] http://127.0.0.1:" in line for line in banner)
        reply = call("GET", f"{base_url}/swarms/a/chats/b")
        assert reply.json()["greeting"] == "from the shell"

        # SIGTERM while a request runs: the request completes, then the host exits cleanly.
        slow_replies: list[Reply] = []
        slow_call = threading.Thread(
            target=lambda: slow_replies.append(call("GET", f"{base_url}/slow?seconds=1"))
        )
        slow_call.start()
        wait_for(lambda: _records(records, "slow.jsonl"))
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=DEADLINE)
        slow_call.join(DEADLINE)
        assert [(r.status, r.body) for r in slow_replies] == [(200, b"done")]
        assert process.returncode == 0, stderr
        assert "Functions host stopped" in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
