"""The one settings object of the app, read from app settings / environment variables.

Locally every service is reached by a connection string (Azurite, the Cosmos emulator server, the
Web PubSub dev emulator: see `local.settings.example.json`), or, in devstack's identity mode,
exactly as in Azure. In Azure no key is needed: services are reached by endpoint with the app's
managed identity (`DefaultAzureCredential`, pinned to the user-assigned identity by
`AZURE_CLIENT_ID`). Storage uses the Functions host's own identity-based
names (`AzureWebJobsStorage__blobServiceUri`, `__queueServiceUri`, `__credential`, `__clientId`),
so the host's queue trigger and the app read the same account. The model the app talks to is
`Settings.llm` (`LLMProviderSettings`: OpenAI, Azure OpenAI, an OpenAI-compatible server, or the
offline scripted LLM), read from the same environment under its own variable names.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

# How an app setting that App Service could not resolve from Key Vault reads.
KEY_VAULT_REFERENCE = "@Microsoft.KeyVault("
PLACEHOLDER_SECRETS = frozenset({"", "change-me", "changeme", "dev-secret-change-me", "secret"})


class SettingsError(ValueError):
    """The configuration is incomplete or unsafe; the message says which setting to fix."""


class LLMConfigurationError(SettingsError):
    """The model settings are incomplete or contradictory (found at startup, never per call)."""


Provider = Literal["offline", "openai", "azure_openai", "compatible"]
StructuredOutput = Literal["json_schema", "json_object"]


class LLMProviderSettings(BaseSettings):
    """Which model the app talks to (`Settings.llm`), read from the environment (app settings).

    Field names are the environment variable names (case-insensitive); empty values count as unset.
    Not to be confused with `swarm_core.models.LLMSettings`, the settings of one call (model,
    temperature, max_tokens, system prompt).
    """

    model_config = SettingsConfigDict(env_ignore_empty=True, extra="ignore")

    # auto: Azure when AZURE_OPENAI_* is set, else compatible when OPENAI_BASE_URL is set, else
    # OpenAI when OPENAI_API_KEY is set, else the offline scripted LLM.
    llm_provider: Literal["auto", "offline", "openai", "azure_openai", "compatible"] = "auto"
    openai_api_key: SecretStr | None = None
    openai_model: str = Field(default="gpt-4o-mini", min_length=1)
    openai_base_url: str | None = None
    azure_openai_endpoint: str | None = None
    azure_openai_deployment: str | None = None
    azure_openai_api_version: str = Field(default="2024-10-21", min_length=1)
    # Without a key, Azure OpenAI is reached with Microsoft Entra ID (the app's credential).
    azure_openai_api_key: SecretStr | None = None
    # Default: json_schema for OpenAI and Azure OpenAI, json_object for compatible servers.
    llm_structured_output: StructuredOutput | None = None
    llm_max_repairs: int = Field(default=2, ge=0, le=10)
    llm_max_retries: int = Field(default=3, ge=0, le=10)
    llm_timeout_seconds: float = Field(default=60.0, gt=0, le=600)
    llm_retry_backoff_seconds: float = Field(default=0.5, ge=0, le=60)
    # The longest wait between two attempts, even when the server asks for longer.
    llm_retry_max_wait_seconds: float = Field(default=30.0, ge=0, le=300)
    # Cost control: the models (Azure: deployments) a user may choose, comma-separated, besides
    # the default one; and the most `max_tokens` one call may ask for.
    llm_allowed_models: str = ""
    llm_max_tokens_limit: int = Field(default=4000, ge=1, le=100_000)

    def allowed_models(self) -> list[str]:
        """The models users may name: the provider's default first, then `LLM_ALLOWED_MODELS`."""
        default = self.default_model_for(self.resolved_provider())
        extra = [m.strip() for m in self.llm_allowed_models.split(",") if m.strip()]
        return list(dict.fromkeys([default, *extra]))

    def resolved_provider(self) -> Provider:
        """The provider these settings select; LLMConfigurationError when they are incomplete."""
        azure_set = [
            name
            for name, value in (
                ("AZURE_OPENAI_ENDPOINT", self.azure_openai_endpoint),
                ("AZURE_OPENAI_DEPLOYMENT", self.azure_openai_deployment),
                ("AZURE_OPENAI_API_KEY", self.azure_openai_api_key),
            )
            if value is not None
        ]
        provider: Provider
        if self.llm_provider != "auto":
            provider = self.llm_provider
        elif azure_set:
            provider = "azure_openai"
        elif self.openai_base_url:
            provider = "compatible"
        elif self.openai_api_key is not None:
            provider = "openai"
        else:
            provider = "offline"

        if provider == "azure_openai":
            missing = [
                name
                for name, value in (
                    ("AZURE_OPENAI_ENDPOINT", self.azure_openai_endpoint),
                    ("AZURE_OPENAI_DEPLOYMENT", self.azure_openai_deployment),
                )
                if not value
            ]
            if missing:
                given = ", ".join(azure_set) if azure_set else "LLM_PROVIDER=azure_openai"
                raise LLMConfigurationError(
                    f"Azure OpenAI is configured incompletely: {given} is set but "
                    f"{' and '.join(missing)} is not. Set AZURE_OPENAI_ENDPOINT to the resource "
                    "endpoint (https://<resource>.openai.azure.com) and AZURE_OPENAI_DEPLOYMENT "
                    "to the name of the model deployment; AZURE_OPENAI_API_KEY is optional "
                    "(without it the app signs in with Microsoft Entra ID)."
                )
            _require_http_url("AZURE_OPENAI_ENDPOINT", self.azure_openai_endpoint)
        elif provider == "openai":
            if self.openai_api_key is None:
                raise LLMConfigurationError(
                    "LLM_PROVIDER=openai needs OPENAI_API_KEY (and optionally OPENAI_MODEL)."
                )
            if self.openai_base_url:
                _require_http_url("OPENAI_BASE_URL", self.openai_base_url)
        elif provider == "compatible":
            if not self.openai_base_url:
                raise LLMConfigurationError(
                    "LLM_PROVIDER=compatible needs OPENAI_BASE_URL, the server's OpenAI-style "
                    "base URL (for Ollama: http://localhost:11434/v1); OPENAI_API_KEY is optional."
                )
            _require_http_url("OPENAI_BASE_URL", self.openai_base_url)
        return provider

    @property
    def uses_entra_id(self) -> bool:
        """True when the model is Azure OpenAI without a key: the app needs an Entra ID credential.

        Raises LLMConfigurationError when the settings are incomplete (see `resolved_provider`).
        """
        return self.resolved_provider() == "azure_openai" and self.azure_openai_api_key is None

    def structured_output_for(self, provider: Provider) -> StructuredOutput:
        if self.llm_structured_output is not None:
            return self.llm_structured_output
        return "json_object" if provider == "compatible" else "json_schema"

    def default_model_for(self, provider: Provider) -> str:
        if provider == "azure_openai" and self.azure_openai_deployment:
            return self.azure_openai_deployment
        return self.openai_model

    def secrets(self) -> list[str]:
        """The configured keys, so that error messages can be scrubbed of them."""
        keys = (self.openai_api_key, self.azure_openai_api_key)
        return [key.get_secret_value() for key in keys if key is not None]


