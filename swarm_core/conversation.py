"""A node's conversation with the user, as rules on the node document (pure, no I/O).

- A step that needs the user *asks*: the question goes to the node's chat, an interrupt opens, the
  node waits with its continuation, and the step ends.
- The API *accepts* a user's message by committing it to the chat at once: the message answers the
  open interrupt (the node is then resumed), or, while the node still works on an earlier answer,
  waits among the node's unread replies. Nothing the API accepted is ever dropped.
- The `user_reply` step *resumes* the node with every unread reply, in commit order.

The step context (asking, resuming) and the services (accepting) both apply these rules, so a
conversation behaves the same whichever side moves it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum

from swarm_core.models import (
    DONE_LIFECYCLES,
    ChatMessage,
    ClientMessage,
    Interrupt,
    InterruptStatus,
    Node,
    UnreadReply,
)

# Messages of a conversation kept in the node's context for the prompts. A window, not the whole
# chat: the node document is rewritten every step, so a growing conversation here would make every
# step of a long chat costlier. The full chat is in the append-only chat stream.
CONVERSATION_WINDOW = 6
# Replies the user may send while the node has not taken the earlier ones yet.
MAX_UNREAD_REPLIES = 20
# Client message ids remembered per node for idempotent replays.
CLIENT_MESSAGE_WINDOW = 64


class MessageRefused(Exception):
    """The node's conversation cannot take this message now; the reason is the message."""


def remember(node: Node, role: str, content: str) -> None:
    """Keep the latest messages of the node's conversation in its context, for the prompts."""
    recent = [*node.context.get("conversation", []), {"role": role, "content": content}]
    node.context["conversation"] = recent[-CONVERSATION_WINDOW:]


def open_interrupt(node: Node, interrupt_id: str, question: str, now: datetime) -> Interrupt:
    """The node asks `question`: a new open interrupt, which replaces the node's previous one."""
    node.interrupt = Interrupt(
        interrupt_id=interrupt_id,
        node_id=node.node_id,
        node_name=node.name,
        question=question,
        created_at=now,
    )
    return node.interrupt


def answer_with_unread(node: Node, now: datetime) -> bool:
    """Answer the node's open interrupt with the replies that are waiting already (sent while
    the node worked); True when it did, and the node must be resumed."""
    interrupt = node.interrupt
    if interrupt is None or interrupt.status != InterruptStatus.OPEN or not node.unread_replies:
        return False
    interrupt.status = InterruptStatus.ANSWERED
    interrupt.answered_at = now
    interrupt.answer_message_ids = [r.message_id for r in node.unread_replies]
    return True


def refusal(node: Node) -> str | None:
    """Why the node's conversation cannot take a message now (None: it can)."""
    if node.lifecycle in DONE_LIFECYCLES:
        return f"the node's conversation is over (the node is {node.lifecycle.value})"
    if node.reporting:
        return "the node's conversation is over (it is reporting)"
    if node.interrupt is None:
        return "the node has not asked the user anything"
    if len(node.unread_replies) >= MAX_UNREAD_REPLIES:
        return (
            f"the node has {MAX_UNREAD_REPLIES} messages it has not read yet; wait for its answer"
        )
    return None


class Accepted(StrEnum):
    """What a user's message did to the node's interrupt."""

    ANSWERED = "answered"  # it answered the open interrupt: resume the node
    ADDED = "added"  # one more answer to the interrupt, the node not resumed yet
    UNREAD = "unread"  # the node is working: it waits for the node's next resume


def accept(node: Node, message: ChatMessage, client_message_id: str | None) -> Accepted:
    """Take the user's committed `message` into the node; MessageRefused when it cannot."""
    reason = refusal(node)
    if reason is not None:
        raise MessageRefused(reason)
    node.unread_replies.append(
        UnreadReply(message_id=message.message_id, content=message.content, seq=message.seq)
    )
    if client_message_id is not None:
        node.client_messages[client_message_id] = ClientMessage(
            message_id=message.message_id, seq=message.seq, content_digest=digest(message.content)
        )
        while len(node.client_messages) > CLIENT_MESSAGE_WINDOW:
            node.client_messages.pop(next(iter(node.client_messages)))
    interrupt = node.interrupt
    assert interrupt is not None  # refusal() checked it
    if interrupt.status == InterruptStatus.OPEN:
        interrupt.status = InterruptStatus.ANSWERED
        interrupt.answered_at = message.created_at
        interrupt.answer_message_ids = [message.message_id]
        return Accepted.ANSWERED
    if node.continuation is not None:  # answered, the node not resumed yet: one more answer
        interrupt.answer_message_ids.append(message.message_id)
        return Accepted.ADDED
    return Accepted.UNREAD


def take_unread(node: Node) -> list[UnreadReply]:
    """The replies the node has not read, in commit order, now read (and remembered)."""
    replies, node.unread_replies = node.unread_replies, []
    for reply in replies:
        remember(node, "user", reply.content)
    return replies


def digest(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()[:32]


def replayed(node: Node, client_message_id: str, content: str) -> ClientMessage | None:
    """The message `client_message_id` was accepted as, if it was (same content); MessageRefused
    when the id was used with other content."""
    known = node.client_messages.get(client_message_id)
    if known is None:
        return None
    if known.content_digest != digest(content):
        raise MessageRefused("this client_message_id was used for a message with other content")
    return known
