"""The HTTP functions called as the host calls them, on the in-memory runtime: shapes, status
codes, problem responses, isolation, and that bad input changes nothing."""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
from typing import Any

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage

from swarm_core import readiness
from swarm_core.auth import AuthError, Throttled
from swarm_core.bootstrap import build_in_memory
from swarm_core.entrypoints import http_api, queue_worker
from swarm_core.in_process import run_until_settled
from swarm_core.models import User
from swarm_core.operations import OperationKind, parse_operation
from swarm_core.runtime import use_app
from swarm_core.settings import LLMProviderSettings, Settings


@pytest.fixture
def rt():
    """The in-memory app as the process's app (tests keep the caller's token and swarm on it)."""
    app = build_in_memory()
    use_app(app)
    yield app
    use_app(None)


def call(
    fn: Any,
    method: str = "GET",
    body: Any = None,
    token: str | None = None,
    route: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    raw: bytes | None = None,
    forwarded_for: str | None = None,
) -> tuple[int, Any, func.HttpResponse]:
    headers = {"content-type": "application/json"}
    if forwarded_for is not None:
        headers["x-forwarded-for"] = forwarded_for
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    req = func.HttpRequest(
        method=method,
        url="http://localhost/api/x",
        headers=headers,
        params=params or {},
        route_params=route or {},
        body=data,
    )
    resp = fn(req)
    if inspect.isawaitable(resp):  # an async function, as the worker runs it: on a loop
        resp = asyncio.run(resp)
    payload = json.loads(resp.get_body()) if resp.get_body() else None
    return resp.status_code, payload, resp


def signup(name: str = "alice") -> str:
    status, body, _ = call(http_api.signup, "POST", {"username": name, "password": "correct horse"})
    assert status == 201, body
    return body["access_token"]


def drain(rt, answer: str = "A relaxed pace, 900 EUR, good food, no early mornings") -> None:
    """Run the swarm to its end, answering every question over the HTTP function."""

    def post_answer(node, chat) -> None:
        status, _, _ = call(
            http_api.post_message,
            "POST",
            {"content": answer},
            token=rt.token,
            route={"swarm_id": rt.swarm_id, "node_id": node.node_id},
        )
        assert status == 202

    run_until_settled(rt, rt.swarm_id, post_answer)


def test_health(rt):
    status, body, _ = call(http_api.health)
    assert status == 200 and body["status"] == "ok"
    # On the event loop, not behind the thread pool that bcrypt and storage calls fill.
    assert inspect.iscoroutinefunction(http_api.health._function.get_user_function())


def test_ready_in_memory_has_nothing_to_ask(rt):
    status, body, _ = call(http_api.ready)
    assert status == 200 and body == {"status": "ready", "version": body["version"], "checks": {}}


def test_readiness_names_what_fails_and_what_hangs():
    release = threading.Event()

    def hangs() -> None:
        release.wait(5)

    def fails() -> None:
        raise ConnectionError("refused")

    checks = {"cosmos": hangs, "blob": fails, "queue": lambda: None}
    try:
        result = asyncio.run(readiness.check(checks, timeout=0.2))
    finally:
        release.set()
    assert result == {
        "cosmos": "no answer within 0.2 s",
        "blob": "unavailable (ConnectionError)",
        "queue": "ok",
    }


def test_signup_login_me(rt):
    token = signup("Alice")
    status, body, _ = call(
        http_api.login, "POST", {"username": "alice", "password": "correct horse"}
    )
    assert status == 200 and body["token_type"] == "Bearer" and body["username"] == "alice"
    status, me, _ = call(http_api.me, token=token)
    assert status == 200 and me["username"] == "alice"
    status, body, _ = call(http_api.signup, "POST", {"username": "ALICE", "password": "whatever1"})
    assert status == 409


def test_login_failures_are_uniform_and_throttled(rt):
    signup("bob")
    wrong = call(http_api.login, "POST", {"username": "bob", "password": "wrong password"})
    unknown = call(http_api.login, "POST", {"username": "nobody", "password": "wrong password"})
    assert wrong[0] == unknown[0] == 401
    assert wrong[1]["detail"] == unknown[1]["detail"]
    assert wrong[2].mimetype == "application/problem+json"
    for _ in range(5):
        status, _, resp = call(http_api.login, "POST", {"username": "bob", "password": "nope nope"})
    assert status == 429 and int(resp.headers["Retry-After"]) > 0


