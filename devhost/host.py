"""The dev host: serves the functions of a v2 ``function_app.py`` locally, as ``func start`` would.

It imports the app, reads its functions once, and wires each by its trigger: HTTP functions
behind an aiohttp server at ``http://HOST:PORT/<routePrefix>/<route>``, queue functions on
listeners that poll Storage with the host's semantics, timer functions on their NCRONTAB
schedule. Nothing is specific to one app. ``DevHost`` is the asyncio object (``start``,
``run_until_stopped``, ``stop``); ``start_host_in_thread`` runs one on a background thread for
tests and returns a handle with ``base_url`` and ``stop()``. ``python -m devhost`` is the
command line (see ``devhost/__main__.py``).

Shutdown stops taking work (HTTP listener closed, queues no longer polled, timers not fired),
then waits up to ``shutdown_timeout`` seconds for running invocations.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TextIO

from aiohttp import web

from devhost.config import HostConfigError, HostOptions, load_host_options, load_local_settings
from devhost.functions import (
    HTTP_TRIGGER,
    QUEUE_TRIGGER,
    TIMER_TRIGGER,
    FunctionInvoker,
    RegisteredFunction,
    UnsupportedFunction,
    describe,
    indexed_functions,
    load_app,
)
from devhost.http_functions import HttpFunctionServer, HttpRoute
from devhost.queue_listener import (
    PROCESSING_VISIBILITY,
    QueueConnection,
    QueueListener,
    connect,
)
from devhost.timers import TimerRunner

logger = logging.getLogger(__name__)

DEFAULT_APP = "function_app:app"
DEFAULT_PORT = 7071
QUEUES_READY_TIMEOUT = 5.0  # seconds


def _thread_count() -> int:
    # The Python worker's setting; its default for Python 3.9+ is ThreadPoolExecutor's.
    configured = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT", "").strip()
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return min(32, (os.cpu_count() or 1) + 4)


# The kinds of trigger a host process runs (`--triggers`): all of them by default. Flex
# Consumption runs an app's HTTP functions on instances of their own and each other function on
# its own (per-function scaling), so its API never waits behind queue work; two dev hosts, one
# with `http` and one with `queue,timer`, run the app that way.
TRIGGERS = ("http", "queue", "timer")
_KIND = {HTTP_TRIGGER: "http", QUEUE_TRIGGER: "queue", TIMER_TRIGGER: "timer"}


def is_disabled(function_name: str) -> bool:
    """Whether the app setting ``AzureWebJobs.<name>.Disabled`` turns the function off, as the
    Functions host reads it: its trigger is not started (an HTTP route answers 404, a queue is
    not polled, a timer does not fire)."""
    value = os.environ.get(f"AzureWebJobs.{function_name}.Disabled", "")
    return value.strip().lower() in ("true", "1")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # A restarted host can take its port back at once, despite connections in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class DevHost:
    """Loads an app and runs its HTTP, queue and timer functions on the running event loop."""

    def __init__(
        self,
        app_ref: str = DEFAULT_APP,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        host_json: Path | str | None = "host.json",
        shutdown_timeout: float = 30.0,
        out: TextIO | None = None,
        processing_visibility: float = PROCESSING_VISIBILITY,
        triggers: Collection[str] = TRIGGERS,
    ) -> None:
        unknown = set(triggers) - set(TRIGGERS)
        if unknown:
            raise HostConfigError(f"unknown trigger kind(s): {', '.join(sorted(unknown))}")
        self.app_ref = app_ref
        self.triggers = frozenset(triggers)
        self.host = host
        self.port = port
        self.host_json = host_json
        self.shutdown_timeout = shutdown_timeout
        self._out = out
        self._processing_visibility = processing_visibility
        self.options = HostOptions()
        self.functions: list[RegisteredFunction] = []
        self.http: HttpFunctionServer | None = None
        self.listeners: list[QueueListener] = []
        self.timers: list[TimerRunner] = []
        self._connections: dict[str, QueueConnection] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._invoker: FunctionInvoker | None = None
        self._runner: web.AppRunner | None = None
        self._timer_tasks: list[asyncio.Task[None]] = []
        self._stop_requested = asyncio.Event()
        self._stopped = False

    # ------------------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        prefix = self.options.route_prefix
        return f"http://{shown}:{self.port}" + (f"/{prefix}" if prefix else "")

    async def start(self) -> None:
        """Load everything and start serving; on failure, undo what was started and raise."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        self.options = load_host_options(self.host_json)
        app = load_app(self.app_ref)
        self._executor = ThreadPoolExecutor(_thread_count(), thread_name_prefix="devhost-fn")
        self._invoker = FunctionInvoker(self._executor, function_directory=str(Path.cwd()))

        skipped = []
        for function in indexed_functions(app):
            try:
                self.functions.append(describe(function))
            except UnsupportedFunction as exc:
                skipped.append(str(exc))
                logger.warning("Skipping function %s", exc)
        self.functions.sort(key=lambda f: f.name)
        disabled = [f.name for f in self.functions if is_disabled(f.name)]
        self.functions = [f for f in self.functions if f.name not in disabled]
        skipped += [f"{name}: disabled (AzureWebJobs.{name}.Disabled)" for name in disabled]
        elsewhere = [
            f.name for f in self.functions if _KIND.get(f.trigger_type) not in self.triggers
        ]
        self.functions = [f for f in self.functions if f.name not in elsewhere]
        if elsewhere:
            skipped.append(f"{', '.join(elsewhere)}: left to another process (--triggers)")

        routes = [
            HttpRoute.for_function(f) for f in self.functions if f.trigger_type == HTTP_TRIGGER
        ]
        self.http = HttpFunctionServer(routes, self.options.route_prefix, self._invoker)
        for function in self.functions:
            # Like the host, a function whose binding cannot be resolved is "in error" and the
            # others still run.
            try:
                if function.trigger_type == QUEUE_TRIGGER:
                    self.listeners.append(self._queue_listener(function))
                elif function.trigger_type == TIMER_TRIGGER:
                    self.timers.append(TimerRunner(function, self._invoker))
            except HostConfigError as exc:
                skipped.append(f"{function.name}: {exc}")
                logger.error("The '%s' function is in error: %s", function.name, exc)

        if "http" in self.triggers:
            sock = _bind(self.host, self.port)
            self.port = sock.getsockname()[1]
            self._runner = web.AppRunner(
                self.http.application(),
                handle_signals=False,
                access_log=None,  # the invoker logs each invocation; unmatched paths need no log
                shutdown_timeout=self.shutdown_timeout,
            )
            await self._runner.setup()
            await web.SockSite(self._runner, sock).start()

        for listener in self.listeners:
            listener.start()
        # Ready means the queues exist (a test may send at once); an unreachable account only
        # delays startup a little, its listener keeps trying.
        await asyncio.gather(*(q.wait_until_ready(QUEUES_READY_TIMEOUT) for q in self.listeners))
        for timer in self.timers:
            self._timer_tasks.append(asyncio.create_task(timer.run(), name=timer.function.name))
        self._announce(skipped)

    def _queue_listener(self, function: RegisteredFunction) -> QueueListener:
        connection_name = str(function.trigger.get("connection") or "")
        if connection_name not in self._connections:
            self._connections[connection_name] = connect(connection_name or None)
        return QueueListener(
            function,
            self._connections[connection_name],
            self.options.queues,
            self._require_invoker(),
            processing_visibility=self._processing_visibility,
        )

    def _require_invoker(self) -> FunctionInvoker:
        if self._invoker is None:
            raise RuntimeError("the host is not started")
        return self._invoker

    def _announce(self, skipped: list[str]) -> None:
        if self._out is None:
            return
        root = f"http://{self.host}:{self.port}"
        prefix = f"/{self.options.route_prefix}" if self.options.route_prefix else ""
        lines = ["", "Functions:", ""]
        for function in self.functions:
            if function.trigger_type == HTTP_TRIGGER:
                route = HttpRoute.for_function(function)
                path = route.template.template.strip().lstrip("~").strip("/")
                lines.append(
                    f"\t{function.name}: [{route.describe_methods()}] {root}{prefix}/{path}"
                )
        for listener in self.listeners:
            lines.append(
                f"\t{listener.function.name}: queueTrigger (queue '{listener.queue_name}')"
            )
        for timer in self.timers:
            startup = ", run on startup" if timer.run_on_startup else ""
            lines.append(f"\t{timer.function.name}: timerTrigger ({timer.schedule}{startup})")
        for reason in skipped:
            lines.append(f"\tnot running: {reason}")
        if "http" in self.triggers:
            lines += ["", f"Functions host listening on {self.base_url}"]
        else:
            lines += ["", f"Functions host running ({', '.join(sorted(self.triggers))} triggers)"]
        print("\n".join(lines), file=self._out, flush=True)

    def request_stop(self) -> None:
        """Ask ``run_until_stopped`` to shut down (call on the host's loop)."""
        self._stop_requested.set()

    async def run_until_stopped(self) -> None:
        await self._stop_requested.wait()
        await self.stop()

    async def stop(self) -> None:
        """Stop taking work, wait up to ``shutdown_timeout`` for what runs, release everything."""
        if self._stopped:
            return
        self._stopped = True
        deadline = time.monotonic() + self.shutdown_timeout
        for timer in self.timers:
            timer.stop()

        async def stop_http() -> None:
            if self._runner is not None:
                await self._runner.cleanup()  # closes the socket, waits for running requests

        await asyncio.gather(
            stop_http(),
            self._wait_tasks(deadline),
            *(listener.stop(deadline - time.monotonic()) for listener in self.listeners),
        )
        for connection in self._connections.values():
            with contextlib.suppress(Exception):  # best effort: the host is going away
                await connection.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        running = self.running_invocations
        if running:
            logger.warning("%d invocation(s) still running after the shutdown timeout", running)
        logger.info("Functions host stopped")

    async def _wait_tasks(self, deadline: float) -> None:
        """A timer ends after its current run, or is cancelled at the deadline."""
        if not self._timer_tasks:
            return
        _, pending = await asyncio.wait(
            self._timer_tasks, timeout=max(deadline - time.monotonic(), 0)
        )
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    @property
    def running_invocations(self) -> int:
        """Sync function calls still executing in threads (they cannot be interrupted)."""
        return self._invoker.running_in_threads if self._invoker else 0


