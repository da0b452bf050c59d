"""The contract every store adapter keeps: conditional writes, idempotent appends, paging."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

from swarm_core.models import LLMSettings, Node, SwarmStatus, User
from swarm_core.ports import ConflictError
from swarm_core.swarm import Swarm, SwarmSummary
from tests.contract.conftest import unique
from tests.harness import commits_from, records_from

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def a_swarm(user_id: str = "u1") -> Swarm:
    return Swarm(swarm_id=unique("s"), user_id=user_id, goal="g", created_at=T0, updated_at=T0)


def a_node(swarm_id: str, node_id: str = "n1") -> Node:
    return Node(node_id=node_id, swarm_id=swarm_id, action="execute", name=node_id, directive="d")


# --- swarm store ----------------------------------------------------------------------------


def test_swarm_create_is_exclusive_and_replace_is_conditional(swarm_store):
    swarm = a_swarm()
    etag = swarm_store.create_swarm(swarm)
    with pytest.raises(ConflictError):
        swarm_store.create_swarm(swarm)
    got = swarm_store.get_swarm(swarm.swarm_id)
    assert got.value == swarm and got.etag == etag
    swarm.seq = 1
    new_etag = swarm_store.replace_swarm(swarm, etag)
    assert new_etag != etag
    swarm.seq = 2
    with pytest.raises(ConflictError):
        swarm_store.replace_swarm(swarm, etag)  # stale: someone committed in between
    assert swarm_store.get_swarm(swarm.swarm_id).value.seq == 1
    assert swarm_store.get_swarm(unique("missing")) is None


def test_concurrent_commits_on_one_etag_let_exactly_one_win(swarm_store):
    swarm = a_swarm()
    etag = swarm_store.create_swarm(swarm)
    wins, losses = [], []

    def commit(i: int) -> None:
        mine = swarm.model_copy(update={"seq": i})
        try:
            swarm_store.replace_swarm(mine, etag)
            wins.append(i)
        except ConflictError:
            losses.append(i)

    threads = [threading.Thread(target=commit, args=(i,)) for i in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(losses) == 3
    assert swarm_store.get_swarm(swarm.swarm_id).value.seq == wins[0]


def with_nodes(swarm_store, swarm: Swarm, *nodes: Node) -> str:
    """Commit `nodes` with the swarm (as a step does); the new ETag."""
    got = swarm_store.get_swarm(swarm.swarm_id)
    return swarm_store.replace_swarm(got.value, got.etag, nodes)


def test_a_commit_writes_the_swarm_and_its_nodes_all_or_nothing(swarm_store):
    swarm = a_swarm()
    etag = swarm_store.create_swarm(swarm)
    a, b = a_node(swarm.swarm_id, "a"), a_node(swarm.swarm_id, "b")
    new_etag = swarm_store.replace_swarm(swarm.model_copy(update={"seq": 1}), etag, [a, b])
    got = swarm_store.get_swarm(swarm.swarm_id)
    assert got.etag == new_etag and got.value.seq == 1
    assert swarm_store.get_node(swarm.swarm_id, "a").value == a
    assert swarm_store.get_node(swarm.swarm_id, "b").value == b
    # A node created before is replaced; its ETag moves on.
    before = swarm_store.get_node(swarm.swarm_id, "a")
    changed = a.model_copy(update={"report": "r1"})
    swarm_store.replace_swarm(swarm.model_copy(update={"seq": 2}), new_etag, [changed])
    after = swarm_store.get_node(swarm.swarm_id, "a")
    assert after.value.report == "r1" and after.etag != before.etag
    # A lost race writes nothing: neither the swarm nor any node.
    stale = a.model_copy(update={"report": "stale"})
    fresh = a_node(swarm.swarm_id, "c")
    with pytest.raises(ConflictError):
        swarm_store.replace_swarm(swarm.model_copy(update={"seq": 9}), new_etag, [stale, fresh])
    assert swarm_store.get_swarm(swarm.swarm_id).value.seq == 2
    assert swarm_store.get_node(swarm.swarm_id, "a").value.report == "r1"
    assert swarm_store.get_node(swarm.swarm_id, "c") is None
    assert swarm_store.get_node(swarm.swarm_id, "nope") is None


def test_a_swarm_and_one_of_its_nodes_are_read_together(swarm_store):
    swarm = a_swarm()
    etag = swarm_store.create_swarm(swarm)
    a = a_node(swarm.swarm_id, "a")
    etag = swarm_store.replace_swarm(swarm.model_copy(update={"seq": 1}), etag, [a])
    got, node = swarm_store.get_swarm_and_node(swarm.swarm_id, "a")
    assert got.etag == etag and got.value.seq == 1
    assert node.value == a and node.etag == swarm_store.get_node(swarm.swarm_id, "a").etag
    # A missing node is None, with the swarm; a missing swarm is None, with no node.
    got, node = swarm_store.get_swarm_and_node(swarm.swarm_id, "nope")
    assert got.etag == etag and node is None
    assert swarm_store.get_swarm_and_node(swarm.swarm_id, "bad/id") == (got, None)
    assert swarm_store.get_swarm_and_node(unique("s"), "a") == (None, None)


def test_a_swarm_is_read_with_all_its_nodes(swarm_store):
    swarm, other = a_swarm(), a_swarm()
    etag = swarm_store.create_swarm(swarm)
    swarm_store.create_swarm(other)
    a, b = a_node(swarm.swarm_id, "a"), a_node(swarm.swarm_id, "b")
    etag = swarm_store.replace_swarm(swarm.model_copy(update={"seq": 1}), etag, [a, b])
    got, nodes = swarm_store.get_swarm_and_nodes(swarm.swarm_id)
    assert got.etag == etag and got.value.seq == 1
    assert sorted(nodes, key=lambda n: n.node_id) == [a, b]
    got, nodes = swarm_store.get_swarm_and_nodes(other.swarm_id)
    assert got.value.swarm_id == other.swarm_id and nodes == []
    assert swarm_store.get_swarm_and_nodes(unique("s")) == (None, [])


def test_a_commit_deletes_nodes_with_its_writes_all_or_nothing(swarm_store):
    swarm = a_swarm()
    swarm_store.create_swarm(swarm)
    etag = with_nodes(swarm_store, swarm, *(a_node(swarm.swarm_id, i) for i in ("p", "a", "b")))
    parent = a_node(swarm.swarm_id, "p").model_copy(update={"children_ids": ["c"]})
    # A lost race deletes nothing and writes nothing.
    with pytest.raises(ConflictError):
        swarm_store.replace_swarm(
            swarm.model_copy(update={"seq": 9}), '"stale"', [parent], deleted_node_ids=["a", "b"]
        )
    assert sorted(n.node_id for n in swarm_store.list_nodes(swarm.swarm_id)) == ["a", "b", "p"]
    assert swarm_store.get_node(swarm.swarm_id, "p").value.children_ids == []
    # The winning commit deletes them and writes the rest, at once.
    new_etag = swarm_store.replace_swarm(
        swarm.model_copy(update={"seq": 2}), etag, [parent], deleted_node_ids=["a", "b"]
    )
    got = swarm_store.get_swarm(swarm.swarm_id)
    assert got.etag == new_etag and got.value.seq == 2
    assert [n.node_id for n in swarm_store.list_nodes(swarm.swarm_id)] == ["p"]
    assert swarm_store.get_node(swarm.swarm_id, "a") is None
    assert swarm_store.get_node(swarm.swarm_id, "p").value.children_ids == ["c"]
    # Deletes alone (no node written) are a commit too.
    swarm_store.replace_swarm(swarm.model_copy(update={"seq": 3}), new_etag, deleted_node_ids=["p"])
    assert swarm_store.list_nodes(swarm.swarm_id) == []
    assert swarm_store.get_swarm(swarm.swarm_id).value.seq == 3


def test_a_commit_on_a_deleted_swarm_writes_nothing(swarm_store):
    swarm = a_swarm()
    etag = swarm_store.create_swarm(swarm)
    swarm_store.delete_swarm(swarm.swarm_id)
    with pytest.raises(ConflictError):
        swarm_store.replace_swarm(swarm, etag, [a_node(swarm.swarm_id)])
    assert swarm_store.list_nodes(swarm.swarm_id) == []


def test_nodes_are_listed_per_swarm(swarm_store):
    one, two = a_swarm(), a_swarm()
    for swarm in (one, two):
        swarm_store.create_swarm(swarm)
    with_nodes(swarm_store, one, *(a_node(one.swarm_id, node_id) for node_id in ("a", "b", "c")))
    with_nodes(swarm_store, two, a_node(two.swarm_id, "x"))
    assert sorted(n.node_id for n in swarm_store.list_nodes(one.swarm_id)) == ["a", "b", "c"]
    assert [n.node_id for n in swarm_store.list_nodes(two.swarm_id)] == ["x"]


def test_delete_swarm_removes_its_partition_only(swarm_store):
    one, two = a_swarm(), a_swarm()
    for swarm in (one, two):
        swarm_store.create_swarm(swarm)
        with_nodes(swarm_store, swarm, a_node(swarm.swarm_id))
    swarm_store.delete_swarm(one.swarm_id)
    assert swarm_store.get_swarm(one.swarm_id) is None
    assert swarm_store.list_nodes(one.swarm_id) == []
    assert swarm_store.get_swarm(two.swarm_id) is not None
    assert len(swarm_store.list_nodes(two.swarm_id)) == 1


def test_delete_nodes_keeps_the_swarm_document(swarm_store):
    swarm = a_swarm()
    swarm_store.create_swarm(swarm)
    with_nodes(swarm_store, swarm, a_node(swarm.swarm_id))
    swarm_store.delete_nodes(swarm.swarm_id)
    swarm_store.delete_nodes(swarm.swarm_id)  # idempotent
    assert swarm_store.list_nodes(swarm.swarm_id) == []
    assert swarm_store.get_swarm(swarm.swarm_id) is not None


def test_the_listing_leaves_deleted_swarms_out(swarm_store):
    user, kept, deleted = unique("u"), unique("s"), unique("s")
    swarm_store.put_summary(summary(user, kept, 0))
    swarm_store.put_summary(
        summary(user, deleted, 1).model_copy(update={"status": SwarmStatus.DELETED})
    )
    page, token = swarm_store.list_summaries(user, 10)
    assert [s.swarm_id for s in page] == [kept] and token is None


def summary(user_id: str, swarm_id: str, minutes: int, seq: int = 0) -> SwarmSummary:
    at = T0 + timedelta(minutes=minutes)
    return SwarmSummary(
        swarm_id=swarm_id,
        user_id=user_id,
        goal=f"goal {minutes}",
        status=SwarmStatus.CREATED,
        spawned=False,
        seq=seq,
        created_at=at,
        updated_at=at,
    )


def test_summaries_page_newest_first_per_user(swarm_store):
    user, other = unique("u"), unique("u")
    ids = [unique("s") for _ in range(7)]
    for minutes, swarm_id in enumerate(ids):
        swarm_store.put_summary(summary(user, swarm_id, minutes))
    swarm_store.put_summary(summary(other, unique("s"), 99))
    seen, token, pages = [], None, 0
    while True:
        page, token = swarm_store.list_summaries(user, 3, token)
        assert len(page) <= 3
        seen.extend(s.swarm_id for s in page)
        pages += 1
        if not token:
            break
    assert seen == list(reversed(ids))
    assert pages >= 3


def test_summary_never_goes_back_to_an_older_seq(swarm_store):
    user, swarm_id = unique("u"), unique("s")
    newer = summary(user, swarm_id, 0, seq=5).model_copy(update={"status": SwarmStatus.RUNNING})
    swarm_store.put_summary(newer)
    swarm_store.put_summary(summary(user, swarm_id, 0, seq=3))
    assert swarm_store.get_summary(user, swarm_id).status == SwarmStatus.RUNNING
    swarm_store.delete_summary(user, swarm_id)
    assert swarm_store.get_summary(user, swarm_id) is None


# --- content store ----------------------------------------------------------------------------


def test_appends_are_once_per_seq_and_in_order(content_store):
    stream = f"{unique('s')}/history"
    assert content_store.append(stream, 1, [{"seq": 1, "i": 0}, {"seq": 1, "i": 1}]) is True
    assert content_store.append(stream, 1, [{"seq": 1, "i": 0}]) is False, "re-driven: skipped"
    assert content_store.append(stream, 2, [{"seq": 2, "i": 0}]) is True
    assert content_store.append(stream, 1, [{"seq": 1, "i": 9}]) is False, "late: skipped"
    assert [(r["seq"], r["i"]) for r in content_store.read(stream)] == [(1, 0), (1, 1), (2, 0)]
    assert [r["seq"] for r in content_store.read(stream, after_seq=1)] == [2]
    assert content_store.read(f"{unique('s')}/history") == []


def test_an_append_is_once_per_seq_whatever_its_hint_of_the_seq_before(content_store):
    """`after_seq` only hints where the stream ends: right, behind, ahead or on a stream that
    does not exist, the batch is appended iff the stream's last seq is lower."""
    stream = f"{unique('s')}/chats/n1"
    assert content_store.append(stream, 3, [{"seq": 3, "i": 0}], after_seq=0) is True, "new"
    assert content_store.append(stream, 3, [{"seq": 3, "i": 9}], after_seq=0) is False
    assert content_store.append(stream, 5, [{"seq": 5, "i": 0}], after_seq=3) is True, "right"
    assert content_store.append(stream, 7, [{"seq": 7, "i": 0}], after_seq=9) is True, "ahead"
    assert content_store.append(stream, 8, [{"seq": 8, "i": 0}], after_seq=1) is True, "behind"
    assert content_store.append(stream, 6, [{"seq": 6, "i": 9}], after_seq=5) is False, "late"
    assert [r["seq"] for r in content_store.read(stream)] == [3, 5, 7, 8]
    missing = f"{unique('s')}/chats/n2"
    assert content_store.append(missing, 2, [{"seq": 2, "i": 0}], after_seq=1) is True
    assert content_store.read(missing) == [{"seq": 2, "i": 0}]


