"""The OpenAI adapter driven through the real `openai` client against a local fake server.

`fake_openai_server.FakeOpenAIServer` speaks the chat completions API over real HTTP on a free
port; the adapter is configured the way an operator would (OPENAI_BASE_URL-style settings), so
these tests cover the request shapes, the repair loop, retries and their waits, the mapping of
failures to `LLMError`, provider selection, and a whole swarm run on the adapter.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import openai
import pytest
from azure.core.credentials import AccessToken

from swarm_core.actions.schemas import RESPONSE_MODELS
from swarm_core.adapters.openai_llm import (
    LLMConfigurationError,
    LLMProviderSettings,
    OpenAIChatModel,
    build_language_model,
    load_llm_provider_settings,
    parse_retry_after,
)
from swarm_core.bootstrap import build_in_memory
from swarm_core.llm import LLMError, LLMMessage, LLMRequest
from swarm_core.models import LLMSettings, SwarmConfig
from swarm_core.settings import SettingsError
from tests.integration.fake_openai_server import FakeOpenAIServer, RecordedRequest, Reply

SECRET_KEY = "sk-test-secret-0123456789abcdef"

VALID_PLAN = {
    "rationale": "Two parts cover it.",
    "questions": [],
    "subtasks": [
        {"name": "Research", "directive": "Find the facts.", "action": "execute"},
        {"name": "Write", "directive": "Write it up.", "action": "execute"},
    ],
}

ENV_NAMES = [
    "LLM_PROVIDER",
    "OPENAI_API_KEY",
    "OPENAI_MODEL",
    "OPENAI_BASE_URL",
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_DEPLOYMENT",
    "AZURE_OPENAI_API_VERSION",
    "AZURE_OPENAI_API_KEY",
    "LLM_STRUCTURED_OUTPUT",
    "LLM_MAX_REPAIRS",
    "LLM_MAX_RETRIES",
    "LLM_TIMEOUT_SECONDS",
    "LLM_RETRY_BACKOFF_SECONDS",
    "LLM_RETRY_MAX_WAIT_SECONDS",
    "OPENAI_API_VERSION",
    "AZURE_OPENAI_AD_TOKEN",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "OPENAI_CUSTOM_HEADERS",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No model settings from the machine leak into a test."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


def compatible_settings(server: FakeOpenAIServer, **overrides: Any) -> LLMProviderSettings:
    values: dict[str, Any] = {
        "openai_base_url": server.base_url,
        "openai_api_key": SECRET_KEY,
        "openai_model": "fake-model",
        "llm_timeout_seconds": 5.0,
        "llm_retry_backoff_seconds": 0.01,
    }
    values.update(overrides)
    return LLMProviderSettings(**values)


def adapter(server: FakeOpenAIServer, **overrides: Any) -> OpenAIChatModel:
    model = build_language_model(compatible_settings(server, **overrides))
    assert isinstance(model, OpenAIChatModel)
    return model


def plan_request(**settings: Any) -> LLMRequest:
    llm_settings = LLMSettings(**settings)
    # As `prompts.build_messages` writes it: the system prompt is the request's first message.
    system = llm_settings.system_prompt or "You plan work for a swarm of agents."
    return LLMRequest(
        task="plan",
        messages=[
            LLMMessage(role="system", content=system),
            LLMMessage(role="user", content="Goal: plan a 3-day trip to Lisbon."),
        ],
        settings=llm_settings,
        swarm_id="swarm-1",
        node_id="node-1",
        op_id="op-1",
    )


# --- success and request shapes -----------------------------------------------------------------


def test_success_returns_the_validated_answer_with_usage(server: FakeOpenAIServer) -> None:
    server.push(Reply(json.dumps(VALID_PLAN), prompt_tokens=120, completion_tokens=45))

    result = adapter(server).complete(plan_request(), RESPONSE_MODELS["plan"])

    assert result.data == VALID_PLAN
    assert json.loads(result.content) == VALID_PLAN
    assert result.model == "fake-model"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (120, 45)
    assert result.usage.llm_calls == 1
    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {SECRET_KEY}"


def test_json_schema_request_shape(server: FakeOpenAIServer) -> None:
    server.push(Reply(json.dumps(VALID_PLAN)))
    model = adapter(server, llm_structured_output="json_schema")

    model.complete(
        plan_request(
            model="node-model", temperature=0.2, max_tokens=500, system_prompt="Be terse."
        ),
        RESPONSE_MODELS["plan"],
    )

    body = server.requests[0].body
    assert body["model"] == "node-model"
    assert body["temperature"] == 0.2
    assert body["max_tokens"] == 500  # compatible servers get the classic parameter
    assert body["messages"][0] == {"role": "system", "content": "Be terse."}
    assert [m["role"] for m in body["messages"]] == ["system", "user"]  # one system message
    response_format = body["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "plan"
    assert response_format["json_schema"]["strict"] is True
    schema = response_format["json_schema"]["schema"]
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["rationale", "questions", "subtasks"]
    subtask = schema["$defs"]["Subtask"]
    assert subtask["additionalProperties"] is False
    assert "maxLength" not in json.dumps(schema) and "default" not in json.dumps(schema)


def test_json_object_request_shape(server: FakeOpenAIServer) -> None:
    server.push(Reply("```json\n" + json.dumps(VALID_PLAN) + "\n```"))
    model = adapter(server)  # compatible servers default to JSON mode
    assert model.structured_output == "json_object"

    result = model.complete(plan_request(system_prompt="Be terse."), RESPONSE_MODELS["plan"])

    assert result.data == VALID_PLAN  # a code fence around the JSON is tolerated
    body = server.requests[0].body
    assert body["response_format"] == {"type": "json_object"}
    assert body["model"] == "fake-model"
    assert "temperature" not in body and "max_tokens" not in body
    system = body["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith("Be terse.")
    assert "for the task `plan`" in system["content"]
    assert '"subtasks"' in system["content"]  # the schema is described to the model
    assert server.requests[0].task == "plan"


def test_the_adapter_adds_no_system_prompt_of_its_own(server: FakeOpenAIServer) -> None:
    """The system prompt is the prompt builder's: `settings.system_prompt` is not sent again."""
    server.push(Reply(json.dumps(VALID_PLAN)), Reply(json.dumps(VALID_PLAN)))
    request = LLMRequest(
        task="plan",
        messages=[
            LLMMessage(role="system", content="From the prompt builder."),
            LLMMessage(role="user", content="Goal: plan a 3-day trip to Lisbon."),
        ],
        settings=LLMSettings(system_prompt="Be terse."),
    )

    adapter(server, llm_structured_output="json_schema").complete(request, RESPONSE_MODELS["plan"])
    adapter(server, llm_structured_output="json_object").complete(request, RESPONSE_MODELS["plan"])

    schema_call, object_call = server.requests
    assert schema_call.messages == [
        {"role": "system", "content": "From the prompt builder."},
        {"role": "user", "content": "Goal: plan a 3-day trip to Lisbon."},
    ]
    assert [m["role"] for m in object_call.messages] == ["system", "user"]
    system = object_call.messages[0]["content"]
    assert system.startswith("From the prompt builder.\n\nAnswer with a single JSON object")
    assert "for the task `plan`" in system
    assert "Be terse." not in json.dumps(schema_call.body) + json.dumps(object_call.body)


