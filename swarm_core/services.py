"""Service functions: what the HTTP layer calls. Plain functions over the ports, no HTTP here.

Control changes (spawn, pause, resume, retry) commit through the same `SwarmCommitter` as node
steps, so they are serialised with the steps and their effects (events, enqueued operations) are
applied exactly once even after a crash. Reads (state, history, chats) never change anything.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from swarm_core.actions.catalogue import CATALOGUE
from swarm_core.models import (
    ActionType,
    EventType,
    HistoryEvent,
    Lifecycle,
    NodeWrite,
    Operation,
    OperationKind,
    Swarm,
    SwarmConfig,
    SwarmStatus,
    derive_id,
    utcnow,
)
from swarm_core.ports import (
    ContentStore,
    SwarmStore,
    Versioned,
    chat_stream,
    history_stream,
    log_stream,
)
from swarm_core.worker import Decision, Outcome, SwarmCommitter

SNAPSHOT_EVERY = 200


class ServiceError(Exception):
    status = 400


class NotFound(ServiceError):
    status = 404


class InvalidState(ServiceError):
    """The request is not allowed in the swarm's or node's current state (HTTP 409)."""

    status = 409


@dataclass
class SwarmServices:
    store: SwarmStore
    content: ContentStore
    committer: SwarmCommitter
    clock: Callable[[], datetime] = utcnow
    new_id: Callable[[], str] = field(default=lambda: uuid.uuid4().hex)

    # --- swarms -----------------------------------------------------------------------------

    def create_swarm(self, user_id: str, goal: str, config: SwarmConfig | None = None) -> Swarm:
        now = self.clock()
        swarm = Swarm(
            swarm_id=self.new_id(),
            user_id=user_id,
            goal=goal,
            config=config or SwarmConfig(),
            created_at=now,
            updated_at=now,
        )
        self.store.create_swarm(swarm)
        self.store.put_summary(swarm.summary())
        return swarm

    def get_swarm(self, user_id: str, swarm_id: str) -> Swarm:
        """The caller's swarm; someone else's is indistinguishable from a missing one (404)."""
        got = self.store.get_swarm(swarm_id)
        if got is None or got.value.user_id != user_id:
            raise NotFound(f"swarm {swarm_id} not found")
        return got.value

    def delete_swarm(self, user_id: str, swarm_id: str) -> None:
        self.get_swarm(user_id, swarm_id)
        self.store.delete_summary(user_id, swarm_id)
        self.content.delete_swarm(swarm_id)
        self.store.delete_swarm(swarm_id)

    def spawn(self, user_id: str, swarm_id: str) -> Swarm:
        self.get_swarm(user_id, swarm_id)

        def decide(got: Versioned[Swarm]) -> Decision:
            swarm = got.value
            if swarm.spawned:
                raise InvalidState("the swarm is spawned already")
            root_id = derive_id(swarm.swarm_id, "root")
            action = ActionType.PLAN if swarm.config.limits.max_depth > 0 else ActionType.EXECUTE
            spawn = Operation(
                op_id=derive_id(swarm.swarm_id, "spawn"),
                kind=OperationKind.SPAWN,
                swarm_id=swarm.swarm_id,
                node_id=root_id,
                payload={
                    "parent_id": None,
                    "depth": 0,
                    "action": action.value,
                    "name": "Root",
                    "directive": swarm.goal,
                    "termination_policy": CATALOGUE[action].termination_policy.value,
                },
            )
            new = self._with_status(swarm, SwarmStatus.RUNNING)
            new.spawned = True
            new.root_node_id = root_id
            new.node_count = 1
            decision = self._status_decision(swarm, new)
            decision.effects.operations.append(spawn)
            return decision

        return self._control(swarm_id, decide)

    def pause(self, user_id: str, swarm_id: str) -> Swarm:
        self.get_swarm(user_id, swarm_id)

        def decide(got: Versioned[Swarm]) -> Decision:
            swarm = got.value
            if swarm.status not in (SwarmStatus.RUNNING, SwarmStatus.WAITING_FOR_USER):
                raise InvalidState(f"a {swarm.status.value} swarm cannot be paused")
            return self._status_decision(swarm, self._with_status(swarm, SwarmStatus.PAUSED))

        return self._control(swarm_id, decide)

    def resume(self, user_id: str, swarm_id: str) -> Swarm:
        self.get_swarm(user_id, swarm_id)

        def decide(got: Versioned[Swarm]) -> Decision:
            swarm = got.value
            if swarm.status != SwarmStatus.PAUSED:
                raise InvalidState(f"a {swarm.status.value} swarm cannot be resumed")
            new = self._with_status(swarm, SwarmStatus.RUNNING)
            new.parked = []
            decision = self._status_decision(swarm, new, parked=len(swarm.parked))
            decision.effects.operations.extend(swarm.parked)
            return decision

        return self._control(swarm_id, decide)

    def retry_node(self, user_id: str, swarm_id: str, node_id: str) -> Swarm:
        """Run a failed node's failed operation again (a new op id, so it is not deduped)."""
        self.get_swarm(user_id, swarm_id)
        got_node = self.store.get_node(swarm_id, node_id)
        if got_node is None:
            raise NotFound(f"node {node_id} not found")
        node = got_node.value
        if node.lifecycle != Lifecycle.FAILED or node.failed_operation is None:
            raise InvalidState("only a failed node can be retried")
        failed = Operation.model_validate(node.failed_operation)
        attempt = int(node.execution_memory.get("retries", 0)) + 1
        retry = failed.model_copy(update={"op_id": derive_id(failed.op_id, "retry", attempt)})

        def decide(got: Versioned[Swarm]) -> Decision:
            swarm = got.value
            current = self.store.get_node(swarm_id, node_id)
            if current is None or current.value.lifecycle != Lifecycle.FAILED:
                raise InvalidState("only a failed node can be retried")
            fixed = current.value.model_copy(deep=True)
            fixed.lifecycle = Lifecycle.RUNNING
            fixed.error = None
            fixed.failed_operation = None
            fixed.execution_memory["retries"] = attempt
            new = swarm.model_copy(deep=True)
            if new.status == SwarmStatus.FAILED:
                new.status = SwarmStatus.RUNNING
            decision = self._status_decision(swarm, new)
            decision.effects.node_writes.append(NodeWrite(node=fixed, base_etag=current.etag))
            counts = dict(new.node_counts)
            counts["failed"] = counts.get("failed", 1) - 1
            counts["running"] = counts.get("running", 0) + 1
            new.node_counts = {k: v for k, v in counts.items() if v}
            decision.effects.events.append(
                self._event(new, EventType.NODE_UPDATED, {"node": fixed.public_view()}, 1)
            )
            decision.effects.operations.append(retry)
            return decision

        return self._control(swarm_id, decide)

    def _control(self, swarm_id: str, decide: Callable[[Versioned[Swarm]], Decision]) -> Swarm:
        self.committer.run(swarm_id, f"control-{uuid.uuid4().hex}", decide)
        got = self.store.get_swarm(swarm_id)
        assert got is not None
        return got.value

    def _with_status(self, swarm: Swarm, status: SwarmStatus) -> Swarm:
        new = swarm.model_copy(deep=True)
        new.status = status
        new.updated_at = self.clock()
        return new

    def _status_decision(self, old: Swarm, new: Swarm, **data: Any) -> Decision:
        """A commit with a `swarm.status` event and the refreshed listing entry."""
        decision = Decision(Outcome.COMMITTED, new)
        decision.effects.events.append(
            self._event(new, EventType.SWARM_STATUS, {"status": new.status.value, **data}, 0)
        )
        summary = new.summary()
        summary.seq = old.seq + 1
        decision.effects.summary = summary
        return decision

    def _event(
        self, swarm: Swarm, type_: EventType, data: dict[str, Any], index: int
    ) -> HistoryEvent:
        return HistoryEvent(
            type=type_,
            swarm_id=swarm.swarm_id,
            seq=swarm.seq + 1,
            index=index,
            at=self.clock(),
            data=data,
        )

    # --- the user's replies --------------------------------------------------------------------

    def post_user_message(
        self,
        user_id: str,
        swarm_id: str,
        node_id: str,
        content: str,
        client_message_id: str | None,
        queue_send: Callable[[Operation], None],
    ) -> str:
        """Enqueue a `user_reply` for a node waiting for the user; returns the message id.

        The same `client_message_id` gives the same operation id, so a replayed request creates
        one message (and answers with the same id even after the node has moved on)."""
        swarm = self.get_swarm(user_id, swarm_id)
        key = client_message_id or uuid.uuid4().hex
        op_id = derive_id(swarm_id, node_id, "reply", key)
        message_id = derive_id(op_id, "user-message")
        if (swarm.pending and swarm.pending.op_id == op_id) or self.store.get_commit(
            swarm_id, op_id
        ):
            return message_id
        got = self.store.get_node(swarm_id, node_id)
        if got is None:
            raise NotFound(f"node {node_id} not found")
        if got.value.lifecycle != Lifecycle.WAITING_FOR_USER:
            raise InvalidState("the node is not waiting for the user")
        if swarm.status in (SwarmStatus.COMPLETED, SwarmStatus.FAILED):
            raise InvalidState(f"the swarm is {swarm.status.value}")
        queue_send(
            Operation(
                op_id=op_id,
                kind=OperationKind.USER_REPLY,
                swarm_id=swarm_id,
                node_id=node_id,
                payload={"content": content, "message_id": message_id},
            )
        )
        return message_id

    # --- maintenance -------------------------------------------------------------------------

    def maintain(
        self, stuck_after: timedelta, idle_after: timedelta, limit: int = 200
    ) -> dict[str, int]:
        """Re-drive swarms whose latest commit was never finished (its worker died and no step
        came after it), and mark swarms whose live nodes all wait for the user as
        `waiting_for_user` (announced with a `swarm.status` event)."""
        now = self.clock()
        counts = {"checked": 0, "redriven": 0, "waiting_for_user": 0}
        for summary in self.store.list_active_summaries(limit):
            got = self.store.get_swarm(summary.swarm_id)
            if got is None:
                continue
            counts["checked"] += 1
            swarm = got.value
            quiet = now - swarm.updated_at
            pending = swarm.pending
            if (
                pending is not None
                and quiet >= stuck_after
                and self.store.get_commit(swarm.swarm_id, pending.op_id) is None
            ):
                self.committer.apply(swarm, pending)
                counts["redriven"] += 1
            # Nothing runnable (parents only wait for children) and someone waits for the user.
            runnable = sum(
                swarm.node_counts.get(k.value, 0) for k in (Lifecycle.SPAWNED, Lifecycle.RUNNING)
            )
            waiting = swarm.node_counts.get(Lifecycle.WAITING_FOR_USER.value, 0)
            if (
                swarm.status == SwarmStatus.RUNNING
                and runnable == 0
                and waiting > 0
                and quiet >= idle_after
            ):
                with contextlib.suppress(InvalidState):
                    self._control(swarm.swarm_id, self._mark_waiting)
                    counts["waiting_for_user"] += 1
        return counts

    def _mark_waiting(self, got: Versioned[Swarm]) -> Decision:
        swarm = got.value
        if swarm.status != SwarmStatus.RUNNING:
            raise InvalidState("no longer running")
        new = self._with_status(swarm, SwarmStatus.WAITING_FOR_USER)
        return self._status_decision(swarm, new)

    # --- reads -------------------------------------------------------------------------------

    def state(self, user_id: str, swarm_id: str, at: int | None = None) -> dict[str, Any]:
        """The tree now, or as it was right after step `at` (replayed from history)."""
        swarm = self.get_swarm(user_id, swarm_id)
        if at is None or at >= swarm.seq:
            nodes = [n.public_view() for n in self.store.list_nodes(swarm_id)]
            nodes.sort(key=lambda n: (n["depth"], n["created_at"], n["node_id"]))
            return {"seq": swarm.seq, "nodes": nodes}
        if at < 0:
            raise ServiceError("`at` must be >= 0")
        snapshot = self.content.latest_snapshot(swarm_id, at)
        base_seq = int(snapshot["seq"]) if snapshot else 0
        tree: dict[str, dict[str, Any]] = (
            {n["node_id"]: n for n in snapshot["nodes"]} if snapshot else {}
        )
        replayed = 0
        for event in self.content.read(history_stream(swarm_id), after_seq=base_seq):
            if event["seq"] > at:
                break
            replayed += 1
            if event["type"] in (EventType.NODE_SPAWNED.value, EventType.NODE_UPDATED.value):
                node = event["data"]["node"]
                tree[node["node_id"]] = node
        nodes = sorted(tree.values(), key=lambda n: (n["depth"], n["created_at"], n["node_id"]))
        if replayed >= SNAPSHOT_EVERY:
            # Cache the replay: the next look at this time needs no long read.
            self.content.put_snapshot(swarm_id, at, {"seq": at, "nodes": nodes})
        return {"seq": at, "nodes": nodes}

    def history(
        self, user_id: str, swarm_id: str, after: int = 0, limit: int = 500
    ) -> dict[str, Any]:
        self.get_swarm(user_id, swarm_id)
        events = self.content.read(history_stream(swarm_id), after_seq=after, limit=limit)
        next_after = events[-1]["seq"] if events else after
        return {"events": events, "next_after": next_after}

    def chats(self, user_id: str, swarm_id: str) -> list[dict[str, Any]]:
        self.get_swarm(user_id, swarm_id)
        out = []
        for node in self.store.list_nodes(swarm_id):
            if node.chat_length == 0 and node.action != ActionType.ASK_USER:
                continue
            out.append(
                {
                    "node_id": node.node_id,
                    "name": node.name,
                    "lifecycle": node.lifecycle.value,
                    "waiting_for_user": node.lifecycle == Lifecycle.WAITING_FOR_USER,
                    "last_message_at": node.last_message_at,
                }
            )
        return out

    def chat_messages(
        self, user_id: str, swarm_id: str, node_id: str, after: int = 0
    ) -> list[dict[str, Any]]:
        self.get_swarm(user_id, swarm_id)
        if self.store.get_node(swarm_id, node_id) is None:
            raise NotFound(f"node {node_id} not found")
        return self.content.read(chat_stream(swarm_id, node_id), after_seq=after)

    def node_detail(self, user_id: str, swarm_id: str, node_id: str) -> dict[str, Any]:
        self.get_swarm(user_id, swarm_id)
        got = self.store.get_node(swarm_id, node_id)
        if got is None:
            raise NotFound(f"node {node_id} not found")
        entries = self.content.read(log_stream(swarm_id, node_id))
        return {
            **got.value.public_view(),
            "context": got.value.context,
            "logs": [e for e in entries if e.get("kind") == "log"],
            "journal": [e for e in entries if e.get("kind") == "journal"],
        }
