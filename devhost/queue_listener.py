"""Queue-triggered functions: poll a Storage queue with the Functions host's semantics.

What the host does and this listener does too (``extensions.queues`` of host.json):
messages are read ``batchSize`` at a time, and a new batch is read only while at most
``newBatchThreshold`` messages are being processed (so up to batchSize + newBatchThreshold run
in parallel); a message is held invisible while its function runs (10 minutes, renewed at half
time); success deletes it; a failure makes it visible again after ``visibilityTimeout``, unless
this was its ``maxDequeueCount``-th delivery: then it is copied, unchanged, to
``<queue>-poison`` and deleted. With ``messageEncoding: base64`` (the default) a message that is
not valid base64 goes straight to the poison queue. After a batch with messages the queue is read
again at once; an empty queue is polled less and less often, from 100 ms up to
``maxPollingInterval``, and a message resets the interval.

The connection setting named by the trigger (default ``AzureWebJobsStorage``) is either a
connection string or identity-based, read as the host reads it: ``<name>__queueServiceUri`` (or
``__serviceUri``, or ``__accountName``); ``<name>__credential=managedidentity`` signs in with the
managed identity only (``ManagedIdentityCredential``, ``<name>__clientId`` naming the
user-assigned one), as the Functions host does in Azure; without it ``DefaultAzureCredential``
(a developer's own sign-in, ``__clientId`` still preferring that identity). Over HTTPS the
account's certificate is verified against the system's CAs, which ``SSL_CERT_FILE`` replaces (how
devstack's identity mode makes the host trust its local CA). Both queues are created if missing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import os
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.core.pipeline.transport import AioHttpTransport
from azure.functions.queue import QueueMessage as FunctionQueueMessage
from azure.storage.queue import QueueMessage
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from devhost.config import HostConfigError, QueueOptions, resolve_setting_refs
from devhost.functions import FunctionInvoker, RegisteredFunction, new_invocation_id

logger = logging.getLogger(__name__)

MIN_POLLING_INTERVAL = 0.1  # seconds; the host's minimum
PROCESSING_VISIBILITY = 600.0  # seconds a message is hidden while its function runs (host: 10 min)
DEFAULT_CONNECTION = "AzureWebJobsStorage"


@dataclass
class QueueConnection:
    """A queue service client and the credential to close with it (identity-based only)."""

    service: QueueServiceClient
    credential: Any = None
    description: str = ""

    async def close(self) -> None:
        await self.service.close()
        if self.credential is not None:
            await self.credential.close()


def _transport() -> AioHttpTransport:
    """The listener's HTTP transport. By default aiohttp, under the SDK, reads the proxy settings
    and ~/.netrc on every request (`trust_env`), the netrc in a thread of its own: with a message
    deleted per invocation, that was a third of the cost of the host's queue calls. Without a
    proxy in the environment at startup there is nothing to find, so it does not look (with one,
    it does, as before)."""
    return AioHttpTransport(use_env_settings=bool(urllib.request.getproxies_environment()))


# Keywords for the SDK's default (exponential) retry policy. Its defaults wait 15 s, then 18 s...:
# an unreachable account would stall startup and shutdown for a minute. The poll loop retries
# anyway; a few quick retries cover transient failures of deletes and updates.
_QUICK_RETRIES: dict[str, Any] = {
    "initial_backoff": 1,
    "increment_base": 2,
    "retry_total": 2,
    "random_jitter_range": 1,
}


def connect(connection: str | None, environ: Mapping[str, str] | None = None) -> QueueConnection:
    """The queue service named by a trigger's ``connection`` setting."""
    env = os.environ if environ is None else environ
    name = connection or DEFAULT_CONNECTION
    # The host also accepts the setting with an "AzureWebJobs" prefix.
    for setting in (name, f"AzureWebJobs{name}"):
        if env.get(setting):
            service = QueueServiceClient.from_connection_string(
                env[setting], transport=_transport(), **_QUICK_RETRIES
            )
            return QueueConnection(service, description=f"{setting} ({service.url})")
        uri = env.get(f"{setting}__queueServiceUri") or env.get(f"{setting}__serviceUri")
        account = env.get(f"{setting}__accountName")
        if not uri and account:
            uri = f"https://{account}.queue.core.windows.net"
        if uri:
            credential, kind = _identity_credential(setting, env)
            service = QueueServiceClient(
                uri, credential=credential, transport=_transport(), **_QUICK_RETRIES
            )
            return QueueConnection(service, credential, f"{setting} ({uri}, {kind})")
    raise HostConfigError(
        f"connection {name!r}: set {name} to a connection string or {name}__queueServiceUri"
    )