def test_json_mode_inserts_a_system_message_when_the_request_has_none(
    server: FakeOpenAIServer,
) -> None:
    server.push(Reply(json.dumps({"report": "done"})))

    adapter(server).complete(
        LLMRequest(task="execute", messages=[LLMMessage(role="user", content="Do it.")]),
        RESPONSE_MODELS["execute"],
    )

    messages = server.requests[0].messages
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"].startswith("Answer with a single JSON object")
    assert server.requests[0].task == "execute"


def test_openai_provider_sends_max_completion_tokens(server: FakeOpenAIServer) -> None:
    server.push(Reply(json.dumps({"report": "done"})))
    model = adapter(server, llm_provider="openai")
    assert model.structured_output == "json_schema"

    model.complete(
        LLMRequest(
            task="execute",
            messages=[LLMMessage(role="user", content="Do it.")],
            settings=LLMSettings(max_tokens=300),
        ),
        RESPONSE_MODELS["execute"],
    )

    body = server.requests[0].body
    assert body["max_completion_tokens"] == 300 and "max_tokens" not in body


# --- repair ---------------------------------------------------------------------------------------


def test_malformed_answer_is_repaired_on_the_second_try(server: FakeOpenAIServer) -> None:
    bad = {**VALID_PLAN, "subtasks": [{"name": "Research", "directive": "x", "action": "research"}]}
    server.push(
        Reply(json.dumps(bad), prompt_tokens=100, completion_tokens=30),
        Reply(json.dumps(VALID_PLAN), prompt_tokens=150, completion_tokens=40),
    )

    result = adapter(server).complete(plan_request(), RESPONSE_MODELS["plan"])

    assert result.data == VALID_PLAN
    assert result.usage.llm_calls == 2
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (250, 70)
    first, second = server.requests
    *_, assistant, repair = second.messages
    assert second.messages[: len(first.messages)] == first.messages
    assert assistant == {"role": "assistant", "content": json.dumps(bad)}
    assert repair["role"] == "user"
    assert "subtasks.0.action" in repair["content"]
    assert "'research'" in repair["content"] or '"research"' in repair["content"]
    assert "only the corrected JSON" in repair["content"]


