"""The one place that builds the app: adapters chosen from `Settings`, wired to one committer,
the worker, the services and auth.

- `build_azure(settings, credential=None)`: Cosmos DB, Blob storage, the Storage queue, Web
  PubSub and the configured LLM (locally: the emulators; in Azure: the managed identity). What
  the function app's runtime uses. Services without a key in the settings are reached with one
  `TokenCredential` for the whole app: `credential` when given (tests inject
  `devstack.identity.DevCredential`), else the app's managed identity
  (`adapters.identity.app_credential`). The adapters never ask which one they hold.
- `build_in_memory(...)`: the in-memory adapters and the offline LLM (demo, unit tests,
  benchmarks).
- `build_app(settings, adapters)`: the wiring itself, for tests that inject their own adapters
  (fault injection, racing stores).

Clients connect on first use, never here.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from swarm_core.adapters.blob import BlobContentStore
from swarm_core.adapters.cosmos import (
    CosmosAttemptStore,
    CosmosClients,
    CosmosSwarmStore,
    CosmosUserStore,
)
from swarm_core.adapters.identity import app_credential
from swarm_core.adapters.memory import (
    MemoryAttemptStore,
    MemoryClientAccess,
    MemoryContentStore,
    MemoryEventPublisher,
    MemoryOperationQueue,
    MemorySwarmStore,
    MemoryUserStore,
)
from swarm_core.adapters.offline_llm import OfflineScriptedLLM
from swarm_core.adapters.openai_llm import build_language_model
from swarm_core.adapters.queue import StorageOperationQueue
from swarm_core.adapters.webpubsub import WebPubSubEventPublisher
from swarm_core.auth import AuthService, LoginThrottle, ThrottlePolicy
from swarm_core.commits import SwarmCommitter
from swarm_core.llm import LanguageModel
from swarm_core.models import utcnow
from swarm_core.ports import (
    AttemptStore,
    ClientAccess,
    ContentStore,
    EventPublisher,
    OperationQueue,
    SwarmStore,
    UserStore,
)
from swarm_core.quotas import ModelPolicy
from swarm_core.services import SwarmServices
from swarm_core.settings import Settings
from swarm_core.worker import SwarmWorker

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

log = logging.getLogger(__name__)


@dataclass
class Adapters:
    """One implementation of every port."""

    store: SwarmStore
    content: ContentStore
    queue: OperationQueue
    publisher: EventPublisher
    users: UserStore
    llm: LanguageModel
    client_access: ClientAccess
    attempts: AttemptStore


@dataclass
class SwarmApp:
    """Everything one process runs with. The worker and the services share `committer`."""

    settings: Settings
    adapters: Adapters
    committer: SwarmCommitter
    worker: SwarmWorker
    services: SwarmServices
    auth: AuthService


def build_app(
    settings: Settings,
    adapters: Adapters,
    *,
    clock: Callable[[], datetime] = utcnow,
    new_id: Callable[[], str] | None = None,
    parallel_effects: int = 0,
    remember_latest: bool = False,
) -> SwarmApp:
    committer = SwarmCommitter(
        adapters.store,
        adapters.content,
        adapters.queue,
        adapters.publisher,
        parallel_effects=parallel_effects,
        snapshot_every=settings.snapshot_every,
        remember_latest=remember_latest,
        presumed_dead_after=timedelta(seconds=settings.roll_forward_after_seconds),
        clock=clock,
        hold_seconds=settings.run_next_hold_seconds,
    )
    models = ModelPolicy(settings.llm.allowed_models(), settings.llm.llm_max_tokens_limit)
    services = SwarmServices(
        adapters.store,
        adapters.content,
        committer,
        adapters.queue,
        adapters.client_access,
        clock=clock,
        stuck_after=timedelta(minutes=settings.stuck_after_minutes),
        idle_after=timedelta(minutes=settings.idle_after_minutes),
        models=models,
        swarms_per_user=settings.swarms_per_user,
        active_swarms_per_user=settings.active_swarms_per_user,
    )
    if new_id is not None:
        services.new_id = new_id
    return SwarmApp(
        settings=settings,
        adapters=adapters,
        committer=committer,
        worker=SwarmWorker(
            adapters.store,
            committer,
            adapters.llm,
            clock=clock,
            run_next_steps=settings.run_next_steps,
        ),
        services=services,
        auth=AuthService(
            adapters.users,
            LoginThrottle(
                adapters.attempts,
                ThrottlePolicy(signups_per_address=settings.signups_per_address_per_hour),
            ),
            _auth_secret(settings),
            token_minutes=settings.auth_token_minutes,
            bcrypt_rounds=settings.bcrypt_rounds,
            models=models,
        ),
    )


def _auth_secret(settings: Settings) -> str:
    if settings.auth_secret:
        return settings.auth_secret
    # Development without a secret (production refuses it in Settings): a random one per
    # process, so tokens end with the process.
    log.warning("AUTH_SECRET is not set: using a random per-process secret (development only)")
    return secrets.token_urlsafe(48)


# --- in memory ----------------------------------------------------------------------------------


@dataclass
class MemoryAdapters(Adapters):
    store: MemorySwarmStore = field(default_factory=MemorySwarmStore)
    content: MemoryContentStore = field(default_factory=MemoryContentStore)
    queue: MemoryOperationQueue = field(default_factory=MemoryOperationQueue)
    publisher: MemoryEventPublisher = field(default_factory=MemoryEventPublisher)
    users: MemoryUserStore = field(default_factory=MemoryUserStore)
    llm: LanguageModel = field(default_factory=OfflineScriptedLLM)
    client_access: ClientAccess = field(default_factory=MemoryClientAccess)
    attempts: MemoryAttemptStore = field(default_factory=MemoryAttemptStore)


@dataclass
class InMemorySwarmApp(SwarmApp):
    """The in-memory app; its adapters are typed so tests and the demo can drive the queue."""

    adapters: MemoryAdapters


def build_in_memory(
    llm: LanguageModel | None = None,
    *,
    adapters: MemoryAdapters | None = None,
    settings: Settings | None = None,
    clock: Callable[[], datetime] = utcnow,
    new_id: Callable[[], str] | None = None,
) -> InMemorySwarmApp:
    if adapters is None:
        adapters = MemoryAdapters(llm=llm) if llm is not None else MemoryAdapters()
    # Without settings: one step per delivery (a trip through a queue in memory costs nothing,
    # and a test can step a swarm message by message).
    default = Settings(BCRYPT_ROUNDS=4, AUTH_SECRET=secrets.token_urlsafe(32), RUN_NEXT_STEPS=0)
    app = build_app(
        settings or default,
        adapters,
        clock=clock,
        new_id=new_id,
    )
    return InMemorySwarmApp(
        app.settings, adapters, app.committer, app.worker, app.services, app.auth
    )


# --- Azure -----------------------------------------------------------------------------------


def build_publisher(
    settings: Settings, credential: TokenCredential | None = None
) -> WebPubSubEventPublisher:
    if settings.webpubsub_connection_string:
        return WebPubSubEventPublisher(
            hub=settings.webpubsub_hub, connection_string=settings.webpubsub_connection_string
        )
    settings.require("webpubsub_endpoint")
    return WebPubSubEventPublisher(
        hub=settings.webpubsub_hub,
        endpoint=settings.webpubsub_endpoint,
        credential=credential or app_credential(settings),
        ca_file=settings.webpubsub_ca_cert,
    )


def build_llm(settings: Settings, credential: TokenCredential | None = None) -> LanguageModel:
    """The configured model; Azure OpenAI without a key signs in with the app's identity."""
    if not settings.llm.uses_entra_id:
        return build_language_model(settings.llm, azure_credential=None)
    return build_language_model(
        settings.llm, azure_credential=credential or app_credential(settings)
    )


