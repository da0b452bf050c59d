"""TLS to the local Cosmos DB server is verified: against the CA that devstack makes for its state
directory (`COSMOS_CA_CERT`), with no `InsecureRequestWarning`, and a certificate from anywhere
else is refused (so the check is real, not switched off)."""

from __future__ import annotations

import socket
import ssl
import uuid
import warnings
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.core.pipeline.transport import RequestsTransport
from azure.cosmos import CosmosClient
from azure.cosmos.documents import ConnectionPolicy, SSLConfiguration
from urllib3.exceptions import InsecureRequestWarning

from devstack.certs import DevCertificate, ensure_certificate
from devstack.stack import ROOT, StackInfo
from swarm_core.adapters.cosmos import CosmosClients, CosmosUserStore
from swarm_core.models import User
from swarm_core.settings import Settings

# The certificate the npm package serves by default (what the server used before devstack made
# its own): self-signed and unrelated to the stack's CA.
PACKAGE_CERT = ROOT / "node_modules" / "@vercel" / "cosmosdb-server" / "cert.pem"


class VerifyRecorder(RequestsTransport):  # type: ignore[misc]
    """Records what each request is sent with as `verify` (requests: a CA file, True or False)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.verify: list[object] = []

    def send(self, request: Any, **kwargs: Any) -> Any:
        self.verify.append(kwargs.get("connection_verify", "<transport default>"))
        return super().send(request, **kwargs)


def _insecure(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, InsecureRequestWarning)]


@pytest.mark.emulators
def test_settings_of_the_stack_name_its_ca(emulator_stack: StackInfo) -> None:
    ca = Path(emulator_stack.settings["COSMOS_CA_CERT"])
    assert ca == DevCertificate.in_dir(emulator_stack.state_dir).ca
    assert ca.read_text().startswith("-----BEGIN CERTIFICATE-----")


@pytest.mark.emulators
@pytest.mark.parametrize("name", ["127.0.0.1", "localhost"])
def test_the_server_proves_itself_with_the_stacks_certificate(
    emulator_stack: StackInfo, name: str
) -> None:
    context = ssl.create_default_context(cafile=emulator_stack.settings["COSMOS_CA_CERT"])
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    with (
        socket.create_connection(("127.0.0.1", emulator_stack.ports.cosmos), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname=name) as tls,
    ):
        assert tls.version() is not None


@pytest.mark.emulators
def test_a_round_trip_is_verified_and_warns_nothing(emulator_stack: StackInfo) -> None:
    transport = VerifyRecorder()
    settings = Settings(**emulator_stack.settings, COSMOS_DATABASE=f"tls-{uuid.uuid4().hex[:10]}")
    clients = CosmosClients(settings, client_options={"transport": transport})
    users = CosmosUserStore(clients)
    user = User(user_id="u1", username=f"tls-{uuid.uuid4().hex[:8]}", password_hash="h")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clients.ensure_containers()
        users.create_user(user)
        found = users.get_user(user.username)
    assert found is not None and found.username == user.username
    assert _insecure(caught) == []
    assert transport.verify, "requests were sent"
    assert set(transport.verify) == {emulator_stack.settings["COSMOS_CA_CERT"]}


@pytest.mark.emulators
def test_without_the_ca_the_sdk_skips_verification_and_warns(emulator_stack: StackInfo) -> None:
    # What COSMOS_CA_CERT fixes: the SDK's own behaviour for 127.0.0.1 (no check, a warning).
    stack = {k: v for k, v in emulator_stack.settings.items() if k != "COSMOS_CA_CERT"}
    transport = VerifyRecorder()
    clients = CosmosClients(Settings(**stack), client_options={"transport": transport})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        list(clients.client().list_databases())
    assert set(transport.verify) == {False}
    assert _insecure(caught)


@pytest.mark.emulators
@pytest.mark.parametrize("trusted", ["another stack's CA", "the package's certificate"])
def test_a_client_trusting_another_certificate_is_refused(
    emulator_stack: StackInfo, tmp_path: Path, trusted: str
) -> None:
    ca = ensure_certificate(tmp_path).ca if trusted == "another stack's CA" else PACKAGE_CERT
    assert ca.exists()
    stack = emulator_stack.settings
    # Through the app's setting ...
    clients = CosmosClients(Settings(**{**stack, "COSMOS_CA_CERT": str(ca)}))
    with pytest.raises(ServiceRequestError, match="CERTIFICATE_VERIFY_FAILED"):
        clients.ensure_containers()
    # ... and with the SDK's connection policy directly (no setting involved).
    policy = ConnectionPolicy()
    policy.SSLConfiguration = SSLConfiguration()
    policy.SSLConfiguration.SSLCaCerts = str(ca)
    with pytest.raises(ServiceRequestError, match="CERTIFICATE_VERIFY_FAILED"):
        CosmosClient(stack["COSMOS_ENDPOINT"], stack["COSMOS_KEY"], connection_policy=policy)


def test_the_setting_gives_the_client_its_ca_and_nothing_else_changes() -> None:
    calls: list[dict[str, Any]] = []

    def factory(*args: Any, **kwargs: Any) -> object:
        calls.append(kwargs)
        return object()

    endpoint = {"COSMOS_ENDPOINT": "https://127.0.0.1:8081", "COSMOS_KEY": "a2V5"}
    CosmosClients(Settings(**endpoint), client_factory=factory).client()  # type: ignore[arg-type]
    CosmosClients(
        Settings(**endpoint, COSMOS_CA_CERT="/dev/ca.pem"),
        client_factory=factory,  # type: ignore[arg-type]
        client_options={"retry_total": 1},
    ).client()
    unset, set_ = calls
    assert "ssl_config" not in unset
    assert set_.keys() - unset.keys() == {"retry_total", "ssl_config"}
    tls = set_["ssl_config"]
    assert isinstance(tls, SSLConfiguration)
    assert (tls.SSLCaCerts, tls.SSLCertFile, tls.SSLKeyFile) == ("/dev/ca.pem", None, None)


def test_the_certificate_is_made_once_per_state_directory(tmp_path: Path) -> None:
    first = ensure_certificate(tmp_path)
    contents = {p: p.read_bytes() for p in (first.ca, first.cert, first.key)}
    assert ensure_certificate(tmp_path) == first
    assert {p: p.read_bytes() for p in contents} == contents, "reused, not made again"
    assert first.key.stat().st_mode & 0o077 == 0, "the key is private"
    first.key.unlink()  # an incomplete set is replaced as a whole
    again = ensure_certificate(tmp_path)
    assert again.ca.read_bytes() != contents[first.ca]
    assert again.key.exists()
