"""The web console in a real browser: Debian's Chromium driven by Playwright, against the dev host
on the local emulators (the fixtures of test_end_to_end.py). A user signs up, creates and spawns
a swarm, answers every question through the page, sees the tree complete and the final report,
drags the slider back, opens a node's journal; the page survives a dropped WebSocket with no
duplicated or missing message; another user sees none of it. The screenshots in
docs/screenshots/ are taken here."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.messaging.webpubsubservice import WebPubSubServiceClient

from tests.e2e.test_end_to_end import ANSWER, ROOT, DevHost, http
from tests.e2e.test_end_to_end import host as host  # the same dev host fixture

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.emulators

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "docs" / "screenshots"
PASSWORD = "a long passphrase"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: bash scripts/bootstrap.sh installs it")
    with playwright_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


class Console:
    """One user's tab: the page plus what it reported (console errors, dialogs)."""

    def __init__(self, browser: Any, host: DevHost) -> None:
        self.context = browser.new_context(viewport={"width": 1360, "height": 860})
        self.page = self.context.new_page()
        self.page.set_default_timeout(20_000)
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on(
            "console",
            lambda msg: self.errors.append(msg.text) if msg.type == "error" else None,
        )
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.root = host.base.removesuffix("/api") + "/"
        self.username = f"c{uuid.uuid4().hex[:10]}"

    def sign_up(self) -> None:
        self.page.goto(self.root)
        self.page.fill("input[name=username]", self.username)
        self.page.fill("input[name=password]", PASSWORD)
        self.page.click("text=Sign up")
        self.page.wait_for_selector("text=Your swarms")

    @property
    def token(self) -> str:
        return str(self.page.evaluate("sessionStorage.getItem('swarm.console.token')"))

    def close(self) -> None:
        self.context.close()


def answer_questions_until_done(console: Console, drop: Any, screenshot: bool = False) -> int:
    """Answer every open question through the page until the final report shows; call `drop`
    once, right after the first answer (and, with `screenshot`, take the README's picture of a
    swarm mid-run then). Returns the number of answers sent."""
    page = console.page
    answered: set[tuple[str, int]] = set()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if page.locator("[data-testid=final-report]").count():
            return len(answered)
        asking = page.locator(".chat-item:has(.dot)")
        if not asking.count():
            page.wait_for_timeout(200)
            continue
        try:
            asking.first.click(timeout=2000)
        except playwright_api.TimeoutError:
            # The question was there when counted and is gone now (the list re-rendered as an
            # event came in): look again. A question that never comes back fails at the deadline.
            continue
        chat = page.locator("[data-testid=chat]")
        node_id = chat.get_attribute("data-node-id")
        box = chat.locator("textarea[name=answer]")
        if not box.count():
            page.wait_for_timeout(200)
            continue
        # One answer per question, as a person gives it: the key is the agent's messages so far.
        questions = chat.locator(".message.agent").count()
        key = (str(node_id), questions)
        if key in answered or not questions:
            page.wait_for_timeout(200)
            continue
        shown = chat.locator(".message").count()
        answered.add(key)
        box.fill(ANSWER)
        chat.locator("button[type=submit]").click()
        page.wait_for_function(
            "([id, n]) => document.querySelectorAll("
            "`[data-testid=chat][data-node-id='${id}'] .message`).length > n",
            arg=[node_id, shown],
        )
        if len(answered) == 1:
            if screenshot:
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SCREENSHOTS / "swarm.png"))
            drop()
    raise AssertionError("the swarm did not complete in the page")


