"""A local OpenAI-compatible HTTP server for the adapter's integration tests.

It implements `POST /v1/chat/completions` (and the Azure path
`/openai/deployments/<deployment>/chat/completions`) on a free port of 127.0.0.1, in a thread, so
that the tests drive the real `openai` client over real HTTP. Tests script it: each request takes
the next scripted `Reply` (a status, a body or a chat answer, headers, a delay), or, when the
script is empty, asks the `responder` function for one. Every request is recorded (path, headers,
JSON body, arrival time) for the tests to inspect.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer: a chat completion with `content`, or a raw `status` and `body`."""

    content: str | None = None
    status: int = 200
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    prompt_tokens: int = 11
    completion_tokens: int = 7
    finish_reason: str = "stop"

    @staticmethod
    def error(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
        """An error in the OpenAI error shape."""
        body = {"error": {"message": message, "type": "test_error", "param": None, "code": None}}
        return Reply(status=status, body=body, headers=headers or {})


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))

    @property
    def task(self) -> str | None:
        """The task a request is for: the json_schema name, or the marker in JSON mode."""
        return task_of(self.body)


Responder = Callable[[RecordedRequest], Reply]

_TASK_MARKER = re.compile(r"for the task `([^`]+)`")


def task_of(body: dict[str, Any]) -> str | None:
    """A request's task: the json_schema name, else the adapter's JSON-mode marker."""
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return str(response_format["json_schema"]["name"])
    for message in body.get("messages", []):
        match = _TASK_MARKER.search(str(message.get("content", "")))
        if match:
            return match.group(1)
    return None


def completion_body(reply: Reply, model: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.content, "refusal": None},
                "finish_reason": reply.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        },
    }


class FakeOpenAIServer:
    """The server; use it as a context manager (`with FakeOpenAIServer() as server:`)."""

    def __init__(self, responder: Responder | None = None) -> None:
        self.script: deque[Reply] = deque()
        self.responder = responder
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL (`OPENAI_BASE_URL`)."""
        return f"{self.origin}/v1"

    @property
    def origin(self) -> str:
        """The bare origin (what `AZURE_OPENAI_ENDPOINT` would be)."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def push(self, *replies: Reply) -> None:
        with self._lock:
            self.script.extend(replies)

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()  # wakes handlers that sleep to simulate a slow model
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            if self.script:
                return self.script.popleft()
        if self.responder is None:
            return Reply.error(500, "the fake server has no scripted reply left")
        return self.responder(request)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                recorded = RecordedRequest(
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=json.loads(raw or b"{}"),
                    at=time.monotonic(),
                )
                if not self.path.split("?")[0].endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}"}}, {})
                    return
                reply = server._next_reply(recorded)
                if reply.delay and server._stopping.wait(reply.delay):
                    return
                if reply.body is not None or reply.status != 200:
                    self._send(reply.status, reply.body or {}, reply.headers)
                else:
                    model = str(recorded.body.get("model", "fake-model"))
                    self._send(200, completion_body(reply, model), reply.headers)

            def _send(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
                payload = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
