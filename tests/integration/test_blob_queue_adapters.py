"""The Blob content store and the Storage operation queue on Azurite: what the contract suite does
not show. Segment rollover and reads that start at the right segment, oversize batches, a stale
tail cache, round trips per append staying flat as a stream grows, base64 queue messages as the
Functions host reads them, claim checks, delays, and keyless (managed identity) construction.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from azure.identity import DefaultAzureCredential
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from devstack.stack import StackInfo
from swarm_core.adapters.blob import BlobContentStore, build_blob_service
from swarm_core.adapters.queue import (
    StorageOperationQueue,
    build_queue_service,
    claim_check_name,
    decode_operation_message,
)
from swarm_core.operations import Operation, compact_json, parse_operation
from swarm_core.settings import Settings, SettingsError
from tests.harness import records_from

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.emulators


# --------------------------------------------------------------------------------- helpers


@dataclass
class Call:
    method: str
    path: str
    query: str
    status: int
    sent: int
    received: int


@dataclass
class RequestLog:
    """Every HTTP exchange of a Blob service client (installed as its `raw_response_hook`)."""

    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, response: Any) -> None:
        request, http = response.http_request, response.http_response
        body = request.body
        sent = len(body) if isinstance(body, bytes | bytearray) else 0
        received = int(http.headers.get("Content-Length") or 0)
        if not received:
            try:
                received = len(http.body())
            except Exception:  # a streamed body not read yet: its length header was 0 anyway
                received = 0
        path, _, query = request.url.partition("?")
        with self.lock:
            self.calls.append(Call(request.method, path, query, http.status_code, sent, received))

    def take(self) -> list[Call]:
        with self.lock:
            calls, self.calls = self.calls, []
        return calls


def storage_settings(stack: StackInfo, **extra: Any) -> Settings:
    return Settings(AzureWebJobsStorage=stack.settings["AzureWebJobsStorage"], **extra)


@pytest.fixture
def container(emulator_stack: StackInfo) -> str:
    name = f"swarms-{uuid.uuid4().hex[:12]}"
    BlobServiceClient.from_connection_string(
        emulator_stack.settings["AzureWebJobsStorage"]
    ).create_container(name)
    return name


@pytest.fixture
def make_store(emulator_stack: StackInfo, container: str) -> Iterator[Any]:
    """Builds stores on one container, each with its own client, cache and request log."""

    def make(**options: Any) -> tuple[BlobContentStore, RequestLog]:
        log = RequestLog()
        settings = storage_settings(emulator_stack, SWARM_CONTAINER=container)
        service = build_blob_service(settings, raw_response_hook=log)
        return BlobContentStore(settings, service_client=service, **options), log

    yield make


def batch(seq: int, size: int = 2) -> list[dict[str, Any]]:
    return [{"seq": seq, "i": i} for i in range(size)]


def incompressible(length: int) -> str:
    """Text that deflate shortens the least (random base64: to three quarters), for tests about
    stored sizes."""
    return base64.b64encode(os.urandom(length))[:length].decode()


def segment_blobs(emulator_stack: StackInfo, container: str, stream: str) -> list[Any]:
    service = BlobServiceClient.from_connection_string(
        emulator_stack.settings["AzureWebJobsStorage"]
    )
    return list(
        service.get_container_client(container).list_blobs(
            name_starts_with=f"{stream}/", include=["metadata"]
        )
    )


def downloads(calls: list[Call]) -> list[str]:
    return [c.path.rsplit("/", 1)[-1] for c in calls if c.method == "GET" and not c.query]


# ------------------------------------------------------------------------- segments & reads


def test_segments_roll_over_at_the_block_limit_and_reads_start_at_the_right_one(
    make_store, emulator_stack, container
):
    store, log = make_store(max_segment_blocks=3)
    stream = f"s{uuid.uuid4().hex[:8]}/history"
    for seq in range(1, 11):
        assert store.append(stream, seq, batch(seq)) is True

    blobs = segment_blobs(emulator_stack, container, stream)
    assert [b.name.rsplit("/", 1)[-1] for b in blobs] == [
        "000000.jsonl",
        "000001.jsonl",
        "000002.jsonl",
        "000003.jsonl",
    ]
    assert [b.is_append_blob_sealed for b in blobs] == [True, True, True, False]
    assert [(b.metadata or {}).get("prev_seq") for b in blobs] == [None, "3", "6", "9"]

    assert [(r["seq"], r["i"]) for r in store.read(stream)] == [
        (seq, i) for seq in range(1, 11) for i in (0, 1)
    ]
    log.take()
    page = store.read(stream, after_seq=7)
    assert [r["seq"] for r in page] == [8, 8, 9, 9, 10, 10]
    # Seqs 1-6 live in segments 0 and 1: the read never downloads them.
    assert downloads(log.take()) == ["000002.jsonl", "000003.jsonl"]

    assert [r["seq"] for r in store.read(stream, after_seq=6, limit=3)] == [7, 7]
    assert downloads(log.take()) == ["000002.jsonl"], "stops once the limit is reached"
    assert store.read(stream, after_seq=10) == []


def test_copy_swarm_keeps_segments_seals_and_oversize_batches(
    make_store, emulator_stack, container
):
    store, _ = make_store(max_segment_blocks=3, max_block_bytes=1024)
    source = uuid.uuid4().hex
    target = uuid.uuid4().hex
    stream = f"{source}/history"
    marks = {}
    big = incompressible(2000)
    for seq in range(1, 11):
        records = [{"swarm_id": source, "big": big}] if seq == 5 else batch(seq)
        assert store.append(stream, seq, records) is True
        marks[seq] = store.mark(stream)
    store.copy_swarm(source, target, 7)

    copied = segment_blobs(emulator_stack, container, f"{target}/history")
    # Seqs 1-3, 4-6 and 7-9 fill segments 0-2 (8 and 9 left out), 10 is in segment 3 (not copied).
    assert [b.name.rsplit("/", 1)[-1] for b in copied] == [
        "000000.jsonl",
        "000001.jsonl",
        "000002.jsonl",
    ]
    assert [b.is_append_blob_sealed for b in copied] == [True, True, False]
    assert [(b.metadata or {}).get("prev_seq") for b in copied] == [None, "3", "6"]
    records = store.read(f"{target}/history")
    assert [r.get("seq", 5) for r in records] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 6, 6, 7, 7]
    assert records[8] == {"swarm_id": target, "big": big}, "the oversize batch is copied"
    for seq in (2, 4, 6):  # marks of the source up to seq 7 are marks of the copy
        taken = records_from(store, f"{target}/history", marks[seq], seq, 7)
        assert [r.get("seq", 5) for r in taken][-2:] == [7, 7]
    fresh, _ = make_store(max_segment_blocks=3)  # no cached tail: finds the copy's end
    assert fresh.append(f"{target}/history", 8, batch(8)) is True
    assert [r["seq"] for r in fresh.read(f"{target}/history", after_seq=7)] == [8, 8]


def test_a_batch_whose_texts_repeat_is_stored_deflated_without_the_swarm_id(
    make_store, emulator_stack, container, monkeypatch
):
    from swarm_core.adapters import blob

    store, log = make_store()
    source = uuid.uuid4().hex
    stream = f"{source}/history"
    text = incompressible(300)  # one message, as an event, a record and a commit all carry it
    records = [
        {"type": "chat.message", "swarm_id": source, "data": {"content": text}},
        {"type": "interrupt.opened", "swarm_id": source, "data": {"question": text}},
    ]
    commit = {"nodes": [{"content": text}], "enqueued": [{"swarm_id": source, "kind": "llm"}]}
    assert store.append(stream, 1, batch(1))
    assert store.append(stream, 2, records, commit)
    sent = [c.sent for c in log.take() if "appendblock" in c.query]
    plain = json.dumps([records, commit], separators=(",", ":")).encode()
    assert sent[-1] < len(plain) / 2, "three copies of the text stored as little more than one"
    (segment,) = segment_blobs(emulator_stack, container, stream)
    raw = BlobServiceClient.from_connection_string(emulator_stack.settings["AzureWebJobsStorage"])
    data = raw.get_blob_client(container, segment.name).download_blob().readall()
    assert source.encode() not in data and text.encode() not in data
    assert data.endswith(b'{"seq":2}\n'), "the tail still tells the last seq"

    assert store.read(stream) == batch(1) + records
    (batch_2,) = store.read_batches(stream, {"segment": 0, "offset": 0}, 1, 2)
    assert (batch_2.seq, batch_2.commit, batch_2.records) == (2, commit, records)
    monkeypatch.setattr(blob, "_READ_CHUNK_BYTES", 7)  # the deflated bytes cut across reads
    (batch_2,) = store.read_batches(stream, {"segment": 0, "offset": 0}, 1, 2)
    assert (batch_2.seq, batch_2.commit, batch_2.records) == (2, commit, records)

    target = uuid.uuid4().hex
    store.copy_swarm(source, target, 2)
    copied = store.read(f"{target}/history", after_seq=1)
    assert [r["swarm_id"] for r in copied] == [target, target], "a fork's copy names the fork"
    assert [r["data"] for r in copied] == [r["data"] for r in records]


def test_read_from_a_mark_downloads_only_what_it_returns_across_chunks_and_segments(
    make_store, monkeypatch
):
    from swarm_core.adapters import blob

    store, log = make_store(max_segment_blocks=4)
    monkeypatch.setattr(blob, "_READ_CHUNK_BYTES", 50)  # lines cut across chunks
    stream = f"s{uuid.uuid4().hex[:8]}/history"
    for seq in range(1, 6):
        store.append(stream, seq, batch(seq))
    mark = store.mark(stream)  # in segment 1, after seq 5
    for seq in range(6, 14):
        store.append(stream, seq, batch(seq))
    log.take()
    taken = records_from(store, stream, mark, 5, 10)
    assert [(r["seq"], r["i"]) for r in taken] == [(s, i) for s in range(6, 11) for i in (0, 1)]
    # Seqs 6-8 end segment 1, 9-12 fill segment 2; seq 13 (segment 3) is never read.
    assert set(downloads(log.take())) == {"000001.jsonl", "000002.jsonl"}
    assert [r["seq"] for r in records_from(store, stream, mark, 12, 99)] == [13, 13]


def test_segments_roll_over_at_the_byte_limit(make_store, emulator_stack, container):
    store, _ = make_store(max_segment_bytes=300)
    stream = f"s{uuid.uuid4().hex[:8]}/chats/n1"
    records = {seq: [{"seq": seq, "content": incompressible(100)}] for seq in range(1, 9)}
    for seq, batch_records in records.items():
        assert store.append(stream, seq, batch_records)
    blobs = segment_blobs(emulator_stack, container, stream)
    assert len(blobs) >= 3
    # A segment takes blocks until the next one would pass the limit (a lone block may pass it).
    assert all(b.size <= 300 for b in blobs)
    assert store.read(stream) == [r for seq in sorted(records) for r in records[seq]]
    assert store.read(stream, after_seq=5) == records[6] + records[7] + records[8]


def test_a_batch_bigger_than_a_block_is_appended_once_by_pointer(
    make_store, emulator_stack, container
):
    store, _ = make_store(max_block_bytes=1024)
    stream = f"s{uuid.uuid4().hex[:8]}/logs/n1"
    big = [{"seq": 2, "text": incompressible(600), "i": i} for i in range(5)]
    assert store.append(stream, 1, batch(1))
    assert store.append(stream, 2, big)
    assert store.append(stream, 3, batch(3))
    assert store.append(stream, 2, big) is False
    other, _ = make_store(max_block_bytes=1024)  # no cached tail
    assert other.append(stream, 2, big) is False

    assert store.read(stream) == batch(1) + big + batch(3)
    assert store.read(stream, after_seq=1, limit=5) == big, "the pointer counts as 5 records"
    assert store.read(stream, after_seq=1, limit=4) == big, "the first batch always comes whole"
    # The segment holds only a short pointer line for the big batch.
    (segment,) = segment_blobs(emulator_stack, container, stream)
    assert segment.size < 1024


def test_a_batch_over_4_mib_round_trips_with_default_limits(make_store):
    store, log = make_store()
    stream = f"s{uuid.uuid4().hex[:8]}/history"
    # Over 4 MiB even deflated.
    huge = [{"seq": 1, "i": i, "blob": incompressible(1_000_000)} for i in range(7)]
    assert store.append(stream, 1, huge)
    assert max(c.sent for c in log.take() if "appendblock" in c.query) < 1024
    assert store.append(stream, 2, batch(2))
    assert store.read(stream) == huge + batch(2)


def test_an_empty_batch_still_marks_its_seq(make_store):
    store, _ = make_store()
    stream = f"s{uuid.uuid4().hex[:8]}/history"
    assert store.append(stream, 1, [])
    assert store.append(stream, 1, batch(1)) is False
    assert store.append(stream, 2, batch(2))
    assert store.read(stream) == batch(2)


# ------------------------------------------------------------------------ caches & races


def test_a_stale_cached_tail_still_appends_exactly_once(make_store):
    first, first_log = make_store()
    second, _ = make_store()
    stream = f"s{uuid.uuid4().hex[:8]}/history"
    assert first.append(stream, 1, batch(1))  # first's cache: last seq 1
    assert second.append(stream, 2, batch(2))
    assert second.append(stream, 3, batch(3))

    first_log.take()
    assert first.append(stream, 3, batch(3)) is False, "re-driven after someone else did it"
    calls = first_log.take()
    assert [c.status for c in calls] == [412, 206], "one refused append, one ranged read"
    assert first.append(stream, 2, batch(2)) is False
    assert first_log.take() == [], "the refreshed cache answers an old seq without a request"
    assert first.append(stream, 4, batch(4)) is True
    assert [r["seq"] for r in second.read(stream)] == [1, 1, 2, 2, 3, 3, 4, 4]


def test_the_seq_before_an_append_saves_the_requests_of_a_stale_or_unknown_tail(make_store):
    """A chat appended to by two processes in turn (the API's user message, the worker's next
    question): told the seq of the batch before (the node's `chat_seq`), a process whose
    cached tail is behind reads the tail and appends (no refused append first), and one that
    never saw the stream reads its first segment and appends (no refused create, no listing)."""
    worker, worker_log = make_store()
    api, api_log = make_store()
    stream = f"s{uuid.uuid4().hex[:8]}/chats/n1"
    assert worker.append(stream, 1, batch(1), after_seq=0)
    assert [(c.method, c.status) for c in worker_log.take()] == [("PUT", 201), ("PUT", 201)]

    assert api.append(stream, 2, batch(2), after_seq=1)
    assert [(c.method, c.status) for c in api_log.take()] == [("GET", 206), ("PUT", 201)]

    assert worker.append(stream, 3, batch(3), after_seq=2)
    assert [(c.method, c.status) for c in worker_log.take()] == [("GET", 206), ("PUT", 201)]

    assert worker.append(stream, 4, batch(4), after_seq=3)
    assert [(c.method, c.status) for c in worker_log.take()] == [("PUT", 201)], "current: as before"

    # Without the hint, as a caller that does not know: a refused append, the read, the append.
    assert api.append(stream, 5, batch(5))
    assert [(c.method, c.status) for c in api_log.take()] == [
        ("PUT", 412),
        ("GET", 206),
        ("PUT", 201),
    ]
    assert [r["seq"] for r in worker.read(stream)] == [s for s in range(1, 6) for _ in (0, 1)]


def test_a_stream_new_to_the_process_past_its_first_segment_takes_the_hint_too(make_store):
    busy, _ = make_store(max_segment_blocks=2)
    stream = f"s{uuid.uuid4().hex[:8]}/chats/n1"
    for seq in range(1, 6):  # three segments, the first two sealed
        assert busy.append(stream, seq, batch(seq))
    fresh, _ = make_store(max_segment_blocks=2)
    assert fresh.append(stream, 5, batch(5), after_seq=4) is False, "there already"
    fresh_again, _ = make_store(max_segment_blocks=2)
    assert fresh_again.append(stream, 6, batch(6), after_seq=5) is True
    assert [r["seq"] for r in busy.read(stream)] == [s for s in range(1, 7) for _ in (0, 1)]


def test_a_cache_several_sealed_segments_behind_catches_up(make_store, emulator_stack, container):
    stale, _ = make_store(max_segment_blocks=2)
    busy, _ = make_store(max_segment_blocks=2)
    stream = f"s{uuid.uuid4().hex[:8]}/history"
    assert stale.append(stream, 1, batch(1))
    for seq in range(2, 12):
        assert busy.append(stream, seq, batch(seq))
    assert stale.append(stream, 7, batch(7)) is False
    assert stale.append(stream, 12, batch(12)) is True
    assert [r["seq"] for r in busy.read(stream)] == [s for s in range(1, 13) for _ in (0, 1)]
    assert len(segment_blobs(emulator_stack, container, stream)) == 6


def test_racing_stores_append_each_batch_once_across_rollovers(make_store):
    stores = [make_store(max_segment_blocks=2)[0] for _ in range(3)]
    stream = f"s{uuid.uuid4().hex[:8]}/chats/n1"

    def race(seq: int) -> list[bool]:
        results: list[bool] = []
        barrier = threading.Barrier(len(stores))

        def append(store: BlobContentStore) -> None:
            barrier.wait()
            results.append(store.append(stream, seq, batch(seq, 1)))

        threads = [threading.Thread(target=append, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    for seq in range(1, 8):
        assert sorted(race(seq)) == [False, False, True], f"seq {seq}"
    assert [r["seq"] for r in stores[0].read(stream)] == list(range(1, 8))


def test_round_trips_per_append_stay_flat_as_the_stream_grows(make_store):
    store, log = make_store()
    stream = f"s{uuid.uuid4().hex[:8]}/history"
    text = incompressible(40)  # a batch too small to deflate: the same size at every seq

    def step(seq: int) -> list[Call]:
        log.take()
        assert store.append(stream, seq, [{"seq": seq, "type": "node.updated", "n": text}])
        return log.take()

    def cold_step(seq: int) -> list[Call]:
        cold, cold_log = make_store()
        assert cold.append(stream, seq, [{"seq": seq, "type": "node.updated", "n": text}])
        return cold_log.take()

    for seq in range(1, 10):
        step(seq)
    warm_10, cold_11 = step(10), cold_step(11)
    for seq in range(12, 1000):
        step(seq)
    warm_1000 = step(1000)  # the segment's 1,000th block
    rollover = step(1001)
    warm_1002, cold_1003 = step(1002), cold_step(1003)

    assert len(warm_10) == len(warm_1000) == len(warm_1002) == 1  # the conditional append only
    # A stream new to the process: create its first segment if missing (it is not), list the
    # segments, read the tail, append.
    assert [(c.method, c.status) for c in cold_11] == [
        ("PUT", 409),
        ("GET", 200),
        ("GET", 206),
        ("PUT", 201),
    ]
    assert len(cold_1003) == 4
    # Once per 1,000 blocks: seal, read the sealed tail, create the next segment, append.
    assert [(c.method, c.query.split("&")[0]) for c in rollover] == [
        ("PUT", "comp=seal"),
        ("GET", ""),
        ("PUT", ""),
        ("PUT", "comp=appendblock"),
    ]
    new_stream, new_log = make_store()
    assert new_stream.append(f"{stream}-new", 1, [{"seq": 1}])
    assert [(c.method, c.status) for c in new_log.take()] == [("PUT", 201), ("PUT", 201)], (
        "a new stream: create its first segment, append"
    )
    sent = [sum(c.sent for c in calls) for calls in (warm_10, warm_1000, cold_11, cold_1003)]
    received = [sum(c.received for c in calls) for calls in (cold_11, cold_1003)]
    assert abs(sent[0] - sent[1]) <= 4 and abs(sent[2] - sent[3]) <= 4, sent
    assert received[1] <= received[0] + 1024, received  # one more segment in the listing


# ----------------------------------------------------------------------------------- queue


def an_operation(payload: dict[str, Any] | None = None) -> Operation:
    return parse_operation(
        {
            "op_id": uuid.uuid4().hex,
            "kind": "action",
            "swarm_id": f"s{uuid.uuid4().hex[:8]}",
            "node_id": "n1",
            "payload": payload or {"function": "plan", "args": {"goal": "Lisboa ☀️"}},
        }
    )


@pytest.fixture
def queue_setup(emulator_stack: StackInfo, make_store) -> tuple[StorageOperationQueue, Any]:
    store, _ = make_store()
    settings = storage_settings(emulator_stack, SWARM_QUEUE=f"ops-{uuid.uuid4().hex[:12]}")
    queue = StorageOperationQueue(settings, store)
    queue.ensure_queues()
    raw = QueueClient.from_connection_string(
        emulator_stack.settings["AzureWebJobsStorage"],
        settings.swarm_queue,
        message_decode_policy=TextBase64DecodePolicy(),
    )
    return queue, raw


def test_messages_are_base64_operation_json_as_the_host_reads_them(queue_setup, emulator_stack):
    queue, raw = queue_setup
    op = an_operation()
    queue.enqueue(op)
    message = raw.receive_message()
    assert message is not None and message.dequeue_count == 1
    assert parse_operation(message.content) == op
    assert decode_operation_message(message.content, queue._content) == compact_json(op)
    assert decode_operation_message(message.content.encode(), queue._content) == message.content

    undecoded = QueueClient.from_connection_string(
        emulator_stack.settings["AzureWebJobsStorage"], queue.queue_name
    )
    queue.enqueue(op)
    on_the_wire = undecoded.receive_message()
    assert on_the_wire is not None
    assert base64.b64decode(on_the_wire.content).decode() == compact_json(op)

    poison = QueueClient.from_connection_string(
        emulator_stack.settings["AzureWebJobsStorage"], f"{queue.queue_name}-poison"
    )
    assert poison.get_queue_properties().name == f"{queue.queue_name}-poison"
    queue.ensure_queues()  # twice: no error


def test_an_operation_over_64_kib_goes_by_claim_check(queue_setup):
    queue, raw = queue_setup
    op = an_operation({"function": "report", "args": {"text": "☀" * 40_000}})
    queue.enqueue(op)
    message = raw.receive_message()
    assert message is not None
    assert len(message.content) < 300
    pointer = json.loads(message.content)
    assert pointer == {
        "claim_check": claim_check_name(op.swarm_id, op.op_id),
        "op_id": op.op_id,
        "swarm_id": op.swarm_id,
    }
    assert parse_operation(decode_operation_message(message.content, queue._content)) == op

    forged = json.dumps({**pointer, "claim_check": "other-swarm/claims/x.json"})
    with pytest.raises(ValueError):
        decode_operation_message(forged, queue._content)
    missing = json.dumps(
        {**pointer, "op_id": "nope", "claim_check": f"{op.swarm_id}/claims/nope.json"}
    )
    with pytest.raises(KeyError):
        decode_operation_message(missing, queue._content)


def test_a_delayed_operation_stays_invisible_until_its_delay_passes(queue_setup):
    queue, raw = queue_setup
    op = an_operation()
    queue.enqueue(op, delay_seconds=2)
    assert raw.receive_message() is None
    assert parse_operation(eventually_received(raw).content) == op
    with pytest.raises(ValueError):
        queue.enqueue(op, delay_seconds=8 * 24 * 3600)


def test_a_held_operation_is_hidden_until_its_sender_settles_it(queue_setup):
    queue, raw = queue_setup
    done, undone, big = (
        an_operation(),
        an_operation(),
        an_operation({"function": "report", "args": {"text": "☀" * 40_000}}),
    )
    held = [queue.enqueue_held(op, hold_seconds=2) for op in (done, undone, big)]
    time.sleep(3.5)  # past the hold: renewed while its sender lives
    assert raw.receive_message() is None  # held: no worker gets them
    queue.settle(held[0], done=True)
    queue.settle(held[1], done=False)  # its sender did not run it: the queue, at once
    queue.settle(held[2], done=False)
    received = [raw.receive_message(visibility_timeout=60) for _ in range(3)]
    assert [
        m and parse_operation(decode_operation_message(m.content, queue._content)) for m in received
    ] == [undone, big, None]
    assert received[0] is not None and received[0].dequeue_count == 1
    # Settling again changes nothing and raises nothing.
    queue.settle(held[1], done=True)
    assert raw.receive_message() is None
    with pytest.raises(ValueError):
        queue.enqueue_held(done, hold_seconds=0)
    # Not done, with a delay: the queue delivers it once the delay has passed.
    later = queue.enqueue_held(an_operation(), hold_seconds=60)
    queue.settle(later, done=False, delay_seconds=2)
    assert raw.receive_message() is None
    assert parse_operation(eventually_received(raw).content) == later.operation


def eventually_received(raw: Any, seconds: float = 10) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (message := raw.receive_message()) is not None:
            return message
        time.sleep(0.25)
    raise AssertionError("no message came")


HOLD_AND_DIE = """
import sys
from swarm_core.adapters.memory import MemoryContentStore
from swarm_core.adapters.queue import StorageOperationQueue
from swarm_core.operations import parse_operation
from swarm_core.settings import Settings

settings = Settings(AzureWebJobsStorage=sys.argv[1], SWARM_QUEUE=sys.argv[2])
queue = StorageOperationQueue(settings, MemoryContentStore())
queue.enqueue_held(parse_operation(sys.stdin.read()), hold_seconds=2)
"""


def test_a_held_operation_comes_back_when_its_sender_dies(queue_setup, emulator_stack):
    queue, raw = queue_setup
    op = an_operation()
    connection = emulator_stack.settings["AzureWebJobsStorage"]
    subprocess.run(
        [sys.executable, "-c", HOLD_AND_DIE, connection, queue.queue_name],
        input=op.model_dump_json(),
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert raw.receive_message() is None  # held, for up to 2 s after its sender died
    assert parse_operation(eventually_received(raw).content) == op


# ------------------------------------------------------------------------ managed identity


def test_clients_use_the_managed_identity_when_no_connection_string_is_set():
    settings = Settings(
        AzureWebJobsStorage=None,
        AzureWebJobsStorage__blobServiceUri="https://acct.blob.core.windows.net",
        AzureWebJobsStorage__queueServiceUri="https://acct.queue.core.windows.net",
        AZURE_CLIENT_ID="00000000-0000-0000-0000-000000000001",
    )
    assert settings.uses_managed_identity
    blob = build_blob_service(settings)
    assert blob.url.startswith("https://acct.blob.core.windows.net")
    assert isinstance(blob.credential, DefaultAzureCredential)
    queue = build_queue_service(settings)
    assert queue.url.startswith("https://acct.queue.core.windows.net")
    assert isinstance(queue.credential, DefaultAzureCredential)
    # Building the adapters touches nothing either: clients come on first use.
    BlobContentStore(settings)
    StorageOperationQueue(settings, BlobContentStore(settings))

    with pytest.raises(SettingsError, match="AzureWebJobsStorage__blobServiceUri"):
        build_blob_service(Settings(AzureWebJobsStorage=None))
    with pytest.raises(SettingsError, match="AzureWebJobsStorage__queueServiceUri"):
        build_queue_service(Settings(AzureWebJobsStorage=None))
