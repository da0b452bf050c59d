"""In-memory adapters of every port: real implementations (ETags, conditional writes, idempotent
appends, paging) for fast tests and the in-process demo. Thread-safe; they pass the same contract
tests as the Azure adapters. Documents are stored as JSON so nothing is shared by reference."""

from __future__ import annotations

import base64
import itertools
import json
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from swarm_core.forks import apply_changes
from swarm_core.models import MAINTAINED_STATUSES, Node, SwarmStatus, User
from swarm_core.operations import Operation, compact_json
from swarm_core.ports import (
    MAX_ATTEMPTS_KEPT,
    Batch,
    CommitChanges,
    ConflictError,
    HeldMessage,
    Versioned,
    rewrite_swarm_id,
)
from swarm_core.swarm import Swarm, SwarmSummary


class MemorySwarmStore:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._etags = itertools.count(1)
        self._swarms: dict[str, tuple[str, str]] = {}
        self._nodes: dict[str, dict[str, tuple[str, str]]] = defaultdict(dict)
        self._summaries: dict[str, dict[str, str]] = defaultdict(dict)

    def _etag(self) -> str:
        return f'"{next(self._etags)}"'

    def create_swarm(self, swarm: Swarm) -> str:
        with self._lock:
            if swarm.swarm_id in self._swarms:
                raise ConflictError(f"swarm {swarm.swarm_id} exists")
            etag = self._etag()
            self._swarms[swarm.swarm_id] = (swarm.model_dump_json(), etag)
            return etag

    def get_swarm(self, swarm_id: str) -> Versioned[Swarm] | None:
        with self._lock:
            got = self._swarms.get(swarm_id)
        if got is None:
            return None
        return Versioned(Swarm.model_validate_json(got[0]), got[1])

    def replace_swarm(
        self,
        swarm: Swarm,
        etag: str,
        nodes: Sequence[Node] = (),
        deleted_node_ids: Sequence[str] = (),
        changes: CommitChanges | None = None,
    ) -> str:
        written = [(n.node_id, n.model_dump_json()) for n in nodes]
        with self._lock:
            current = self._swarms.get(swarm.swarm_id)
            if current is None or current[1] != etag:
                raise ConflictError(f"swarm {swarm.swarm_id} changed")
            if changes is not None:
                self._check_changes(swarm, current[0], written, changes)
            new = self._etag()
            self._swarms[swarm.swarm_id] = (swarm.model_dump_json(), new)
            stored = self._nodes[swarm.swarm_id]
            for node_id, doc in written:
                stored[node_id] = (doc, self._etag())
            for node_id in deleted_node_ids:
                stored.pop(node_id, None)
            return new

    def _check_changes(
        self, swarm: Swarm, stored: str, written: list[tuple[str, str]], changes: CommitChanges
    ) -> None:
        """What a store that writes `changes` instead of whole documents (Cosmos DB's) would
        store must be the documents given: a node not as read is a conflict there (so here),
        and changes that do not make the documents are a bug (there it would store them)."""
        nodes = self._nodes[swarm.swarm_id]
        for node_id, doc in written:
            changed = changes.nodes.get(node_id)
            if changed is None or "all" in changed.changes:
                continue  # written whole
            base = json.loads(nodes[node_id][0]) if node_id in nodes else None
            if base is None or base["seq"] != changed.base_seq:
                raise ConflictError(f"node {node_id} is not as read")
            if apply_changes(base, changed.changes) != json.loads(doc):
                raise AssertionError(f"the changes of node {node_id} do not make it")
        if "all" in changes.swarm:
            return  # written whole
        if apply_changes(json.loads(stored), changes.swarm) != swarm.model_dump(mode="json"):
            raise AssertionError(f"the changes of swarm {swarm.swarm_id} do not make it")

    def delete_swarm(self, swarm_id: str) -> None:
        with self._lock:
            self._nodes.pop(swarm_id, None)
            self._swarms.pop(swarm_id, None)

    def delete_nodes(self, swarm_id: str) -> None:
        with self._lock:
            self._nodes.pop(swarm_id, None)

    def get_node(self, swarm_id: str, node_id: str) -> Versioned[Node] | None:
        with self._lock:
            got = self._nodes[swarm_id].get(node_id)
        if got is None:
            return None
        return Versioned(Node.model_validate_json(got[0]), got[1])

    def get_swarm_and_node(
        self, swarm_id: str, node_id: str
    ) -> tuple[Versioned[Swarm] | None, Versioned[Node] | None]:
        with self._lock:
            return self.get_swarm(swarm_id), self.get_node(swarm_id, node_id)

    def get_swarm_and_nodes(self, swarm_id: str) -> tuple[Versioned[Swarm] | None, list[Node]]:
        with self._lock:
            return self.get_swarm(swarm_id), self.list_nodes(swarm_id)

    def list_nodes(self, swarm_id: str) -> list[Node]:
        with self._lock:
            docs = [doc for doc, _ in self._nodes[swarm_id].values()]
        return [Node.model_validate_json(d) for d in docs]

    def put_summary(self, summary: SwarmSummary) -> None:
        with self._lock:
            current = self._summaries[summary.user_id].get(summary.swarm_id)
            if current is not None and SwarmSummary.model_validate_json(current).seq > summary.seq:
                return
            self._summaries[summary.user_id][summary.swarm_id] = summary.model_dump_json()

    def get_summary(self, user_id: str, swarm_id: str) -> SwarmSummary | None:
        with self._lock:
            got = self._summaries[user_id].get(swarm_id)
        return SwarmSummary.model_validate_json(got) if got else None

    def list_summaries(
        self, user_id: str, limit: int, continuation: str | None = None
    ) -> tuple[list[SwarmSummary], str | None]:
        with self._lock:
            items = [SwarmSummary.model_validate_json(s) for s in self._summaries[user_id].values()]
        items = [s for s in items if s.status != SwarmStatus.DELETED]
        items.sort(key=lambda s: (s.created_at, s.swarm_id), reverse=True)
        start = int(base64.urlsafe_b64decode(continuation).decode()) if continuation else 0
        page = items[start : start + limit]
        more = start + limit < len(items)
        token = base64.urlsafe_b64encode(str(start + limit).encode()).decode() if more else None
        return page, token

    def delete_summary(self, user_id: str, swarm_id: str) -> None:
        with self._lock:
            self._summaries[user_id].pop(swarm_id, None)

    def list_active_summaries(self, limit: int) -> list[SwarmSummary]:
        with self._lock:
            docs = [d for per_user in self._summaries.values() for d in per_user.values()]
        summaries = map(SwarmSummary.model_validate_json, docs)
        items = [s for s in summaries if s.status in MAINTAINED_STATUSES]
        return sorted(items, key=lambda s: s.updated_at)[:limit]