def login_from(address_header: str, username: str, password: str) -> int:
    body = {"username": username, "password": password}
    return call(http_api.login, "POST", body, forwarded_for=address_header)[0]


def test_a_lock_out_attempt_from_one_address_does_not_stop_the_owner_at_another(rt):
    signup("dora")
    for _ in range(8):  # a stranger at 203.0.113.7 guesses dora's password
        login_from("203.0.113.7:5000", "dora", "guess guess")
    assert login_from("203.0.113.7:5000", "dora", "correct horse") == 429, "the guesser waits"
    assert login_from("198.51.100.2:6000", "dora", "correct horse") == 200, "dora does not"
    assert login_from("198.51.100.2:6000", "dora", "correct horse") == 200


def test_spoofed_forwarded_for_prefixes_do_not_reset_the_count(rt):
    signup("erin")
    statuses = [
        # The client writes whatever it likes before the entry the front end appends.
        login_from(f"10.0.0.{i}, 192.0.2.{i}, 203.0.113.9:{4000 + i}", "erin", "guess guess")
        for i in range(7)
    ]
    assert statuses[:5] == [401] * 5 and statuses[5:] == [429, 429]


def test_an_address_guessing_many_usernames_waits(rt):
    statuses = [login_from("203.0.113.10:1", f"user{i}", "guess guess") for i in range(31)]
    assert statuses[:30] == [401] * 30 and statuses[30] == 429
    assert login_from("203.0.113.11:1", "user0", "guess guess") == 401, "other addresses: no"


def test_signups_are_throttled_per_address(rt):
    limit = rt.settings.signups_per_address_per_hour
    body = {"password": "correct horse"}
    statuses = [
        call(http_api.signup, "POST", {**body, "username": f"new{i}"}, forwarded_for="192.0.2.50")[
            0
        ]
        for i in range(limit + 1)
    ]
    assert statuses == [201] * limit + [429]
    other = call(http_api.signup, "POST", {**body, "username": "newer"}, forwarded_for="192.0.2.51")
    assert other[0] == 201


def test_login_failures_are_counted_across_instances(rt):
    """Two instances of the app share the attempts (the app's storage), not process memory."""
    signup("fay")
    second = build_in_memory(adapters=rt.adapters)
    for app in (rt, second, rt, second, rt):
        with pytest.raises(AuthError):
            app.auth.login("fay", "guess guess", "203.0.113.20")
    with pytest.raises(Throttled):
        second.auth.login("fay", "correct horse", "203.0.113.20")


def test_long_passwords_are_not_truncated(rt):
    base = "x" * 72
    call(http_api.signup, "POST", {"username": "carol", "password": base + "A"})
    status, _, _ = call(http_api.login, "POST", {"username": "carol", "password": base + "B"})
    assert status == 401
    status, _, _ = call(http_api.login, "POST", {"username": "carol", "password": base + "A"})
    assert status == 200


@pytest.mark.parametrize(
    "raw,expected",
    [
        (b"{not json", 400),
        (b"[]", 422),
        (b'{"goal": 5}', 422),
        (b'{"goal": "x", "unknown": 1}', 422),
        (b'{"goal": ""}', 422),
        (b'{"goal": "x", "config": {"limits": {"max_depth": 99}}}', 422),
        (b'{"goal": "' + b"x" * 70_000 + b'"}', 413),
        (b"[" * 1000 + b"]" * 1000, 400),  # 2 KB that would exhaust the parser's recursion
        (b'{"goal": "   "}', 422),  # blank
        (b'{"goal": "x", "config": {"limits": {"max_depth": true}}}', 422),  # not an integer
        (b'{"goal": "x", "config": {"limits": {"max_depth": "2"}}}', 422),
        (b'{"goal": "x", "config": {"seed": 1.5}}', 422),
        (b'{"goal": "x", "config": ' + b'{"a": ' * 40 + b"1" + b"}" * 41, 400),
    ],
)
def test_bad_input_is_a_4xx_problem_and_changes_nothing(rt, raw, expected):
    token = signup()
    status, body, resp = call(http_api.create_swarm, "POST", token=token, raw=raw)
    assert status == expected
    assert resp.mimetype == "application/problem+json" and body["status"] == expected
    _, listing, _ = call(http_api.list_swarms, token=token)
    assert listing["items"] == []


