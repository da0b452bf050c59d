"""The operation queue on Azure Storage queues, in the format the Functions host's trigger reads.

Messages are base64 text (`TextBase64EncodePolicy`), as the host's queue trigger expects. One
operation is one message, its JSON; a delay is the message's initial visibility timeout. A message
whose encoded form would pass the queue's 64 KiB limit goes by claim check: the operation JSON is
stored in the content store (`{swarm_id}/claims/{op_id}.json`) and the message carries only the
pointer. `decode_message` (the queue trigger calls it through the port) turns any message body
back into the operation JSON. The client is built on first use: from the
connection string locally, from the queue endpoint and the managed identity in Azure.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.queue import (
    QueueClient,
    QueueServiceClient,
    TextBase64DecodePolicy,
    TextBase64EncodePolicy,
)

from swarm_core.adapters.identity import storage_service
from swarm_core.operations import Operation, compact_json
from swarm_core.ports import ContentStore, HeldMessage
from swarm_core.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

logger = logging.getLogger(__name__)

# The service's limit on a message as stored, i.e. after base64 encoding.
MAX_MESSAGE_BYTES = 64 * 1024
# Visibility timeouts must stay below 7 days.
MAX_DELAY_SECONDS = 7 * 24 * 3600 - 1
# Operations never expire in the queue: losing one would strand its node (the default is 7 days).
NEVER_EXPIRE = -1
CLAIM_CHECK_KEY = "claim_check"


def poison_queue_name(queue_name: str) -> str:
    """Where the Functions host moves a message after `maxDequeueCount` failed runs."""
    return f"{queue_name}-poison"


def claim_check_name(swarm_id: str, op_id: str) -> str:
    return f"{swarm_id}/claims/{op_id}.json"


def build_queue_service(
    settings: Settings, credential: TokenCredential | None = None, **options: Any
) -> QueueServiceClient:
    """A Queue service client: by connection string (local key mode), else by URI with
    `credential` (default: the app's managed identity)."""
    client: QueueServiceClient = storage_service(
        QueueServiceClient, settings, "storage_queue_uri", credential, **options
    )
    return client


def base64_queue_client(service: QueueServiceClient, queue_name: str) -> QueueClient:
    """A client for one queue that reads and writes base64 text, as the Functions host does."""
    return service.get_queue_client(
        queue_name,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )


def decode_operation_message(body: str | bytes, content: ContentStore) -> str:
    """The operation JSON a (base64-decoded) message body stands for, resolving claim checks.

    Raises ValueError for a body that is not JSON or a claim check outside its swarm's claims,
    and KeyError when the claimed payload is missing: either way the message ends as poison."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    try:
        message = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"queue message is not JSON: {exc}") from None
    if not isinstance(message, dict) or CLAIM_CHECK_KEY not in message:
        return text
    name, swarm_id, op_id = (
        str(message[CLAIM_CHECK_KEY]),
        str(message.get("swarm_id", "")),
        str(message.get("op_id", "")),
    )
    # A message may only point at its own swarm's claims, never at other content.
    if name != claim_check_name(swarm_id, op_id):
        raise ValueError(f"claim check {name!r} does not match op {op_id} of swarm {swarm_id}")
    logger.debug("resolving claim check %s swarm_id=%s op_id=%s", name, swarm_id, op_id)
    return content.get_claim(name).decode("utf-8")


class StorageOperationQueue:
    """`OperationQueue` on one Storage queue (`settings.swarm_queue`)."""

    def __init__(
        self,
        settings: Settings,
        content: ContentStore,
        *,
        credential: TokenCredential | None = None,
        service_client: QueueServiceClient | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self._settings = settings
        self._content = content
        self._credential = credential
        self._service_client = service_client
        self._max_message_bytes = max_message_bytes
        self._service: QueueServiceClient | None = None
        self._queue: QueueClient | None = None
        self._lock = threading.Lock()
        self._holds = _Holds(self._client)

    @property
    def queue_name(self) -> str:
        return self._settings.swarm_queue

    def _service_for(self) -> QueueServiceClient:
        # Built on first use and shared by all threads (the client holds a connection pool).
        with self._lock:
            if self._service is None:
                self._service = self._service_client or build_queue_service(
                    self._settings, self._credential
                )
            return self._service

    def _client(self) -> QueueClient:
        service = self._service_for()
        with self._lock:
            if self._queue is None:
                self._queue = base64_queue_client(service, self.queue_name)
            return self._queue

    def ensure_queues(self) -> None:
        """Create the queue and its poison twin if missing (local stacks and tests)."""
        service = self._service_for()
        for name in (self.queue_name, poison_queue_name(self.queue_name)):
            with contextlib.suppress(ResourceExistsError):
                service.create_queue(name)

    def probe(self) -> None:
        """One read of the queue's properties (readiness)."""
        self._client().get_queue_properties()

    def decode_message(self, body: str | bytes) -> str:
        return decode_operation_message(body, self._content)

    def enqueue(self, operation: Operation, delay_seconds: int = 0) -> None:
        """Send the operation, invisible for `delay_seconds`; by claim check when too big."""
        if not 0 <= delay_seconds <= MAX_DELAY_SECONDS:
            raise ValueError(f"delay_seconds must be between 0 and {MAX_DELAY_SECONDS}")
        self._client().send_message(
            self._message_body(operation),
            visibility_timeout=delay_seconds or None,
            time_to_live=NEVER_EXPIRE,
        )
        logger.debug(
            "enqueued op_id=%s kind=%s swarm_id=%s node_id=%s delay=%s",
            operation.op_id,
            operation.kind,
            operation.swarm_id,
            operation.node_id,
            delay_seconds,
        )

    def enqueue_held(self, operation: Operation, hold_seconds: int) -> HeldMessage:
        """Sent with the hold as its initial visibility timeout, then kept hidden (renewed at
        half the hold, as the Functions host renews a message it is running) until settled:
        the message comes back only when this process is gone, or its step ends unfinished."""
        if not 0 < hold_seconds <= MAX_DELAY_SECONDS:
            raise ValueError(f"hold_seconds must be between 1 and {MAX_DELAY_SECONDS}")
        sent = self._client().send_message(
            self._message_body(operation),
            visibility_timeout=hold_seconds,
            time_to_live=NEVER_EXPIRE,
        )
        if not sent.pop_receipt:
            raise RuntimeError(f"the queue answered no receipt for op {operation.op_id}")
        held = HeldMessage(operation, sent.id)
        self._holds.hold(held, sent.pop_receipt, hold_seconds)
        return held

    def settle(self, held: HeldMessage, done: bool, delay_seconds: int = 0) -> None:
        self._holds.settle(held, done, delay_seconds)

    def _message_body(self, operation: Operation) -> str:
        """The operation's JSON, or a claim check's pointer when it is too big."""
        body = compact_json(operation)
        if _encoded_size(body) > self._max_message_bytes:
            # Deterministic name: a re-driven enqueue rewrites the same claim, not a new one.
            name = claim_check_name(operation.swarm_id, operation.op_id)
            self._content.put_claim(name, body.encode("utf-8"))
            logger.info(
                "operation sent by claim check %s (%s bytes) swarm_id=%s node_id=%s op_id=%s",
                name,
                len(body),
                operation.swarm_id,
                operation.node_id,
                operation.op_id,
            )
            pointer = {
                CLAIM_CHECK_KEY: name,
                "op_id": operation.op_id,
                "swarm_id": operation.swarm_id,
            }
            body = json.dumps(pointer, separators=(",", ":"))
        return body


@dataclass
class _Hold:
    """A held message as this process keeps it: its current receipt (each visibility update
    answers a new one) and when to renew it."""

    held: HeldMessage
    receipt: str
    seconds: int
    renew_at: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    settled: bool = False


class _Holds:
    """The held messages of one queue client, renewed by one daemon thread until settled."""

    def __init__(self, client: Callable[[], QueueClient]) -> None:
        self._client = client
        self._holds: dict[str, _Hold] = {}
        self._changed = threading.Condition()
        self._renewer: threading.Thread | None = None

    def hold(self, held: HeldMessage, receipt: str, seconds: int) -> None:
        renew_at = time.monotonic() + seconds / 2
        with self._changed:
            self._holds[held.message_id] = _Hold(held, receipt, seconds, renew_at)
            if self._renewer is None:
                self._renewer = threading.Thread(
                    target=self._renew_forever, name="queue-holds", daemon=True
                )
                self._renewer.start()
            self._changed.notify()

    def settle(self, held: HeldMessage, done: bool, delay_seconds: int) -> None:
        with self._changed:
            hold = self._holds.pop(held.message_id, None)
        if hold is None:
            return  # already settled
        with hold.lock:  # not while a renewal changes its receipt
            hold.settled = True
            try:
                if done:
                    self._client().delete_message(held.message_id, hold.receipt)
                else:
                    self._client().update_message(
                        held.message_id, hold.receipt, visibility_timeout=delay_seconds
                    )
            except AzureError as exc:
                # Storage is down, or its hold was lost (a renewal failed) and a worker has
                # it: the queue delivers it in the end, and a committed step's is a duplicate.
                logger.warning(
                    "could not settle held op_id=%s swarm_id=%s (done=%s): %s",
                    held.operation.op_id,
                    held.operation.swarm_id,
                    done,
                    exc,
                )

    def _renew_forever(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                due = [hold for hold in self._holds.values() if hold.renew_at <= now]
                if not due:
                    soonest = min((hold.renew_at for hold in self._holds.values()), default=None)
                    self._changed.wait(None if soonest is None else soonest - now)
                    continue
            for hold in due:
                self._renew(hold)

    def _renew(self, hold: _Hold) -> None:
        with hold.lock:
            if hold.settled:
                return
            try:
                updated = self._client().update_message(
                    hold.held.message_id, hold.receipt, visibility_timeout=hold.seconds
                )
                hold.receipt = updated.pop_receipt or hold.receipt
            except AzureError as exc:
                logger.warning(
                    "could not renew the hold of op_id=%s swarm_id=%s: %s",
                    hold.held.operation.op_id,
                    hold.held.operation.swarm_id,
                    exc,
                )
            # Failed, it is tried again at the next half hold, if its hold still stands.
            hold.renew_at = time.monotonic() + hold.seconds / 2


def _encoded_size(text: str) -> int:
    return len(base64.b64encode(text.encode("utf-8")))
