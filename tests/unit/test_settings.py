"""Settings: outside development the app refuses a missing or placeholder secret and weak bcrypt;
the model settings (`Settings.llm`) are read from their environment names and an incomplete model
configuration is a SettingsError (503 from the API) naming what is missing."""

from __future__ import annotations

import json

import azure.functions as func
import pytest
from pydantic import SecretStr

from swarm_core.adapters.offline_llm import OfflineScriptedLLM
from swarm_core.adapters.openai_llm import build_language_model
from swarm_core.entrypoints import http_api
from swarm_core.runtime import use_app
from swarm_core.settings import (
    LLMConfigurationError,
    LLMProviderSettings,
    Settings,
    SettingsError,
    load_settings,
)

GOOD_SECRET = "k" * 40


def me_on_a_fresh_app() -> tuple[int, dict]:
    """`GET /api/me` on an app built anew from the environment, as a new process builds it."""
    use_app(None)
    try:
        req = func.HttpRequest(
            method="GET",
            url="http://localhost/api/me",
            body=b"",
            headers={"authorization": "Bearer x"},
        )
        resp = http_api.me(req)
        return resp.status_code, json.loads(resp.get_body())
    finally:
        use_app(None)


@pytest.mark.parametrize("secret", ["", "change-me", "secret", "short"])
def test_production_refuses_a_missing_or_placeholder_secret(secret):
    with pytest.raises(SettingsError, match="AUTH_SECRET"):
        load_settings(SWARM_ENV="production", AUTH_SECRET=secret)


@pytest.mark.parametrize("environment", ["production", "development"])
def test_an_unresolved_key_vault_reference_is_never_a_secret(environment):
    # App Service leaves a reference it cannot resolve as its literal (public) text.
    reference = "@Microsoft.KeyVault(SecretUri=https://kv-x.vault.azure.net/secrets/auth-secret)"
    with pytest.raises(SettingsError, match="unresolved Key Vault reference"):
        load_settings(SWARM_ENV=environment, AUTH_SECRET=reference)


def test_production_refuses_cheap_bcrypt():
    with pytest.raises(SettingsError, match="BCRYPT_ROUNDS"):
        load_settings(SWARM_ENV="production", AUTH_SECRET=GOOD_SECRET, BCRYPT_ROUNDS=10)
    assert load_settings(SWARM_ENV="production", AUTH_SECRET=GOOD_SECRET).bcrypt_rounds == 12


def test_development_runs_without_a_secret():
    assert Settings(SWARM_ENV="development").auth_secret == ""


def test_the_api_answers_503_not_500_when_misconfigured(monkeypatch):
    monkeypatch.setenv("SWARM_ENV", "production")
    monkeypatch.setenv("AUTH_SECRET", "change-me")
    status, problem = me_on_a_fresh_app()
    assert status == 503
    assert "AUTH_SECRET" in problem["detail"]


def test_missing_service_settings_are_named():
    with pytest.raises(SettingsError, match="COSMOS_ENDPOINT"):
        Settings().require("cosmos_endpoint")


# --- the model settings (Settings.llm) ------------------------------------------------------

LLM_ENV = {
    "LLM_PROVIDER": ("llm_provider", "compatible", "compatible"),
    "OPENAI_API_KEY": ("openai_api_key", "sk-env-key-0123456789", "sk-env-key-0123456789"),
    "OPENAI_MODEL": ("openai_model", "llama3.1", "llama3.1"),
    "OPENAI_BASE_URL": ("openai_base_url", "http://localhost:11434/v1", None),
    "AZURE_OPENAI_ENDPOINT": ("azure_openai_endpoint", "https://res.openai.azure.com", None),
    "AZURE_OPENAI_DEPLOYMENT": ("azure_openai_deployment", "dep-1", None),
    "AZURE_OPENAI_API_VERSION": ("azure_openai_api_version", "2024-08-01-preview", None),
    "AZURE_OPENAI_API_KEY": ("azure_openai_api_key", "a" * 32, "a" * 32),
    "LLM_STRUCTURED_OUTPUT": ("llm_structured_output", "json_schema", None),
    "LLM_MAX_REPAIRS": ("llm_max_repairs", "4", 4),
    "LLM_MAX_RETRIES": ("llm_max_retries", "5", 5),
    "LLM_TIMEOUT_SECONDS": ("llm_timeout_seconds", "12.5", 12.5),
    "LLM_RETRY_BACKOFF_SECONDS": ("llm_retry_backoff_seconds", "0.25", 0.25),
    "LLM_RETRY_MAX_WAIT_SECONDS": ("llm_retry_max_wait_seconds", "7", 7.0),
}