@pytest.mark.parametrize("status", ["", "closed"])
def test_interrupts_of_an_unknown_status_are_a_400(rt, status):
    token = signup()
    _, created, _ = call(http_api.create_swarm, "POST", {"goal": "a trip"}, token=token)
    route = {"swarm_id": created["swarm_id"]}
    code, body, _ = call(
        http_api.list_interrupts, token=token, route=route, params={"status": status}
    )
    assert code == 400 and "open or all" in body["detail"]
    code, body, _ = call(http_api.list_interrupts, token=token, route=route)
    assert code == 200 and body == {"items": []}


def test_deep_nesting_is_a_400_on_routes_without_a_token_too(rt):
    deep = b"[" * 1000 + b"]" * 1000
    for fn in (http_api.login, http_api.signup):
        status, body, _ = call(fn, "POST", raw=deep)
        assert status == 400 and "deeper than" in body["detail"]
    brackets_in_a_string = b'{"goal": "' + b"[" * 100 + b'"}'
    status, _, _ = call(http_api.create_swarm, "POST", token=signup(), raw=brackets_in_a_string)
    assert status == 201


def test_requests_without_a_valid_token_are_401(rt):
    for token in (None, "garbage", "eyJhbGciOiJIUzI1NiJ9.e30.x"):
        status, _, resp = call(http_api.list_swarms, token=token)
        assert status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"


def test_a_whole_swarm_over_the_http_functions(rt):
    rt.token = signup()
    status, created, _ = call(http_api.create_swarm, "POST", {"goal": "Plan a picnic"}, rt.token)
    assert status == 201 and created["status"] == "created" and created["spawned"] is False
    rt.swarm_id = created["swarm_id"]
    route = {"swarm_id": rt.swarm_id}
    status, body, _ = call(http_api.spawn_swarm, "POST", token=rt.token, route=route)
    assert status == 202 and body == {"swarm_id": rt.swarm_id, "status": "running"}
    assert call(http_api.spawn_swarm, "POST", token=rt.token, route=route)[0] == 409
    status, neg, _ = call(http_api.negotiate, token=rt.token, params={"swarm_id": rt.swarm_id})
    assert status == 200 and neg["url"] and neg["expires_at"]
    drain(rt)
    status, detail, _ = call(http_api.get_swarm, token=rt.token, route=route)
    assert detail["status"] == "completed" and detail["final_report"]
    assert detail["node_counts"] == {"terminated": detail["node_count"]}
    status, state, _ = call(http_api.swarm_state, token=rt.token, route=route, params={"at": "3"})
    assert status == 200 and state["seq"] == 3
    assert state["latest_seq"] == detail["seq"], "the end of a time slider"
    status, hist, _ = call(
        http_api.swarm_history, token=rt.token, route=route, params={"after": "5", "limit": "10"}
    )
    assert status == 200 and all(e["seq"] > 5 for e in hist["events"])
    status, chats, _ = call(http_api.list_chats, token=rt.token, route=route)
    node_id = chats["chats"][0]["node_id"]
    status, msgs, _ = call(
        http_api.chat_messages, token=rt.token, route={**route, "node_id": node_id}
    )
    assert status == 200 and msgs["messages"][0]["role"] == "agent"
    status, node, _ = call(http_api.get_node, token=rt.token, route={**route, "node_id": node_id})
    assert status == 200 and node["journal"]
    status, _, _ = call(
        http_api.post_message,
        "POST",
        {"content": "late"},
        rt.token,
        route={**route, "node_id": node_id},
    )
    assert status == 409, "the node is not waiting for the user"
    assert call(http_api.delete_swarm, "DELETE", token=rt.token, route=route)[0] == 204
    assert call(http_api.get_swarm, token=rt.token, route=route)[0] == 404


def test_another_users_swarm_is_404_everywhere(rt):
    owner = signup("owner")
    intruder = signup("intruder")
    _, created, _ = call(http_api.create_swarm, "POST", {"goal": "secret"}, owner)
    route = {"swarm_id": created["swarm_id"]}
    for fn, method in [
        (http_api.get_swarm, "GET"),
        (http_api.delete_swarm, "DELETE"),
        (http_api.spawn_swarm, "POST"),
        (http_api.pause_swarm, "POST"),
        (http_api.swarm_state, "GET"),
        (http_api.swarm_history, "GET"),
        (http_api.list_chats, "GET"),
    ]:
        assert call(fn, method, token=intruder, route=route)[0] == 404, fn
    assert (
        call(http_api.negotiate, token=intruder, params={"swarm_id": created["swarm_id"]})[0] == 404
    )
    assert call(http_api.get_swarm, token=owner, route=route)[0] == 200


