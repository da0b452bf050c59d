"""The `openai` SDK client for the configured provider, and the Entra ID token provider.

`build_openai_client` returns an `openai.OpenAI` client for OpenAI and OpenAI-compatible servers
(Ollama, LiteLLM, vLLM: the key is optional) or an `openai.AzureOpenAI` client for Azure OpenAI,
authenticated by `AZURE_OPENAI_API_KEY` or, without a key, by a Microsoft Entra ID bearer token
from the credential the caller passes in (the app's shared credential,
`swarm_core.adapters.identity.app_credential`): this module never creates a credential. The SDK's
own retries are off, so that the adapter's retries are the only ones. Building a client opens no
connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import openai

from swarm_core.llm import LLMError
from swarm_core.settings import LLMConfigurationError, LLMProviderSettings, Provider

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

AZURE_OPENAI_SCOPE = "https://cognitiveservices.azure.com/.default"
# OpenAI-compatible servers such as Ollama ignore the key, but the SDK insists on one.
KEYLESS_PLACEHOLDER = "not-needed"


def build_openai_client(
    settings: LLMProviderSettings,
    provider: Provider,
    *,
    azure_credential: TokenCredential | None = None,
) -> openai.OpenAI:
    """The SDK client for `provider`, with the SDK's own retries off (the adapter retries).

    Azure OpenAI without a key needs `azure_credential`; LLMConfigurationError without one.
    """
    timeout = settings.llm_timeout_seconds
    if provider == "azure_openai":
        endpoint = cast(str, settings.azure_openai_endpoint)
        # No azure_deployment here: the SDK then routes each call to /deployments/{model}, so a
        # node's `llm.model` can name another deployment.
        if settings.azure_openai_api_key is not None:
            return openai.AzureOpenAI(
                azure_endpoint=endpoint,
                api_version=settings.azure_openai_api_version,
                api_key=settings.azure_openai_api_key.get_secret_value(),
                max_retries=0,
                timeout=timeout,
            )
        if azure_credential is None:
            raise LLMConfigurationError(
                "Azure OpenAI without AZURE_OPENAI_API_KEY signs in with Microsoft Entra ID, but "
                "no credential was given: pass the app's credential "
                "(swarm_core.adapters.identity.app_credential) or set AZURE_OPENAI_API_KEY."
            )
        return openai.AzureOpenAI(
            azure_endpoint=endpoint,
            api_version=settings.azure_openai_api_version,
            azure_ad_token_provider=entra_id_token_provider(azure_credential),
            max_retries=0,
            timeout=timeout,
        )
    if provider in ("openai", "compatible"):
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        return openai.OpenAI(
            api_key=key or KEYLESS_PLACEHOLDER,
            base_url=settings.openai_base_url,
            max_retries=0,
            timeout=timeout,
        )
    raise LLMConfigurationError(f"No OpenAI client for the {provider!r} provider.")


def entra_id_token_provider(credential: TokenCredential) -> Callable[[], str]:
    """A bearer-token callable for Azure OpenAI from `credential` (tokens cached and refreshed).

    A failure to get a token becomes a retryable LLMError naming the cause, without the token.
    """
    # Imported here, not at the top: azure.identity (and msal under it) is needed only for Azure
    # OpenAI with Entra ID, and the other providers and the local stack never load it.
    from azure.identity import get_bearer_token_provider

    get_token: Callable[[], str] = get_bearer_token_provider(credential, AZURE_OPENAI_SCOPE)

    def token() -> str:
        try:
            return get_token()
        except Exception as exc:
            first_line = (str(exc).strip().splitlines() or [""])[0][:300]
            raise LLMError(
                "could not get a Microsoft Entra ID token for Azure OpenAI "
                f"({type(exc).__name__}: {first_line}); check the managed identity / "
                "AZURE_CLIENT_ID or `az login`",
                retryable=True,
            ) from exc

    return token
