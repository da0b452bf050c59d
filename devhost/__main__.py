"""Command line of the dev host: ``python -m devhost [--app function_app:app] [--port 7071] ...``.

Run it from the app's root (where ``function_app.py``, ``host.json`` and ``local.settings.json``
are). The ``Values`` of local.settings.json are put into the environment first, without
overriding variables already set, then the app is imported. SIGINT or SIGTERM stop the host
gracefully; a second one exits at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from devhost.config import HostConfigError, load_local_settings
from devhost.functions import UnsupportedFunction
from devhost.host import DEFAULT_APP, DEFAULT_PORT, TRIGGERS, DevHost
from devhost.queue_listener import PROCESSING_VISIBILITY

logger = logging.getLogger("devhost")

_REPEAT_GRACE = 1.0  # seconds


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devhost", description="Run an Azure Functions v2 Python app locally."
    )
    parser.add_argument("--app", default=DEFAULT_APP, help="module:attribute of the FunctionApp")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 takes a free port")
    parser.add_argument("--settings", default="local.settings.json", help="local settings file")
    parser.add_argument("--host-json", default="host.json", help="host.json to read")
    parser.add_argument(
        "--shutdown-timeout", type=float, default=30.0, help="seconds to finish running work"
    )
    parser.add_argument(
        "--processing-visibility",
        type=float,
        default=PROCESSING_VISIBILITY,
        help="seconds a queue message stays hidden while its function runs (renewed at half "
        "time); the messages of a killed host come back after it (host: 600)",
    )
    parser.add_argument(
        "--triggers",
        default=",".join(TRIGGERS),
        help="the kinds of function this process runs, of http,queue,timer (default: all); "
        "run the app as two processes, `http` and `queue,timer`, as Flex Consumption scales "
        "its HTTP functions apart from the others",
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging, SDK requests too")
    return parser.parse_args(argv)


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="[%(asctime)s] %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not verbose:
        # The SDKs log every HTTP request at INFO: one line per queue poll.
        logging.getLogger("azure").setLevel(logging.WARNING)


async def _serve(devhost: DevHost) -> None:
    loop = asyncio.get_running_loop()
    first_signal_at: float | None = None

    def on_signal(signum: int) -> None:
        nonlocal first_signal_at
        name = signal.Signals(signum).name
        if first_signal_at is None:
            first_signal_at = loop.time()
            logger.info("%s received, stopping the host (again to exit at once)", name)
            devhost.request_stop()
        elif loop.time() - first_signal_at > _REPEAT_GRACE:
            logger.warning("Second %s: exiting now", name)
            os._exit(130)
        # Within the grace period it is the same signal delivered twice (to the process and to
        # its group, as `timeout` does), not an impatient user.

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    await devhost.start()
    await devhost.run_until_stopped()


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    _configure_logging(args.verbose)
    settings = Path(args.settings)
    try:
        if settings.is_file():
            applied = load_local_settings(settings)
            logger.info("Loaded %d setting(s) from %s", len(applied), settings)
        elif args.settings != "local.settings.json":
            logger.warning("Settings file %s not found", settings)
        devhost = DevHost(
            args.app,
            host=args.host,
            port=args.port,
            host_json=args.host_json,
            shutdown_timeout=args.shutdown_timeout,
            processing_visibility=args.processing_visibility,
            triggers=[kind.strip() for kind in args.triggers.split(",") if kind.strip()],
            out=sys.stdout,
        )
        asyncio.run(_serve(devhost))
    except (HostConfigError, UnsupportedFunction, ImportError, OSError) as exc:
        logger.error("Cannot start the Functions host: %s", exc, exc_info=args.verbose)
        return 1
    if devhost.running_invocations:
        # Their threads cannot be interrupted and would keep the interpreter from exiting.
        logging.shutdown()
        os._exit(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
