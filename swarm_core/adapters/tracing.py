"""Where traces go (`swarm_core/telemetry.py` makes them): Application Insights through the Azure
Monitor OpenTelemetry distro, when APPLICATIONINSIGHTS_CONNECTION_STRING is set; and the Azure
SDKs' own spans for their calls, which they make with the global tracer provider."""

from __future__ import annotations

import logging
import os

from azure.core.settings import settings as azure_settings
from opentelemetry import trace

from swarm_core import __version__, telemetry

log = logging.getLogger(__name__)

CONNECTION_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"


def configure_from_environment() -> bool:
    """Export to Application Insights if its connection setting is there; True if so. Nothing
    connects here: the exporter sends in the background."""
    connection = os.environ.get(CONNECTION_SETTING)
    if not connection:
        return False
    from azure.monitor.opentelemetry import configure_azure_monitor

    configure_azure_monitor(connection_string=connection)
    use_tracer_provider(trace.get_tracer_provider())
    log.info("tracing to Application Insights")
    return True


def use_tracer_provider(provider: trace.TracerProvider | None) -> None:
    """Trace with `provider` and have the Azure SDKs trace their calls (None: both stop)."""
    if provider is None:
        telemetry.use_tracer(None)
        azure_settings.tracing_implementation = None
    else:
        telemetry.use_tracer(provider.get_tracer("swarm_core", __version__))
        azure_settings.tracing_implementation = "opentelemetry"
