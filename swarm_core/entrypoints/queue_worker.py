"""Queue triggers: the operations queue advances exactly one node step per message (and an
invocation then runs the messages its steps sent held for it: `SwarmWorker.process`); the poison
queue (messages that failed `maxDequeueCount` times) marks the node failed so the user can retry.
No message ends in a queue nothing reads: when failing the node fails too, the operation goes
back on the operations queue, delayed.
"""

from __future__ import annotations

import logging

import azure.functions as func

from swarm_core.operations import parse_operation
from swarm_core.runtime import get_app

log = logging.getLogger(__name__)

bp = func.Blueprint()

# How long an operation whose poison handling failed waits before it runs again.
POISON_RETRY_SECONDS = 60


@bp.queue_trigger(arg_name="msg", queue_name="%SWARM_QUEUE%", connection="AzureWebJobsStorage")
def advance_swarm(msg: func.QueueMessage) -> None:
    """One message, one step (then the steps it runs next, each of its own held message).
    An exception leaves the message to the host's retries."""
    app = get_app()
    body = app.adapters.queue.decode_message(msg.get_body())
    app.worker.process(body, dequeue_count=msg.dequeue_count or 1)


@bp.queue_trigger(
    arg_name="msg", queue_name="%SWARM_POISON_QUEUE%", connection="AzureWebJobsStorage"
)
def fail_poisoned_operation(msg: func.QueueMessage) -> None:
    """The host gave up on an operation: fail its node (published as `node.failed`)."""
    app = get_app()
    try:
        operation = parse_operation(app.adapters.queue.decode_message(msg.get_body()))
    except ValueError:  # not JSON, or not an operation (pydantic's ValidationError is one)
        log.error("poison message %s is not an operation; dropped", msg.id)
        return
    try:
        app.worker.fail_poisoned(operation)
    except Exception:
        # Failing the node failed too (an outage, most likely). A failure in this handler would
        # end in `<poison>-poison`, which nothing reads: run the operation again later instead.
        # It succeeds once the outage is over, or lands here again, when failing it works.
        log.exception(
            "could not fail poisoned op_id=%s swarm_id=%s: it runs again in %ss",
            operation.op_id,
            operation.swarm_id,
            POISON_RETRY_SECONDS,
        )
        app.adapters.queue.enqueue(operation, delay_seconds=POISON_RETRY_SECONDS)