def test_racing_appenders_of_one_batch_append_it_once(content_store):
    stream = f"{unique('s')}/chats/n1"
    results: list[bool] = []

    def append() -> None:
        results.append(content_store.append(stream, 7, [{"seq": 7, "content": "hello"}]))

    threads = [threading.Thread(target=append) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]
    assert len(content_store.read(stream)) == 1


def test_read_limit_returns_whole_batches(content_store):
    stream = f"{unique('s')}/history"
    for seq in range(1, 11):
        content_store.append(stream, seq, [{"seq": seq, "i": 0}, {"seq": seq, "i": 1}])
    page = content_store.read(stream, after_seq=2, limit=5)
    assert [r["seq"] for r in page] == [3, 3, 4, 4]
    assert len(content_store.read(stream)) == 20


def test_unicode_and_large_records_round_trip(content_store):
    stream = f"{unique('s')}/chats/n1"
    record = {"seq": 1, "content": "Lisboa ☀️ — naïve café\n" * 2000}
    content_store.append(stream, 1, [record])
    assert content_store.read(stream) == [record]


def test_read_from_a_mark_takes_what_follows_it_up_to_a_seq(content_store):
    from swarm_core.ports import STREAM_START

    stream = f"{unique('s')}/history"
    assert records_from(content_store, stream, STREAM_START, 0, 10) == []
    for seq in range(1, 6):
        content_store.append(stream, seq, [{"seq": seq, "i": 0}, {"seq": seq, "i": 1}])
    mark = content_store.mark(stream)
    assert json.loads(json.dumps(mark)) == mark, "a mark is stored in snapshots: plain JSON"
    for seq in range(6, 11):
        content_store.append(stream, seq, [{"seq": seq, "i": 0}, {"seq": seq, "i": 1}])
    taken = records_from(content_store, stream, mark, 5, 8)
    assert [(r["seq"], r["i"]) for r in taken] == [(s, i) for s in (6, 7, 8) for i in (0, 1)]
    assert [r["seq"] for r in records_from(content_store, stream, mark, 7, 100)] == [
        8,
        8,
        9,
        9,
        10,
        10,
    ]
    from_start = records_from(content_store, stream, STREAM_START, 2, 3)
    assert [r["seq"] for r in from_start] == [3, 3]
    assert records_from(content_store, stream, mark, 10, 20) == []


