"""What the project's small aiohttp servers (the Web PubSub emulator, the managed-identity
endpoint) share when run as a process of their own."""

from __future__ import annotations

import asyncio
import signal

from aiohttp import web


async def serve_until_signalled(runner: web.AppRunner) -> None:
    """Serve until SIGINT or SIGTERM, then shut the server down."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
