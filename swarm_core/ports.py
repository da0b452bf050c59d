"""Ports: the small interfaces through which the worker and the services reach the outside world.

Adapters implement them: `swarm_core.adapters.memory` in memory (fast tests, the demo) and the Azure
adapters on Cosmos DB, Blob storage, Storage queues and Web PubSub. Every adapter passes the same
contract tests (`tests/contract`). The LLM port lives in `swarm_core.llm`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from swarm_core.models import Node, User
from swarm_core.operations import Operation
from swarm_core.swarm import Swarm, SwarmSummary

T = TypeVar("T")


class ConflictError(Exception):
    """A conditional write lost: the document changed (412) or already exists (409)."""


@dataclass(frozen=True)
class Versioned(Generic[T]):
    """A document as read, with the version (ETag) to make a conditional write against."""

    value: T
    etag: str


@dataclass(frozen=True)
class NodeChanges:
    """What a commit changed in a node document it read: the node's `seq` as read, and the
    changes from that document to the one written (`forks.changes`, as the commit's record
    keeps them)."""

    base_seq: int
    changes: Mapping[str, Any]


@dataclass(frozen=True)
class CommitChanges:
    """What a commit changed in the documents it read, which a store may write instead of the
    whole documents (the documents it stores are the same either way): the swarm document's
    changes since the one at the commit's ETag (all of it, `pending` too), and those of each
    node it read."""

    swarm: Mapping[str, Any]
    nodes: Mapping[str, NodeChanges]


# Nodes one commit may write and delete together: its transactional batch holds at most 100
# operations (Cosmos DB's limit), one of them the swarm document.
MAX_COMMIT_NODES = 99


class SwarmStore(Protocol):
    """Swarm runtime documents and nodes (one partition per swarm), plus the per-user summaries
    used for listing."""

    def create_swarm(self, swarm: Swarm) -> str:
        """Create the swarm document; ConflictError if it exists. Returns the ETag."""
        ...

    def get_swarm(self, swarm_id: str) -> Versioned[Swarm] | None: ...

    def replace_swarm(
        self,
        swarm: Swarm,
        etag: str,
        nodes: Sequence[Node] = (),
        deleted_node_ids: Sequence[str] = (),
        changes: CommitChanges | None = None,
    ) -> str:
        """The commit point: replace the swarm document iff unchanged since `etag`, write
        (create or replace) `nodes` and delete the nodes `deleted_node_ids`, all or nothing (one
        transactional batch: the swarm's documents share a partition); ConflictError, writing
        and deleting nothing, if the swarm changed. Returns the swarm document's new ETag. Every
        write of a node goes through here, so the swarm's ETag guards its nodes too: the nodes
        to delete exist (the commit read them under the same ETag). At most `MAX_COMMIT_NODES`
        nodes written and deleted. `changes`: what the commit changed in the documents it read,
        which a store may write instead of the whole documents."""
        ...

    def delete_swarm(self, swarm_id: str) -> None:
        """Delete the swarm's nodes, then the swarm document (idempotent)."""
        ...

    def delete_nodes(self, swarm_id: str) -> None:
        """Delete the swarm's nodes, keeping the swarm document (idempotent)."""
        ...

    def get_node(self, swarm_id: str, node_id: str) -> Versioned[Node] | None: ...

    def get_swarm_and_node(
        self, swarm_id: str, node_id: str
    ) -> tuple[Versioned[Swarm] | None, Versioned[Node] | None]:
        """The swarm document and one of its nodes as they were at one moment (one round trip
        while both exist): what a step decides on. No swarm: (None, None)."""
        ...

    def list_nodes(self, swarm_id: str) -> list[Node]: ...

    def get_swarm_and_nodes(self, swarm_id: str) -> tuple[Versioned[Swarm] | None, list[Node]]:
        """The swarm document and all its nodes, in one query (a read for a page: the two may
        be a step apart). No swarm: (None, whatever nodes are left)."""
        ...

    def put_summary(self, summary: SwarmSummary) -> None:
        """Upsert the listing entry unless the stored one has a higher `seq` (never go back)."""
        ...

    def get_summary(self, user_id: str, swarm_id: str) -> SwarmSummary | None: ...

    def list_summaries(
        self, user_id: str, limit: int, continuation: str | None = None
    ) -> tuple[list[SwarmSummary], str | None]:
        """The user's swarms, newest first, one page; the token fetches the next page. Deleted
        swarms (tombstones awaiting their purge) are left out."""
        ...

    def delete_summary(self, user_id: str, swarm_id: str) -> None: ...

    def list_active_summaries(self, limit: int) -> list[SwarmSummary]:
        """Summaries of swarms that are running, waiting for the user or deleted (awaiting their
        purge), across all users, least recently updated first (for the maintenance timer)."""
        ...


class UserStore(Protocol):
    """Users by (normalised) username."""

    def create_user(self, user: User) -> None:
        """Create the user; ConflictError if the username is taken."""
        ...

    def get_user(self, username: str) -> User | None: ...

    def replace_user(self, user: User) -> bool:
        """Replace the stored user of `user.username` (last writer wins); False, writing
        nothing, when there is none."""
        ...


MAX_ATTEMPTS_KEPT = 100  # per key: more than any limit needs, and bounds the stored list


class AttemptStore(Protocol):
    """Recent attempts per key (failed logins, signups) as epoch seconds, shared by every
    instance of the app and forgotten once older than the window they are kept for."""

    def recent(self, key: str, since: float) -> list[float]:
        """The key's attempts at or after `since`, oldest first."""
        ...

    def add(self, key: str, at: float, since: float) -> list[float]:
        """Record an attempt; returns the key's attempts at or after `since`, this one included
        (concurrent adds of one key are all kept)."""
        ...

    def clear(self, key: str) -> None: ...


class Batch(NamedTuple):
    """One appended batch of a stream: its seq, its commit's record (history batches; None
    elsewhere) and its records."""

    seq: int
    commit: dict[str, Any] | None
    records: list[dict[str, Any]]


class ContentStore(Protocol):
    """Append-only streams (history, chats, logs) of JSON records, each carrying `seq`.

    `append` is idempotent per (stream, seq): a batch is appended only if the stream's last batch
    has a lower seq, atomically (two appliers racing with the same batch append it once). Steps of
    one swarm commit in seq order and a commit's effects are applied before the next commits, so
    this is exactly "append each committed batch once"."""

    def append(
        self,
        stream: str,
        seq: int,
        records: Sequence[Mapping[str, Any]],
        commit: Mapping[str, Any] | None = None,
        after_seq: int | None = None,
    ) -> bool:
        """Append the batch; False if a batch with seq >= `seq` is there already. `commit`: the
        record of the commit the batch belongs to (`swarm_core.forks`), kept with the batch but
        apart from its records: `read` leaves it out, `read_batches` reads it.
        `after_seq`: the seq of the stream's batch before this one, when the caller knows it
        (0: none, the stream is new), a hint that can save an implementation requests (another
        process appended since this one last did); a wrong hint costs requests, never
        correctness."""
        ...

    def has_seq(self, stream: str, seq: int) -> bool:
        """Whether the stream holds the batch of `seq` or a later one (streams only grow)."""
        ...

    def read(
        self, stream: str, after_seq: int = 0, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Records with seq > after_seq in order; at most `limit` records (whole batches)."""
        ...

    def mark(self, stream: str) -> dict[str, Any]:
        """A position (JSON) at or before the stream's end: `read_batches` from it returns every
        batch appended after this call, and maybe a few before it (readers filter by seq).
        `STREAM_START` marks the start of any stream."""
        ...

    def read_batches(
        self, stream: str, mark: Mapping[str, Any], after_seq: int, until_seq: int
    ) -> Iterator[Batch]:
        """The batches with after_seq < seq <= until_seq, each with its commit record, in
        order, reading from `mark` on: only what lies between the mark and `until_seq`, however
        long the stream is, as it is read (a reader that stops early reads no further)."""
        ...

    def put_snapshot(
        self, swarm_id: str, seq: int, document: Mapping[str, Any], kind: str = "state"
    ) -> None:
        """Store a snapshot of a kind (`SNAPSHOT_KINDS`: each kind is a series of its own)."""
        ...

    def get_snapshot(self, swarm_id: str, seq: int, kind: str = "state") -> dict[str, Any] | None:
        """The snapshot of `kind` taken at exactly `seq`, if there is one (one read)."""
        ...

    def latest_snapshot(
        self, swarm_id: str, at_or_before: int, kind: str = "state"
    ) -> dict[str, Any] | None:
        """The latest snapshot of `kind` at or before a seq (lists the swarm's snapshots)."""
        ...

    def copy_swarm(self, source_id: str, target_id: str, until_seq: int) -> None:
        """Copy every stream's batches with seq <= `until_seq`, and every snapshot taken at or
        before it, from one swarm to another whose id has the same length, the `swarm_id` of
        every record rewritten. Positions are kept: a mark of the source up to `until_seq` is a
        mark of the copy. The target must have no content yet (ValueError when the ids differ
        in length)."""
        ...

    def put_claim(self, name: str, data: bytes) -> None:
        """Store a claim-check payload (a queue message too big for the queue)."""
        ...

    def get_claim(self, name: str) -> bytes: ...

    def delete_swarm(self, swarm_id: str) -> None:
        """Delete every stream, snapshot and claim check of the swarm."""
        ...


STREAM_START: Mapping[str, Any] = {}
# Snapshots: "state", the public tree `state?at=` starts from; "checkpoint", the full documents
# and operations in flight a fork starts from (`swarm_core.forks`).
SNAPSHOT_KINDS = ("state", "checkpoint")


@dataclass(frozen=True)
class HeldMessage:
    """An operation sent for its sender to run (`OperationQueue.enqueue_held`): the queue's
    handle on its message."""

    operation: Operation
    message_id: str


class OperationQueue(Protocol):
    """Where operations go to be run by a worker, one queue message each."""

    def enqueue(self, operation: Operation, delay_seconds: int = 0) -> None: ...

    def enqueue_held(self, operation: Operation, hold_seconds: int) -> HeldMessage:
        """Send the operation hidden from the queue, for the sender to run it itself and then
        `settle` it; the hold is renewed until then, as the Functions host renews a message it
        runs. A sender that dies leaves it to the queue: delivered once the hold
        (`hold_seconds`) runs out, as a message whose worker died is."""
        ...

    def settle(self, held: HeldMessage, done: bool, delay_seconds: int = 0) -> None:
        """A held operation's end: `done`, its message goes; otherwise the queue delivers it
        after `delay_seconds`. Best effort (a message delivered again is a duplicate its
        worker recognises)."""
        ...

    def decode_message(self, body: str | bytes) -> str:
        """The operation JSON that a message body of this queue stands for (claim checks
        resolved); ValueError or KeyError for a body that is not one (it ends as poison)."""
        ...


class EventPublisher(Protocol):
    """Pushes a swarm's events to its connected clients (one group per swarm)."""

    def publish(self, swarm_id: str, events: Sequence[Mapping[str, Any]]) -> None: ...


class ClientAccess(Protocol):
    """Hands a browser a receive-only connection to one swarm's events."""

    def client_access_url(
        self, user_id: str, swarm_id: str, minutes: int = 60
    ) -> tuple[str, datetime]: ...


def rewrite_swarm_id(raw: bytes, source_id: str, target_id: str) -> bytes:
    """Stored JSON of one swarm made another's (`ContentStore.copy_swarm`): every `swarm_id`
    field, and every `batch` pointer under the swarm's prefix, that names `source_id` names
    `target_id`. Only keys are matched (a quote inside a JSON string is escaped), so text that
    merely mentions the id is left as it is."""
    if len(source_id) != len(target_id):
        raise ValueError("a copy keeps positions: the swarm ids must have the same length")
    pattern = re.compile(
        rb'("(?:swarm_id|batch)"\s*:\s*")' + re.escape(source_id.encode()) + rb'(?=["/])'
    )
    return pattern.sub(lambda m: m.group(1) + target_id.encode(), raw)


def history_stream(swarm_id: str) -> str:
    return f"{swarm_id}/history"


def chat_stream(swarm_id: str, node_id: str) -> str:
    return f"{swarm_id}/chats/{node_id}"


def log_stream(swarm_id: str, node_id: str) -> str:
    return f"{swarm_id}/logs/{node_id}"