def test_invalid_json_is_repaired(server: FakeOpenAIServer) -> None:
    server.push(Reply("Sure! Here is the plan: {rationale: ..."), Reply(json.dumps(VALID_PLAN)))

    result = adapter(server).complete(plan_request(), RESPONSE_MODELS["plan"])

    assert result.data == VALID_PLAN
    repair = server.requests[1].messages[-1]["content"]
    assert "Invalid JSON" in repair


def test_repairs_are_bounded_then_a_permanent_error(server: FakeOpenAIServer) -> None:
    server.responder = lambda _request: Reply(json.dumps({"rationale": 42}))

    with pytest.raises(LLMError) as caught:
        adapter(server, llm_max_repairs=2).complete(plan_request(), RESPONSE_MODELS["plan"])

    assert caught.value.retryable is False
    assert len(server.requests) == 3  # the call and two repairs
    assert "rationale" in str(caught.value) and "2 repair" in str(caught.value)


# --- transient and permanent failures -----------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "wait"), [({"Retry-After": "0.3"}, 0.3), ({"retry-after-ms": "250"}, 0.25)]
)
def test_429_waits_as_told_then_succeeds(
    server: FakeOpenAIServer, headers: dict[str, str], wait: float
) -> None:
    # a long backoff proves the server's shorter wait is the one used
    server.push(Reply.error(429, "Rate limit reached", headers), Reply(json.dumps(VALID_PLAN)))

    result = adapter(server, llm_retry_backoff_seconds=5).complete(
        plan_request(), RESPONSE_MODELS["plan"]
    )

    assert result.data == VALID_PLAN
    assert result.usage.llm_calls == 1
    first, second = server.requests
    assert wait <= second.at - first.at < wait + 1.0


def test_a_long_retry_after_is_capped(server: FakeOpenAIServer) -> None:
    server.push(
        Reply.error(429, "Rate limit reached", {"Retry-After": "120"}),
        Reply(json.dumps(VALID_PLAN)),
    )

    result = adapter(server, llm_retry_max_wait_seconds=0.2).complete(
        plan_request(), RESPONSE_MODELS["plan"]
    )

    assert result.data == VALID_PLAN
    first, second = server.requests
    assert 0.2 <= second.at - first.at < 1.5


def test_parse_retry_after() -> None:
    future = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert 15 < (parse_retry_after({"retry-after": future}) or 0) <= 20
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_persistent_500_gives_up_retryable_after_bounded_retries(
    server: FakeOpenAIServer,
) -> None:
    server.responder = lambda _request: Reply.error(500, "The server had an error")
    built = adapter(server)
    waits: list[float] = []
    model = OpenAIChatModel(
        built.client,
        default_model="fake-model",
        max_retries=3,
        retry_backoff_seconds=0.1,
        sleep=waits.append,
    )

    with pytest.raises(LLMError) as caught:
        model.complete(plan_request(), RESPONSE_MODELS["plan"])

    assert caught.value.retryable is True
    assert len(server.requests) == 4  # one call and three retries
    assert "500" in str(caught.value) and "4 attempt" in str(caught.value)
    # exponential backoff with up to 25 % jitter: about 0.1, 0.2, 0.4 s
    assert len(waits) == 3
    for wait, nominal in zip(waits, (0.1, 0.2, 0.4), strict=True):
        assert 0.75 * nominal <= wait <= nominal


