"""The LLM port on the `openai` SDK: OpenAI, Azure OpenAI, or any OpenAI-compatible server.

`build_language_model(settings.llm, azure_credential=...)` turns the model settings
(`swarm_core.settings.LLMProviderSettings`, read from the environment with the rest of `Settings`)
into a `LanguageModel`: the offline scripted LLM when no model is configured, else
`OpenAIChatModel`. It reads no environment and creates no credential: Azure OpenAI without a key
uses the credential it is given (the app's, `swarm_core.adapters.identity.app_credential`). The
parts: `client` builds the SDK client and the Entra ID token provider, `schema` derives the
structured-output schema and the JSON-mode and repair instructions from a task's pydantic model,
and `adapter` holds `OpenAIChatModel` (the call, retries, the repair loop, redaction).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from swarm_core.adapters.offline_llm import OfflineScriptedLLM
from swarm_core.adapters.openai_llm.adapter import OpenAIChatModel, parse_retry_after
from swarm_core.adapters.openai_llm.client import (
    AZURE_OPENAI_SCOPE,
    build_openai_client,
    entra_id_token_provider,
)
from swarm_core.adapters.openai_llm.schema import (
    describe_validation_errors,
    json_mode_instructions,
    repair_instructions,
    strict_json_schema,
)
from swarm_core.llm import LanguageModel
from swarm_core.settings import (
    LLMConfigurationError,
    LLMProviderSettings,
    Provider,
    StructuredOutput,
    load_llm_provider_settings,
)

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

__all__ = [
    "AZURE_OPENAI_SCOPE",
    "LLMConfigurationError",
    "LLMProviderSettings",
    "OpenAIChatModel",
    "Provider",
    "StructuredOutput",
    "build_language_model",
    "build_openai_client",
    "describe_validation_errors",
    "entra_id_token_provider",
    "json_mode_instructions",
    "load_llm_provider_settings",
    "parse_retry_after",
    "repair_instructions",
    "strict_json_schema",
]

logger = logging.getLogger(__name__)


def build_language_model(
    settings: LLMProviderSettings, *, azure_credential: TokenCredential | None = None
) -> LanguageModel:
    """The configured LLM: the OpenAI adapter, or the offline scripted LLM when none is set.

    Reads nothing from the environment. Azure OpenAI without a key signs in with
    `azure_credential` (LLMConfigurationError when none is given); incomplete settings are an
    LLMConfigurationError too (a SettingsError: 503 from the API).
    """
    provider = settings.resolved_provider()
    if provider == "offline":
        logger.info("LLM: the offline scripted LLM (no model configured)")
        return OfflineScriptedLLM()
    return OpenAIChatModel.from_settings(settings, azure_credential=azure_credential)
