"""The function app's runtime: settings, the wired swarm app, auth and client access, built
lazily once per worker process (importing the function app never connects to anything).

Azure adapters are used whenever settings name the services (locally: the emulators); tests
swap in another runtime with `use_runtime` (e.g. the in-memory one).
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

from swarm_core.auth import AuthService
from swarm_core.bootstrap import SwarmApp, build_in_memory
from swarm_core.llm import LanguageModel
from swarm_core.ports import ClientAccess, UserStore
from swarm_core.settings import Settings, load_settings

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    app: SwarmApp
    users: UserStore
    auth: AuthService
    client_access: ClientAccess
    # Turns a queue message body into operation JSON (resolving claim checks).
    decode_message: Callable[[str | bytes], str]


_runtime: Runtime | None = None
_lock = threading.Lock()


def get_runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        with _lock:
            if _runtime is None:
                _runtime = build_runtime(load_settings())
    return _runtime


def use_runtime(runtime: Runtime | None) -> None:
    """Replace the process's runtime (tests); None builds it again from settings on next use."""
    global _runtime
    with _lock:
        _runtime = runtime


def auth_secret(settings: Settings) -> str:
    if settings.auth_secret:
        return settings.auth_secret
    # Development without a secret: a random one per process (tokens end with the process).
    log.warning("AUTH_SECRET is not set: using a random per-process secret (development only)")
    return secrets.token_urlsafe(48)


def build_auth(settings: Settings, users: UserStore) -> AuthService:
    return AuthService(
        users,
        auth_secret(settings),
        token_minutes=settings.auth_token_minutes,
        bcrypt_rounds=settings.bcrypt_rounds,
    )


def in_memory_runtime(
    settings: Settings | None = None, llm: LanguageModel | None = None
) -> Runtime:
    from swarm_core.adapters.memory import MemoryClientAccess, MemoryUserStore

    settings = settings or Settings(BCRYPT_ROUNDS=4)
    app = build_in_memory(llm)
    users = MemoryUserStore()

    def decode(body: str | bytes) -> str:
        return body.decode() if isinstance(body, bytes) else body

    return Runtime(settings, app, users, build_auth(settings, users), MemoryClientAccess(), decode)


def build_runtime(settings: Settings) -> Runtime:
    from swarm_core.azure_wiring import build_azure_runtime

    return build_azure_runtime(settings)
