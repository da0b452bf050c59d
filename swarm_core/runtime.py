"""The function app's process-wide app: built lazily, once per worker process, from the settings
(importing the function app never connects to anything); tests put another one in with `use_app`.
"""

from __future__ import annotations

import threading

from swarm_core.bootstrap import SwarmApp, build_azure
from swarm_core.settings import load_settings

_app: SwarmApp | None = None
_lock = threading.Lock()


def get_app() -> SwarmApp:
    """The process's app; a SettingsError (503 from the API) when the settings are invalid."""
    global _app
    if _app is None:
        with _lock:
            if _app is None:
                _app = build_azure(load_settings())
    return _app


def use_app(app: SwarmApp | None) -> None:
    """Replace the process's app (tests); None builds it again from settings on next use."""
    global _app
    with _lock:
        _app = app