def azure_adapters(
    settings: Settings,
    *,
    credential: TokenCredential | None = None,
    ensure_resources: bool | None = None,
) -> Adapters:
    """Every adapter from settings, the keyless ones signed in with `credential` (default: the
    app's managed identity). `ensure_resources` creates the database, containers, blob
    container and queues when missing: by default only outside production (in Azure the
    infrastructure creates them, and the app's identity has data-plane rights only)."""
    cosmos = CosmosClients(settings, credential=credential)
    content = BlobContentStore(settings, credential=credential)
    queue = StorageOperationQueue(settings, content, credential=credential)
    publisher = build_publisher(settings, credential)
    if ensure_resources is None:
        ensure_resources = settings.environment != "production"
    if ensure_resources:
        cosmos.ensure_containers()
        content.ensure_container()
        queue.ensure_queues()
    return Adapters(
        store=CosmosSwarmStore(cosmos),
        content=content,
        queue=queue,
        publisher=publisher,
        users=CosmosUserStore(cosmos),
        llm=build_llm(settings, credential),
        client_access=publisher,
        attempts=CosmosAttemptStore(cosmos),
    )


# A commit writes at most a handful of documents and blobs (nodes, chat, logs, history, listing).
AZURE_PARALLEL_EFFECTS = 6


def build_azure(
    settings: Settings,
    *,
    credential: TokenCredential | None = None,
    ensure_resources: bool | None = None,
) -> SwarmApp:
    return build_app(
        settings,
        azure_adapters(settings, credential=credential, ensure_resources=ensure_resources),
        parallel_effects=AZURE_PARALLEL_EFFECTS,
        remember_latest=True,  # a read is a request: decide on what the last commit left
    )
