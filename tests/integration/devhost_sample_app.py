"""A small v2 FunctionApp for the dev host tests: one blueprint per trigger kind.

HTTP functions echo what the host handed them (route and query parameters, headers, body) as
JSON; the queue function and the timer append one JSON line per invocation to files in
``SAMPLE_RECORD_DIR``, so a test can see every attempt; a queue body containing "fail" raises.
Settings are read when a function runs, never at import.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import azure.functions as func
from azure.functions.queue import QueueMessage

_record_lock = threading.Lock()


def _record(file_name: str, entry: dict[str, object]) -> None:
    path = Path(os.environ["SAMPLE_RECORD_DIR"]) / file_name
    with _record_lock, path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(entry) + "\n")


def _json(body: object, status_code: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status_code, mimetype="application/json")


# ----------------------------------------------------------------------------------- HTTP

http_bp = func.Blueprint()


@http_bp.route(route="swarms/{swarm_id}/chats/{node_id}", methods=["GET"])
def echo_chat(req: func.HttpRequest) -> func.HttpResponse:
    """Echo the request as the function sees it."""
    return _json(
        {
            "method": req.method,
            "url": req.url,
            "route_params": dict(req.route_params),
            "params": dict(req.params),
            "header": req.headers.get("x-sample"),
            "greeting": os.environ.get("SAMPLE_GREETING"),
        }
    )


@http_bp.route(route="items/{item_id:int}/{rest?}", methods=["GET"])
def typed_item(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """A constrained and an optional parameter; also asks for the invocation context."""
    return _json(
        {
            "route_params": dict(req.route_params),
            "function_name": context.function_name,
            "has_invocation_id": bool(context.invocation_id),
        }
    )


@http_bp.route(route="items", methods=["POST"])
async def create_item(req: func.HttpRequest) -> func.HttpResponse:
    """An async function: answers 201 with the JSON body it received and a custom header."""
    try:
        item = req.get_json()
    except ValueError:
        return _json({"error": "body is not JSON"}, status_code=400)
    return func.HttpResponse(
        json.dumps({"created": item}),
        status_code=201,
        headers={"Location": "/api/items/1", "X-Sample": "yes"},
        mimetype="application/json",
    )


@http_bp.route(route="files/upload", methods=["POST"])
def upload(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("uploaded", status_code=201)


@http_bp.route(route="files/{*path}", methods=["GET"])
def files(req: func.HttpRequest) -> func.HttpResponse:
    """A catch-all (as the web console's): every path under files/ that no other route takes."""
    return func.HttpResponse(f"file {req.route_params.get('path', '')}")


@http_bp.route(route="text", methods=["GET"])
def plain_text(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("héllo", mimetype="text/plain", charset="utf-8")


@http_bp.route(route="slow", methods=["GET"])
def slow(req: func.HttpRequest) -> func.HttpResponse:
    """Says it started, then takes ``seconds``: a request in flight when the host stops."""
    _record("slow.jsonl", {"started": True})
    time.sleep(float(req.params.get("seconds", "1")))
    return func.HttpResponse("done")


@http_bp.route(route="boom")
def boom(req: func.HttpRequest) -> func.HttpResponse:
    """Every method; always raises, for the host's 500."""
    raise RuntimeError("sample failure")


# ---------------------------------------------------------------------------------- queue

queue_bp = func.Blueprint()


@queue_bp.queue_trigger(
    arg_name="msg", queue_name="%SAMPLE_QUEUE%", connection="AzureWebJobsStorage"
)
def record_message(msg: QueueMessage) -> None:
    """Record every attempt; fail the ones whose body asks for it."""
    body = msg.get_body().decode("utf-8")
    failing = "fail" in body
    _record(
        "queue.jsonl",
        {"id": msg.id, "body": body, "dequeue_count": msg.dequeue_count, "failed": failing},
    )
    if failing:
        raise RuntimeError(f"asked to fail: {body}")


# ---------------------------------------------------------------------------------- timer

timer_bp = func.Blueprint()


@timer_bp.timer_trigger(schedule="*/1 * * * * *", arg_name="timer", run_on_startup=False)
def every_second(timer: func.TimerRequest) -> None:
    _record("timer.jsonl", {"past_due": timer.past_due})


app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(http_bp)
app.register_functions(queue_bp)
app.register_functions(timer_bp)