class MemoryUserStore:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._users: dict[str, str] = {}

    def create_user(self, user: User) -> None:
        with self._lock:
            if user.username in self._users:
                raise ConflictError(f"username {user.username} is taken")
            self._users[user.username] = user.model_dump_json()

    def get_user(self, username: str) -> User | None:
        with self._lock:
            got = self._users.get(username)
        return User.model_validate_json(got) if got else None

    def replace_user(self, user: User) -> bool:
        with self._lock:
            if user.username not in self._users:
                return False
            self._users[user.username] = user.model_dump_json()
            return True


class MemoryAttemptStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._attempts: dict[str, list[float]] = defaultdict(list)

    def recent(self, key: str, since: float) -> list[float]:
        with self._lock:
            return [t for t in self._attempts.get(key, ()) if t >= since]

    def add(self, key: str, at: float, since: float) -> list[float]:
        with self._lock:
            kept = [t for t in self._attempts[key] if t >= since] + [at]
            self._attempts[key] = kept[-MAX_ATTEMPTS_KEPT:]
            return sorted(self._attempts[key])

    def clear(self, key: str) -> None:
        with self._lock:
            self._attempts.pop(key, None)


class MemoryContentStore:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        # Per stream, its batches: (seq, the records' JSON, the commit record's JSON or None).
        self._streams: dict[str, list[tuple[int, list[str], str | None]]] = defaultdict(list)
        self._snapshots: dict[str, dict[tuple[str, int], str]] = defaultdict(dict)
        self._claims: dict[str, bytes] = {}

    def put_claim(self, name: str, data: bytes) -> None:
        with self._lock:
            self._claims[name] = bytes(data)

    def get_claim(self, name: str) -> bytes:
        with self._lock:
            if name not in self._claims:
                raise KeyError(name)
            return self._claims[name]

    def append(
        self,
        stream: str,
        seq: int,
        records: Sequence[Mapping[str, Any]],
        commit: Mapping[str, Any] | None = None,
        after_seq: int | None = None,  # a hint for remote storage: nothing to save here
    ) -> bool:
        lines = [json.dumps(dict(r), default=str) for r in records]
        committed = None if commit is None else json.dumps(dict(commit), default=str)
        with self._lock:
            batches = self._streams[stream]
            if batches and batches[-1][0] >= seq:
                return False
            batches.append((seq, lines, committed))
            return True

    def has_seq(self, stream: str, seq: int) -> bool:
        with self._lock:
            batches = self._streams.get(stream) or []
            return bool(batches) and batches[-1][0] >= seq

    def read(
        self, stream: str, after_seq: int = 0, limit: int | None = None
    ) -> list[dict[str, Any]]:
        with self._lock:
            batches = [b for b in self._streams.get(stream, []) if b[0] > after_seq]
        out: list[dict[str, Any]] = []
        for _, lines, _ in batches:
            if limit is not None and out and len(out) + len(lines) > limit:
                break
            out.extend(json.loads(line) for line in lines)
        return out

    def mark(self, stream: str) -> dict[str, Any]:
        with self._lock:
            return {"batch": len(self._streams.get(stream, []))}

    def read_batches(
        self, stream: str, mark: Mapping[str, Any], after_seq: int, until_seq: int
    ) -> Iterator[Batch]:
        for seq, lines, commit in self._batches_from(stream, mark, after_seq, until_seq):
            records = [json.loads(line) for line in lines]
            yield Batch(seq, None if commit is None else json.loads(commit), records)

    def _batches_from(
        self, stream: str, mark: Mapping[str, Any], after_seq: int, until_seq: int
    ) -> list[tuple[int, list[str], str | None]]:
        with self._lock:
            batches = self._streams.get(stream, [])[int(mark.get("batch", 0)) :]
        return [b for b in batches if after_seq < b[0] <= until_seq]

    def put_snapshot(
        self, swarm_id: str, seq: int, document: Mapping[str, Any], kind: str = "state"
    ) -> None:
        with self._lock:
            self._snapshots[swarm_id][(kind, seq)] = json.dumps(dict(document), default=str)

    def get_snapshot(self, swarm_id: str, seq: int, kind: str = "state") -> dict[str, Any] | None:
        with self._lock:
            got = self._snapshots.get(swarm_id, {}).get((kind, seq))
        return None if got is None else dict(json.loads(got))

    def latest_snapshot(
        self, swarm_id: str, at_or_before: int, kind: str = "state"
    ) -> dict[str, Any] | None:
        with self._lock:
            taken = self._snapshots.get(swarm_id, {})
            seqs = [s for k, s in taken if k == kind and s <= at_or_before]
            if not seqs:
                return None
            doc: dict[str, Any] = json.loads(taken[(kind, max(seqs))])
            return doc

    def copy_swarm(self, source_id: str, target_id: str, until_seq: int) -> None:
        def rewritten(text: str) -> str:
            return rewrite_swarm_id(text.encode(), source_id, target_id).decode()

        with self._lock:
            source, target = f"{source_id}/", f"{target_id}/"
            if any(k.startswith(target) for k in self._streams) or self._snapshots.get(target_id):
                raise ValueError(f"swarm {target_id} has content already")
            for stream, batches in list(self._streams.items()):
                if stream.startswith(source):
                    self._streams[target + stream[len(source) :]] = [
                        (
                            seq,
                            [rewritten(line) for line in lines],
                            None if commit is None else rewritten(commit),
                        )
                        for seq, lines, commit in batches
                        if seq <= until_seq
                    ]
            self._snapshots[target_id] = {
                key: rewritten(doc)
                for key, doc in self._snapshots.get(source_id, {}).items()
                if key[1] <= until_seq
            }

    def delete_swarm(self, swarm_id: str) -> None:
        with self._lock:
            for key in [k for k in self._streams if k.startswith(f"{swarm_id}/")]:
                del self._streams[key]
            for key in [k for k in self._claims if k.startswith(f"{swarm_id}/")]:
                del self._claims[key]
            self._snapshots.pop(swarm_id, None)