def test_401_is_permanent_and_never_shows_the_key(
    server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.push(Reply.error(401, f"Incorrect API key provided: {SECRET_KEY}."))
    caplog.set_level(logging.DEBUG)

    with pytest.raises(LLMError) as caught:
        adapter(server).complete(plan_request(), RESPONSE_MODELS["plan"])

    assert caught.value.retryable is False
    assert len(server.requests) == 1
    assert "401" in str(caught.value) and "Incorrect API key" in str(caught.value)
    assert SECRET_KEY not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert SECRET_KEY not in caplog.text


@pytest.mark.parametrize("status", [400, 403, 404, 422])
def test_client_errors_are_permanent(server: FakeOpenAIServer, status: int) -> None:
    server.push(Reply.error(status, "nope"))

    with pytest.raises(LLMError) as caught:
        adapter(server).complete(plan_request(), RESPONSE_MODELS["plan"])

    assert caught.value.retryable is False
    assert len(server.requests) == 1
    assert str(status) in str(caught.value)


def test_timeout_is_retryable(server: FakeOpenAIServer) -> None:
    server.responder = lambda _request: Reply(json.dumps(VALID_PLAN), delay=3.0)
    started = time.monotonic()

    with pytest.raises(LLMError) as caught:
        adapter(server, llm_timeout_seconds=0.3, llm_max_retries=1).complete(
            plan_request(), RESPONSE_MODELS["plan"]
        )

    assert caught.value.retryable is True
    assert len(server.requests) == 2
    assert time.monotonic() - started < 2.5
    assert "timeout" in str(caught.value)


def test_connection_refused_is_retryable() -> None:
    with FakeOpenAIServer() as gone:
        url = gone.base_url
    model = build_language_model(
        LLMProviderSettings(openai_base_url=url, llm_max_retries=1, llm_retry_backoff_seconds=0.01)
    )

    with pytest.raises(LLMError) as caught:
        model.complete(plan_request(), RESPONSE_MODELS["plan"])

    assert caught.value.retryable is True
    assert "could not be reached" in str(caught.value)


# --- configuration and provider selection ------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com"}, "AZURE_OPENAI_DEPLOYMENT"),
        ({"AZURE_OPENAI_DEPLOYMENT": "gpt-4o-mini"}, "AZURE_OPENAI_ENDPOINT"),
        ({"AZURE_OPENAI_API_KEY": "k" * 32}, "AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_DEPLOYMENT"),
        ({"LLM_PROVIDER": "azure_openai"}, "AZURE_OPENAI_ENDPOINT"),
        ({"LLM_PROVIDER": "openai"}, "OPENAI_API_KEY"),
        ({"LLM_PROVIDER": "compatible"}, "OPENAI_BASE_URL"),
        ({"OPENAI_BASE_URL": "localhost:11434/v1"}, "OPENAI_BASE_URL must be an http(s) URL"),
        ({"LLM_MAX_RETRIES": "many"}, "LLM_MAX_RETRIES"),
        ({"LLM_PROVIDER": "anthropic"}, "LLM_PROVIDER"),
    ],
)
def test_incomplete_configuration_is_a_clear_startup_error(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(LLMConfigurationError) as caught:
        build_language_model(load_llm_provider_settings())

    assert isinstance(caught.value, ValueError)
    assert expected in str(caught.value)
    assert "k" * 32 not in str(caught.value)


def test_offline_when_nothing_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from swarm_core.adapters.offline_llm import OfflineScriptedLLM

    monkeypatch.setenv("OPENAI_MODEL", "gpt-4o")  # a model alone selects nothing
    assert isinstance(build_language_model(load_llm_provider_settings()), OfflineScriptedLLM)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET_KEY)
    monkeypatch.setenv("LLM_PROVIDER", "offline")
    assert isinstance(build_language_model(load_llm_provider_settings()), OfflineScriptedLLM)


