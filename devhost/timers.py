"""Timer-triggered functions: run each on its schedule, one run at a time.

The schedule is read in UTC unless ``WEBSITE_TIME_ZONE`` (or ``TZ``) names an IANA time zone.
``run_on_startup`` runs the function once when the host starts. A run that overruns one or more
occurrences is followed by a single catch-up run with ``past_due`` set, then the schedule resumes
from the present (no backlog of missed runs). The function receives an
``azure.functions.TimerRequest`` with ``past_due``, ``schedule_status`` (Last, Next,
LastUpdated) and ``schedule``, the shape the worker builds from the host's timer info; unlike the
host's ``useMonitor`` the schedule status is not kept across restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from azure.functions.timer import TimerRequest

from devhost.config import resolve_setting_refs
from devhost.functions import FunctionInvoker, RegisteredFunction, new_invocation_id
from devhost.ncrontab import Schedule, parse_schedule

logger = logging.getLogger(__name__)

_NEVER = "0001-01-01T00:00:00"  # the host's "no last run yet"


def schedule_time_zone(environ: Mapping[str, str] | None = None) -> tzinfo:
    env = os.environ if environ is None else environ
    for name in ("WEBSITE_TIME_ZONE", "TZ"):
        zone = env.get(name, "").strip().lstrip(":")
        if zone:
            try:
                return ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                logger.warning("%s=%r is not an IANA time zone; timers use UTC", name, zone)
    return UTC


class TimerRunner:
    """Runs one timer-triggered function on its schedule until stopped."""

    def __init__(
        self,
        function: RegisteredFunction,
        invoker: FunctionInvoker,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.function = function
        self.schedule: Schedule = parse_schedule(
            resolve_setting_refs(str(function.trigger.get("schedule")), environ)
        )
        self.run_on_startup = bool(function.trigger.get("runOnStartup"))
        self._tz = schedule_time_zone(environ)
        self._invoker = invoker
        self._stopping = asyncio.Event()
        self._last_run: datetime | None = None
        self.runs = 0

    def stop(self) -> None:
        self._stopping.set()

    def _now(self) -> datetime:
        return datetime.now(self._tz)

    async def _sleep_until(self, moment: datetime) -> bool:
        """Wait for ``moment`` (wall clock); False if stopped first."""
        while (delay := (moment - self._now()).total_seconds()) > 0:
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
            except TimeoutError:
                continue
            return False
        return not self._stopping.is_set()

    async def run(self) -> None:
        """The schedule loop; the current run (if any) finishes before this returns."""
        if self.run_on_startup and not self._stopping.is_set():
            await self._fire(past_due=False, following=self.schedule.next_after(self._now()))
        due = self.schedule.next_after(self._now())
        catching_up = False
        while await self._sleep_until(due):
            following = self.schedule.next_after(due)
            await self._fire(past_due=catching_up, following=following)
            finished = self._now()
            catching_up = following <= finished
            due = finished if catching_up else following

    async def _fire(self, *, past_due: bool, following: datetime) -> None:
        started = self._now()
        request = TimerRequest(
            past_due=past_due,
            schedule_status={
                "Last": self._last_run.isoformat() if self._last_run else _NEVER,
                "Next": following.isoformat(),
                "LastUpdated": started.isoformat(),
            },
            schedule={"AdjustForDST": True},
        )
        self._last_run = started
        self.runs += 1
        reason = f"Timer fired at {started.isoformat()}"
        # A failure is logged by the invoker; the timer just waits for its next occurrence.
        with contextlib.suppress(Exception):
            await self._invoker.invoke(
                self.function, request, reason=reason, invocation_id=new_invocation_id()
            )
