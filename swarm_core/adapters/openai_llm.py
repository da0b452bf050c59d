"""The LLM port on the `openai` SDK: OpenAI, Azure OpenAI, or any OpenAI-compatible server.

`build_language_model()` reads `LLMProviderSettings` (environment / app settings) and returns
either `OpenAIChatModel` or, when no model is configured, the offline scripted LLM. The adapter
asks for structured output (a strict JSON schema, or JSON mode with the schema in the prompt),
validates the answer with the task's pydantic model, and when it does not validate sends a repair
turn that names exactly what to fix. Transient failures (429, 5xx, timeouts, connection errors)
are retried here with exponential backoff honouring `Retry-After`, and the SDK's own retries are
off so that these are the only ones; what is still failing becomes `LLMError(retryable=True)` for
the queue to retry the step, and a request the server refuses (400/401/403/404/422) becomes
`LLMError(retryable=False)`. No message or log line carries an API key or a token.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import re
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, cast

import openai
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from openai.types.chat.completion_create_params import ResponseFormat
from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from swarm_core.llm import LanguageModel, LLMError, LLMMessage, LLMRequest, LLMResult
from swarm_core.models import Usage

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

logger = logging.getLogger(__name__)

Provider = Literal["offline", "openai", "azure_openai", "compatible"]
StructuredOutput = Literal["json_schema", "json_object"]

AZURE_OPENAI_SCOPE = "https://cognitiveservices.azure.com/.default"
# OpenAI-compatible servers such as Ollama ignore the key, but the SDK insists on one.
KEYLESS_PLACEHOLDER = "not-needed"
# Statuses worth trying again: rate limits, request timeouts, conflicts and server errors.
RETRYABLE_STATUSES = frozenset({408, 409, 429})
PERMANENT_REASONS = {
    400: "rejected the request (400 Bad Request)",
    401: "refused the credentials (401 Unauthorized): check the API key or the Entra ID identity",
    403: "denied access (403 Forbidden): on Azure, the identity needs the "
    "'Cognitive Services OpenAI User' role on the resource",
    404: "found no such model or deployment (404 Not Found): check the model or deployment name "
    "and the endpoint / base URL",
    422: "could not process the request (422 Unprocessable Entity)",
}
# Keywords outside the subset that strict structured outputs accept; pydantic still enforces them.
STRICT_UNSUPPORTED_KEYWORDS = ("default", "minLength", "maxLength")


class LLMConfigurationError(ValueError):
    """The model settings are incomplete or contradictory (raised at startup, never per call)."""


class LLMProviderSettings(BaseSettings):
    """Which model the app talks to, read from the environment (app settings).

    Field names are the environment variable names (case-insensitive); empty values count as unset.
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
    # Without a key, Azure OpenAI is reached with Microsoft Entra ID (DefaultAzureCredential).
    azure_openai_api_key: SecretStr | None = None
    # Default: json_schema for OpenAI and Azure OpenAI, json_object for compatible servers.
    llm_structured_output: StructuredOutput | None = None
    llm_max_repairs: int = Field(default=2, ge=0, le=10)
    llm_max_retries: int = Field(default=3, ge=0, le=10)
    llm_timeout_seconds: float = Field(default=60.0, gt=0, le=600)
    llm_retry_backoff_seconds: float = Field(default=0.5, ge=0, le=60)
    # The longest wait between two attempts, even when the server asks for longer.
    llm_retry_max_wait_seconds: float = Field(default=30.0, ge=0, le=300)

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
    """The settings from the environment; a readable LLMConfigurationError for invalid values."""
    try:
        return LLMProviderSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        raise LLMConfigurationError(f"Invalid LLM settings: {problems}") from None


def build_language_model(settings: LLMProviderSettings | None = None) -> LanguageModel:
    """The configured LLM: the OpenAI adapter, or the offline scripted LLM when none is set."""
    if settings is None:
        settings = load_llm_provider_settings()
    provider = settings.resolved_provider()
    if provider == "offline":
        from swarm_core.adapters.offline_llm import OfflineScriptedLLM

        logger.info("LLM: the offline scripted LLM (no model configured)")
        return OfflineScriptedLLM()
    return OpenAIChatModel.from_settings(settings)


