"""Schemathesis against the running dev host: every operation of the OpenAPI document, every
check (`--checks all`: no 5xx, statuses, content types and bodies as documented, schema-valid
input accepted and schema-invalid input refused, authentication enforced), with bounded examples
and a fixed seed so CI stays fast and repeatable. Exceptions are in `schemathesis.toml`, each
with its reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from swarm_core.openapi import OPERATIONS
from tests.e2e.test_end_to_end import DevHost, host, user  # noqa: F401 - `host` is a fixture

pytestmark = pytest.mark.emulators

CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = 15
SEED = 20261128


def test_the_api_does_what_its_openapi_document_says(host: DevHost) -> None:  # noqa: F811
    token = user(host)
    api = host.base.removesuffix("/api")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(CONFIG),
            "--no-color",
            "run",
            f"{host.base}/openapi.json",
            "--url",
            api,
            "--checks",
            "all",
            "--header",
            f"Authorization: Bearer {token}",
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            str(SEED),
            # Logging out revokes every token of the user, the one this run uses included;
            # tests/unit/test_http_api.py covers it.
            "--exclude-path",
            "/api/auth/logout",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = result.stdout[-6000:]
    print(summary)
    assert result.returncode == 0, summary + result.stderr[-2000:]
    every_but_logout = len(OPERATIONS) - 1
    assert f"Tested: {every_but_logout}" in summary, "every operation was reached"