def test_snapshots_and_claim_checks(content_store):
    swarm_id = unique("s")
    assert content_store.latest_snapshot(swarm_id, 100) is None
    for seq in (10, 20, 30):
        content_store.put_snapshot(swarm_id, seq, {"seq": seq, "nodes": []})
    assert content_store.latest_snapshot(swarm_id, 25)["seq"] == 20
    assert content_store.latest_snapshot(swarm_id, 5) is None
    assert content_store.get_snapshot(swarm_id, 20) == {"seq": 20, "nodes": []}
    assert content_store.get_snapshot(swarm_id, 25) is None
    content_store.put_claim(f"{swarm_id}/claims/op1.json", b"x" * 100_000)
    assert content_store.get_claim(f"{swarm_id}/claims/op1.json") == b"x" * 100_000
    with pytest.raises(KeyError):
        content_store.get_claim(f"{swarm_id}/claims/missing.json")


def test_a_batch_keeps_its_commit_record_apart_from_its_records(content_store):
    from swarm_core.ports import STREAM_START

    stream = f"{unique('s')}/history"
    content_store.append(stream, 1, [{"seq": 1}], commit={"seq": 1, "what": "first"})
    content_store.append(stream, 2, [], commit={"seq": 2, "what": "no events"})
    content_store.append(stream, 3, [{"seq": 3}, {"seq": 3, "i": 1}])  # no commit record
    mark = content_store.mark(stream)
    content_store.append(stream, 4, [{"seq": 4}], commit={"seq": 4, "big": "x" * 5_000_000})
    assert content_store.read(stream) == [{"seq": 1}, {"seq": 3}, {"seq": 3, "i": 1}, {"seq": 4}]
    assert records_from(content_store, stream, STREAM_START, 0, 4) == content_store.read(stream)
    commits = commits_from(content_store, stream, STREAM_START, 0, 10)
    assert [c["seq"] for c in commits] == [1, 2, 4]
    assert commits[1] == {"seq": 2, "what": "no events"}
    assert commits[2]["big"] == "x" * 5_000_000, "an oversize batch keeps its commit record"
    assert commits_from(content_store, stream, STREAM_START, 1, 2) == [commits[1]]
    assert commits_from(content_store, stream, mark, 3, 10) == [commits[2]]
    assert content_store.has_seq(stream, 4) and not content_store.has_seq(stream, 5)
    batches = list(content_store.read_batches(stream, STREAM_START, 0, 10))
    assert [(b.seq, b.commit, b.records) for b in batches[:3]] == [
        (1, {"seq": 1, "what": "first"}, [{"seq": 1}]),
        (2, {"seq": 2, "what": "no events"}, []),
        (3, None, [{"seq": 3}, {"seq": 3, "i": 1}]),
    ]
    assert batches[3].seq == 4 and batches[3].commit == commits[2]
    assert batches[3].records == [{"seq": 4}], "an oversize batch, records and record"
    assert [b.seq for b in content_store.read_batches(stream, mark, 3, 10)] == [4]
    assert list(content_store.read_batches(stream, STREAM_START, 4, 10)) == []


