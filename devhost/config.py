"""Host configuration read the way ``func start`` reads it.

``local.settings.json`` ``Values`` go into the environment without overriding what is already set;
``host.json`` gives the HTTP route prefix and the queue trigger options, and any of its values can
be overridden by an ``AzureFunctionsJobHost__<path>`` environment variable (``__`` separates the
levels, keys are case-insensitive) as on the real host; ``%NAME%`` in a binding property is
replaced by the app setting ``NAME``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_JOBHOST_ENV_PREFIX = "azurefunctionsjobhost__"
_SETTING_REF = re.compile(r"%([^%]+)%")
# TimeSpan as .NET writes it in host.json: [d.]hh:mm:ss[.fffffff]
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d{1,7}))?$")


class HostConfigError(ValueError):
    """host.json, local.settings.json or a binding refers to something invalid or missing."""


@dataclass(frozen=True)
class QueueOptions:
    """``extensions.queues`` of host.json, with the host's defaults."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_polling_interval: float = 60.0  # seconds
    visibility_timeout: float = 0.0  # seconds a failed message stays invisible before a retry
    max_dequeue_count: int = 5
    message_encoding: str = "base64"  # or "none"


@dataclass(frozen=True)
class HostOptions:
    """What the dev host uses of host.json."""

    route_prefix: str = "api"
    queues: QueueOptions = field(default_factory=QueueOptions)


def load_local_settings(
    path: Path | str, environ: MutableMapping[str, str] | None = None
) -> list[str]:
    """Put the ``Values`` of a local.settings.json into ``environ``; return the names it set.

    A variable already present wins, as with ``func start``: a developer can override one setting
    from the shell without editing the file.
    """
    env = os.environ if environ is None else environ
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise HostConfigError(f"{path} is not valid JSON: {exc}") from exc
    values = document.get("Values") or {}
    if not isinstance(values, dict):
        raise HostConfigError(f"{path}: 'Values' must be an object")
    applied = []
    for name, value in values.items():
        if name in env:
            continue
        env[name] = value if isinstance(value, str) else json.dumps(value)
        applied.append(name)
    return applied


def resolve_setting_refs(value: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace each ``%NAME%`` in a binding property with the app setting ``NAME``."""
    env = os.environ if environ is None else environ

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise HostConfigError(f"app setting {name!r} (used as %{name}%) is not set")
        return env[name]

    return _SETTING_REF.sub(lookup, value)


def parse_timespan(value: Any, *, number_unit: float = 1.0) -> float:
    """Seconds in a host.json duration: a TimeSpan string, or a number of ``number_unit`` s."""
    if isinstance(value, bool):
        raise HostConfigError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        return float(value) * number_unit
    match = _TIMESPAN.match(str(value).strip())
    if not match:
        raise HostConfigError(f"not a duration (expected [d.]hh:mm:ss[.fff]): {value!r}")
    days, hours, minutes, seconds, fraction = match.groups()
    total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds)
    return total + (float(f"0.{fraction}") if fraction else 0.0)


def _lower_keys(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k).lower(): _lower_keys(v) for k, v in node.items()}
    return node


def _overlay_env(document: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, value in environ.items():
        if not name.lower().startswith(_JOBHOST_ENV_PREFIX):
            continue
        path = [p for p in name[len(_JOBHOST_ENV_PREFIX) :].lower().split("__") if p]
        if not path:
            continue
        node = document
        for key in path[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        node[path[-1]] = value


def _int_option(section: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    raw = section.get(key.lower(), default)
    try:
        number = int(raw)
    except (TypeError, ValueError) as exc:
        raise HostConfigError(
            f"host.json extensions.queues.{key}: not an integer: {raw!r}"
        ) from exc
    if not low <= number <= high:
        raise HostConfigError(f"host.json extensions.queues.{key} must be in [{low}, {high}]")
    return number


def load_host_options(
    path: Path | str | None, environ: Mapping[str, str] | None = None
) -> HostOptions:
    """Read host.json (missing file: the host's defaults) plus ``AzureFunctionsJobHost__*``."""
    env = os.environ if environ is None else environ
    document: dict[str, Any] = {}
    if path is not None and Path(path).is_file():
        try:
            document = _lower_keys(json.loads(Path(path).read_text(encoding="utf-8-sig")))
        except json.JSONDecodeError as exc:
            raise HostConfigError(f"{path} is not valid JSON: {exc}") from exc
    _overlay_env(document, env)
    extensions = document.get("extensions") or {}
    http = extensions.get("http") or {}
    queues = extensions.get("queues") or {}

    route_prefix = str(http.get("routeprefix", "api")).strip("/")
    batch_size = _int_option(queues, "batchSize", 16, 1, 32)
    encoding = str(queues.get("messageencoding", "base64")).lower()
    if encoding not in ("base64", "none"):
        raise HostConfigError("host.json extensions.queues.messageEncoding: 'base64' or 'none'")
    # maxPollingInterval was a number of milliseconds in host.json 1.x; the host still accepts it.
    max_polling = parse_timespan(queues.get("maxpollinginterval", "00:01:00"), number_unit=0.001)
    if max_polling < 0.1:
        raise HostConfigError("host.json extensions.queues.maxPollingInterval must be >= 100 ms")
    options = QueueOptions(
        batch_size=batch_size,
        new_batch_threshold=_int_option(queues, "newBatchThreshold", batch_size // 2, 0, 10_000),
        max_polling_interval=max_polling,
        visibility_timeout=parse_timespan(queues.get("visibilitytimeout", "00:00:00")),
        max_dequeue_count=_int_option(queues, "maxDequeueCount", 5, 1, 10_000),
        message_encoding=encoding,
    )
    return HostOptions(route_prefix=route_prefix, queues=options)