def _require_http_url(name: str, value: str | None) -> None:
    if value is not None and not re.match(r"^https?://[^/\s]+", value):
        raise LLMConfigurationError(f"{name} must be an http(s) URL, got {value!r}.")


def load_llm_provider_settings() -> LLMProviderSettings:
    """The model settings from the environment; a readable LLMConfigurationError if invalid.

    The default of `Settings.llm`; it checks the values, not yet whether they select a provider
    (`Settings` does, by calling `resolved_provider`).
    """
    try:
        return LLMProviderSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        raise LLMConfigurationError(f"Invalid LLM settings: {problems}") from None


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
    # CA file to verify the local Storage emulator's TLS certificate with (devstack's identity
    # mode, where Azurite serves HTTPS); unset in Azure.
    storage_ca_cert: str | None = Field(default=None, alias="STORAGE_CA_CERT")

    # Cosmos DB: endpoint + key locally (the emulator), endpoint + managed identity in Azure.
    cosmos_endpoint: str | None = Field(default=None, alias="COSMOS_ENDPOINT")
    cosmos_key: str | None = Field(default=None, alias="COSMOS_KEY")
    cosmos_database: str = Field(default="swarmdb", alias="COSMOS_DATABASE")
    # CA file to verify the local Cosmos server's TLS certificate with (devstack); unset in Azure.
    cosmos_ca_cert: str | None = Field(default=None, alias="COSMOS_CA_CERT")

    # Web PubSub: a connection string locally (the dev emulator), endpoint + identity in Azure.
    webpubsub_connection_string: str | None = Field(
        default=None, alias="WEBPUBSUB_CONNECTION_STRING"
    )
    webpubsub_endpoint: str | None = Field(default=None, alias="WEBPUBSUB_ENDPOINT")
    webpubsub_hub: str = Field(default="swarm", alias="WEBPUBSUB_HUB")
    # CA file to verify the local Web PubSub emulator's TLS certificate with (devstack's identity
    # mode); unset in Azure.
    webpubsub_ca_cert: str | None = Field(default=None, alias="WEBPUBSUB_CA_CERT")

    # The user-assigned managed identity (Azure only).
    azure_client_id: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AZURE_CLIENT_ID", "AzureWebJobsStorage__clientId"),
    )

    # Maintenance timer: re-drive stuck swarms, announce swarms idle on the user.
    maintenance_schedule: str = Field(default="0 */5 * * * *", alias="MAINTENANCE_SCHEDULE")
    stuck_after_minutes: int = Field(default=5, ge=1, alias="STUCK_AFTER_MINUTES")
    # A commit's applier (another process) is presumed dead this long after the commit: until
    # then whoever finds the commit unfinished waits for it rather than apply it a second time.
    roll_forward_after_seconds: float = Field(
        default=10, ge=0, le=60, alias="ROLL_FORWARD_AFTER_SECONDS"
    )
    # Steps a worker runs after the one a message brought, each the first operation the step
    # before enqueued (0: one step per invocation).
    run_next_steps: int = Field(default=16, ge=0, le=1000, alias="RUN_NEXT_STEPS")
    # How long such a step's operation stays hidden from the queue: past that (its worker died,
    # or runs long), the queue delivers it (a duplicate of a step that committed does nothing).
    run_next_hold_seconds: int = Field(default=60, ge=1, le=3600, alias="RUN_NEXT_HOLD_SECONDS")
    idle_after_minutes: int = Field(default=10, ge=1, alias="IDLE_AFTER_MINUTES")
    # A snapshot of the tree every this many committed steps (`state?at=` replays at most this
    # many steps of history from the one before it).
    snapshot_every: int = Field(default=50, ge=1, le=10_000, alias="SNAPSHOT_EVERY")

    # Auth (the HTTP layer).
    auth_secret: str = Field(default="", alias="AUTH_SECRET")
    auth_token_minutes: int = Field(default=60, ge=1, le=24 * 60, alias="AUTH_TOKEN_MINUTES")
    bcrypt_rounds: int = Field(default=12, ge=4, le=16, alias="BCRYPT_ROUNDS")
    # Login protection (auth.LoginThrottle). The client's address is the entry of
    # X-Forwarded-For this many hops from the right: Azure's front end appends the address it
    # saw (1); add one per proxy of yours in front (Front Door: 2). Entries further left are the
    # client's own words.
    forwarded_hops: int = Field(default=1, ge=1, le=10, alias="FORWARDED_HOPS")
    signups_per_address_per_hour: int = Field(
        default=20, ge=1, le=100_000, alias="SIGNUPS_PER_ADDRESS_PER_HOUR"
    )

    # Quotas: how many swarms one user may have.
    swarms_per_user: int = Field(default=100, ge=1, le=1000, alias="SWARMS_PER_USER")
    # ...and how many of them may be active (running or waiting for the user) at once.
    active_swarms_per_user: int = Field(default=10, ge=1, le=1000, alias="ACTIVE_SWARMS_PER_USER")

    # The model (OPENAI_*, AZURE_OPENAI_*, LLM_*): read from the environment by its own class
    # unless given (`Settings(llm=LLMProviderSettings(...))` in tests).
    llm: LLMProviderSettings = Field(default_factory=load_llm_provider_settings)

    @model_validator(mode="after")
    def _llm_provider_resolves(self) -> Settings:
        # An incomplete model configuration fails here, at load time, naming what is missing.
        self.llm.resolved_provider()
        return self

    @model_validator(mode="after")
    def _safe_outside_development(self) -> Settings:
        if self.auth_secret.strip().startswith(KEY_VAULT_REFERENCE):
            # App Service leaves a reference it could not resolve as its literal text, which is
            # public (it is in the Bicep): never sign tokens with it.
            raise SettingsError(
                "AUTH_SECRET is an unresolved Key Vault reference: give the app's identity "
                "'Key Vault Secrets User' on the vault and set the site's Key Vault reference "
                "identity (infra/app/rbac.bicep, api.bicep)"
            )
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
        problems = "; ".join(_problem(e) for e in exc.errors())
        raise SettingsError(f"invalid settings: {problems}") from exc


def _problem(error: ErrorDetails) -> str:
    """One validation error as text; a validator's own SettingsError speaks for itself."""
    cause = error.get("ctx", {}).get("error")
    if error["type"] == "value_error" and isinstance(cause, SettingsError):
        return str(cause)
    return f"{'.'.join(str(p) for p in error['loc']) or 'settings'}: {error['msg']}"