def build_openai_client(
    settings: LLMProviderSettings,
    provider: Provider,
    *,
    azure_credential: TokenCredential | None = None,
) -> openai.OpenAI:
    """The SDK client for `provider`, with the SDK's own retries off (the adapter retries)."""
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


def entra_id_token_provider(credential: TokenCredential | None = None) -> Callable[[], str]:
    """A bearer-token callable for Azure OpenAI from `credential` (default DefaultAzureCredential).

    A failure to get a token becomes a retryable LLMError naming the cause, without the token.
    """
    from azure.identity import DefaultAzureCredential, get_bearer_token_provider

    get_token: Callable[[], str] = get_bearer_token_provider(
        credential if credential is not None else DefaultAzureCredential(), AZURE_OPENAI_SCOPE
    )

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


class OpenAIChatModel:
    """`LanguageModel` on the chat completions API of the `openai` SDK.

    One `complete` makes one call, plus up to `max_repairs` repair calls when the answer does not
    validate; each call is retried up to `max_retries` times on transient failures.
    `usage.llm_calls` counts the completions received (the calls that were billed).
    """

    def __init__(
        self,
        client: openai.OpenAI,
        *,
        default_model: str,
        provider: Provider = "openai",
        structured_output: StructuredOutput = "json_schema",
        max_repairs: int = 2,
        max_retries: int = 3,
        retry_backoff_seconds: float = 0.5,
        retry_max_wait_seconds: float = 30.0,
        secrets: list[str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.default_model = default_model
        self.provider = provider
        self.structured_output = structured_output
        self.max_repairs = max_repairs
        self.max_retries = max_retries
        self.retry_backoff_seconds = retry_backoff_seconds
        self.retry_max_wait_seconds = retry_max_wait_seconds
        self._secrets = [s for s in (secrets or []) if s]
        self._sleep = sleep

    @classmethod
    def from_settings(
        cls,
        settings: LLMProviderSettings,
        *,
        azure_credential: TokenCredential | None = None,
    ) -> OpenAIChatModel:
        provider = settings.resolved_provider()
        client = build_openai_client(settings, provider, azure_credential=azure_credential)
        model = cls(
            client,
            default_model=settings.default_model_for(provider),
            provider=provider,
            structured_output=settings.structured_output_for(provider),
            max_repairs=settings.llm_max_repairs,
            max_retries=settings.llm_max_retries,
            retry_backoff_seconds=settings.llm_retry_backoff_seconds,
            retry_max_wait_seconds=settings.llm_retry_max_wait_seconds,
            secrets=settings.secrets(),
        )
        logger.info(
            "LLM: provider %s, model %s, structured output %s, base URL %s",
            provider,
            model.default_model,
            model.structured_output,
            client.base_url,
        )
        return model

    # --- the port ----------------------------------------------------------------------------

    def complete(self, request: LLMRequest, response_model: type[BaseModel]) -> LLMResult:
        model = request.settings.model or self.default_model
        messages = self._initial_messages(request, response_model)
        response_format = self._response_format(request.task, response_model)
        usage = Usage()
        for repair in range(self.max_repairs + 1):
            completion = self._create_with_retries(request, model, messages, response_format)
            usage = usage.plus(_usage_of(completion))
            content, finish_reason = self._answer_of(request, model, completion)
            try:
                validated = response_model.model_validate_json(_strip_code_fence(content))
            except ValidationError as exc:
                problems = describe_validation_errors(exc)
                if repair == self.max_repairs:
                    raise LLMError(
                        f"{self.provider} model {model} gave no valid answer for the "
                        f"{request.task!r} task after {self.max_repairs} repair(s): "
                        + "; ".join(problems)[:1000],
                        retryable=False,
                    ) from None
                logger.info(
                    "LLM answer for task %s did not validate (%s problem(s)); repair %s of %s "
                    "swarm_id=%s node_id=%s op_id=%s",
                    request.task,
                    len(problems),
                    repair + 1,
                    self.max_repairs,
                    request.swarm_id,
                    request.node_id,
                    request.op_id,
                )
                messages = [
                    *messages,
                    {"role": "assistant", "content": content or "(empty answer)"},
                    {
                        "role": "user",
                        "content": repair_instructions(problems, cut_off=finish_reason == "length"),
                    },
                ]
                continue
            logger.info(
                "LLM task %s answered by %s in %s call(s), %s+%s tokens "
                "swarm_id=%s node_id=%s op_id=%s",
                request.task,
                completion.model or model,
                usage.llm_calls,
                usage.prompt_tokens,
                usage.completion_tokens,
                request.swarm_id,
                request.node_id,
                request.op_id,
            )
            return LLMResult(
                data=validated.model_dump(mode="json"),
                content=content,
                model=completion.model or model,
                usage=usage,
            )
        raise AssertionError("unreachable: the repair loop returns or raises")

    # --- building the call -------------------------------------------------------------------

    def _initial_messages(
        self, request: LLMRequest, response_model: type[BaseModel]
    ) -> list[ChatCompletionMessageParam]:
        system_parts = []
        if request.settings.system_prompt:
            system_parts.append(request.settings.system_prompt)
        if self.structured_output == "json_object":
            system_parts.append(json_mode_instructions(request.task, response_model))
        messages: list[ChatCompletionMessageParam] = []
        if system_parts:
            messages.append({"role": "system", "content": "\n\n".join(system_parts)})
        messages.extend(_message_param(m) for m in request.messages)
        return messages

    def _response_format(self, task: str, response_model: type[BaseModel]) -> ResponseFormat:
        if self.structured_output == "json_object":
            return {"type": "json_object"}
        return {
            "type": "json_schema",
            "json_schema": {
                "name": _schema_name(task),
                "schema": strict_json_schema(response_model),
                "strict": True,
            },
        }

    # --- one call, retried ---------------------------------------------------------------------

    def _create_with_retries(
        self,
        request: LLMRequest,
        model: str,
        messages: list[ChatCompletionMessageParam],
        response_format: ResponseFormat,
    ) -> ChatCompletion:
        attempts = self.max_retries + 1
        failure = ""
        for attempt in range(1, attempts + 1):
            retry_after: float | None = None
            try:
                return self._create(request, model, messages, response_format)
            except openai.APIStatusError as exc:
                reason = self._describe_status_error(exc, request, model)
                if not _is_retryable_status(exc.status_code):
                    logger.error(
                        "LLM call failed permanently: %s swarm_id=%s node_id=%s op_id=%s",
                        reason,
                        request.swarm_id,
                        request.node_id,
                        request.op_id,
                    )
                    raise LLMError(reason, retryable=False) from None
                failure = reason
                retry_after = parse_retry_after(exc.response.headers)
            except openai.APITimeoutError:
                failure = (
                    f"{self.provider} did not answer within the timeout "
                    f"(task {request.task!r}, model {model})"
                )
            except openai.APIConnectionError as exc:
                cause = exc.__cause__ or exc
                failure = self._redact(
                    f"{self.provider} could not be reached ({type(cause).__name__}: {cause}) "
                    f"(task {request.task!r}, model {model})"
                )
            except openai.OpenAIError as exc:
                # The SDK refusing the call itself (bad response shape, client misuse): no retry.
                raise LLMError(
                    self._redact(f"{self.provider} call failed ({type(exc).__name__}: {exc})"),
                    retryable=False,
                ) from None
            if attempt == attempts:
                break
            wait = self._wait_before_retry(attempt, retry_after)
            logger.warning(
                "LLM call attempt %s of %s failed (%s); retrying in %.2fs "
                "swarm_id=%s node_id=%s op_id=%s",
                attempt,
                attempts,
                failure,
                wait,
                request.swarm_id,
                request.node_id,
                request.op_id,
            )
            self._sleep(wait)
        logger.error(
            "LLM call failed after %s attempt(s): %s swarm_id=%s node_id=%s op_id=%s",
            attempts,
            failure,
            request.swarm_id,
            request.node_id,
            request.op_id,
        )
        raise LLMError(f"{failure}; gave up after {attempts} attempt(s)", retryable=True)

    def _create(
        self,
        request: LLMRequest,
        model: str,
        messages: list[ChatCompletionMessageParam],
        response_format: ResponseFormat,
    ) -> ChatCompletion:
        settings = request.settings
        max_tokens = openai.omit if settings.max_tokens is None else settings.max_tokens
        temperature = openai.omit if settings.temperature is None else settings.temperature
        if self.provider == "compatible":
            # Compatible servers know the classic parameter; OpenAI and Azure prefer the new one
            # (the reasoning models refuse `max_tokens`).
            return self.client.chat.completions.create(
                model=model,
                messages=messages,
                response_format=response_format,
                temperature=temperature,
                max_tokens=max_tokens,
            )
        return self.client.chat.completions.create(
            model=model,
            messages=messages,
            response_format=response_format,
            temperature=temperature,
            max_completion_tokens=max_tokens,
        )

    def _wait_before_retry(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt `attempt + 1`: what the server asks, else a backoff.

        Either is capped: a function holding its queue message must not sleep for minutes.
        """
        if retry_after is not None:
            return min(retry_after, self.retry_max_wait_seconds)
        backoff = self.retry_backoff_seconds * 2.0 ** (attempt - 1)
        jitter = 1 - 0.25 * random.random()
        return min(backoff * jitter, self.retry_max_wait_seconds)

    # --- reading the answer -------------------------------------------------------------------

    def _answer_of(
        self, request: LLMRequest, model: str, completion: ChatCompletion
    ) -> tuple[str, str | None]:
        if not completion.choices:
            raise LLMError(
                f"{self.provider} returned no choices (task {request.task!r}, model {model})",
                retryable=True,
            )
        choice = completion.choices[0]
        if choice.message.refusal:
            raise LLMError(
                f"the model refused the {request.task!r} task: {choice.message.refusal[:500]}",
                retryable=False,
            )
        if choice.finish_reason == "content_filter":
            raise LLMError(
                f"the answer to the {request.task!r} task was blocked by the content filter",
                retryable=False,
            )
        return choice.message.content or "", choice.finish_reason

    def _describe_status_error(
        self, exc: openai.APIStatusError, request: LLMRequest, model: str
    ) -> str:
        status = exc.status_code
        reason = PERMANENT_REASONS.get(status, f"answered HTTP {status}")
        if status == 429:
            reason = "is rate limiting (429 Too Many Requests)"
        elif status >= 500:
            reason = f"failed on its side (HTTP {status})"
        detail = _server_message(exc.body)
        text = f"{self.provider} {reason} (task {request.task!r}, model {model})"
        if detail:
            text += f": {detail}"
        return self._redact(text)

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _redact_key_like(text)


# --- helpers -------------------------------------------------------------------------------------


def _message_param(message: LLMMessage) -> ChatCompletionMessageParam:
    if message.role == "system":
        return {"role": "system", "content": message.content}
    if message.role == "assistant":
        return {"role": "assistant", "content": message.content}
    return {"role": "user", "content": message.content}


def _usage_of(completion: ChatCompletion) -> Usage:
    if completion.usage is None:
        return Usage(llm_calls=1)
    return Usage(
        prompt_tokens=completion.usage.prompt_tokens,
        completion_tokens=completion.usage.completion_tokens,
        llm_calls=1,
    )


def _is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES or status >= 500


def _schema_name(task: str) -> str:
    """The task as a json_schema name (letters, digits, `_` and `-`, at most 64 characters)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", task)[:64] or "answer"


def _strip_code_fence(text: str) -> str:
    """The JSON inside a ```json fence, as models in JSON mode sometimes wrap it anyway."""
    match = re.fullmatch(r"\s*```[A-Za-z]*\s*\n(.*?)\n?\s*```\s*", text, flags=re.DOTALL)
    return match.group(1) if match else text


def _server_message(body: object) -> str:
    """The human part of an error body (`{"error": {"message": ...}}`), shortened."""
    message: object = body
    if isinstance(body, Mapping):
        error = body.get("error", body)
        message = error.get("message", error) if isinstance(error, Mapping) else error
    if message is None:
        return ""
    text = message if isinstance(message, str) else json.dumps(message, default=str)
    return text.strip()[:300]


def _redact_key_like(text: str) -> str:
    """Masks what looks like a key or token, even partly masked (`sk-...`, `Bearer ...`)."""
    text = re.sub(r"\bsk-[A-Za-z0-9_\-*]{4,}", "sk-***", text)
    return re.sub(r"(?i)\bbearer\s+[A-Za-z0-9._\-~+/=]{8,}", "Bearer ***", text)


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asks to wait: `retry-after-ms`, else `Retry-After` (seconds or date)."""
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        if math.isfinite(seconds):
            return max(seconds, 0.0)
    value = headers.get("retry-after")
    if value:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(when.timestamp() - time.time(), 0.0)
    return None


def describe_validation_errors(exc: ValidationError) -> list[str]:
    """One line per problem: the field path, what is wrong, and (briefly) what was given."""
    lines = []
    for error in exc.errors(include_url=False):
        path = ".".join(str(part) for part in error["loc"]) or "(the whole answer)"
        line = f"{path}: {error['msg']}"
        if error["type"] not in ("missing", "json_invalid") and "input" in error:
            given = json.dumps(error["input"], default=str)
            line += f" (got {given[:80] + '...' if len(given) > 80 else given})"
        lines.append(line)
    return lines


def repair_instructions(problems: list[str], *, cut_off: bool = False) -> str:
    """The user turn that asks the model to fix its previous answer."""
    text = "Your previous answer is not valid for the required JSON schema. Fix these problems:\n"
    text += "\n".join(f"- {problem}" for problem in problems[:20])
    if cut_off:
        text += "\n- the answer was cut off at the token limit: keep it shorter"
    text += (
        "\nReply with only the corrected JSON object: no explanation, no code fences, and keep "
        "every field that was already right."
    )
    return text


def json_mode_instructions(task: str, response_model: type[BaseModel]) -> str:
    """The system text that describes the expected JSON when only JSON mode is available."""
    schema = json.dumps(response_model.model_json_schema(), separators=(",", ":"))
    return (
        f"Answer with a single JSON object for the task `{task}`, with no prose and no code "
        f"fences. It must validate against this JSON schema:\n{schema}"
    )


def strict_json_schema(response_model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema in the subset strict structured outputs accept.

    Every object forbids extra properties and lists all its properties as required (optional ones
    are nullable or take their default explicitly); `$ref`s with siblings are inlined; keywords
    strict mode rejects are dropped, length limits being kept as words in the description.
    """
    schema = response_model.model_json_schema()
    return cast(dict[str, Any], _make_strict(schema, root=schema))


def _make_strict(node: object, *, root: dict[str, Any]) -> object:
    if isinstance(node, list):
        return [_make_strict(item, root=root) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    ref = node.get("$ref")
    if isinstance(ref, str) and len(node) > 1:
        resolved = _resolve_ref(root, ref)
        node = {**resolved, **{k: v for k, v in node.items() if k != "$ref"}}
    limits = [
        f"{word} {node[key]}"
        for key, word in (("minLength", "minimum length"), ("maxLength", "maximum length"))
        if key in node
    ]
    for key in STRICT_UNSUPPORTED_KEYWORDS:
        node.pop(key, None)
    if limits:
        description = str(node.get("description", "")).strip()
        node["description"] = (description + " " if description else "") + (
            "(" + ", ".join(limits) + ")"
        )
    strict: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "$defs"):
            strict[key] = {name: _make_strict(sub, root=root) for name, sub in value.items()}
        else:
            strict[key] = _make_strict(value, root=root)
    if strict.get("type") == "object" or "properties" in strict:
        strict["additionalProperties"] = False
        strict["required"] = list(strict.get("properties", {}))
    return strict


def _resolve_ref(root: dict[str, Any], ref: str) -> dict[str, Any]:
    if not ref.startswith("#/"):
        raise ValueError(f"unsupported $ref {ref!r}")
    target: Any = root
    for part in ref[2:].split("/"):
        target = target[part]
    return dict(target)