def test_snapshot_kinds_are_series_of_their_own(content_store):
    swarm_id = unique("s")
    content_store.put_snapshot(swarm_id, 10, {"seq": 10, "kind": "state"})
    content_store.put_snapshot(swarm_id, 20, {"seq": 20, "kind": "checkpoint"}, "checkpoint")
    assert content_store.latest_snapshot(swarm_id, 100)["kind"] == "state"
    assert content_store.latest_snapshot(swarm_id, 100, "checkpoint")["seq"] == 20
    assert content_store.latest_snapshot(swarm_id, 15, "checkpoint") is None
    assert content_store.get_snapshot(swarm_id, 20) is None
    assert content_store.get_snapshot(swarm_id, 20, "checkpoint")["kind"] == "checkpoint"


def swarm_id_like(other: str) -> str:
    return unique("t")[: len(other)].ljust(len(other), "0")


def test_copy_swarm_takes_batches_up_to_a_seq_with_ids_rewritten_and_marks_kept(content_store):
    source = unique("s")
    target = swarm_id_like(source)
    history, chat = f"{source}/history", f"{source}/chats/n1"
    marks = {}
    for seq in range(1, 9):
        mention = f"a user wrote {source} here"  # text, not an id field: left as it is
        content_store.append(history, seq, [{"swarm_id": source, "seq": seq, "text": mention}])
        if seq % 3 == 0:
            content_store.append(chat, seq, [{"seq": seq, "data": {"swarm_id": source}}])
        if seq in (4, 8):
            marks[seq] = content_store.mark(history)
            content_store.put_snapshot(source, seq, {"seq": seq, "history": marks[seq]})
    content_store.copy_swarm(source, target, 5)
    copied = content_store.read(f"{target}/history")
    assert [r["seq"] for r in copied] == [1, 2, 3, 4, 5]
    assert all(r["swarm_id"] == target for r in copied)
    assert all(r["text"] == f"a user wrote {source} here" for r in copied)
    assert content_store.read(f"{target}/chats/n1") == [{"seq": 3, "data": {"swarm_id": target}}]
    assert content_store.latest_snapshot(target, 100)["seq"] == 4  # 8 is after the copy
    # A mark of the source up to the seq is a mark of the copy.
    taken = records_from(content_store, f"{target}/history", marks[4], 4, 10)
    assert [r["seq"] for r in taken] == [5]
    # The copy goes on as a stream of its own; the source is unchanged.
    assert content_store.append(f"{target}/history", 6, [{"seq": 6}])
    assert [r["seq"] for r in content_store.read(f"{target}/history", 4)] == [5, 6]
    assert [r["seq"] for r in content_store.read(history)] == list(range(1, 9))
    with pytest.raises(ValueError):
        content_store.copy_swarm(source, target, 5)  # the target has content
    with pytest.raises(ValueError):
        content_store.copy_swarm(source, target + "x", 5)  # another length