@dataclass
class QueueMessage:
    message_id: str
    body: str
    dequeue_count: int = 0


class MemoryOperationQueue:
    """A FIFO queue with at-least-once delivery: `receive` hides a message until `ack` or
    `release` (the visibility timeout running out, as after a crash). A held message stays
    hidden until settled, or until `release_held` (its sender died: no clock runs out here)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._ready: deque[QueueMessage] = deque()
        self._invisible: dict[str, QueueMessage] = {}
        self._held: set[str] = set()  # of `_invisible`: sent held, not settled

    def decode_message(self, body: str | bytes) -> str:
        return body.decode() if isinstance(body, bytes) else body

    def enqueue(self, operation: Operation, delay_seconds: int = 0) -> None:
        # No clock here: a delay only orders the message after those already queued.
        self.send(compact_json(operation))

    def send(self, body: str) -> None:
        with self._lock:
            self._ready.append(QueueMessage(f"m{next(self._ids)}", body))

    def enqueue_held(self, operation: Operation, hold_seconds: int) -> HeldMessage:
        with self._lock:
            message = QueueMessage(f"m{next(self._ids)}", compact_json(operation))
            self._invisible[message.message_id] = message
            self._held.add(message.message_id)
            return HeldMessage(operation, message.message_id)

    def settle(self, held: HeldMessage, done: bool, delay_seconds: int = 0) -> None:
        # No clock here (as for `enqueue`): a delay only orders it after those queued.
        with self._lock:
            if held.message_id not in self._held:
                return  # its hold ran out (`release_held`): the queue has it again
            self._held.discard(held.message_id)
            message = self._invisible[held.message_id]
            if done:
                self.ack(message)
            else:
                self.release(message)

    def release_held(self) -> int:
        """Let every held message's hold run out (its sender died): they are delivered."""
        with self._lock:
            held, self._held = self._held, set()
            for message_id in held:
                self.release(self._invisible[message_id])
            return len(held)

    def receive(self) -> QueueMessage | None:
        with self._lock:
            if not self._ready:
                return None
            message = self._ready.popleft()
            message.dequeue_count += 1
            self._invisible[message.message_id] = message
            return message

    def ack(self, message: QueueMessage) -> None:
        with self._lock:
            self._invisible.pop(message.message_id, None)

    def release(self, message: QueueMessage) -> None:
        with self._lock:
            if self._invisible.pop(message.message_id, None) is not None:
                self._ready.append(message)

    def __len__(self) -> int:
        with self._lock:
            return len(self._ready) + len(self._invisible)

    def pending_bodies(self) -> list[str]:
        with self._lock:
            return [m.body for m in self._ready] + [m.body for m in self._invisible.values()]


class MemoryClientAccess:
    """Client URLs for the in-memory stack (unit tests): they name the group, nothing listens."""

    def client_access_url(
        self, user_id: str, swarm_id: str, minutes: int = 60
    ) -> tuple[str, datetime]:
        expires = datetime.now(UTC) + timedelta(minutes=minutes)
        return f"ws://memory/client/hubs/swarm?user={user_id}&group=swarm.{swarm_id}", expires


class MemoryEventPublisher:
    """Keeps every published event per swarm and calls the subscribers (the demo prints them)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.published: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.subscribers: list[Callable[[str, dict[str, Any]], None]] = []

    def publish(self, swarm_id: str, events: Sequence[Mapping[str, Any]]) -> None:
        with self._lock:
            for event in events:
                self.published[swarm_id].append(dict(event))
            subscribers = list(self.subscribers)
        for event in events:
            for subscriber in subscribers:
                subscriber(swarm_id, dict(event))
