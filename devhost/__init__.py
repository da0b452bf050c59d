"""A local host for the Azure Functions app (Python v2 programming model), for where Core Tools
cannot be installed.

``python -m devhost`` serves ``function_app:app`` like ``func start``: HTTP functions on a real
HTTP server, queue functions polling Storage (Azurite) with the host's retry and poison-queue
rules, timer functions on their NCRONTAB schedule. Tests use ``start_host_in_thread``.
"""

from devhost.host import DevHost, HostHandle, start_host_in_thread

__all__ = ["DevHost", "HostHandle", "start_host_in_thread"]