def test_query_parameters_are_validated(rt):
    token = signup()
    _, created, _ = call(http_api.create_swarm, "POST", {"goal": "g"}, token)
    route = {"swarm_id": created["swarm_id"]}
    for params in ({"at": "x"}, {"at": "-1"}, {"at": ""}):
        assert call(http_api.swarm_state, token=token, route=route, params=params)[0] == 400
    for params in ({"limit": "0"}, {"limit": ""}, {"after": ""}):
        assert call(http_api.swarm_history, token=token, route=route, params=params)[0] == 400
    assert call(http_api.list_swarms, token=token, params={"limit": ""})[0] == 400
    assert call(http_api.list_swarms, token=token, params={"continuation_token": "@@"})[0] == 400


def test_listing_pages_newest_first(rt):
    token = signup()
    ids = [
        call(http_api.create_swarm, "POST", {"goal": f"g{i}"}, token)[1]["swarm_id"]
        for i in range(3)
    ]
    _, page, _ = call(http_api.list_swarms, token=token, params={"limit": "2"})
    assert [s["swarm_id"] for s in page["items"]] == ids[::-1][:2]
    _, rest, _ = call(
        http_api.list_swarms,
        token=token,
        params={"limit": "2", "continuation_token": page["continuation_token"]},
    )
    assert [s["swarm_id"] for s in rest["items"]] == ids[:1]


def test_a_poisoned_operation_fails_its_node_and_retry_runs_it(rt):
    rt.token = signup()
    _, created, _ = call(
        http_api.create_swarm,
        "POST",
        {"goal": "g", "config": {"limits": {"max_depth": 0}}},
        rt.token,
    )
    rt.swarm_id = created["swarm_id"]
    route = {"swarm_id": rt.swarm_id}
    call(http_api.spawn_swarm, "POST", token=rt.token, route=route)
    message = rt.adapters.queue.receive()
    rt.worker.process(message.body)  # the spawn: the root exists
    rt.adapters.queue.ack(message)
    poisoned = rt.adapters.queue.receive()  # the root's LLM call "fails every retry"
    rt.adapters.queue.ack(poisoned)
    queue_worker.fail_poisoned_operation(
        QueueMessage(id="p1", body=poisoned.body.encode(), dequeue_count=1)
    )
    root_id = parse_operation(poisoned.body).node_id
    _, node, _ = call(http_api.get_node, token=rt.token, route={**route, "node_id": root_id})
    assert node["lifecycle"] == "failed" and "failed on every retry" in node["error"]
    # The swarm reports its failed node, in its detail and in the listing.
    _, failing, _ = call(http_api.get_swarm, token=rt.token, route=route)
    assert failing["failed_nodes"] == 1 and "failed on every retry" in failing["error"]
    _, listed, _ = call(http_api.list_swarms, token=rt.token)
    assert listed["items"][0]["failed_nodes"] == 1
    _, hist, _ = call(http_api.swarm_history, token=rt.token, route=route)
    assert any(e["type"] == "node.failed" for e in hist["events"])
    status, _, _ = call(
        http_api.retry_node, "POST", token=rt.token, route={**route, "node_id": root_id}
    )
    assert status == 202
    drain(rt)
    _, detail, _ = call(http_api.get_swarm, token=rt.token, route=route)
    assert detail["status"] == "completed"
    assert detail["failed_nodes"] == 0 and detail["error"] is None
    assert parse_operation(poisoned.body).kind == OperationKind.LLM


@pytest.fixture
def offering_models():
    """The app offering gpt-4o and o3 besides the default model."""
    settings = Settings(
        BCRYPT_ROUNDS=4,
        AUTH_SECRET="t" * 40,
        llm=LLMProviderSettings(llm_allowed_models="gpt-4o,o3"),
    )
    app = build_in_memory(settings=settings)
    use_app(app)
    yield app
    use_app(None)


