"""The functions of a v2 ``FunctionApp`` as the dev host sees them, and how one is invoked.

The app is read once (``get_functions()`` may be called only once per app object: a second call
fails on "duplicate" names, so the result is cached per app). Each function is described by its
trigger's binding record (the same dictionary that goes into function.json), the name of the
parameter that receives the trigger value, and whether it wants the invocation ``context``, as
the Python worker decides it. Sync functions run in a thread pool so the host's event loop stays
free; async ones are awaited on the loop.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import importlib.util
import inspect
import logging
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions.decorators.function_app import FunctionRegister

logger = logging.getLogger(__name__)

HTTP_TRIGGER = "httpTrigger"
QUEUE_TRIGGER = "queueTrigger"
TIMER_TRIGGER = "timerTrigger"
SUPPORTED_TRIGGERS = (HTTP_TRIGGER, QUEUE_TRIGGER, TIMER_TRIGGER)

_indexed: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()
_indexed_lock = threading.Lock()


class UnsupportedFunction(Exception):
    """A registered function the dev host cannot run (its trigger or bindings)."""


def load_app(app_ref: str) -> FunctionRegister:
    """Import ``module:attribute`` or ``path/to/file.py:attribute`` (attribute defaults to app)."""
    target, _, attribute = app_ref.partition(":")
    attribute = attribute or "app"
    if target.endswith(".py") or "/" in target:
        path = Path(target).resolve()
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    app = getattr(module, attribute, None)
    if not isinstance(app, FunctionRegister):  # FunctionApp, AsgiFunctionApp, WsgiFunctionApp
        raise ImportError(f"{app_ref}: no FunctionApp named {attribute!r} in {target}")
    return app


def indexed_functions(app: Any) -> list[Any]:
    """``app.get_functions()``, called once per app object."""
    with _indexed_lock:
        if app not in _indexed:
            _indexed[app] = app.get_functions()
        return _indexed[app]


def _plain(value: Any) -> Any:
    """Binding records hold enums (HttpMethod, AuthLevel...); the host wants their values."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class RegisteredFunction:
    """One function of the app: its trigger record and how to call it."""

    name: str
    trigger_type: str
    trigger: Mapping[str, Any]  # the trigger's binding record, camelCase keys as in function.json
    trigger_param: str
    trigger_annotation: Any
    user_function: Callable[..., Any]
    wants_context: bool
    is_async: bool


def describe(function: Any) -> RegisteredFunction:
    """Describe an indexed ``Function``; UnsupportedFunction if the dev host cannot run it."""
    name = function.get_function_name()
    trigger = function.get_trigger()
    if trigger is None:
        raise UnsupportedFunction(f"{name}: no trigger")
    record = {k: _plain(v) for k, v in trigger.get_dict_repr().items()}
    trigger_type = str(record.get("type"))
    if trigger_type not in SUPPORTED_TRIGGERS:
        raise UnsupportedFunction(f"{name}: {trigger_type} triggers are not supported")
    others = [b.get_dict_repr() for b in function.get_bindings() if b is not trigger]
    for binding in others:
        kind, binding_name = binding.get("type"), binding.get("name")
        # The HTTP response as the return value is the only output the dev host delivers.
        if not (trigger_type == HTTP_TRIGGER and kind == "http" and binding_name == "$return"):
            raise UnsupportedFunction(f"{name}: {kind} binding {binding_name!r} is not supported")

    user_function = function.get_user_function()
    trigger_param = str(record["name"])
    parameters = inspect.signature(user_function).parameters
    if trigger_param not in parameters:
        raise UnsupportedFunction(f"{name}: no parameter named {trigger_param!r} for the trigger")
    # The worker passes the invocation context to a parameter named `context` with no binding.
    wants_context = "context" in parameters and trigger_param != "context"
    return RegisteredFunction(
        name=name,
        trigger_type=trigger_type,
        trigger=record,
        trigger_param=trigger_param,
        trigger_annotation=parameters[trigger_param].annotation,
        user_function=user_function,
        wants_context=wants_context,
        is_async=inspect.iscoroutinefunction(user_function),
    )


class InvocationContext(func.Context):
    """The ``context`` argument: invocation id and function name, like the worker's."""

    def __init__(self, invocation_id: str, function_name: str, function_directory: str) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory
        self._thread_local = threading.local()
        self._thread_local.invocation_id = invocation_id

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._thread_local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> Any:
        return None  # no distributed tracing locally

    @property
    def retry_context(self) -> Any:
        return None  # retry policies are not run by the dev host


class FunctionInvoker:
    """Calls user functions with the host's logging; sync ones in ``executor``."""

    def __init__(self, executor: Executor, function_directory: str) -> None:
        self._executor = executor
        self._function_directory = function_directory
        self._lock = threading.Lock()
        self._running_in_threads = 0

    @property
    def running_in_threads(self) -> int:
        """Sync invocations still executing (a thread cannot be stopped, only abandoned)."""
        with self._lock:
            return self._running_in_threads

    def _call_in_thread(self, user_function: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        with self._lock:
            self._running_in_threads += 1
        try:
            return user_function(**kwargs)
        finally:
            with self._lock:
                self._running_in_threads -= 1

    async def invoke(
        self, function: RegisteredFunction, trigger_value: Any, *, reason: str, invocation_id: str
    ) -> Any:
        """Run the function once; its exception (logged here with the traceback) propagates."""
        kwargs: dict[str, Any] = {function.trigger_param: trigger_value}
        if function.wants_context:
            kwargs["context"] = InvocationContext(
                invocation_id, function.name, self._function_directory
            )
        logger.info(
            "Executing 'Functions.%s' (Reason='%s', Id=%s)", function.name, reason, invocation_id
        )
        started = time.monotonic()
        try:
            if function.is_async:
                result = await function.user_function(**kwargs)
            else:
                loop = asyncio.get_running_loop()
                call = functools.partial(self._call_in_thread, function.user_function, kwargs)
                result = await loop.run_in_executor(self._executor, call)
        except Exception:
            logger.exception(
                "Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms)",
                function.name,
                invocation_id,
                (time.monotonic() - started) * 1000,
            )
            raise
        logger.info(
            "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)",
            function.name,
            invocation_id,
            (time.monotonic() - started) * 1000,
        )
        return result


def new_invocation_id() -> str:
    return str(uuid.uuid4())