def test_openai_from_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET_KEY)
    monkeypatch.setenv("LLM_MAX_RETRIES", "5")

    model = build_language_model(load_llm_provider_settings())

    assert isinstance(model, OpenAIChatModel)
    assert (model.provider, model.default_model, model.structured_output) == (
        "openai",
        "gpt-4o-mini",
        "json_schema",
    )
    assert str(model.client.base_url) == "https://api.openai.com/v1/"
    assert model.client.max_retries == 0  # the adapter's retries are the only ones
    assert model.max_retries == 5
    assert SECRET_KEY not in repr(load_llm_provider_settings())


def test_compatible_from_the_base_url_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:11434/v1")
    monkeypatch.setenv("OPENAI_MODEL", "llama3.1")

    model = build_language_model(load_llm_provider_settings())

    assert isinstance(model, OpenAIChatModel)
    assert (model.provider, model.default_model, model.structured_output) == (
        "compatible",
        "llama3.1",
        "json_object",
    )
    assert str(model.client.base_url) == "http://localhost:11434/v1/"


@pytest.mark.parametrize("with_key", [True, False])
def test_azure_builds_an_azure_client(monkeypatch: pytest.MonkeyPatch, with_key: bool) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.com/")
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT", "my-gpt-4o")
    monkeypatch.setenv("OPENAI_API_KEY", SECRET_KEY)  # Azure settings win over OpenAI's
    if with_key:
        monkeypatch.setenv("AZURE_OPENAI_API_KEY", "a" * 32)

    # constructs only: no network (and no token asked for)
    model = build_language_model(
        load_llm_provider_settings(), azure_credential=FakeCredential("entra-token-value")
    )

    assert isinstance(model, OpenAIChatModel)
    assert isinstance(model.client, openai.AzureOpenAI)
    assert (model.provider, model.default_model, model.structured_output) == (
        "azure_openai",
        "my-gpt-4o",
        "json_schema",
    )
    assert model.client.max_retries == 0


def azure_settings(server: FakeOpenAIServer, **overrides: Any) -> LLMProviderSettings:
    values: dict[str, Any] = {
        "azure_openai_endpoint": server.origin,
        "azure_openai_deployment": "dep-1",
        "azure_openai_api_version": "2024-10-21",
    }
    values.update(overrides)
    return LLMProviderSettings(**values)


def test_azure_with_a_key_calls_the_deployment(server: FakeOpenAIServer) -> None:
    server.push(Reply(json.dumps(VALID_PLAN)), Reply(json.dumps(VALID_PLAN)))
    model = build_language_model(azure_settings(server, azure_openai_api_key="a" * 32))

    model.complete(plan_request(), RESPONSE_MODELS["plan"])
    model.complete(plan_request(model="other-dep"), RESPONSE_MODELS["plan"])

    first, second = server.requests
    assert first.path == "/openai/deployments/dep-1/chat/completions?api-version=2024-10-21"
    assert first.headers["api-key"] == "a" * 32
    assert second.path.startswith("/openai/deployments/other-dep/chat/completions")


