"""Queue triggers: the operations queue advances exactly one node step per message; the poison
queue (messages that failed `maxDequeueCount` times) marks the node failed so the user can retry.
"""

from __future__ import annotations

import logging

import azure.functions as func

from swarm_core.models import Operation, OperationKind, derive_id
from swarm_core.runtime import get_runtime

log = logging.getLogger(__name__)

bp = func.Blueprint()


@bp.queue_trigger(arg_name="msg", queue_name="%SWARM_QUEUE%", connection="AzureWebJobsStorage")
def advance_swarm(msg: func.QueueMessage) -> None:
    """One message, one step. An exception leaves the message to the host's retries."""
    runtime = get_runtime()
    body = runtime.decode_message(msg.get_body())
    outcome = runtime.app.worker.process(body)
    log.info("message %s dequeue_count=%s: %s", msg.id, msg.dequeue_count, outcome.value)


@bp.queue_trigger(
    arg_name="msg", queue_name="%SWARM_POISON_QUEUE%", connection="AzureWebJobsStorage"
)
def fail_poisoned_operation(msg: func.QueueMessage) -> None:
    """The host gave up on an operation: fail its node (published as `node.failed`)."""
    runtime = get_runtime()
    try:
        operation = Operation.model_validate_json(runtime.decode_message(msg.get_body()))
    except ValueError:
        log.error("poison message %s is not an operation; dropped", msg.id)
        return
    failure = Operation(
        op_id=derive_id(operation.op_id, "poison"),
        kind=OperationKind.FAIL,
        swarm_id=operation.swarm_id,
        node_id=operation.node_id,
        payload={
            "error": (
                f"{operation.kind.value} step failed on every retry "
                f"(op_id {operation.op_id}); see the logs. Retry the node to run it again."
            ),
            "operation": operation.model_dump(mode="json"),
        },
    )
    outcome = runtime.app.worker.process(failure.model_dump_json())
    log.warning(
        "poisoned op_id=%s swarm_id=%s node_id=%s: %s",
        operation.op_id,
        operation.swarm_id,
        operation.node_id,
        outcome.value,
    )