def test_a_whole_swarm_from_the_browser(browser: Any, host: DevHost, emulator_stack: Any) -> None:
    console = Console(browser, host)
    page = console.page
    console.sign_up()

    # Create: a goal that looks like markup is shown as those characters, never run.
    goal = "<script>alert(1)</script> Plan a 3-day trip to Lisbon"
    page.fill("textarea[name=goal]", goal)
    page.click("text=Options (limits, model, system prompt)")
    page.fill("input[name=offline_breadth]", "2")
    page.fill("input[name=offline_depth]", "1")
    page.click("text=Create swarm")
    row = page.locator("tr[data-swarm-id]").first
    row.locator("text=created").wait_for()
    assert row.locator("td.goal a").inner_text() == goal
    swarm_id = str(row.get_attribute("data-swarm-id"))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "spawn.png"))

    row.locator("button:text('Spawn')").click()
    row.locator(".status-running, .status-waiting_for_user, .status-completed").wait_for()
    row.locator("td.goal a").click()
    page.locator("[data-testid=connection]:text('live')").wait_for()

    # Drop the page's WebSocket from the service side (the session is gone, so the client must
    # open a new connection and catch up from the history) while the swarm is running.
    _, me = http(host, "GET", "/me", token=console.token)
    service = WebPubSubServiceClient.from_connection_string(
        emulator_stack.settings["WEBPUBSUB_CONNECTION_STRING"], hub="swarm"
    )
    dropped: list[bool] = []

    def drop() -> None:
        service.close_user_connections(me["user_id"], reason="dropped by the test")
        dropped.append(True)

    answers = answer_questions_until_done(console, drop, screenshot=True)
    assert answers >= 1 and dropped
    page.locator("[data-testid=connection]:text('live')").wait_for()

    # The page's view is the API's: every node, terminated; the final report.
    _, swarm = http(host, "GET", f"/swarms/{swarm_id}", token=console.token)
    assert swarm["status"] == "completed"
    assert page.locator("[data-testid=final-report] .text").inner_text() == swarm["final_report"]
    _, state = http(host, "GET", f"/swarms/{swarm_id}/state", token=console.token)
    page.wait_for_function(
        "n => document.querySelectorAll('svg.tree .node[data-lifecycle=terminated]').length === n",
        arg=len(state["nodes"]),
    )
    assert page.locator("svg.tree .node").count() == len(state["nodes"])

    # Every chat holds exactly the API's messages: none missing, none twice.
    _, chats = http(host, "GET", f"/swarms/{swarm_id}/chats", token=console.token)
    for chat in chats["chats"]:
        page.click(f".chat-item[data-node-id='{chat['node_id']}']")
        panel = page.locator(f"[data-testid=chat][data-node-id='{chat['node_id']}']")
        _, msgs = http(
            host, "GET", f"/swarms/{swarm_id}/chats/{chat['node_id']}", token=console.token
        )
        want = [m["message_id"] for m in msgs["messages"]]
        page.wait_for_function(
            "([id, n]) => document.querySelectorAll("
            "`[data-testid=chat][data-node-id='${id}'] .message`).length === n",
            arg=[chat["node_id"], len(want)],
        )
        shown = panel.locator(".message").evaluate_all("els => els.map(e => e.dataset.messageId)")
        assert shown == want

    # The time slider: back to an early step shows fewer nodes; "Live" shows them all again.
    slider = page.locator("input[type=range]")
    early = next(
        e["seq"]
        for e in http(host, "GET", f"/swarms/{swarm_id}/history", token=console.token)[1]["events"]
        if e["type"] == "node.spawned"
    )
    slider.fill(str(early))
    page.locator(f"[data-testid=position]:text('step {early} of')").wait_for()
    page.wait_for_function("() => document.querySelectorAll('svg.tree .node').length === 1")
    page.click("button:text('Live')")
    page.wait_for_function(
        "n => document.querySelectorAll('svg.tree .node').length === n", arg=len(state["nodes"])
    )

    # A node's panel: directive, report and its journal, collapsed until opened.
    root = swarm["root_node_id"]
    page.click(f"svg.tree .node[data-node-id='{root}']")
    panel = page.locator("[data-testid=node-panel]")
    panel.locator(".journal-entry").first.wait_for()
    first = panel.locator(".journal-entry").first
    assert not first.locator(".response").is_visible()
    first.locator("summary").click()
    assert first.locator(".response pre").is_visible()
    assert panel.locator(".report").inner_text() == swarm["final_report"]
    page.screenshot(path=str(SCREENSHOTS / "node.png"))

    assert console.dialogs == []  # the goal's <script> never ran
    assert [e for e in console.errors if "Content Security Policy" in e] == []
    console.close()


def test_strict_csp_isolation_and_delete(browser: Any, host: DevHost) -> None:
    owner = Console(browser, host)
    owner.sign_up()
    owner.page.fill("textarea[name=goal]", "Owner's private goal")
    owner.page.click("text=Create swarm")
    owner.page.locator("tr[data-swarm-id]").first.wait_for()
    swarm_id = owner.page.locator("tr[data-swarm-id]").first.get_attribute("data-swarm-id")

    other = Console(browser, host)
    response = other.page.goto(other.root)
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    other.sign_up()
    other.page.locator("text=No swarms yet").wait_for()
    assert other.page.locator("text=Owner's private goal").count() == 0
    other.page.goto(f"{other.root}#/swarms/{swarm_id}")
    other.page.locator("[role=alert]").wait_for()
    assert "not found" in other.page.locator("[role=alert]").inner_text().lower()
    assert other.page.locator("text=Owner's private goal").count() == 0

    # The owner deletes it, after a confirmation.
    row = owner.page.locator(f"tr[data-swarm-id='{swarm_id}']")
    row.locator("button:text('Delete')").click()
    row.locator("button:text('Yes, delete')").click()
    row.wait_for(state="detached")
    assert http(host, "GET", f"/swarms/{swarm_id}", token=owner.token)[0] == 404
    owner.close()
    other.close()


