"""Timer trigger: maintenance of live swarms (re-drive stuck commits, announce idle swarms)."""

from __future__ import annotations

import logging
from datetime import timedelta

import azure.functions as func

from swarm_core.runtime import get_runtime

log = logging.getLogger(__name__)

bp = func.Blueprint()


@bp.timer_trigger(arg_name="timer", schedule="%MAINTENANCE_SCHEDULE%", run_on_startup=False)
def maintain_swarms(timer: func.TimerRequest) -> None:
    runtime = get_runtime()
    settings = runtime.settings
    counts = runtime.app.services.maintain(
        stuck_after=timedelta(minutes=settings.stuck_after_minutes),
        idle_after=timedelta(minutes=settings.idle_after_minutes),
    )
    log.info("maintenance past_due=%s: %s", timer.past_due, counts)
