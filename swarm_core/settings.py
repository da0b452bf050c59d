"""The one settings object of the app, read from app settings / environment variables.

Locally every service is reached by a connection string (Azurite, the Cosmos emulator server, the
Web PubSub dev emulator: see `local.settings.example.json`). In Azure no key is needed: services
are reached by endpoint with the app's managed identity (`DefaultAzureCredential`, pinned to the
user-assigned identity by `AZURE_CLIENT_ID`). Storage uses the Functions host's own identity-based
names (`AzureWebJobsStorage__blobServiceUri`, `__queueServiceUri`, `__credential`, `__clientId`),
so the host's queue trigger and the app read the same account.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = frozenset({"", "change-me", "changeme", "dev-secret-change-me", "secret"})


class SettingsError(ValueError):
    """The configuration is incomplete or unsafe; the message says which setting to fix."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    environment: Literal["development", "test", "production"] = Field(
        default="development", alias="SWARM_ENV"
    )

    # Storage (blob content + operations queue): a connection string locally, URIs in Azure.
    storage_connection_string: str | None = Field(default=None, alias="AzureWebJobsStorage")
    storage_blob_uri: str | None = Field(default=None, alias="AzureWebJobsStorage__blobServiceUri")
    storage_queue_uri: str | None = Field(
        default=None, alias="AzureWebJobsStorage__queueServiceUri"
    )
    swarm_queue: str = Field(default="swarm-operations", alias="SWARM_QUEUE")
    swarm_poison_queue: str = Field(default="swarm-operations-poison", alias="SWARM_POISON_QUEUE")
    swarm_container: str = Field(default="swarms", alias="SWARM_CONTAINER")

    # Cosmos DB: endpoint + key locally (the emulator), endpoint + managed identity in Azure.
    cosmos_endpoint: str | None = Field(default=None, alias="COSMOS_ENDPOINT")
    cosmos_key: str | None = Field(default=None, alias="COSMOS_KEY")
    cosmos_database: str = Field(default="swarmdb", alias="COSMOS_DATABASE")

    # Web PubSub: a connection string locally (the dev emulator), endpoint + identity in Azure.
    webpubsub_connection_string: str | None = Field(
        default=None, alias="WEBPUBSUB_CONNECTION_STRING"
    )
    webpubsub_endpoint: str | None = Field(default=None, alias="WEBPUBSUB_ENDPOINT")
    webpubsub_hub: str = Field(default="swarm", alias="WEBPUBSUB_HUB")

    # The user-assigned managed identity (Azure only).
    azure_client_id: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AZURE_CLIENT_ID", "AzureWebJobsStorage__clientId"),
    )

    # Maintenance timer: re-drive stuck swarms, announce swarms idle on the user.
    maintenance_schedule: str = Field(default="0 */5 * * * *", alias="MAINTENANCE_SCHEDULE")
    stuck_after_minutes: int = Field(default=5, ge=1, alias="STUCK_AFTER_MINUTES")
    idle_after_minutes: int = Field(default=10, ge=1, alias="IDLE_AFTER_MINUTES")

    # Auth (the HTTP layer).
    auth_secret: str = Field(default="", alias="AUTH_SECRET")
    auth_token_minutes: int = Field(default=60, ge=1, le=24 * 60, alias="AUTH_TOKEN_MINUTES")
    bcrypt_rounds: int = Field(default=12, ge=4, le=16, alias="BCRYPT_ROUNDS")

    @model_validator(mode="after")
    def _safe_outside_development(self) -> Settings:
        if self.environment == "production":
            if (
                self.auth_secret.strip().lower() in PLACEHOLDER_SECRETS
                or len(self.auth_secret) < 32
            ):
                raise SettingsError(
                    "AUTH_SECRET must be set to a random value of at least 32 characters "
                    "outside development"
                )
            if self.bcrypt_rounds < 12:
                raise SettingsError("BCRYPT_ROUNDS must be at least 12 outside development")
        return self

    @property
    def uses_managed_identity(self) -> bool:
        """True when services are reached by endpoint with an Entra ID credential."""
        return not self.storage_connection_string

    def require(self, *names: str) -> None:
        """Fail with the names of the missing settings (clients call this before connecting)."""
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            aliases = [type(self).model_fields[n].alias or n for n in missing]
            raise SettingsError(f"missing settings: {', '.join(aliases)}")


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (and `overrides`); a readable SettingsError if invalid."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from exc
