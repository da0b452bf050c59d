"""The service functions and the worker together, on the in-memory adapters."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from swarm_core.adapters.offline_llm import OfflineScriptedLLM
from swarm_core.bootstrap import InMemorySwarmApp, MemoryAdapters, build_app, build_in_memory
from swarm_core.commits import Outcome
from swarm_core.in_process import drain, reply_through_services, run_until_settled, waiting_nodes
from swarm_core.llm import LLMError, LLMRequest, LLMResult
from swarm_core.models import Lifecycle, SwarmConfig, SwarmStatus
from swarm_core.operations import parse_operation
from swarm_core.ports import chat_stream
from swarm_core.quotas import QuotaExceeded
from swarm_core.services import InvalidState, NotFound
from swarm_core.settings import Settings

USER = "alice"


def reply_all(
    app: InMemorySwarmApp, swarm_id: str, text: str = "A long enough answer, thanks."
) -> int:
    nodes = waiting_nodes(app, swarm_id)
    for node in nodes:
        app.services.post_user_message(USER, swarm_id, node.node_id, text, None)
    return len(nodes)


def run_to_end(app: InMemorySwarmApp, swarm_id: str) -> None:
    answer = reply_through_services(app, USER, swarm_id, lambda node, chat: "A long enough answer.")
    run_until_settled(app, swarm_id, answer)


@pytest.fixture
def app() -> InMemorySwarmApp:
    return build_in_memory()


@pytest.fixture
def spawned(app: InMemorySwarmApp) -> str:
    swarm = app.services.create_swarm(USER, "Plan a 3-day trip to Lisbon")
    app.services.spawn(USER, swarm.swarm_id)
    return swarm.swarm_id


def test_create_then_spawn_runs_to_completion(app, spawned):
    run_to_end(app, spawned)
    swarm = app.services.get_swarm(USER, spawned)
    assert swarm.status == SwarmStatus.COMPLETED
    assert swarm.final_report and swarm.final_report.startswith("Final plan")
    assert swarm.node_counts == {"terminated": swarm.node_count}
    assert swarm.usage.llm_calls > 0
    summary = app.adapters.store.get_summary(USER, spawned)
    assert summary is not None and summary.status == SwarmStatus.COMPLETED


def test_another_users_swarm_is_not_found(app, spawned):
    with pytest.raises(NotFound):
        app.services.get_swarm("mallory", spawned)
    for call in (app.services.pause, app.services.spawn, app.services.delete_swarm):
        with pytest.raises(NotFound):
            call("mallory", spawned)
    with pytest.raises(NotFound):
        app.services.state("mallory", spawned)


def test_spawning_twice_is_a_conflict(app, spawned):
    with pytest.raises(InvalidState):
        app.services.spawn(USER, spawned)


def test_pause_parks_work_and_resume_re_enqueues_it_in_order(app, spawned):
    drain(app, limit=3)
    app.services.pause(USER, spawned)
    before = app.services.get_swarm(USER, spawned).seq
    waiting = app.adapters.queue.pending_bodies()
    assert waiting
    drain(app)
    swarm = app.services.get_swarm(USER, spawned)
    assert swarm.seq == before + 0, "nothing runs while paused"
    assert [p.model_dump_json() for p in swarm.parked] == [
        parse_operation(b).model_dump_json() for b in waiting
    ]
    with pytest.raises(InvalidState):
        app.services.pause(USER, spawned)
    app.services.resume(USER, spawned)
    assert app.services.get_swarm(USER, spawned).parked == []
    assert [parse_operation(b) for b in app.adapters.queue.pending_bodies()] == swarm.parked
    run_to_end(app, spawned)
    assert app.services.get_swarm(USER, spawned).status == SwarmStatus.COMPLETED


def test_resume_of_a_running_swarm_is_a_conflict(app, spawned):
    with pytest.raises(InvalidState):
        app.services.resume(USER, spawned)


def test_a_message_to_a_node_not_waiting_is_a_conflict(app, spawned):
    drain(app)
    root = app.services.get_swarm(USER, spawned).root_node_id
    assert root is not None
    with pytest.raises(InvalidState):
        app.services.post_user_message(USER, spawned, root, "hi", None)
    with pytest.raises(NotFound):
        app.services.post_user_message(USER, spawned, "nope", "hi", None)


def test_the_same_client_message_id_creates_one_message(app, spawned):
    drain(app)
    node = waiting_nodes(app, spawned)[0]
    ids = [
        app.services.post_user_message(USER, spawned, node.node_id, "Salty snacks and sun", "c-1")
        for _ in range(2)
    ]
    drain(app)
    again = app.services.post_user_message(
        USER, spawned, node.node_id, "Salty snacks and sun", "c-1"
    )
    assert ids[0] == ids[1] == again
    chat = app.adapters.content.read(chat_stream(spawned, node.node_id))
    assert [m["content"] for m in chat if m["role"] == "user"] == ["Salty snacks and sun"]


def user_messages(app: InMemorySwarmApp, swarm_id: str, node_id: str) -> list[dict[str, Any]]:
    chat = app.adapters.content.read(chat_stream(swarm_id, node_id))
    return [m for m in chat if m["role"] == "user"]


def test_an_accepted_message_is_in_the_chat_before_any_step_runs(app, spawned):
    drain(app)
    node = waiting_nodes(app, spawned)[0]
    accepted = app.services.post_user_message(USER, spawned, node.node_id, "Salty, please", "a")
    messages = user_messages(app, spawned, node.node_id)
    assert [(m["message_id"], m["seq"]) for m in messages] == [(accepted.message_id, accepted.seq)]
    assert accepted.seq == app.services.get_swarm(USER, spawned).seq
    chats = {c["node_id"]: c for c in app.services.chats(USER, spawned)}
    assert chats[node.node_id]["waiting_for_user"] is False, "answered, though not resumed yet"
    assert app.services.interrupts(USER, spawned) == []
    (answered,) = app.services.interrupts(USER, spawned, "all")
    assert answered.status == "answered" and answered.answer_message_ids == [accepted.message_id]
    events = app.services.history(USER, spawned, after=accepted.seq - 1)["events"]
    # The node, its question answered, comes first: a page rendering live events one by one
    # never shows the answer under a question still marked open.
    assert [e["type"] for e in events] == ["node.updated", "interrupt.answered", "chat.message"]


def test_answers_sent_before_the_node_resumes_are_all_kept_in_order(app, spawned):
    drain(app)
    node = waiting_nodes(app, spawned)[0]
    texts = ["First thought.", "Second thought.", "Third, longer thought about budget and pace."]
    accepted = [
        app.services.post_user_message(USER, spawned, node.node_id, text, None) for text in texts
    ]
    assert len({a.message_id for a in accepted}) == 3
    assert [a.seq for a in accepted] == sorted(a.seq for a in accepted)
    assert [m["content"] for m in user_messages(app, spawned, node.node_id)] == texts
    drain(app)
    seen = app.adapters.store.get_node(spawned, node.node_id).value
    users = [m["content"] for m in seen.context["conversation"] if m["role"] == "user"]
    assert users == texts, "the node was given every answer, in order"


def test_a_reused_client_message_id_with_other_content_is_a_conflict(app, spawned):
    drain(app)
    node = waiting_nodes(app, spawned)[0]
    app.services.post_user_message(USER, spawned, node.node_id, "Salty", "c-1")
    with pytest.raises(InvalidState, match="other content"):
        app.services.post_user_message(USER, spawned, node.node_id, "Sweet", "c-1")
    assert [m["content"] for m in user_messages(app, spawned, node.node_id)] == ["Salty"]


def test_a_message_after_the_conversation_or_the_swarm_ended_is_a_conflict(app, spawned):
    drain(app)
    node = waiting_nodes(app, spawned)[0]
    run_to_end(app, spawned)
    seq = app.services.get_swarm(USER, spawned).seq
    with pytest.raises(InvalidState):
        app.services.post_user_message(USER, spawned, node.node_id, "one more thing", None)
    assert app.services.get_swarm(USER, spawned).seq == seq, "nothing changed"


def test_a_failed_resume_is_retried_with_the_same_committed_answer(app, spawned):
    """An outage while resuming: the `user_reply` fails on every delivery and lands in the poison
    queue; retrying the node resumes it with the answer the user gave, once."""
    drain(app)
    node = waiting_nodes(app, spawned)[0]
    app.services.post_user_message(USER, spawned, node.node_id, "Salty and sunny, please", None)
    message = app.adapters.queue.receive()
    assert parse_operation(message.body).kind == "user_reply"
    app.adapters.queue.ack(message)  # failed maxDequeueCount times: the host moved it away
    app.worker.fail_poisoned(parse_operation(message.body))
    failed = app.adapters.store.get_node(spawned, node.node_id).value
    assert failed.lifecycle == Lifecycle.FAILED
    swarm = app.services.get_swarm(USER, spawned)
    assert swarm.failed_nodes == 1 and "failed on every retry" in (swarm.error or "")
    with pytest.raises(InvalidState):  # a failed node's conversation takes no message
        app.services.post_user_message(USER, spawned, node.node_id, "hello?", None)
    app.services.retry_node(USER, spawned, node.node_id)
    assert app.adapters.store.get_node(spawned, node.node_id).value.lifecycle == "waiting_for_user"
    run_to_end(app, spawned)
    assert app.services.get_swarm(USER, spawned).status == SwarmStatus.COMPLETED
    done = app.adapters.store.get_node(spawned, node.node_id).value
    assert "Salty and sunny, please" in (done.report or "")
    assert [m["content"] for m in user_messages(app, spawned, node.node_id)] == [
        "Salty and sunny, please"
    ], "the answer is in the chat once"


def test_state_at_an_earlier_seq_replays_the_history(app, spawned):
    run_to_end(app, spawned)
    now = app.services.state(USER, spawned)
    assert now["seq"] == app.services.get_swarm(USER, spawned).seq
    assert all(n["lifecycle"] == "terminated" for n in now["nodes"])
    assert app.services.state(USER, spawned, at=1)["nodes"] == []  # only the spawn command
    early = app.services.state(USER, spawned, at=2)
    assert early["seq"] == 2
    # The spawn step created the root and ran its `start`: it plans.
    assert [n["lifecycle"] for n in early["nodes"]] == ["running"]
    middle = app.services.state(USER, spawned, at=now["seq"] // 2)
    assert 1 < len(middle["nodes"]) <= len(now["nodes"])
    assert app.services.state(USER, spawned, at=now["seq"])["nodes"] == now["nodes"]


def test_state_at_a_seq_starts_from_the_snapshot_before_it_and_writes_nothing():
    import secrets

    from swarm_core.settings import Settings

    app = build_in_memory(
        settings=Settings(BCRYPT_ROUNDS=4, AUTH_SECRET=secrets.token_urlsafe(32), SNAPSHOT_EVERY=5)
    )
    swarm_id = app.services.create_swarm(USER, "Plan a 3-day trip to Lisbon").swarm_id
    app.services.spawn(USER, swarm_id)
    run_to_end(app, swarm_id)
    latest = app.services.get_swarm(USER, swarm_id).seq
    content = app.adapters.content
    snapshots = [s for s in range(1, latest + 1) if content.get_snapshot(swarm_id, s)]
    assert snapshots == list(range(5, latest + 1, 5)), "a snapshot every 5 commits"

    reads: list[tuple[int, int]] = []
    read_batches = content.read_batches

    def counted(stream, mark, after_seq, until_seq):  # type: ignore[no-untyped-def]
        reads.append((after_seq, until_seq))
        return read_batches(stream, mark, after_seq, until_seq)

    def refused(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a read wrote")

    content.read_batches = counted  # type: ignore[method-assign]
    content.put_snapshot = refused  # type: ignore[method-assign]
    content.append = refused  # type: ignore[method-assign]
    state = app.services.state(USER, swarm_id, at=13)
    assert state["seq"] == 13 and state["latest_seq"] == latest
    assert reads == [(10, 13)], "only the steps after the snapshot at 10"


def test_a_snapshot_that_does_not_fit_its_history_is_replayed_past_from_the_start():
    """A state snapshot missing a node that the steps after it change (written wrong, by a
    bug or by hand): `state?at=` and `history?after=` notice, and replay from the start."""
    import secrets

    from swarm_core.ports import STREAM_START
    from swarm_core.settings import Settings

    app = build_in_memory(
        settings=Settings(BCRYPT_ROUNDS=4, AUTH_SECRET=secrets.token_urlsafe(32), SNAPSHOT_EVERY=5)
    )
    swarm_id = app.services.create_swarm(USER, "Plan a 3-day trip to Lisbon").swarm_id
    app.services.spawn(USER, swarm_id)
    run_to_end(app, swarm_id)
    content = app.adapters.content
    state, history = (
        app.services.state(USER, swarm_id, at=13),
        app.services.history(USER, swarm_id, after=11),
    )
    stream = f"{swarm_id}/history"
    changed = {
        changed["node_id"]
        for batch in content.read_batches(stream, STREAM_START, 10, 13)
        for changed in (batch.commit or {}).get("nodes", [])
        if "all" not in changed["changes"]
    }
    snapshot = content.get_snapshot(swarm_id, 10)
    assert changed and snapshot is not None
    wrong = [n for n in snapshot["nodes"] if n["node_id"] not in changed]
    content.put_snapshot(swarm_id, 10, {**snapshot, "nodes": wrong})
    assert app.services.state(USER, swarm_id, at=13) == state
    assert app.services.history(USER, swarm_id, after=11) == history


def test_history_after_pages_without_gaps(app, spawned):
    run_to_end(app, spawned)
    seen: list[int] = []
    after = 0
    while True:
        page = app.services.history(USER, spawned, after=after, limit=7)
        if not page["events"]:
            break
        seen.extend(e["seq"] for e in page["events"])
        after = page["next_after"]
    total = app.services.get_swarm(USER, spawned).seq
    assert sorted(set(seen)) == list(range(1, total + 1))
    assert seen == sorted(seen)


def test_chats_and_node_detail(app, spawned):
    drain(app)
    chats = app.services.chats(USER, spawned)
    assert any(c["waiting_for_user"] for c in chats)
    node_id = next(c["node_id"] for c in chats if c["waiting_for_user"])
    messages = app.services.chat_messages(USER, spawned, node_id)
    assert messages[0]["role"] == "agent"
    detail = app.services.node_detail(USER, spawned, node_id)
    assert detail["journal"] and "messages" in detail["journal"][0]["data"]
    assert detail["logs"]


def test_delete_removes_everything(app, spawned):
    run_to_end(app, spawned)
    app.services.delete_swarm(USER, spawned)
    with pytest.raises(NotFound):
        app.services.get_swarm(USER, spawned)
    assert app.adapters.store.list_nodes(spawned) == []
    assert app.adapters.content.read(f"{spawned}/history") == []
    # The tombstone goes with maintenance's purge (tests/faults/test_delete_is_final.py).
    app.services.maintain(stuck_after=timedelta(0))
    assert app.adapters.store.get_swarm(spawned) is None
    assert app.adapters.store.get_summary(USER, spawned) is None


def test_listing_is_newest_first_and_paged(app):
    ids = [app.services.create_swarm(USER, f"goal {i}").swarm_id for i in range(5)]
    app.services.create_swarm("bob", "not alice's")
    page, token = app.adapters.store.list_summaries(USER, 2)
    seen = [s.swarm_id for s in page]
    while token:
        page, token = app.adapters.store.list_summaries(USER, 2, token)
        seen.extend(s.swarm_id for s in page)
    assert seen == list(reversed(ids))


def test_operations_for_a_deleted_or_finished_swarm_are_dropped(app, spawned):
    message = app.adapters.queue.receive()
    assert message is not None
    app.services.delete_swarm(USER, spawned)
    assert app.worker.process(message.body) == Outcome.DROPPED


class FailingLLM:
    def __init__(self, retryable: bool) -> None:
        self.retryable = retryable
        self.inner = OfflineScriptedLLM()

    def complete(self, request: LLMRequest, response_model: Any) -> LLMResult:
        if request.task == "execute":
            raise LLMError("model said no", retryable=self.retryable)
        return self.inner.complete(request, response_model)


def test_a_permanent_llm_error_fails_the_node_and_retry_runs_it_again():
    llm = FailingLLM(retryable=False)
    app = build_in_memory(llm)
    config = SwarmConfig(limits={"max_depth": 0})  # the root executes
    swarm = app.services.create_swarm(USER, "Write a haiku", config)
    app.services.spawn(USER, swarm.swarm_id)
    drain(app)
    root = app.adapters.store.list_nodes(swarm.swarm_id)[0]
    assert root.lifecycle == Lifecycle.FAILED
    assert "model said no" in (root.error or "")
    events = app.services.history(USER, swarm.swarm_id)["events"]
    assert any(e["type"] == "node.failed" for e in events)
    llm.retryable = None  # type: ignore[assignment]
    app.worker.llm = OfflineScriptedLLM()
    app.services.retry_node(USER, swarm.swarm_id, root.node_id)
    drain(app)
    assert app.services.get_swarm(USER, swarm.swarm_id).status == SwarmStatus.COMPLETED


def test_a_retryable_llm_error_leaves_the_message_for_the_queue():
    app = build_in_memory(FailingLLM(retryable=True))
    swarm = app.services.create_swarm(USER, "Write a haiku", SwarmConfig(limits={"max_depth": 0}))
    app.services.spawn(USER, swarm.swarm_id)
    with pytest.raises(LLMError):
        drain(app)
    root = app.adapters.store.list_nodes(swarm.swarm_id)[0]
    assert root.lifecycle == Lifecycle.RUNNING, "nothing committed: the queue will retry"


def test_maintenance_redrives_a_commit_whose_worker_died():
    from datetime import timedelta

    from tests.harness import InjectedCrash

    app = build_in_memory()
    swarm = app.services.create_swarm(USER, "Plan a picnic")
    app.services.spawn(USER, swarm.swarm_id)
    message = app.adapters.queue.receive()
    store = app.adapters.store

    class DiesAfterCommit:
        """The worker dies right after its commit point: the effects (the next operation, the
        history) are never applied, and no message is left to re-drive them."""

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        def replace_swarm(self, new: Any, etag: str, nodes: Any = (), **deletes: Any) -> str:
            store.replace_swarm(new, etag, nodes, **deletes)
            raise InjectedCrash("after replace_swarm")

    app.worker.committer.store = DiesAfterCommit()  # type: ignore[assignment]
    with pytest.raises(InjectedCrash):
        app.worker.process(message.body)
    app.adapters.queue.ack(message)  # the message is gone (e.g. it expired)
    assert len(app.adapters.store.list_nodes(swarm.swarm_id)) == 1, "committed with the step"
    assert not app.adapters.queue.pending_bodies(), "its next operation was never enqueued"
    counts = app.services.maintain(stuck_after=timedelta(0), idle_after=timedelta(hours=1))
    assert counts["redriven"] == 1
    assert len(app.adapters.queue.pending_bodies()) == 1, "enqueued by the re-drive"
    app.worker.committer.store = app.adapters.store
    run_to_end(app, swarm.swarm_id)
    assert app.services.get_swarm(USER, swarm.swarm_id).status == SwarmStatus.COMPLETED


def test_maintenance_announces_a_swarm_idle_on_the_user(app, spawned):
    from datetime import timedelta

    drain(app)
    assert waiting_nodes(app, spawned)
    busy = app.services.maintain(stuck_after=timedelta(hours=1), idle_after=timedelta(hours=1))
    assert busy["waiting_for_user"] == 0
    counts = app.services.maintain(stuck_after=timedelta(hours=1), idle_after=timedelta(0))
    assert counts["waiting_for_user"] == 1
    assert app.services.get_swarm(USER, spawned).status == SwarmStatus.WAITING_FOR_USER
    events = app.services.history(USER, spawned)["events"]
    assert (
        events[-1]["type"] == "swarm.status" and events[-1]["data"]["status"] == "waiting_for_user"
    )
    run_to_end(app, spawned)  # the user's reply brings it back to running, then completed
    assert app.services.get_swarm(USER, spawned).status == SwarmStatus.COMPLETED


def test_the_worker_and_the_services_share_one_committer(app):
    assert app.worker.committer is app.services.committer is app.committer


def test_a_node_that_decided_to_report_takes_no_more_messages(app, spawned):
    drain(app)
    node = waiting_nodes(app, spawned)[0]
    app.services.post_user_message(
        USER, spawned, node.node_id, "A long and useful answer here", None
    )
    # Run until the node decided to report, but not its terminate step.
    app.worker.run_next_steps = 0
    while (message := app.adapters.queue.receive()) is not None:
        if parse_operation(message.body).kind == "terminate":
            app.adapters.queue.release(message)
            break
        app.worker.process(message.body)
        app.adapters.queue.ack(message)
    assert app.adapters.store.get_node(spawned, node.node_id).value.reporting
    with pytest.raises(InvalidState, match="reporting"):
        app.services.post_user_message(USER, spawned, node.node_id, "wait, one more thing", None)


def test_every_answer_to_an_interrupt_is_in_its_history(app, spawned):
    drain(app)
    node = waiting_nodes(app, spawned)[0]
    first = app.services.post_user_message(USER, spawned, node.node_id, "First", None)
    second = app.services.post_user_message(USER, spawned, node.node_id, "Second", None)
    (interrupt,) = app.services.interrupts(USER, spawned, "all")
    assert interrupt.answer_message_ids == [first.message_id, second.message_id]


def test_effects_applied_in_parallel_give_the_same_swarm():
    """The Azure app applies a commit's writes on several threads (bootstrap.build_azure); the
    swarm it ends with is the one the sequential run ends with, event for event."""
    runs = []
    for parallel in (0, 4):
        adapters = MemoryAdapters()
        ids = iter(f"id{i}" for i in range(1000))
        app = build_app(
            Settings(BCRYPT_ROUNDS=4, AUTH_SECRET="p" * 40),
            adapters,
            new_id=ids.__next__,
            parallel_effects=parallel,
        )
        swarm = app.services.create_swarm(USER, "Plan a 3-day trip to Lisbon")
        app.services.spawn(USER, swarm.swarm_id)
        memory_app = InMemorySwarmApp(
            app.settings, adapters, app.committer, app.worker, app.services, app.auth
        )
        run_to_end(memory_app, swarm.swarm_id)
        history = app.services.history(USER, swarm.swarm_id)["events"]
        final = app.services.get_swarm(USER, swarm.swarm_id)
        runs.append(
            (
                final.status,
                final.final_report,
                [(e["seq"], e["index"], e["type"]) for e in history],
            )
        )
    assert runs[0][0] == SwarmStatus.COMPLETED
    assert runs[0] == runs[1]


def test_a_user_may_have_only_so_many_active_swarms():
    app = build_in_memory(settings=Settings(BCRYPT_ROUNDS=4, ACTIVE_SWARMS_PER_USER=2))
    first, second, third = (app.services.create_swarm(USER, f"goal {i}") for i in range(3))
    app.services.spawn(USER, first.swarm_id)
    app.services.spawn(USER, second.swarm_id)
    with pytest.raises(QuotaExceeded, match="2 running swarms"):
        app.services.spawn(USER, third.swarm_id)
    assert app.services.get_swarm(USER, third.swarm_id).status == SwarmStatus.CREATED
    app.services.spawn("bob", app.services.create_swarm("bob", "g").swarm_id)  # per user
    app.services.pause(USER, first.swarm_id)
    app.services.spawn(USER, third.swarm_id)  # room again
    with pytest.raises(QuotaExceeded):
        app.services.resume(USER, first.swarm_id)


def test_a_spent_token_budget_pauses_the_swarm_until_it_is_raised():
    llm = CountingLLM()
    app = build_in_memory(llm)
    config = SwarmConfig(limits={"max_tokens_total": 1})
    swarm_id = app.services.create_swarm(USER, "Plan a 3-day trip to Lisbon", config).swarm_id
    app.services.spawn(USER, swarm_id)
    drain(app)
    paused = app.services.get_swarm(USER, swarm_id)
    assert paused.status == SwarmStatus.PAUSED and llm.calls == 1, "one call, then no more"
    assert "token budget is spent" in (paused.paused_reason or "")
    assert len(paused.parked) == 1
    listed = app.services.list_swarms(USER, 10)[0][0]
    assert listed.paused_reason == paused.paused_reason
    last = app.adapters.publisher.published[swarm_id][-1]
    assert last["data"] == {"status": "paused", "reason": paused.paused_reason}
    with pytest.raises(InvalidState, match=r"higher limits\.max_tokens_total"):
        app.services.resume(USER, swarm_id)
    resumed = app.services.resume(USER, swarm_id, max_tokens_total=10_000_000)
    assert resumed.status == SwarmStatus.RUNNING and resumed.paused_reason is None
    run_to_end(app, swarm_id)
    done = app.services.get_swarm(USER, swarm_id)
    assert (
        done.status == SwarmStatus.COMPLETED and done.config.limits.max_tokens_total == 10_000_000
    )


class CountingLLM:
    def __init__(self) -> None:
        self.inner = OfflineScriptedLLM()
        self.calls = 0

    def complete(self, request: LLMRequest, response_model: Any) -> LLMResult:
        self.calls += 1
        return self.inner.complete(request, response_model)


def test_without_tracing_operations_carry_no_trace_context(app, spawned):
    message = app.adapters.queue.receive()
    assert message is not None
    assert parse_operation(message.body).traceparent is None
