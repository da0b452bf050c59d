"""Timer trigger: maintenance of live swarms (re-drive stuck commits, announce idle swarms)."""

from __future__ import annotations

import logging

import azure.functions as func

from swarm_core.runtime import get_app

log = logging.getLogger(__name__)

bp = func.Blueprint()


@bp.timer_trigger(arg_name="timer", schedule="%MAINTENANCE_SCHEDULE%", run_on_startup=False)
def maintain_swarms(timer: func.TimerRequest) -> None:
    counts = get_app().services.maintain()
    log.info("maintenance past_due=%s: %s", timer.past_due, counts)