def _identity_credential(setting: str, env: Mapping[str, str]) -> tuple[Any, str]:
    """The credential of an identity-based connection, chosen as the Functions host chooses it."""
    client_id = env.get(f"{setting}__clientId") or None
    if env.get(f"{setting}__credential", "").lower() == "managedidentity":
        from azure.identity.aio import ManagedIdentityCredential

        return ManagedIdentityCredential(client_id=client_id), "managed identity"
    from azure.identity.aio import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=client_id), "identity"


class _Receipt:
    """The current pop receipt of a message (each visibility update issues a new one)."""

    def __init__(self, value: str | None) -> None:
        self.value = value


def _is_gone(error: HttpResponseError) -> bool:
    """The message was already deleted, or its pop receipt no longer valid: nothing to do."""
    return error.status_code == 404 or getattr(error, "error_code", None) == "PopReceiptMismatch"


class QueueListener:
    """Polls one queue and runs one function for each message."""

    def __init__(
        self,
        function: RegisteredFunction,
        connection: QueueConnection,
        options: QueueOptions,
        invoker: FunctionInvoker,
        *,
        environ: Mapping[str, str] | None = None,
        processing_visibility: float = PROCESSING_VISIBILITY,
    ) -> None:
        self.function = function
        self.queue_name = resolve_setting_refs(str(function.trigger.get("queueName")), environ)
        self.options = options
        self._invoker = invoker
        self._queue: QueueClient = connection.service.get_queue_client(self.queue_name)
        self._poison: QueueClient = connection.service.get_queue_client(f"{self.queue_name}-poison")
        self._processing_visibility = processing_visibility
        self._in_flight: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self._receiving = False
        self._queues_ready = asyncio.Event()
        self._outage = False

    @property
    def poison_queue_name(self) -> str:
        return f"{self.queue_name}-poison"

    async def ensure_queues(self) -> bool:
        """Create the queue and its poison queue if missing; False (logged) if unreachable."""
        try:
            for client in (self._queue, self._poison):
                with contextlib.suppress(ResourceExistsError):
                    await client.create_queue()
        except AzureError as exc:
            self._report_outage("cannot create queue", exc)
            return False
        self._queues_ready.set()
        return True

    async def wait_until_ready(self, timeout: float) -> bool:
        """Wait until both queues exist (the poller creates them); False at the timeout."""
        try:
            await asyncio.wait_for(self._queues_ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def start(self) -> None:
        """Start polling on the running loop."""
        self._poller = asyncio.create_task(self._poll(), name=f"queue {self.queue_name}")

    async def stop(self, timeout: float) -> int:
        """Stop polling, wait up to ``timeout`` s for running messages; return how many remain."""
        deadline = self._now() + timeout
        self._stopping.set()
        if self._poller is not None:
            if not self._receiving:
                self._poller.cancel()  # sleeping, or creating queues: nothing to lose
            # A read in progress may hold messages already made invisible: let it finish so
            # they are processed rather than hidden for the processing visibility timeout.
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._poller, max(deadline - self._now(), 0.0))
        if not self._in_flight:
            return 0
        remaining = max(deadline - self._now(), 0.0)
        _, pending = await asyncio.wait(set(self._in_flight), timeout=remaining)
        for task in pending:
            task.cancel()
        if pending:
            logger.warning(
                "%d message(s) of queue '%s' still running at shutdown; they reappear after "
                "their visibility timeout",
                len(pending),
                self.queue_name,
            )
        return len(pending)

    async def _poll(self) -> None:
        delay = MIN_POLLING_INTERVAL
        stop = asyncio.create_task(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                if len(self._in_flight) > self.options.new_batch_threshold:
                    running = {stop, *self._in_flight}
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    continue
                if self._queues_ready.is_set() or await self.ensure_queues():
                    self._receiving = True
                    try:
                        messages = await self._receive()
                    finally:
                        self._receiving = False
                else:
                    messages = []
                if messages:
                    # As the host's QueueListener: a batch found, the next is read at once
                    # (once at most newBatchThreshold run); the first empty read after it
                    # waits the minimum interval, later ones twice as long each time.
                    delay = MIN_POLLING_INTERVAL
                    for message in messages:
                        task = asyncio.create_task(self._process(message))
                        self._in_flight.add(task)
                        task.add_done_callback(self._in_flight.discard)
                    continue
                await asyncio.wait({stop}, timeout=delay)
                delay = min(delay * 2, self.options.max_polling_interval)
        finally:
            stop.cancel()

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def _report_outage(self, what: str, exc: Exception) -> None:
        if not self._outage:
            logger.warning("Queue '%s': %s: %s (retrying)", self.queue_name, what, exc)
            self._outage = True

    async def _receive(self) -> list[QueueMessage]:
        try:
            pages = self._queue.receive_messages(
                messages_per_page=self.options.batch_size,
                visibility_timeout=int(self._processing_visibility),
            ).by_page()
            messages: list[QueueMessage] = []
            async for page in pages:
                messages = [m async for m in page]
                break
        except AzureError as exc:
            if isinstance(exc, ResourceNotFoundError):
                self._queues_ready.clear()  # deleted under us: create it again
            self._report_outage("cannot read messages", exc)
            return []
        if self._outage:
            logger.info("Queue '%s' is reachable again", self.queue_name)
            self._outage = False
        return messages

    def _decode(self, content: str | None) -> bytes:
        text = content or ""
        if self.options.message_encoding == "none":
            return text.encode("utf-8")
        # .NET's base64 decoder ignores whitespace; Python's strict mode does not.
        return base64.b64decode("".join(text.split()), validate=True)

    def _trigger_value(self, message: QueueMessage, body: bytes) -> Any:
        annotation = self.function.trigger_annotation
        if annotation in (str, "str"):
            return body.decode("utf-8")
        if annotation in (bytes, "bytes"):
            return body
        return FunctionQueueMessage(  # type: ignore[no-untyped-call]
            id=message.id,
            body=body,
            dequeue_count=message.dequeue_count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )

    async def _process(self, message: QueueMessage) -> None:
        receipt = _Receipt(message.pop_receipt)
        dequeue_count = message.dequeue_count or 1
        try:
            if dequeue_count > self.options.max_dequeue_count:
                # Delivered more often than allowed (a host died mid-message): poison unrun.
                await self._move_to_poison(message, receipt, "is past MaxDequeueCount")
                return
            try:
                body = self._decode(message.content)
            except (binascii.Error, ValueError):
                await self._move_to_poison(message, receipt, "is not valid base64")
                return
            succeeded = await self._run_function(message, body, receipt)
            if succeeded:
                await self._queue.delete_message(message.id, receipt.value)
            elif dequeue_count >= self.options.max_dequeue_count:
                await self._move_to_poison(message, receipt, "has reached MaxDequeueCount")
            else:
                await self._queue.update_message(
                    message.id,
                    pop_receipt=receipt.value,
                    visibility_timeout=int(self.options.visibility_timeout),
                )
        except AzureError as exc:
            if isinstance(exc, HttpResponseError) and _is_gone(exc):
                logger.debug("Message %s was deleted or taken over: %s", message.id, exc)
            else:
                logger.error("Message %s on queue '%s': %s", message.id, self.queue_name, exc)

    async def _run_function(self, message: QueueMessage, body: bytes, receipt: _Receipt) -> bool:
        finished = asyncio.Event()
        keeper = asyncio.create_task(self._keep_invisible(message.id, receipt, finished))
        try:
            await self._invoker.invoke(
                self.function,
                self._trigger_value(message, body),
                reason=f"New queue message detected on '{self.queue_name}'.",
                invocation_id=new_invocation_id(),
            )
        except Exception:  # logged with its traceback by the invoker; retried or poisoned
            return False
        finally:
            finished.set()
            await keeper
        return True

    async def _keep_invisible(
        self, message_id: str, receipt: _Receipt, finished: asyncio.Event
    ) -> None:
        """Renew the message's invisibility at half time while its function runs, as the host."""
        while True:
            try:
                await asyncio.wait_for(finished.wait(), timeout=self._processing_visibility / 2)
                return
            except TimeoutError:
                pass
            try:
                updated = await self._queue.update_message(
                    message_id,
                    pop_receipt=receipt.value,
                    visibility_timeout=int(self._processing_visibility),
                )
                receipt.value = updated.pop_receipt
            except AzureError as exc:
                logger.warning("Could not renew message %s: %s", message_id, exc)

    async def _move_to_poison(self, message: QueueMessage, receipt: _Receipt, why: str) -> None:
        logger.warning(
            "Message %s %s (dequeue count %d). Moving message to queue '%s'.",
            message.id,
            why,
            message.dequeue_count,
            self.poison_queue_name,
        )
        # The text as stored (still base64-encoded), so the poison queue holds the same message.
        try:
            await self._poison.send_message(message.content or "")
        except HttpResponseError as exc:
            if exc.status_code != 404:
                raise
            with contextlib.suppress(ResourceExistsError):
                await self._poison.create_queue()
            await self._poison.send_message(message.content or "")
        await self._queue.delete_message(message.id, receipt.value)
