"""The Web PubSub dev emulator and the app's publisher, driven by the official SDKs over sockets.

The service SDK (`WebPubSubServiceClient`) calls the emulator's REST API and the client SDK
(`WebPubSubClient`) connects to its WebSocket endpoint with the reliable JSON subprotocol, exactly
as they would talk to Azure. Every test uses its own swarm/group/user names, so one emulator serves
the whole module. Waits are queue gets with timeouts, never sleeps.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import secrets
import select
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.messaging.webpubsubclient import WebPubSubClient
from azure.messaging.webpubsubclient.models import (
    CallbackType,
    OnConnectedArgs,
    OnGroupDataMessageArgs,
    OnServerDataMessageArgs,
    OpenClientError,
    SendMessageError,
    WebPubSubDataType,
    WebPubSubProtocolType,
)
from azure.messaging.webpubsubservice import WebPubSubServiceClient
from websockets.sync.client import connect as websocket_connect

from devstack.certs import DevCertificate, ensure_certificate
from devstack.identity import DevCredential, DevTokenIssuer
from devstack.webpubsub_emulator import EmulatorHandle, start_in_thread, tls_context
from swarm_core.adapters.webpubsub import WebPubSubEventPublisher, group_for_swarm

pytestmark = pytest.mark.emulators

HUB = "swarms"
WAIT = 5.0  # seconds; generous for a loaded CI machine, instant when things work
REPO_ROOT = Path(__file__).resolve().parents[2]


def fresh_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorHandle]:
    handle = start_in_thread("127.0.0.1", 0, access_key=fresh_key())
    yield handle
    handle.stop()


@pytest.fixture
def service(emulator: EmulatorHandle) -> WebPubSubServiceClient:
    return WebPubSubServiceClient.from_connection_string(emulator.connection_string, hub=HUB)


@pytest.fixture
def publisher(emulator: EmulatorHandle) -> WebPubSubEventPublisher:
    return WebPubSubEventPublisher(hub=HUB, connection_string=emulator.connection_string)


class Listener:
    """A client SDK connection whose callbacks land in queues the test can wait on."""

    def __init__(self, url: str, **options: Any) -> None:
        # No retries and short timeouts: a refusal or a lost reply should fail the test fast.
        self.client = WebPubSubClient(
            url,
            **options,
            message_retry_total=0,
            reconnect_retry_total=0,
            start_timeout=WAIT,
            ack_timeout=WAIT,
        )
        self.group_messages: queue.Queue[OnGroupDataMessageArgs] = queue.Queue()
        self.server_messages: queue.Queue[OnServerDataMessageArgs] = queue.Queue()
        self.connections: queue.Queue[OnConnectedArgs] = queue.Queue()
        self.client.subscribe(CallbackType.GROUP_MESSAGE, self.group_messages.put)
        self.client.subscribe(CallbackType.SERVER_MESSAGE, self.server_messages.put)
        self.client.subscribe(CallbackType.CONNECTED, self.connections.put)

    def next_group_message(self) -> OnGroupDataMessageArgs:
        return self.group_messages.get(timeout=WAIT)

    def next_server_message(self) -> OnServerDataMessageArgs:
        return self.server_messages.get(timeout=WAIT)

    def connection_id(self) -> str:
        connected = self.connections.get(timeout=WAIT)
        self.connections.put(connected)  # keep it for the next caller
        return str(connected.connection_id)


@contextmanager
def listening(url: str, **options: Any) -> Iterator[Listener]:
    listener = Listener(url, **options)
    listener.client.open()
    try:
        yield listener
    finally:
        listener.client.close()


def refuses_connection(url: str) -> bool:
    client = WebPubSubClient(url, reconnect_retry_total=0, start_timeout=WAIT)
    try:
        client.open()
    except OpenClientError:
        return True
    client.close()
    return False


def rest_status(
    url: str, token: str | None, method: str = "HEAD", context: ssl.SSLContext | None = None
) -> int:
    request = urllib.request.Request(url, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=WAIT, context=context) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


# --- the app's publisher and receive-only client URLs ---------------------------------------


def test_client_url_receives_the_events_published_for_its_swarm(
    publisher: WebPubSubEventPublisher,
) -> None:
    swarm_id = unique("swarm")
    url, expires_at = publisher.client_access_url("user-1", swarm_id, minutes=30)
    assert timedelta(minutes=29) < expires_at - datetime.now(UTC) <= timedelta(minutes=30)
    events = [
        {"type": "swarm.status", "swarm_id": swarm_id, "seq": 1, "at": "t1", "data": {}},
        {"type": "node.spawned", "swarm_id": swarm_id, "seq": 2, "at": "t2", "data": {"n": 1}},
    ]

    with listening(url) as listener:
        publisher.publish(swarm_id, events)
        received = [listener.next_group_message() for _ in events]

    # Callbacks run on their own threads, so order by the protocol's sequence ids.
    received.sort(key=lambda message: message.sequence_id or 0)
    assert [m.data for m in received] == events
    assert {m.group for m in received} == {group_for_swarm(swarm_id)}
    assert {m.data_type for m in received} == {WebPubSubDataType.JSON}
    assert [m.sequence_id for m in received] == [1, 2]


def test_client_url_for_another_swarm_neither_receives_nor_can_join(
    publisher: WebPubSubEventPublisher, service: WebPubSubServiceClient
) -> None:
    mine, theirs = unique("swarm"), unique("swarm")
    my_url, _ = publisher.client_access_url("user-1", mine)
    their_url, _ = publisher.client_access_url("user-2", theirs)

    with listening(my_url) as me, listening(their_url) as them:
        publisher.publish(theirs, [{"type": "swarm.status", "seq": 1}])
        assert them.next_group_message().group == group_for_swarm(theirs)

        publisher.publish(mine, [{"type": "swarm.status", "seq": 7}])
        marker = me.next_group_message()
        # The first message this connection ever got is its own swarm's: nothing leaked before.
        assert (marker.group, marker.sequence_id) == (group_for_swarm(mine), 1)

        with pytest.raises(SendMessageError) as refused:
            me.client.join_group(group_for_swarm(theirs))
        assert refused.value.error_detail is not None
        assert refused.value.error_detail.name == "Forbidden"
        with pytest.raises(SendMessageError):
            me.client.send_to_group(group_for_swarm(mine), "hi", WebPubSubDataType.TEXT)

        service.send_to_group(group_for_swarm(theirs), {"after": "join attempt"})
        assert them.next_group_message().data == {"after": "join attempt"}
        publisher.publish(mine, [{"type": "swarm.status", "seq": 8}])
        latest = me.next_group_message()
        # Still in sequence: the other swarm's message did not reach this connection.
        assert (latest.data["seq"], latest.sequence_id) == (8, 2)


# --- token checks on the client endpoint ----------------------------------------------------


def test_tampered_expired_and_foreign_tokens_are_refused(
    emulator: EmulatorHandle, service: WebPubSubServiceClient
) -> None:
    good = service.get_client_access_token(user_id="u", groups=["swarm.a"])
    header, payload, signature = good["token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["webpubsub.group"] = ["swarm.b"]
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    base = good["baseUrl"]

    wrong_key = jwt.encode(claims, fresh_key(), algorithm="HS256")
    expired = service.get_client_access_token(user_id="u", minutes_to_expire=-1)["url"]
    other_hub = WebPubSubServiceClient.from_connection_string(
        emulator.connection_string, hub="elsewhere"
    ).get_client_access_token(user_id="u")["token"]

    assert refuses_connection(f"{base}?access_token={header}.{forged_payload}.{signature}")
    assert refuses_connection(f"{base}?access_token={wrong_key}")
    assert refuses_connection(expired)
    assert refuses_connection(f"{base}?access_token={other_hub}")
    assert refuses_connection(base)
    assert not refuses_connection(good["url"])


# --- clients that hold roles ----------------------------------------------------------------


def test_roles_allow_joining_and_sending_to_their_group_only(
    service: WebPubSubServiceClient,
) -> None:
    group, other = unique("room"), unique("room")
    member_url = service.get_client_access_token(
        user_id="sender",
        roles=[f"webpubsub.joinLeaveGroup.{group}", f"webpubsub.sendToGroup.{group}"],
    )["url"]
    reader_url = service.get_client_access_token(user_id="reader", groups=[group])["url"]

    with listening(member_url) as member, listening(reader_url) as reader:
        member.client.join_group(group)
        with pytest.raises(SendMessageError):
            member.client.join_group(other)

        member.client.send_to_group(group, {"hello": 1}, WebPubSubDataType.JSON, no_echo=True)
        message = reader.next_group_message()
        assert (message.data, message.from_user_id) == ({"hello": 1}, "sender")

        member.client.send_to_group(group, "plain words", WebPubSubDataType.TEXT)
        assert reader.next_group_message().data == "plain words"
        echo = member.next_group_message()
        # noEcho kept the JSON message from its sender: this echo is the first message it got.
        assert (echo.data, echo.data_type, echo.sequence_id) == (
            "plain words",
            WebPubSubDataType.TEXT,
            1,
        )

        member.client.leave_group(group)
        service.send_to_group(group, "after leaving", content_type="text/plain")
        assert reader.next_group_message().data == "after leaving"
        service.send_to_user("sender", "marker", content_type="text/plain")
        # Numbered right after the echo: the group message after leaving never came.
        assert member.next_server_message().sequence_id == 2


def test_global_roles_allow_any_group(service: WebPubSubServiceClient) -> None:
    group = unique("room")
    url = service.get_client_access_token(
        roles=["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"]
    )["url"]
    with listening(url) as client:
        client.client.join_group(group)
        client.client.send_to_group(group, {"n": 1}, WebPubSubDataType.JSON)
        assert client.next_group_message().data == {"n": 1}


# --- REST API -------------------------------------------------------------------------------


def test_rest_calls_without_a_valid_token_are_refused(emulator: EmulatorHandle) -> None:
    forged = emulator.connection_string.replace(emulator.emulator.access_key, fresh_key())
    impostor = WebPubSubServiceClient.from_connection_string(forged, hub=HUB)
    with pytest.raises(ClientAuthenticationError):
        impostor.send_to_group("swarm.x", {"a": 1})
    with pytest.raises(ClientAuthenticationError):
        impostor.group_exists("swarm.x")

    url = f"{emulator.endpoint}/api/hubs/{HUB}/groups/swarm.x?api-version=2024-12-01"
    key = emulator.emulator.access_key
    soon = datetime.now(UTC) + timedelta(minutes=1)
    other_path = jwt.encode(
        {"aud": f"{emulator.endpoint}/api/hubs/{HUB}/groups/swarm.y", "exp": soon}, key
    )
    expired = jwt.encode({"aud": url, "exp": datetime.now(UTC) - timedelta(minutes=1)}, key)
    valid = jwt.encode({"aud": url, "exp": soon}, key)
    assert rest_status(url, None) == 401
    assert rest_status(url, other_path) == 401
    assert rest_status(url, expired) == 401
    assert rest_status(url, valid) == 404  # accepted; the group just has no connections


def test_send_to_user_user_groups_and_existence_checks(
    service: WebPubSubServiceClient,
) -> None:
    user, group = unique("user"), unique("group")
    assert not service.user_exists(user)
    url = service.get_client_access_token(user_id=user)["url"]

    with listening(url) as client:
        connection_id = client.connection_id()
        assert service.user_exists(user)
        assert service.connection_exists(connection_id)
        assert not service.group_exists(group)

        service.send_to_user(user, "just for you", content_type="text/plain")
        direct = client.next_server_message()
        assert (direct.data, direct.data_type) == ("just for you", WebPubSubDataType.TEXT)

        service.add_user_to_group(group, user)
        assert service.group_exists(group)
        service.send_to_group(group, {"to": "group"})
        assert client.next_group_message().data == {"to": "group"}

        service.remove_user_from_group(group, user)
        assert not service.group_exists(group)

        service.send_to_all({"to": "everyone"})
        assert client.next_server_message().data == {"to": "everyone"}

        service.close_connection(connection_id, reason="done")
        assert not service.connection_exists(connection_id)
        assert not service.user_exists(user)


def test_a_user_added_to_a_group_joins_it_on_later_connections(
    service: WebPubSubServiceClient,
) -> None:
    user, group = unique("user"), unique("group")
    service.add_user_to_group(group, user)
    with listening(service.get_client_access_token(user_id=user)["url"]) as client:
        service.send_to_group(group, "welcome", content_type="text/plain")
        assert client.next_group_message().data == "welcome"


# --- reliability ----------------------------------------------------------------------------


def test_a_dropped_reliable_connection_recovers_and_gets_what_it_missed(
    emulator: EmulatorHandle, publisher: WebPubSubEventPublisher, service: WebPubSubServiceClient
) -> None:
    swarm_id = unique("swarm")
    url, _ = publisher.client_access_url("user-1", swarm_id)
    with listening(url) as listener:
        connection_id = listener.connection_id()
        publisher.publish(swarm_id, [{"seq": 1}])
        assert listener.next_group_message().data == {"seq": 1}

        emulator.drop_client_sockets()
        publisher.publish(swarm_id, [{"seq": 2}])  # sent while the socket is down

        missed = listener.next_group_message()
        assert (missed.data, missed.sequence_id) == ({"seq": 2}, 2)
        assert service.connection_exists(connection_id)
        assert listener.group_messages.empty()


def test_plain_json_protocol_and_raw_websocket_clients_get_messages(
    publisher: WebPubSubEventPublisher,
) -> None:
    swarm_id = unique("swarm")
    url, _ = publisher.client_access_url("user-1", swarm_id)
    # A client that asks for no subprotocol gets payloads only, and no system frames.
    with (
        websocket_connect(url, open_timeout=WAIT) as raw,
        listening(url, protocol_type=WebPubSubProtocolType.JSON) as plain,
    ):
        publisher.publish(swarm_id, [{"seq": 1}])
        message = plain.next_group_message()
        assert (message.data, message.sequence_id) == ({"seq": 1}, None)
        assert json.loads(raw.recv(timeout=WAIT)) == {"seq": 1}


# --- the command line -----------------------------------------------------------------------


def test_command_line_serves_health_until_terminated() -> None:
    env = {**os.environ, "WEBPUBSUB_EMULATOR_KEY": fresh_key()}
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.webpubsub_emulator", "--port", "0"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 15
        line = ""
        while (
            not line.startswith("webpubsub emulator listening on ") and time.monotonic() < deadline
        ):
            ready, _, _ = select.select([process.stdout], [], [], deadline - time.monotonic())
            if not ready:
                break
            line = process.stdout.readline()
            if not line:
                break
        assert line.startswith("webpubsub emulator listening on http://127.0.0.1:"), line
        base = line.split()[-1]
        assert rest_status(f"{base}/health", None, method="GET") == 200
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


# --- identity mode: local auth disabled, Entra ID tokens, `:generateToken` ----------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> DevCertificate:
    return ensure_certificate(tmp_path_factory.mktemp("wps-tls"))


@pytest.fixture(scope="module")
def keyless_emulator(tls_files: DevCertificate) -> Iterator[EmulatorHandle]:
    handle = start_in_thread(
        "127.0.0.1",
        0,
        access_key=fresh_key(),
        identity=True,
        tls=tls_context(tls_files.cert, tls_files.key),
    )
    yield handle
    handle.stop()


def test_with_a_credential_the_sdk_negotiates_through_generate_token(
    keyless_emulator: EmulatorHandle, tls_files: DevCertificate, monkeypatch: pytest.MonkeyPatch
) -> None:
    issuer = DevTokenIssuer()
    publisher = WebPubSubEventPublisher(
        hub=HUB,
        endpoint=keyless_emulator.endpoint,
        credential=DevCredential(issuer),
        ca_file=str(tls_files.ca),
    )
    swarm_id = unique("swarm")
    url, _ = publisher.client_access_url("user-7", swarm_id, minutes=5)
    assert url.startswith(
        f"wss://127.0.0.1:{keyless_emulator.port}/client/hubs/{HUB}?access_token="
    )
    claims = jwt.decode(url.split("access_token=")[1], options={"verify_signature": False})
    assert claims["sub"] == "user-7"
    assert claims["webpubsub.group"] == [group_for_swarm(swarm_id)]
    assert "role" not in claims  # receive-only
    assert 0 < claims["exp"] - time.time() <= 5 * 60

    monkeypatch.setenv("WEBSOCKET_CLIENT_CA_BUNDLE", str(tls_files.ca))  # the client SDK's wss
    event = {"type": "swarm.status", "swarm_id": swarm_id, "seq": 1, "at": "t", "data": {}}
    with listening(url) as listener:
        publisher.publish(swarm_id, [event])
        assert listener.next_group_message().data == event

    calls = keyless_emulator.emulator.rest_authorizations
    assert [path for _, path, _ in calls] == [
        f"/api/hubs/{HUB}/:generateToken",
        f"/api/hubs/{HUB}/groups/{group_for_swarm(swarm_id)}/:send",
    ]
    for _, _, authorization in calls:
        scheme, _, token = authorization.partition(" ")
        assert scheme == "Bearer"
        assert issuer.verify(token)["aud"] == "https://webpubsub.azure.com"


def test_with_local_auth_disabled_key_signed_and_foreign_tokens_are_refused(
    keyless_emulator: EmulatorHandle, tls_files: DevCertificate
) -> None:
    # The emulator's own access key, as a connection string would carry it: refused.
    with_key = WebPubSubServiceClient.from_connection_string(
        f"Endpoint={keyless_emulator.endpoint};AccessKey={keyless_emulator.emulator.access_key};"
        "Version=1.0;",
        hub=HUB,
        connection_verify=str(tls_files.ca),
    )
    with pytest.raises(ClientAuthenticationError):
        with_key.send_to_group("swarm.x", {"a": 1})

    issuer = DevTokenIssuer()
    url = f"{keyless_emulator.endpoint}/api/hubs/{HUB}/groups/swarm.x?api-version=2024-12-01"
    storage_token, _ = issuer.mint("https://storage.azure.com", "client")
    expired, _ = issuer.mint("https://webpubsub.azure.com", "client", lifetime=-120)
    valid, _ = issuer.mint("https://webpubsub.azure.com", "client")
    context = ssl.create_default_context(cafile=str(tls_files.ca))
    assert rest_status(url, storage_token, context=context) == 401
    assert rest_status(url, expired, context=context) == 401
    assert rest_status(url, None, context=context) == 401
    assert rest_status(url, valid, context=context) == 404  # accepted; no connection in it