# ---------------------------------------------------------------------------- thread helper


class _EnvironmentOverlay:
    """Changes to ``os.environ`` that can be undone (the host runs inside the caller's process)."""

    def __init__(self) -> None:
        self._previous: dict[str, str | None] = {}

    def set(self, name: str, value: str) -> None:
        self._previous.setdefault(name, os.environ.get(name))
        os.environ[name] = value

    def restore(self) -> None:
        for name, value in self._previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._previous.clear()


class HostHandle:
    """A dev host running on a background thread; ``stop()`` shuts it down and undoes ``env``."""

    def __init__(
        self,
        devhost: DevHost,
        loop: asyncio.AbstractEventLoop,
        thread: threading.Thread,
        overlay: _EnvironmentOverlay,
    ) -> None:
        self.devhost = devhost
        self._loop = loop
        self._thread = thread
        self._overlay = overlay

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/api`` (with the app's route prefix)."""
        return self.devhost.base_url

    @property
    def port(self) -> int:
        return self.devhost.port

    def stop(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._loop.call_soon_threadsafe(self.devhost.request_stop)
            self._thread.join(self.devhost.shutdown_timeout + 10)
            if self._thread.is_alive():
                logger.warning("Dev host thread did not stop in time")
        self._overlay.restore()

    def __enter__(self) -> HostHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_host_in_thread(
    app_ref: str = DEFAULT_APP,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    env: Mapping[str, str] | None = None,
    settings: Path | str | None = None,
    host_json: Path | str | None = "host.json",
    shutdown_timeout: float = 10.0,
    ready_timeout: float = 30.0,
    out: TextIO | None = sys.stdout,
    processing_visibility: float = PROCESSING_VISIBILITY,
    triggers: Collection[str] = TRIGGERS,
) -> HostHandle:
    """Start a host on a background thread and return once it serves (or raise why it cannot).

    ``port=0`` takes a free port (see ``handle.base_url``). ``env`` is set in ``os.environ`` and
    the ``Values`` of ``settings`` (a local.settings.json) are added where not already set; both
    are undone by ``stop()``. The environment is process-wide: run one host at a time this way
    when their settings differ.
    """
    overlay = _EnvironmentOverlay()
    for name, value in (env or {}).items():
        overlay.set(name, value)
    if settings is not None and Path(settings).is_file():
        values: dict[str, str] = {}
        load_local_settings(settings, values)
        for name, value in values.items():
            if name not in os.environ:
                overlay.set(name, value)

    devhost = DevHost(
        app_ref,
        host=host,
        port=port,
        host_json=host_json,
        shutdown_timeout=shutdown_timeout,
        out=out,
        processing_visibility=processing_visibility,
        triggers=triggers,
    )
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    failure: list[BaseException] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            try:
                loop.run_until_complete(devhost.start())
            except BaseException as exc:
                failure.append(exc)
                return
            finally:
                ready.set()
            loop.run_until_complete(devhost.run_until_stopped())
        finally:
            loop.close()

    thread = threading.Thread(target=serve, name=f"devhost-{app_ref}", daemon=True)
    thread.start()
    handle = HostHandle(devhost, loop, thread, overlay)
    if not ready.wait(ready_timeout):
        handle.stop()
        raise TimeoutError(f"dev host for {app_ref} not ready within {ready_timeout} s")
    if failure:
        thread.join()
        overlay.restore()
        raise failure[0]
    return handle