def test_the_users_model_settings_go_under_each_new_swarms_config(offering_models):
    rt = offering_models
    token = signup()
    settings = {"model": "gpt-4o", "temperature": 0.3, "system_prompt": "Be terse."}
    status, me, _ = call(http_api.update_me, "PATCH", {"llm": settings}, token)
    assert status == 200 and me["llm"] == {**settings, "max_tokens": None}
    assert call(http_api.me, token=token)[1]["llm"] == me["llm"]
    own = {"goal": "g", "config": {"llm": {"temperature": 0.9}}}
    _, created, _ = call(http_api.create_swarm, "POST", own, token)
    swarm = rt.services.get_swarm(me["user_id"], created["swarm_id"])
    assert swarm.config.llm.model == "gpt-4o" and swarm.config.llm.temperature == 0.9
    assert swarm.config.llm.system_prompt == "Be terse."
    # A later change of the user's settings leaves existing swarms as they were.
    call(http_api.update_me, "PATCH", {"llm": {"model": "o3"}}, token)
    assert rt.services.get_swarm(me["user_id"], created["swarm_id"]).config.llm.model == "gpt-4o"
    bad = call(http_api.update_me, "PATCH", {"llm": {"temperature": 7}}, token)
    assert bad[0] == 422
    assert call(http_api.me, token=token)[1]["llm"]["model"] == "o3"


def test_a_poison_handler_that_fails_puts_the_operation_back_not_in_a_dead_queue(rt):
    rt.token = signup()
    _, created, _ = call(http_api.create_swarm, "POST", {"goal": "g"}, rt.token)
    call(http_api.spawn_swarm, "POST", token=rt.token, route={"swarm_id": created["swarm_id"]})
    message = rt.adapters.queue.receive()
    rt.adapters.queue.ack(message)

    def outage(operation):
        raise ConnectionError("Cosmos DB is unreachable")

    rt.worker.fail_poisoned = outage
    queue_worker.fail_poisoned_operation(
        QueueMessage(id="p1", body=message.body.encode(), dequeue_count=1)
    )
    assert rt.adapters.queue.pending_bodies() == [message.body], "it runs again later"


def test_a_well_signed_token_of_a_user_that_does_not_exist_is_401_everywhere(rt):
    ghost = rt.auth.issue(User(user_id="ghost", username="ghost", password_hash="x"))
    for fn, method in ((http_api.me, "GET"), (http_api.list_swarms, "GET")):
        status, body, _ = call(fn, method, token=ghost.access_token)
        assert status == 401 and "does not exist" in body["detail"]
    status, _, _ = call(http_api.create_swarm, "POST", {"goal": "g"}, ghost.access_token)
    assert status == 401


def test_logout_revokes_every_token_of_the_user(rt):
    first = signup("dora")
    _, second, _ = call(http_api.login, "POST", {"username": "dora", "password": "correct horse"})
    assert call(http_api.me, token=second["access_token"])[0] == 200
    assert call(http_api.logout, "POST", token=first)[0] == 204
    for token in (first, second["access_token"]):
        status, body, _ = call(http_api.list_swarms, token=token)
        assert status == 401 and "revoked" in body["detail"]
    _, again, _ = call(http_api.login, "POST", {"username": "dora", "password": "correct horse"})
    assert call(http_api.me, token=again["access_token"])[0] == 200


def test_a_model_or_token_limit_the_operator_does_not_offer_is_422_naming_what_is(rt):
    token = signup()
    status, problem, _ = call(
        http_api.create_swarm, "POST", {"goal": "g", "config": {"llm": {"model": "o1-pro"}}}, token
    )
    assert status == 422 and problem["allowed"] == ["gpt-4o-mini"]
    status, problem, _ = call(http_api.update_me, "PATCH", {"llm": {"max_tokens": 50_000}}, token)
    assert status == 422 and "at most 4000" in problem["detail"]
    assert call(http_api.list_swarms, token=token)[1]["items"] == []
    assert call(http_api.me, token=token)[1]["llm"]["max_tokens"] is None


def test_a_user_at_their_swarm_quota_gets_429(rt):
    rt.services.swarms_per_user = 2
    token = signup()
    for _ in range(2):
        assert call(http_api.create_swarm, "POST", {"goal": "g"}, token)[0] == 201
    status, problem, _ = call(http_api.create_swarm, "POST", {"goal": "g"}, token)
    assert status == 429 and "delete one" in problem["detail"]
    other = signup("erin")
    assert call(http_api.create_swarm, "POST", {"goal": "g"}, other)[0] == 201


def test_a_blank_message_is_422(rt):
    rt.token = signup()
    _, created, _ = call(http_api.create_swarm, "POST", {"goal": "g"}, rt.token)
    route = {"swarm_id": created["swarm_id"], "node_id": "n"}
    status, _, _ = call(http_api.post_message, "POST", {"content": " \n "}, rt.token, route=route)
    assert status == 422