@pytest.fixture
def llm_env(monkeypatch):
    """No model settings from the machine; returns a setter for the test's own."""
    for name in LLM_ENV:
        monkeypatch.delenv(name, raising=False)

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


def _value(field_value):
    return field_value.get_secret_value() if isinstance(field_value, SecretStr) else field_value


def test_the_model_settings_are_read_from_their_environment_names(llm_env):
    llm_env(**{name: raw for name, (_, raw, _) in LLM_ENV.items()})

    llm = load_settings().llm

    assert isinstance(llm, LLMProviderSettings)
    for name, (field, raw, expected) in LLM_ENV.items():
        assert _value(getattr(llm, field)) == (raw if expected is None else expected), name
    assert llm.resolved_provider() == "compatible"
    assert "sk-env-key-0123456789" not in repr(llm)


def test_empty_model_settings_count_as_unset(llm_env):
    llm_env(**dict.fromkeys(LLM_ENV, ""))

    llm = load_settings().llm

    for name, field in LLMProviderSettings.model_fields.items():
        assert getattr(llm, name) == field.default, name
    assert (llm.llm_provider, llm.openai_model, llm.llm_max_retries) == ("auto", "gpt-4o-mini", 3)
    assert llm.resolved_provider() == "offline"


def test_given_model_settings_are_used_as_they_are(llm_env):
    given = LLMProviderSettings(openai_base_url="http://127.0.0.1:9/v1")
    llm_env(AZURE_OPENAI_ENDPOINT="https://res.openai.azure.com")  # set later: not read again

    settings = Settings(llm=given)

    assert settings.llm is given
    assert settings.llm.resolved_provider() == "compatible"
    assert settings.llm.azure_openai_endpoint is None


def test_an_azure_endpoint_without_a_deployment_is_a_settings_error(llm_env):
    llm_env(AZURE_OPENAI_ENDPOINT="https://res.openai.azure.com", AZURE_OPENAI_API_KEY="a" * 32)

    with pytest.raises(SettingsError) as caught:
        load_settings()

    message = str(caught.value)
    assert "AZURE_OPENAI_DEPLOYMENT" in message and "is not" in message
    assert "a" * 32 not in message
    incomplete = LLMProviderSettings(azure_openai_endpoint="https://res.openai.azure.com")
    with pytest.raises(SettingsError, match="AZURE_OPENAI_DEPLOYMENT"):
        load_settings(llm=incomplete)


def test_an_invalid_model_setting_is_named(llm_env):
    llm_env(LLM_MAX_RETRIES="many")

    with pytest.raises(LLMConfigurationError, match="LLM_MAX_RETRIES") as caught:
        load_settings()

    assert isinstance(caught.value, SettingsError)


def test_the_api_answers_503_when_the_model_is_configured_incompletely(llm_env):
    llm_env(AZURE_OPENAI_ENDPOINT="https://res.openai.azure.com")
    status, problem = me_on_a_fresh_app()
    assert status == 503
    assert "AZURE_OPENAI_DEPLOYMENT" in problem["detail"]


def test_entra_id_is_needed_for_azure_openai_without_a_key(llm_env):
    azure = {
        "azure_openai_endpoint": "https://res.openai.azure.com",
        "azure_openai_deployment": "d",
    }
    assert LLMProviderSettings(**azure).uses_entra_id
    assert not LLMProviderSettings(**azure, azure_openai_api_key="a" * 32).uses_entra_id
    assert not LLMProviderSettings(openai_api_key="sk-0123456789").uses_entra_id
    assert not LLMProviderSettings(llm_provider="offline").uses_entra_id


def test_offline_settings_build_the_offline_llm(llm_env):
    llm_env(OPENAI_MODEL="gpt-4o")  # a model alone selects nothing

    settings = load_settings()

    assert settings.llm.resolved_provider() == "offline"
    assert isinstance(build_language_model(settings.llm), OfflineScriptedLLM)
    explicit = LLMProviderSettings(llm_provider="offline", openai_api_key="sk-0123456789")
    assert isinstance(build_language_model(explicit), OfflineScriptedLLM)