def test_delete_swarm_removes_its_content_only(content_store):
    one, two = unique("s"), unique("s")
    for swarm_id in (one, two):
        content_store.append(f"{swarm_id}/history", 1, [{"seq": 1}])
        content_store.append(f"{swarm_id}/chats/n", 1, [{"seq": 1}])
        content_store.put_snapshot(swarm_id, 1, {"seq": 1})
    content_store.delete_swarm(one)
    assert content_store.read(f"{one}/history") == []
    assert content_store.read(f"{one}/chats/n") == []
    assert content_store.latest_snapshot(one, 10) is None
    assert content_store.read(f"{two}/history") == [{"seq": 1}]


# --- user store --------------------------------------------------------------------------------


def test_usernames_are_unique(user_store):
    name = unique("alice")
    user = User(user_id=unique("u"), username=name, password_hash="$2b$12$hash")
    user_store.create_user(user)
    with pytest.raises(ConflictError):
        user_store.create_user(user.model_copy(update={"user_id": "other"}))
    assert user_store.get_user(name) == user
    assert user_store.get_user(unique("nobody")) is None


def test_a_user_is_replaced_only_when_it_exists(user_store):
    user = User(user_id=unique("u"), username=unique("bob"), password_hash="$2b$12$hash")
    assert user_store.replace_user(user) is False
    assert user_store.get_user(user.username) is None
    user_store.create_user(user)
    changed = user.model_copy(update={"llm": LLMSettings(model="gpt-4o", temperature=0.3)})
    assert user_store.replace_user(changed) is True
    assert user_store.get_user(user.username) == changed