def test_resume_takes_an_optional_new_token_budget(rt):
    rt.token = signup()
    status, body, _ = call(http_api.create_swarm, "POST", {"goal": "g"}, token=rt.token)
    route = {"swarm_id": body["swarm_id"]}
    call(http_api.spawn_swarm, "POST", token=rt.token, route=route)
    call(http_api.pause_swarm, "POST", token=rt.token, route=route)
    for bad in (
        {"limits": {"max_tokens_total": "5"}},
        {"limits": {"max_tokens_total": 0}},
        {"limits": {"max_depth": 2}},
        {"budget": 5},
    ):
        status, problem, _ = call(http_api.resume_swarm, "POST", bad, token=rt.token, route=route)
        assert status == 422, (bad, problem)
    body = {"limits": {"max_tokens_total": 5000}}
    status, resumed, _ = call(http_api.resume_swarm, "POST", body, token=rt.token, route=route)
    assert status == 202 and resumed["status"] == "running"
    status, detail, _ = call(http_api.get_swarm, "GET", token=rt.token, route=route)
    assert detail["config"]["limits"]["max_tokens_total"] == 5000
    call(http_api.pause_swarm, "POST", token=rt.token, route=route)
    status, _, _ = call(http_api.resume_swarm, "POST", token=rt.token, route=route)  # no body
    assert status == 202


def test_fork_over_http(rt):
    rt.token = signup()
    other = signup("mallory")
    status, body, _ = call(http_api.create_swarm, "POST", {"goal": "g"}, token=rt.token)
    route = {"swarm_id": body["swarm_id"]}
    rt.swarm_id = body["swarm_id"]
    call(http_api.spawn_swarm, "POST", token=rt.token, route=route)
    drain(rt)
    status, done, _ = call(http_api.get_swarm, "GET", token=rt.token, route=route)
    assert done["status"] == "completed"
    # Bad input: refused, nothing made.
    for bad, expected in (
        ({"at": "3"}, 422),
        ({"at": -1}, 422),
        ({"at": 2.5}, 422),
        ({"reuse_llm": "no"}, 422),
        ({"when": 3}, 422),
        ({"at": done["seq"] + 1}, 409),
    ):
        status, problem, _ = call(http_api.fork_swarm, "POST", bad, token=rt.token, route=route)
        assert status == expected, (bad, problem)
    status, problem, _ = call(http_api.fork_swarm, "POST", token=other, route=route)
    assert status == 404, problem
    status, listed, _ = call(http_api.list_swarms, "GET", token=rt.token)
    assert len(listed["items"]) == 1
    # A fork after step 3, and one of the latest step (no body).
    status, fork, _ = call(http_api.fork_swarm, "POST", {"at": 3}, token=rt.token, route=route)
    assert status == 201, fork
    assert fork["status"] == "paused"
    assert fork["forked_from"] == {"swarm_id": route["swarm_id"], "seq": 3}
    status, state, _ = call(
        http_api.swarm_state, "GET", token=rt.token, route={"swarm_id": fork["swarm_id"]}
    )
    assert state["seq"] == 4 and state["latest_seq"] == 4
    status, source_state, _ = call(
        http_api.swarm_state, "GET", token=rt.token, route=route, params={"at": "3"}
    )
    assert state["nodes"] == source_state["nodes"]
    status, latest, _ = call(http_api.fork_swarm, "POST", token=rt.token, route=route)
    assert status == 201 and latest["status"] == "completed"
    assert latest["forked_from"]["seq"] == done["seq"]
    # The other user sees neither fork.
    for fork_id in (fork["swarm_id"], latest["swarm_id"]):
        status, _, _ = call(http_api.get_swarm, "GET", token=other, route={"swarm_id": fork_id})
        assert status == 404
    # Resumed, the fork runs to the same report without calling the model (its usage stays
    # what the source had used by step 3).
    rt.swarm_id = fork["swarm_id"]
    fork_route = {"swarm_id": fork["swarm_id"]}
    status, forked, _ = call(http_api.get_swarm, "GET", token=rt.token, route=fork_route)
    status, _, _ = call(http_api.resume_swarm, "POST", token=rt.token, route=fork_route)
    assert status == 202
    drain(rt)
    status, finished, _ = call(http_api.get_swarm, "GET", token=rt.token, route=fork_route)
    assert finished["status"] == "completed"
    assert finished["final_report"] == done["final_report"]
    assert finished["usage"] == forked["usage"]
    assert finished["usage"]["llm_calls"] < done["usage"]["llm_calls"]