class FakeCredential:
    """A token credential that hands out a fixed token, or fails like a missing identity."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **_kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        if self.token is None:
            raise RuntimeError("DefaultAzureCredential failed to retrieve a token")
        return AccessToken(self.token, int(time.time()) + 3600)


def test_azure_with_entra_id_sends_a_bearer_token(server: FakeOpenAIServer) -> None:
    server.push(Reply(json.dumps(VALID_PLAN)))
    credential = FakeCredential("entra-token-value")
    model = OpenAIChatModel.from_settings(azure_settings(server), azure_credential=credential)

    model.complete(plan_request(), RESPONSE_MODELS["plan"])

    assert server.requests[0].headers["authorization"] == "Bearer entra-token-value"
    assert credential.scopes == [("https://cognitiveservices.azure.com/.default",)]


def test_azure_with_entra_id_needs_the_credential_it_is_given(server: FakeOpenAIServer) -> None:
    with pytest.raises(LLMConfigurationError) as caught:
        build_language_model(azure_settings(server))  # no key and no credential

    assert isinstance(caught.value, SettingsError)  # 503 from the API, like any setting
    assert "AZURE_OPENAI_API_KEY" in str(caught.value) and "credential" in str(caught.value)

    model = build_language_model(azure_settings(server), azure_credential=FakeCredential("t"))
    assert isinstance(model, OpenAIChatModel)
    assert server.requests == []


def test_azure_entra_id_failure_is_a_retryable_error(server: FakeOpenAIServer) -> None:
    model = OpenAIChatModel.from_settings(
        azure_settings(server), azure_credential=FakeCredential(None)
    )

    with pytest.raises(LLMError) as caught:
        model.complete(plan_request(), RESPONSE_MODELS["plan"])

    assert caught.value.retryable is True
    assert "Entra ID" in str(caught.value)
    assert server.requests == []


# --- a whole swarm --------------------------------------------------------------------------------


def task_responder(leaf_actions: tuple[str, str]) -> Callable[[RecordedRequest], Reply]:
    """Valid answers per task: the root plans two leaves, leaves report, reviews report."""
    plan = {
        "rationale": "Two parts cover it.",
        "questions": [],
        "subtasks": [
            {"name": f"Part {i}", "directive": f"Do part {i} of the goal.", "action": action}
            for i, action in enumerate(leaf_actions, start=1)
        ],
    }
    answers: dict[str, dict[str, Any]] = {
        "plan": plan,
        "execute": {"report": "The part is done: three concrete findings."},
        "review": {
            "decision": "report",
            "report": "Consolidated: every part is done.",
            "subtasks": [],
        },
        "ask": {"message": "What budget do you have in mind?"},
        "judge": {"sufficient": True, "follow_up": None, "report": "The user wants a mid budget."},
    }

    def respond(request: RecordedRequest) -> Reply:
        if request.task not in answers:
            return Reply.error(400, f"unknown task {request.task!r}")
        return Reply(json.dumps(answers[request.task]), prompt_tokens=50, completion_tokens=20)

    return respond


@pytest.mark.parametrize(
    ("structured_output", "leaf_actions"),
    [("json_schema", ("execute", "execute")), ("json_object", ("execute", "ask_user"))],
)
def test_a_whole_swarm_runs_through_the_adapter(
    structured_output: str, leaf_actions: tuple[str, str]
) -> None:
    from swarm_core.demo import run_swarm

    with FakeOpenAIServer(responder=task_responder(leaf_actions)) as server:
        llm = build_language_model(
            compatible_settings(server, llm_structured_output=structured_output)
        )
        run = run_swarm(
            "Plan a 3-day trip to Lisbon",
            llm=llm,
            answer=lambda node_name, question: (
                "A mid-range budget of about 900 EUR, good food and some culture every day."
            ),
        )

    assert run.status == "completed", run.final_report
    assert run.final_report == "Consolidated: every part is done."
    tasks = [request.task for request in server.requests]
    assert tasks.count("plan") == 1
    assert tasks.count("review") == 1
    assert tasks.count("execute") == leaf_actions.count("execute")
    if "ask_user" in leaf_actions:
        assert run.questions and "judge" in tasks


@pytest.mark.parametrize("structured_output", ["json_schema", "json_object"])
def test_the_swarm_system_prompt_reaches_the_wire_once(structured_output: str) -> None:
    """From the step to the wire: the swarm's system prompt is the one system message sent."""
    with FakeOpenAIServer(responder=task_responder(("execute", "execute"))) as server:
        model = build_language_model(
            compatible_settings(server, llm_structured_output=structured_output)
        )
        app = build_in_memory(llm=model)
        swarm = app.services.create_swarm(
            "u1", "Plan a trip", SwarmConfig(llm=LLMSettings(system_prompt="Be terse."))
        )
        app.services.spawn("u1", swarm.swarm_id)
        for _ in range(50):
            if server.requests:
                break
            m = app.adapters.queue.receive()
            assert m is not None, "the queue ran dry before any LLM call"
            app.worker.process(m.body)
            app.adapters.queue.ack(m)

    assert server.requests, "no chat completion reached the server"
    first = server.requests[0]
    assert first.task == "plan"
    systems = [m for m in first.messages if m["role"] == "system"]
    assert len(systems) == 1
    assert first.messages[0] == systems[0]
    assert systems[0]["content"].startswith("Be terse.")
    if structured_output == "json_object":
        assert "for the task `plan`" in systems[0]["content"]
    else:
        assert first.body["response_format"]["type"] == "json_schema"