def test_active_summaries_span_users_and_skip_finished_swarms(swarm_store):
    statuses = (SwarmStatus.RUNNING, SwarmStatus.WAITING_FOR_USER, SwarmStatus.DELETED)
    mine = {unique("s"): status for status in statuses}
    for swarm_id, status in mine.items():
        swarm_store.put_summary(
            summary(unique("u"), swarm_id, 0).model_copy(update={"status": status})
        )
    done = unique("s")
    swarm_store.put_summary(
        summary(unique("u"), done, 0).model_copy(update={"status": SwarmStatus.COMPLETED})
    )
    active = {s.swarm_id for s in swarm_store.list_active_summaries(1000)}
    assert set(mine) <= active
    assert done not in active


def test_attempts_are_kept_per_key_within_their_window(attempt_store):
    key, other = unique("k"), unique("k")
    assert attempt_store.recent(key, 0) == []
    assert attempt_store.add(key, 100.0, 0) == [100.0]
    assert attempt_store.add(key, 200.0, 0) == [100.0, 200.0]
    attempt_store.add(other, 150.0, 0)
    assert attempt_store.recent(key, 0) == [100.0, 200.0]
    assert attempt_store.recent(key, 150) == [200.0], "older than the window: not counted"
    assert attempt_store.add(key, 300.0, 150) == [200.0, 300.0], "and not kept"
    attempt_store.clear(key)
    attempt_store.clear(key)  # idempotent
    assert attempt_store.recent(key, 0) == []
    assert attempt_store.recent(other, 0) == [150.0]


def test_concurrent_attempts_of_one_key_are_all_counted(attempt_store):
    key = unique("k")
    threads = [
        threading.Thread(target=attempt_store.add, args=(key, 1000.0 + i, 0)) for i in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(attempt_store.recent(key, 0)) == 6
