"""Wiring of the Azure adapters from settings: Cosmos DB, Blob storage, the Storage queue, Web
PubSub and the configured LLM. Used by the function app's runtime (locally on the emulators)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from swarm_core.adapters.blob import BlobContentStore
from swarm_core.adapters.cosmos import CosmosClients, CosmosSwarmStore, CosmosUserStore
from swarm_core.adapters.identity import app_credential
from swarm_core.adapters.openai_llm import build_language_model
from swarm_core.adapters.queue import StorageOperationQueue, decode_operation_message
from swarm_core.adapters.webpubsub import WebPubSubEventPublisher
from swarm_core.bootstrap import build
from swarm_core.settings import Settings

if TYPE_CHECKING:
    from swarm_core.runtime import Runtime


def build_publisher(settings: Settings) -> WebPubSubEventPublisher:
    if settings.webpubsub_connection_string:
        return WebPubSubEventPublisher(
            hub=settings.webpubsub_hub, connection_string=settings.webpubsub_connection_string
        )
    settings.require("webpubsub_endpoint")
    return WebPubSubEventPublisher(
        hub=settings.webpubsub_hub,
        endpoint=settings.webpubsub_endpoint,
        credential=app_credential(settings),
    )


def build_azure_runtime(settings: Settings, *, ensure_resources: bool | None = None) -> Runtime:
    """Every adapter from settings. Clients connect on first use, not here.

    `ensure_resources` creates the database, containers, blob container and queues when missing:
    by default only in development (in Azure the infrastructure creates them, and the app's
    identity has data-plane rights only)."""
    from swarm_core.runtime import Runtime, build_auth

    cosmos = CosmosClients(settings)
    content = BlobContentStore(settings)
    queue = StorageOperationQueue(settings, content)
    publisher = build_publisher(settings)
    if ensure_resources is None:
        ensure_resources = settings.environment != "production"
    if ensure_resources:
        cosmos.ensure_containers()
        content.ensure_container()
        queue.ensure_queues()
    users = CosmosUserStore(cosmos)
    app = build(CosmosSwarmStore(cosmos), content, queue, publisher, build_language_model())

    def decode(body: str | bytes) -> str:
        return decode_operation_message(body, content)

    return Runtime(settings, app, users, build_auth(settings, users), publisher, decode)
