"""How the SDK clients are built to talk HTTP (swarm_core/adapters/sdk_http.py)."""

from __future__ import annotations

import pytest

from swarm_core.adapters import sdk_http


def test_without_a_proxy_in_the_environment_requests_do_not_scan_it(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    options = sdk_http.client_options()
    assert options["connection_timeout"] == sdk_http.CONNECT_TIMEOUT_SECONDS
    assert options["read_timeout"] == sdk_http.READ_TIMEOUT_SECONDS
    transport = options["transport"]
    transport.open()
    try:
        assert transport.session.trust_env is False
    finally:
        transport.close()


@pytest.mark.parametrize("name", ["HTTPS_PROXY", "https_proxy", "ALL_PROXY"])
def test_with_a_proxy_in_the_environment_requests_honour_it(monkeypatch, name):
    monkeypatch.setenv(name, "http://proxy.example:3128")
    transport = sdk_http.client_options()["transport"]
    transport.open()
    try:
        assert transport.session.trust_env is True
    finally:
        transport.close()


def test_given_options_win():
    mine = object()
    options = sdk_http.client_options(transport=mine, read_timeout=1)
    assert options["transport"] is mine and options["read_timeout"] == 1
