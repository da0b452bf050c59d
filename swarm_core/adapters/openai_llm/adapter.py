"""`OpenAIChatModel`, the LLM port (`swarm_core.llm.LanguageModel`) on the chat completions API.

One `complete` sends the request's messages as they are (the system prompt is the prompt
builder's, `swarm_core.actions.prompts.build_messages`; in JSON mode the schema instructions are
appended to the request's first system message) and asks for structured output: a strict JSON
schema, or JSON mode. It validates the answer with the task's pydantic model, and when it does not
validate sends a repair turn that names exactly what to fix, up to `max_repairs` times. Transient
failures (429, 408, 409, 5xx, timeouts, connection errors) are retried here with exponential
backoff honouring `Retry-After` (the SDK client's own retries are off); what is still failing
becomes `LLMError(retryable=True)` for the queue to retry the step, and a request the server
refuses (400/401/403/404/422) becomes `LLMError(retryable=False)`. What it writes about a failed
call (error messages, log lines) is scrubbed of the configured keys and of anything that looks
like a key or a bearer token.
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
from typing import TYPE_CHECKING

import openai
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from openai.types.chat.completion_create_params import ResponseFormat
from pydantic import BaseModel, ValidationError

from swarm_core.adapters.openai_llm.client import build_openai_client
from swarm_core.adapters.openai_llm.schema import (
    describe_validation_errors,
    json_mode_instructions,
    repair_instructions,
    schema_name,
    strict_json_schema,
)
from swarm_core.llm import LLMError, LLMMessage, LLMRequest, LLMResult, json_text
from swarm_core.models import Usage
from swarm_core.settings import LLMProviderSettings, Provider, StructuredOutput

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

logger = logging.getLogger(__name__)

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
        """The adapter for the provider `settings` select (not the offline one).

        Azure OpenAI without a key signs in with `azure_credential`; LLMConfigurationError when
        none is given, or when the settings are incomplete.
        """
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
                validated = response_model.model_validate_json(json_text(content))
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
        """The request's messages; in JSON mode with the schema instructions in the system text.

        The system prompt is the request's own (written by the prompt builder): the adapter adds
        none, so a call carries exactly the system messages the request has (one, from
        `build_messages`); in JSON mode, a request without one gets one with the instructions.
        """
        messages = list(request.messages)
        if self.structured_output == "json_object":
            instructions = json_mode_instructions(request.task, response_model)
            first = next((i for i, m in enumerate(messages) if m.role == "system"), None)
            if first is None:
                messages.insert(0, LLMMessage(role="system", content=instructions))
            else:
                content = f"{messages[first].content}\n\n{instructions}"
                messages[first] = LLMMessage(role="system", content=content)
        return [_message_param(m) for m in messages]

    def _response_format(self, task: str, response_model: type[BaseModel]) -> ResponseFormat:
        if self.structured_output == "json_object":
            return {"type": "json_object"}
        return {
            "type": "json_schema",
            "json_schema": {
                "name": schema_name(task),
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
