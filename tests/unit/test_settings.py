"""Settings: outside development the app refuses a missing or placeholder secret and weak bcrypt."""

from __future__ import annotations

import json

import azure.functions as func
import pytest

from swarm_core.entrypoints import http_api
from swarm_core.runtime import use_app
from swarm_core.settings import Settings, SettingsError, load_settings

GOOD_SECRET = "k" * 40


@pytest.mark.parametrize("secret", ["", "change-me", "secret", "short"])
def test_production_refuses_a_missing_or_placeholder_secret(secret):
    with pytest.raises(SettingsError, match="AUTH_SECRET"):
        load_settings(SWARM_ENV="production", AUTH_SECRET=secret)


def test_production_refuses_cheap_bcrypt():
    with pytest.raises(SettingsError, match="BCRYPT_ROUNDS"):
        load_settings(SWARM_ENV="production", AUTH_SECRET=GOOD_SECRET, BCRYPT_ROUNDS=10)
    assert load_settings(SWARM_ENV="production", AUTH_SECRET=GOOD_SECRET).bcrypt_rounds == 12


def test_development_runs_without_a_secret():
    assert Settings(SWARM_ENV="development").auth_secret == ""


def test_the_api_answers_503_not_500_when_misconfigured(monkeypatch):
    monkeypatch.setenv("SWARM_ENV", "production")
    monkeypatch.setenv("AUTH_SECRET", "change-me")
    use_app(None)
    try:
        req = func.HttpRequest(
            method="GET",
            url="http://localhost/api/me",
            body=b"",
            headers={"authorization": "Bearer x"},
        )
        resp = http_api.me(req)
        assert resp.status_code == 503
        assert "AUTH_SECRET" in json.loads(resp.get_body())["detail"]
    finally:
        use_app(None)


def test_missing_service_settings_are_named():
    with pytest.raises(SettingsError, match="COSMOS_ENDPOINT"):
        Settings().require("cosmos_endpoint")
