"""Run a swarm in one process: play the queue trigger and the user against an in-memory app.

`run_until_settled` delivers queued messages to the worker and answers every node that waits for
the user, until the queue is empty and nobody waits (or the swarm finished). The demo, the
benchmarks and the tests all drive swarms with it; `deliver` and `answer` let a caller deliver
messages its own way (crashes, duplicates, counting) or answer over HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from swarm_core.adapters.memory import QueueMessage
from swarm_core.bootstrap import InMemorySwarmApp
from swarm_core.models import FINISHED_STATUSES, InterruptStatus, Node
from swarm_core.ports import chat_stream

# The user's answer to a waiting node, given the node and its chat so far.
Reply = Callable[[Node, list[dict[str, Any]]], str]
# Answers one waiting node (posting the reply however the caller posts it).
Answer = Callable[[Node, list[dict[str, Any]]], None]
Deliver = Callable[[QueueMessage], None]


def waiting_nodes(app: InMemorySwarmApp, swarm_id: str) -> list[Node]:
    """The swarm's nodes whose question to the user is open, oldest first."""
    nodes = app.adapters.store.list_nodes(swarm_id)
    waiting = [n for n in nodes if n.interrupt and n.interrupt.status == InterruptStatus.OPEN]
    return sorted(waiting, key=lambda n: (n.created_at, n.node_id))


def drain(app: InMemorySwarmApp, deliver: Deliver | None = None, limit: int = 100_000) -> int:
    """Deliver queued messages until the queue is empty (or `limit`); returns how many."""
    deliver = deliver or process_and_ack(app)
    count = 0
    while count < limit and (message := app.adapters.queue.receive()) is not None:
        deliver(message)
        count += 1
    return count


def process_and_ack(app: InMemorySwarmApp) -> Deliver:
    """What the queue trigger does with a message: run its step, then delete it."""

    def deliver(message: QueueMessage) -> None:
        app.worker.process(message.body, dequeue_count=message.dequeue_count)
        app.adapters.queue.ack(message)

    return deliver


def reply_through_services(
    app: InMemorySwarmApp,
    user_id: str,
    swarm_id: str,
    reply: Reply,
    client_message_id: Callable[[Node, list[dict[str, Any]]], str | None] | None = None,
) -> Answer:
    """An `Answer` that posts `reply`'s text as the user would, through the services."""

    def answer(node: Node, chat: list[dict[str, Any]]) -> None:
        key = client_message_id(node, chat) if client_message_id else None
        app.services.post_user_message(user_id, swarm_id, node.node_id, reply(node, chat), key)

    return answer


def run_until_settled(
    app: InMemorySwarmApp,
    swarm_id: str,
    answer: Answer,
    *,
    deliver: Deliver | None = None,
    max_deliveries: int = 100_000,
) -> int:
    """Drain the queue and answer the waiting nodes until nothing is left to do; returns the
    number of messages delivered."""
    delivered = 0
    while delivered < max_deliveries:
        delivered += drain(app, deliver, max_deliveries - delivered)
        got = app.adapters.store.get_swarm(swarm_id)
        if got is None or got.value.status in FINISHED_STATUSES:
            break
        waiting = waiting_nodes(app, swarm_id)
        if not waiting:
            break  # nothing runs and nobody is asked: settled (or stuck, as the status says)
        for node in waiting:
            chat = app.adapters.content.read(chat_stream(swarm_id, node.node_id))
            answer(node, chat)
    return delivered
