"""Forks: the record each commit leaves, the swarm rebuilt as it was after any step, and the
recorded LLM answers a fork reuses.

Every commit keeps one record with its batch of the swarm's history (the last of its effects,
one write for both): what it changed in the swarm document (without its pending effects and
parked operations) and in each node it wrote (the whole document of a new node), the ids of the
nodes it deleted, the operations in flight it enqueued or parked and the ids of those it
consumed. Folding the records up to seq N gives the swarm as it was right after step N: its
document, every node with its context and continuation, and the operations in flight then
(enqueued, not consumed yet). The commit of every `snapshot_every`-th seq stores that fold as a
checkpoint, so a fold reads at most that many records. The same records replay the public tree
along the history (`TreeReplay`): the history keeps a `node.updated` event as its node's id, and
its reads show the node as the event's commit left it.

A fork (`SwarmServices.fork`) is such a fold written as a new swarm, with copies of the source's
streams up to N (`ContentStore.copy_swarm`); its operations in flight are parked, so resuming the
fork runs them. An `llm` step of a fork first looks for a recorded answer: an entry of the
source's journal of the same node, after the fork point (and after the last one reused), for an
identical request (task, messages, model settings, seed). Found, it is the step's answer: no
model call, no tokens, and the journal says so.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from pydantic_core import to_json

from swarm_core.actions.prompts import with_prompt
from swarm_core.actions.schemas import RESPONSE_MODELS
from swarm_core.llm import LLMRequest, LLMResult, json_text
from swarm_core.models import EventType, Node, derive_id, public_fields
from swarm_core.operations import Operation, parse_operation
from swarm_core.ports import (
    STREAM_START,
    Batch,
    ContentStore,
    history_stream,
    log_stream,
    rewrite_swarm_id,
)
from swarm_core.swarm import PendingCommit, Swarm

# A fork writes its nodes in batches of this many (a Cosmos DB batch takes 100 operations).
NODES_PER_WRITE = 50


class IncompleteRecords(Exception):
    """The commit records needed for a fold are not all there (a swarm older than them)."""


# The parts of a swarm document a record leaves out: the commit's own effects, and the parked
# operations (in flight: they are in `enqueued` of the commit that enqueued them, not consumed).
NOT_RECORDED = frozenset({"pending", "parked"})


def changes(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> dict[str, Any]:
    """What turns document `before` into `after` (`apply_changes`). Only what changed: of an
    object, its changed keys, and so on inside (a node's context grows by a key or two a step);
    of a list that slid on (a window: the conversation, the recent op ids), how many items left
    its head and what came at its end. `before` None: the whole document."""
    if before is None:
        return {"all": dict(after)}
    return _diff(before, after)


def _diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    diff: dict[str, Any] = {}
    for key, value in new.items():
        was = old.get(key)
        if key in old and _same(was, value):
            continue
        if isinstance(was, dict) and isinstance(value, dict):
            diff.setdefault("merge", {})[key] = _diff(was, value)
        elif (
            isinstance(was, list)
            and isinstance(value, list)
            and ((dropped := _slid(was, value)) is not None)
        ):
            diff.setdefault("slide", {})[key] = [dropped, value[len(was) - dropped :]]
        else:
            diff.setdefault("set", {})[key] = value
    if gone := [key for key in old if key not in new]:
        diff["unset"] = gone
    return diff


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values: `==` with the types too (1, 1.0 and true are three values). The
    JSON text settles it for equal containers (pydantic-core's encoder, in Rust: cheaper than
    walking them here, and three times faster than `json.dumps`)."""
    if type(a) is not type(b) or a != b:
        return False
    return not isinstance(a, dict | list) or to_json(a) == to_json(b)


def _slid(old: list[Any], new: list[Any]) -> int | None:
    """How many items `new` dropped from the head of `old`, if it is the rest of `old` followed
    by new items; None if it is not."""
    for dropped in range(len(old) + 1):
        kept = len(old) - dropped
        if kept > len(new) or (kept and not _same(new[0], old[dropped])):
            continue
        if _same(new[:kept], old[dropped:]):
            return dropped
    return None


def apply_changes(document: Mapping[str, Any] | None, changed: Mapping[str, Any]) -> dict[str, Any]:
    """`document` with `changes` applied (new dicts and lists where changed; `document` is left
    as it is)."""
    if "all" in changed:
        return dict(changed["all"])
    out = {k: v for k, v in (document or {}).items() if k not in changed.get("unset", ())}
    out.update(changed.get("set", {}))
    for key, nested in changed.get("merge", {}).items():
        out[key] = apply_changes(out.get(key) or {}, nested)
    for key, (dropped, appended) in changed.get("slide", {}).items():
        out[key] = [*(out.get(key) or [])[dropped:], *appended]
    return out


def swarm_document(swarm: Swarm) -> dict[str, Any]:
    return swarm.model_dump(mode="json", exclude=set(NOT_RECORDED))


def commit_record(
    pending: PendingCommit,
    old: Swarm | None,
    new: Swarm,
    written: Sequence[Node],
    read_nodes: Sequence[Node] = (),
) -> dict[str, Any]:
    """The record of commit `pending`: the changes from the swarm document `old` to `new`, and
    from the node documents read to those `written` (whole documents where there is nothing to
    compare with: a new node, a first commit, or a record made after a crash, of the documents
    read back)."""
    read = {node.node_id: node for node in read_nodes}
    nodes = [
        {
            "node_id": node.node_id,
            "changes": changes(
                read[node.node_id].model_dump(mode="json") if node.node_id in read else None,
                node.model_dump(mode="json"),
            ),
        }
        for node in written
    ]
    effects = pending.effects
    # Operations parked on the swarm are in flight as much as those enqueued: a rerun's spawn
    # and a spent budget's llm call are parked by their commit, and an operation that arrives
    # while the swarm is paused parks without one (the next commit records it). All of them,
    # so that the record does not depend on what the committer read before.
    enqueued = [*effects.operations, *new.parked]
    return {
        "seq": pending.seq,
        "op_id": pending.op_id,
        "swarm": changes(None if old is None else swarm_document(old), swarm_document(new)),
        "nodes": nodes,
        "deleted": list(effects.deleted_node_ids),
        "enqueued": [op.model_dump(mode="json") for op in enqueued],
        "consumed": list(effects.consumed),
    }


@dataclass
class Folded:
    """A swarm as it was right after step `seq`: documents as JSON, operations in flight."""

    seq: int = 0
    swarm: dict[str, Any] | None = None
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    outstanding: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The swarm the documents name when `renamed` made them another's.
    fork_id: str = ""

    def apply(self, record: Mapping[str, Any]) -> None:
        """Take the next commit's record (IncompleteRecords if it is not the next one)."""
        if int(record["seq"]) != self.seq + 1:
            raise IncompleteRecords(f"record {record['seq']} follows {self.seq}")
        self.seq = int(record["seq"])
        self.swarm = apply_changes(self.swarm, record["swarm"])
        for changed in record["nodes"]:
            node_id = changed["node_id"]
            self.nodes[node_id] = apply_changes(self.nodes.get(node_id), changed["changes"])
        deleted = set(record["deleted"])
        for node_id in deleted:
            self.nodes.pop(node_id, None)
        for op_id in record["consumed"]:
            self.outstanding.pop(op_id, None)
        for op in record["enqueued"]:
            self.outstanding[op["op_id"]] = op
        if deleted:
            # Operations for nodes that left the tree do nothing when they run: not in flight.
            self.outstanding = {
                k: op for k, op in self.outstanding.items() if op["node_id"] not in deleted
            }

    def checkpoint(self, history_mark: Mapping[str, Any]) -> dict[str, Any]:
        """The fold as a snapshot document, with where the history (and so the records) after
        it starts."""
        return {
            "seq": self.seq,
            "swarm": self.swarm,
            "nodes": list(self.nodes.values()),
            "outstanding": list(self.outstanding.values()),
            "history": dict(history_mark),
        }

    @classmethod
    def from_checkpoint(cls, document: Mapping[str, Any]) -> Folded:
        return cls(
            seq=int(document["seq"]),
            swarm=document["swarm"],
            nodes={n["node_id"]: n for n in document["nodes"]},
            outstanding={op["op_id"]: op for op in document["outstanding"]},
        )

    def renamed(self, source_id: str, target_id: str) -> Folded:
        """The same fold with every `swarm_id` naming `target_id` (as `copy_swarm` does)."""
        text = json.dumps([self.swarm, self.nodes, self.outstanding]).encode()
        swarm, nodes, outstanding = json.loads(rewrite_swarm_id(text, source_id, target_id))
        return Folded(self.seq, swarm, nodes, outstanding, target_id)

    def node_documents(self) -> list[Node]:
        return [Node.model_validate(doc) for doc in self.nodes.values()]

    def in_flight(self) -> list[Operation]:
        """The operations enqueued and not consumed yet, in the order they were enqueued."""
        return [parse_operation(op) for op in self.outstanding.values()]


class TreeReplay:
    """The public tree (node views by id) replayed along a swarm's history from a state
    snapshot, or from the start: each batch's commit record applied to the views, and each
    `node.updated` event that the history keeps as its node's id (the record holds the node's
    changes: `SwarmCommitter` stores it so) shown with the node's view as that commit left it,
    as it was published. A batch without a record (a swarm older than them) has whole nodes in
    its events, which the replay takes as they are."""

    def __init__(self, views: Iterable[Mapping[str, Any]] = (), seq: int = 0) -> None:
        self.views: dict[str, dict[str, Any]] = {view["node_id"]: dict(view) for view in views}
        self.seq = seq  # the step the tree is at

    def take(self, batch: Batch) -> list[dict[str, Any]]:
        """The batch's events as clients see them; the tree is then as the batch left it.
        IncompleteRecords if the batch does not follow the tree's step, or changes a node the
        tree does not have: what the replay started from is not what it should be."""
        if batch.seq != self.seq + 1:
            raise IncompleteRecords(f"batch {batch.seq} follows step {self.seq}")
        self.seq = batch.seq
        if batch.commit is not None:
            for changed in batch.commit["nodes"]:
                node_id, node_changes = changed["node_id"], changed["changes"]
                if node_id not in self.views and "all" not in node_changes:
                    raise IncompleteRecords(f"step {batch.seq} changes unknown node {node_id}")
                document = apply_changes(self.views.get(node_id), node_changes)
                self.views[node_id] = public_fields(document)
            for node_id in batch.commit["deleted"]:
                self.views.pop(node_id, None)
        shown = []
        for event in batch.records:
            kind, data = event["type"], event["data"]
            if kind in (EventType.NODE_SPAWNED, EventType.NODE_UPDATED):
                if "node" in data:
                    if batch.commit is None:  # the record, when there is one, says it all
                        self.views[data["node"]["node_id"]] = data["node"]
                else:
                    view = self.views.get(data["node_id"])
                    if view is None:
                        raise IncompleteRecords(
                            f"{event['swarm_id']}: no record of node {data['node_id']} "
                            f"before event {event['seq']}"
                        )
                    event = {**event, "data": {"node": view}}
            elif kind == EventType.NODE_RERUN and batch.commit is None:
                for node_id in data["discarded"]:
                    self.views.pop(node_id, None)
            shown.append(event)
        return shown


def fold(content: ContentStore, swarm_id: str, until_seq: int, every: int) -> Folded:
    """The swarm as it was right after step `until_seq`: the latest checkpoint at or before it
    (where the commits put it, else the latest listed) and the records after it."""
    checkpoint = None
    expected = until_seq - until_seq % every
    if expected > 0:
        checkpoint = content.get_snapshot(swarm_id, expected, "checkpoint")
        if checkpoint is None:
            checkpoint = content.latest_snapshot(swarm_id, until_seq, "checkpoint")
    return fold_from(content, swarm_id, checkpoint, until_seq)


def fold_from(
    content: ContentStore, swarm_id: str, checkpoint: Mapping[str, Any] | None, until_seq: int
) -> Folded:
    """The fold of the records after `checkpoint` (None: from the first) up to `until_seq`;
    IncompleteRecords if they do not all follow one another."""
    folded = Folded() if checkpoint is None else Folded.from_checkpoint(checkpoint)
    if until_seq > folded.seq:
        mark = STREAM_START if checkpoint is None else checkpoint["history"]
        for batch in content.read_batches(history_stream(swarm_id), mark, folded.seq, until_seq):
            if batch.commit is not None:
                folded.apply(batch.commit)
    if folded.seq != until_seq:
        raise IncompleteRecords(f"the records of swarm {swarm_id} end at {folded.seq}")
    return folded


def renamed_operations(
    operations: Sequence[Operation], source_id: str, target_id: str
) -> list[Operation]:
    """Operations of one swarm made another's (as `copy_swarm` does to stored ones)."""
    return [
        parse_operation(
            rewrite_swarm_id(op.model_dump_json().encode(), source_id, target_id).decode()
        )
        for op in operations
    ]


# --- recorded answers --------------------------------------------------------------------------


def request_digest(prompted: LLMRequest) -> str:
    """What makes two LLM requests the same one: task, messages (as written), model settings
    and seed. `prompted` has its messages written (`actions.prompts.with_prompt`)."""
    identity = {
        "task": prompted.task,
        "messages": [m.model_dump(mode="json") for m in prompted.messages],
        "settings": prompted.settings.model_dump(mode="json"),
        "seed": prompted.seed,
    }
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def recorded_answer(
    content: ContentStore, swarm: Swarm, node: Node, request: LLMRequest
) -> LLMResult | None:
    """The source's recorded answer to this very request (as its `llm` step writes it),
    for a fork that reuses them: the first entry of the source's journal of the node after the
    fork point and after the last answer the node reused, whose request digest is this
    request's (one read). None, without any work, for a swarm that is no such fork."""
    origin = swarm.forked_from
    if origin is None or not swarm.reuse_llm:
        return None
    prompted = with_prompt(request)
    response_model = RESPONSE_MODELS[prompted.task]
    digest = request_digest(prompted)
    after = max(origin.seq, node.recorded_seq)
    for entry in content.read(log_stream(origin.swarm_id, node.node_id), after_seq=after):
        data = entry.get("data") or {}
        if entry.get("kind") != "journal" or data.get("digest") != digest:
            continue
        try:
            parsed = response_model.model_validate_json(json_text(data["response"]))
        except (KeyError, ValidationError):
            continue  # not an answer this step can take: the model is asked instead
        return LLMResult(
            data=parsed.model_dump(mode="json"),
            content=data["response"],
            model=str(data.get("model", "")),
            recorded_seq=int(entry["seq"]),
        )
    return None


def forked_op_id(fork_id: str) -> str:
    """The op id of a fork's first commit (the `swarm.forked` event)."""
    return derive_id(fork_id, "forked")
