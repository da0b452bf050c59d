"""Queue triggers: the operations queue advances exactly one node step per message; the poison
queue (messages that failed `maxDequeueCount` times) marks the node failed so the user can retry.
"""

from __future__ import annotations

import logging

import azure.functions as func

from swarm_core.operations import parse_operation
from swarm_core.runtime import get_app

log = logging.getLogger(__name__)

bp = func.Blueprint()


@bp.queue_trigger(arg_name="msg", queue_name="%SWARM_QUEUE%", connection="AzureWebJobsStorage")
def advance_swarm(msg: func.QueueMessage) -> None:
    """One message, one step. An exception leaves the message to the host's retries."""
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
    app.worker.fail_poisoned(operation)