def test_a_step_lost_on_the_way_is_read_from_the_history(browser: Any, host: DevHost) -> None:
    """Live delivery is best effort: the page notices a step it missed (the next event does not
    follow the last one it has, by `seq` and `index`) and reads it from the history. Here the
    WebSocket loses every event of the step in which the agent asks its first question; the
    user answers (from another tab: the API); the page gets that step's events, and the question
    must show. The page's own chat reads answer nothing, so only the history can bring it."""
    console = Console(browser, host)
    page = console.page
    lost: dict[str, Any] = {}

    def route(ws: Any) -> None:
        server = ws.connect_to_server()

        def from_server(message: str | bytes) -> None:
            frame = json.loads(message) if isinstance(message, str) else {}
            event = frame.get("data") if isinstance(frame.get("data"), dict) else {}
            data = event.get("data") or {}
            if (
                "seq" not in lost
                and event.get("type") == "chat.message"
                and data.get("role") == "agent"
            ):
                lost.update(
                    seq=event["seq"], message_id=data["message_id"], node_id=data["node_id"]
                )
            if event.get("seq") is not None and event.get("seq") == lost.get("seq"):
                return  # lost on the way: never reaches the page
            ws.send(message)

        server.on_message(from_server)
        ws.on_message(lambda message: server.send(message))

    page.route_web_socket(re.compile(r".*/client/hubs/.*"), route)
    page.route(
        re.compile(r".*/api/swarms/[^/]+/chats/[^/?]+(\?.*)?$"),
        lambda r: r.fulfill(json={"messages": []}) if r.request.method == "GET" else r.continue_(),
    )
    console.sign_up()
    page.fill("textarea[name=goal]", "Plan a 3-day trip to Lisbon")
    page.click("text=Create swarm")
    row = page.locator("tr[data-swarm-id]").first
    swarm_id = str(row.get_attribute("data-swarm-id"))
    row.locator("td.goal a").click()
    page.locator("[data-testid=connection]:text('live')").wait_for()
    page.click("button:text('Spawn')")

    deadline = time.monotonic() + 60
    while "seq" not in lost and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert "seq" in lost, "the agent asked nothing"
    path = f"/swarms/{swarm_id}/chats/{lost['node_id']}/messages"
    status, _ = http(host, "POST", path, {"content": ANSWER}, token=console.token)
    assert status == 202
    page.click(f".chat-item[data-node-id='{lost['node_id']}']")
    page.locator(f".message[data-message-id='{lost['message_id']}']").wait_for(timeout=15_000)
    console.close()


def test_fork_from_the_slider(browser: Any, host: DevHost) -> None:
    """The slider back to a step, "Fork at step N": the fork opens, says where it came from,
    shows the source's tree at that step, and runs on when resumed."""
    console = Console(browser, host)
    page = console.page
    console.sign_up()
    config = {"offline_breadth": 2, "offline_depth": 1}
    goal = "Plan a 3-day trip to Lisbon"
    status, body = http(host, "POST", "/swarms", {"goal": goal, "config": config}, console.token)
    assert status == 201, body
    swarm_id = body["swarm_id"]
    http(host, "POST", f"/swarms/{swarm_id}/spawn", token=console.token)
    page.goto(f"{console.root}#/swarms/{swarm_id}")
    page.locator("[data-testid=connection]:text('live')").wait_for()
    answer_questions_until_done(console, lambda: None)
    events = http(host, "GET", f"/swarms/{swarm_id}/history", token=console.token)[1]["events"]
    at = next(e["seq"] for e in events if e["type"] == "interrupt.opened")
    _, then = http(host, "GET", f"/swarms/{swarm_id}/state?at={at}", token=console.token)

    page.locator("input[type=range]").fill(str(at))
    page.locator(f"[data-testid=position]:text('step {at} of')").wait_for()
    page.click(f"button:text('Fork at step {at}')")
    page.locator("[data-testid=forked-from]").wait_for()
    fork_id = page.evaluate("() => location.hash.split('/').pop()")
    assert fork_id != swarm_id
    assert f"after its step {at}" in page.locator("[data-testid=forked-from]").inner_text()
    page.locator(".status-paused").first.wait_for()
    page.wait_for_function(
        "n => document.querySelectorAll('svg.tree .node').length === n", arg=len(then["nodes"])
    )
    page.click("button:text('Resume')")
    answer_questions_until_done(console, lambda: None)
    _, fork = http(host, "GET", f"/swarms/{fork_id}", token=console.token)
    _, source = http(host, "GET", f"/swarms/{swarm_id}", token=console.token)
    assert fork["status"] == "completed"
    assert fork["final_report"] == source["final_report"]
    console.close()
