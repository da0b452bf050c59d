"""Web PubSub dev emulator: enough of Azure Web PubSub for the real SDKs to run against it locally.

Microsoft's emulator is a .NET tool that cannot be installed on the project's machines. This module
serves, on one port, the REST API that `azure-messaging-webpubsubservice` calls and the client
WebSocket endpoint that `azure-messaging-webpubsubclient` (or a browser) connects to, speaking the
`json.reliable.webpubsub.azure.v1` and `json.webpubsub.azure.v1` subprotocols (a client asking for
neither gets raw payloads). Tokens are checked as the service checks them: HS256 signed with the raw
AccessKey string, `aud` naming the URL's path, `exp` not passed; a client token's `role` and
`webpubsub.group` claims decide which groups the connection is in and may join or send to.

`POST /api/hubs/{hub}/:generateToken` mints a client token as the service does (what the service
SDK calls for `get_client_access_token` when it holds a `TokenCredential` instead of a key): query
`userId`, `role` and `group` (repeated), `minutesToExpire`, answer `{"token": ...}`, signed with
the emulator's own key.

With `--identity` the emulator is a service with local auth disabled: its REST API accepts only
Microsoft Entra bearer tokens (issuer `https://sts.windows.net/…`, audience
`https://webpubsub.azure.com`, in their lifetime: `devstack.identity.entra_claims`) and refuses
key-signed ones, so a caller must sign in (locally: `devstack.identity`); the access key, random
unless given, only signs the client tokens `:generateToken` hands out. `--cert`/`--key` serve
HTTPS (and WSS), which the SDKs require before they send a bearer token. `--auth-log FILE`
appends one JSON line per REST request (method, path, Authorization header) for tests that check
what callers send. State lives in memory only. Left out: event handlers (upstream), OData
`filter`, protobuf subprotocols, listing connections and the permissions API.

Run it with

    python -m devstack.webpubsub_emulator --host 127.0.0.1 --port 7080 --access-key KEY

and point the service SDK at `Endpoint=http://127.0.0.1;Port=7080;AccessKey=KEY;Version=1.0;`
(or, with `--identity --cert C --tls-key K`, at endpoint `https://127.0.0.1:7080` with a
credential). Tests can use `start_in_thread(...)` instead.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import json
import logging
import os
import secrets
import ssl
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import jwt
from aiohttp import WSCloseCode, WSMsgType, web

from devstack.identity import entra_claims
from devstack.serving import serve_until_signalled

logger = logging.getLogger(__name__)

RELIABLE_PROTOCOL = "json.reliable.webpubsub.azure.v1"
JSON_PROTOCOL = "json.webpubsub.azure.v1"
# How long a dropped reliable connection keeps its groups and unacked messages for a recovery
# (the client SDKs try to recover for 30 s to 1 min before starting a new connection).
SESSION_GRACE_SECONDS = 60.0
# The service ends a session whose subscriber stops acking; this also bounds the emulator's memory.
MAX_UNACKED_MESSAGES = 1000
# Replies a client blocks on (the WebSocket handshake, acks) go out after this delay, as over a
# real network: the Python client SDK (1.1.0) starts waiting for them only after sending, so an
# instant reply is sometimes missed and the call stalls for its whole timeout (30 s by default).
REPLY_DELAY_SECONDS = 0.01
# "Session removed": on this close code clients stop recovering and open a new connection.
SESSION_GONE = WSCloseCode.POLICY_VIOLATION
# A client closing with these codes means to leave, so its session is not kept for a recovery.
CLEAN_CLOSE_CODES = (WSCloseCode.OK, WSCloseCode.GOING_AWAY)

# The audience of the Entra tokens the service SDK asks for (its default credential scope).
ENTRA_AUDIENCE = "https://webpubsub.azure.com"
# Client types `:generateToken` serves (Default: the /client/hubs/{hub} endpoint).
DEFAULT_CLIENT_TYPE = "default"

AckError = tuple[str, str]


class TokenRejected(Exception):
    """A token the service would refuse; the message says why."""


def verify_token(token: str, access_key: str, expected_path: str) -> dict[str, Any]:
    """Return the claims of an HS256 token signed with `access_key` whose `aud` names the path.

    Only the path of `aud` is compared: the emulator is reached under several host names
    (localhost, 127.0.0.1, a container name) and the REST SDK puts the query string in `aud` too;
    the signature already proves that a holder of the key minted the token for this URL.
    """
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            access_key,
            algorithms=["HS256"],
            options={"require": ["exp", "aud"], "verify_aud": False},
        )
    except jwt.PyJWTError as exc:
        raise TokenRejected(str(exc)) from exc
    audience = claims["aud"]
    if not isinstance(audience, str):
        raise TokenRejected("aud must be a single URL")
    if unquote(urlsplit(audience).path).rstrip("/") != expected_path.rstrip("/"):
        raise TokenRejected(f"aud {audience!r} is not for {expected_path!r}")
    return claims


def _claim_values(claims: dict[str, Any], name: str) -> list[str]:
    # JWT libraries write a one-element list either as a list or as a bare string.
    value = claims.get(name)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(item) for item in value]


def _bearer_token(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


@dataclass(eq=False)
class Connection:
    """One client session; on the reliable protocol it outlives a dropped socket until recovered."""

    connection_id: str
    user_id: str | None
    roles: frozenset[str]
    protocol: str | None  # None: a plain WebSocket client, which is sent raw payloads only
    groups: set[str] = field(default_factory=set)
    reconnection_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    socket: web.WebSocketResponse | None = None
    dropped_at: float | None = None
    next_sequence_id: int = 1
    unacked: list[tuple[int, str]] = field(default_factory=list)  # (sequenceId, frame)
    done_ack_ids: set[int] = field(default_factory=set)
    # Numbering and sending happen under one lock so that frames leave in sequenceId order.
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def reliable(self) -> bool:
        return self.protocol == RELIABLE_PROTOCOL

    def may(self, permission: str, group: str) -> bool:
        """Whether a role grants `permission` (joinLeaveGroup, sendToGroup) on `group`."""
        return f"webpubsub.{permission}" in self.roles or (
            f"webpubsub.{permission}.{group}" in self.roles
        )

    async def send_frame(self, frame: dict[str, Any]) -> None:
        """Send a system or ack frame (never numbered)."""
        async with self.send_lock:
            await self._write(json.dumps(frame))

    async def deliver(self, message: dict[str, Any]) -> None:
        """Send a data message; on the reliable protocol number it and keep it until acked."""
        async with self.send_lock:
            if self.protocol is None:
                await self._write_raw(message["dataType"], message["data"])
                return
            if self.reliable:
                message = {**message, "sequenceId": self.next_sequence_id}
                self.next_sequence_id += 1
                frame = json.dumps(message)
                self.unacked.append((message["sequenceId"], frame))
            else:
                frame = json.dumps(message)
            await self._write(frame)

    def acknowledge(self, sequence_id: int) -> None:
        # A sequenceAck covers every message up to and including that id.
        self.unacked = [(seq, frame) for seq, frame in self.unacked if seq > sequence_id]

    async def resume(self, socket: web.WebSocketResponse) -> None:
        """Attach a recovered socket: repeat `connected`, then resend what was not acked."""
        async with self.send_lock:
            self.socket, self.dropped_at = socket, None
            await self._write(json.dumps(self.connected_frame()))
            for _, frame in self.unacked:
                await self._write(frame)

    def connected_frame(self) -> dict[str, Any]:
        frame: dict[str, Any] = {
            "type": "system",
            "event": "connected",
            "connectionId": self.connection_id,
        }
        if self.user_id is not None:
            frame["userId"] = self.user_id
        if self.reliable:
            frame["reconnectionToken"] = self.reconnection_token
        return frame

    async def _write(self, text: str) -> None:
        socket = self.socket
        if socket is None or socket.closed:
            return  # dropped: a recovery resends what is unacked
        # The peer may vanish mid-send; the read loop notices and detaches the socket.
        with contextlib.suppress(ConnectionError, RuntimeError):
            await socket.send_str(text)

    async def _write_raw(self, data_type: str, data: Any) -> None:
        socket = self.socket
        if socket is None or socket.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            if data_type == "binary":
                await socket.send_bytes(base64.b64decode(data))
            elif data_type == "json":
                await socket.send_str(json.dumps(data))
            else:
                await socket.send_str(str(data))


@dataclass
class Hub:
    """The sessions of one hub and the user-to-group memberships added over REST."""

    connections: dict[str, Connection] = field(default_factory=dict)
    # The service applies a user's group membership to that user's later connections too.
    user_groups: dict[str, set[str]] = field(default_factory=dict)

    def prune(self, now: float) -> None:
        for connection in list(self.connections.values()):
            if (
                connection.dropped_at is not None
                and now - connection.dropped_at > SESSION_GRACE_SECONDS
            ):
                del self.connections[connection.connection_id]

    def in_group(self, group: str) -> list[Connection]:
        return [c for c in self.connections.values() if group in c.groups]

    def of_user(self, user_id: str) -> list[Connection]:
        return [c for c in self.connections.values() if c.user_id == user_id]


class WebPubSubEmulator:
    """The emulator's state and its aiohttp handlers; all of it runs on one event loop."""

    def __init__(
        self, access_key: str, *, identity: bool = False, auth_log: Path | None = None
    ) -> None:
        self.access_key = access_key
        # True: local auth disabled, the REST API takes Entra ID bearer tokens only.
        self.identity = identity
        self.auth_log = auth_log
        # (method, path, Authorization header) of every REST request, in order (tests).
        self.rest_authorizations: list[tuple[str, str, str]] = []
        self._hubs: dict[str, Hub] = {}

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._check_rest_token])
        app.on_shutdown.append(self._close_all_sockets)
        api = "/api/hubs/{hub}"
        app.router.add_get("/health", self._health)
        app.router.add_get("/client/hubs/{hub}", self._client_socket)
        app.router.add_post(f"{api}/:send", self._send_to_all)
        app.router.add_post(f"{api}/:generateToken", self._generate_token)
        app.router.add_post(f"{api}/:closeConnections", self._close_all)
        app.router.add_post(f"{api}/groups/{{group}}/:send", self._send_to_group)
        app.router.add_post(f"{api}/groups/{{group}}/:closeConnections", self._close_group)
        app.router.add_route("HEAD", f"{api}/groups/{{group}}", self._group_exists)
        app.router.add_put(f"{api}/groups/{{group}}/connections/{{cid}}", self._add_connection)
        app.router.add_delete(
            f"{api}/groups/{{group}}/connections/{{cid}}", self._remove_connection
        )
        app.router.add_post(f"{api}/users/{{user}}/:send", self._send_to_user)
        app.router.add_post(f"{api}/users/{{user}}/:closeConnections", self._close_user)
        app.router.add_route("HEAD", f"{api}/users/{{user}}", self._user_exists)
        app.router.add_put(f"{api}/users/{{user}}/groups/{{group}}", self._add_user)
        app.router.add_delete(f"{api}/users/{{user}}/groups/{{group}}", self._remove_user)
        app.router.add_delete(f"{api}/users/{{user}}/groups", self._remove_user_everywhere)
        app.router.add_post(f"{api}/connections/{{cid}}/:send", self._send_to_connection)
        app.router.add_route("HEAD", f"{api}/connections/{{cid}}", self._connection_exists)
        app.router.add_delete(f"{api}/connections/{{cid}}", self._close_connection)
        return app

    def _hub(self, name: str) -> Hub:
        hub = self._hubs.setdefault(name, Hub())
        hub.prune(time.monotonic())
        return hub

    # --- client WebSocket -------------------------------------------------------------------

    async def _client_socket(self, request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(REPLY_DELAY_SECONDS)
        hub_name = request.match_info["hub"]
        hub = self._hub(hub_name)
        recovering_id = request.query.get("awps_connection_id")
        claims: dict[str, Any] = {}
        if recovering_id is None:
            token = request.query.get("access_token") or _bearer_token(request)
            try:
                claims = verify_token(token, self.access_key, f"/client/hubs/{hub_name}")
            except TokenRejected as exc:
                logger.info("refused a client of hub %s: %s", hub_name, exc)
                return web.Response(status=401, text=f"Unauthorized: {exc}")
        # Pings find peers that vanished without closing; their sessions then wait for a recovery.
        socket = web.WebSocketResponse(protocols=(RELIABLE_PROTOCOL, JSON_PROTOCOL), heartbeat=30.0)
        if not socket.can_prepare(request).ok:
            return web.Response(status=400, text="Expected a WebSocket upgrade.")
        await socket.prepare(request)

        if recovering_id is None:
            connection = self._open_session(hub, claims, socket)
            if connection.protocol is not None:
                await connection.send_frame(connection.connected_frame())
        else:
            found = hub.connections.get(recovering_id)
            token = request.query.get("awps_reconnection_token", "")
            if found is None or not secrets.compare_digest(found.reconnection_token, token):
                await socket.close(code=SESSION_GONE, message=b"Session not found.")
                return socket
            connection = found
            old_socket = connection.socket
            await connection.resume(socket)
            if old_socket is not None:
                await old_socket.close(code=WSCloseCode.GOING_AWAY)
            logger.info("connection %s recovered", connection.connection_id)

        try:
            async for frame in socket:
                # Raw clients have no upstream here; binary frames belong to the protobuf
                # subprotocols, which are not emulated.
                if connection.protocol is not None and frame.type == WSMsgType.TEXT:
                    await self._on_client_frame(hub, connection, frame.data)
        finally:
            self._detach(hub, connection, socket)
        return socket

    def _open_session(
        self, hub: Hub, claims: dict[str, Any], socket: web.WebSocketResponse
    ) -> Connection:
        user_id = claims.get("sub")
        groups = set(_claim_values(claims, "webpubsub.group"))
        if user_id is not None:
            groups |= hub.user_groups.get(user_id, set())
        connection = Connection(
            connection_id=uuid.uuid4().hex,
            user_id=user_id,
            roles=frozenset(_claim_values(claims, "role")),
            protocol=socket.ws_protocol,
            groups=groups,
            socket=socket,
        )
        hub.connections[connection.connection_id] = connection
        logger.info(
            "connection %s opened (user %s, groups %s)", connection.connection_id, user_id, groups
        )
        return connection

    def _detach(self, hub: Hub, connection: Connection, socket: web.WebSocketResponse) -> None:
        if connection.socket is not socket:
            return  # a recovery already attached a newer socket
        connection.socket = None
        if connection.reliable and socket.close_code not in CLEAN_CLOSE_CODES:
            connection.dropped_at = time.monotonic()  # kept for a recovery
        else:
            hub.connections.pop(connection.connection_id, None)

    async def _on_client_frame(self, hub: Hub, connection: Connection, raw: str) -> None:
        try:
            frame = json.loads(raw)
        except ValueError:
            logger.info("connection %s sent a frame that is not JSON", connection.connection_id)
            return
        if not isinstance(frame, dict):
            return
        if frame.get("type") == "sequenceAck":
            with contextlib.suppress(TypeError, ValueError):
                connection.acknowledge(int(frame["sequenceId"]))
            return
        ack_id = frame.get("ackId")
        if ack_id is not None and ack_id in connection.done_ack_ids:
            # A publisher resends with the same ackId after a drop; it must not be applied twice.
            error: AckError | None = (
                "Duplicate",
                f"Message with ack-id: {ack_id} has been processed",
            )
        else:
            error = await self._apply_client_frame(hub, connection, frame)
            if error is None and ack_id is not None:
                connection.done_ack_ids.add(ack_id)
        if ack_id is not None:
            await asyncio.sleep(REPLY_DELAY_SECONDS)
            ack: dict[str, Any] = {"type": "ack", "ackId": ack_id, "success": error is None}
            if error is not None:
                ack["error"] = {"name": error[0], "message": error[1]}
            await connection.send_frame(ack)

    async def _apply_client_frame(
        self, hub: Hub, connection: Connection, frame: dict[str, Any]
    ) -> AckError | None:
        kind = frame.get("type")
        group = frame.get("group")
        if kind == "event":
            logger.info("event %r dropped: the emulator has no event handlers", frame.get("event"))
            return None
        if kind not in ("joinGroup", "leaveGroup", "sendToGroup"):
            return ("BadRequest", f"Unsupported message type {kind!r}.")
        if not isinstance(group, str) or not group:
            return ("BadRequest", "The group name is required.")
        if kind == "sendToGroup":
            if not connection.may("sendToGroup", group):
                return ("Forbidden", f"The connection has no permission to send to group {group}.")
            message = {
                "type": "message",
                "from": "group",
                "group": group,
                "dataType": frame.get("dataType", "json"),
                "data": frame.get("data"),
            }
            if connection.user_id is not None:
                message["fromUserId"] = connection.user_id
            skip = connection if frame.get("noEcho") else None
            await self._deliver(hub, [c for c in hub.in_group(group) if c is not skip], message)
            return None
        if not connection.may("joinLeaveGroup", group):
            return ("Forbidden", f"The connection has no permission to join or leave {group}.")
        if kind == "joinGroup":
            connection.groups.add(group)
        else:
            connection.groups.discard(group)
        return None

    async def _deliver(
        self, hub: Hub, targets: Iterable[Connection], message: dict[str, Any]
    ) -> None:
        for connection in list(targets):
            await connection.deliver(message)
            if len(connection.unacked) > MAX_UNACKED_MESSAGES:
                await self._end_session(hub, connection, "Too many messages not acknowledged.")

    async def _end_session(self, hub: Hub, connection: Connection, reason: str) -> None:
        """Close a connection for good, as the REST close APIs do (no recovery)."""
        hub.connections.pop(connection.connection_id, None)
        if connection.protocol is not None:
            disconnected = {"type": "system", "event": "disconnected", "message": reason}
            await connection.send_frame(disconnected)
        socket = connection.socket
        if socket is not None:
            await socket.close(code=SESSION_GONE, message=reason.encode()[:120])

    async def drop_client_sockets(self) -> None:
        """Break every client socket but keep the sessions, as a network failure would (tests)."""
        for hub in self._hubs.values():
            for connection in list(hub.connections.values()):
                socket = connection.socket
                if socket is None:
                    continue
                # Detach first: the close handshake would otherwise read as the client leaving.
                connection.socket, connection.dropped_at = None, time.monotonic()
                await socket.close(code=WSCloseCode.INTERNAL_ERROR)

    async def _close_all_sockets(self, app: web.Application) -> None:
        # The state dies with the process, so tell clients their sessions are gone. Concurrently:
        # each close waits for the client's reply.
        await asyncio.gather(
            *(
                self._end_session(hub, connection, "The emulator is shutting down.")
                for hub in self._hubs.values()
                for connection in list(hub.connections.values())
            )
        )

    # --- REST API ---------------------------------------------------------------------------

    @web.middleware
    async def _check_rest_token(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/api/"):
            self._record_authorization(request)
            try:
                self._verify_caller(_bearer_token(request), request.path)
            except TokenRejected as exc:
                logger.info("refused %s %s: %s", request.method, request.path, exc)
                return web.json_response({"code": "Unauthorized", "message": str(exc)}, status=401)
        response: web.StreamResponse = await handler(request)
        return response

    def _verify_caller(self, token: str, path: str) -> None:
        """The service's check of a REST caller: the access key's signature, or (local auth
        disabled) an Entra ID token for Web PubSub."""
        if not self.identity:
            verify_token(token, self.access_key, path)
            return
        try:
            entra_claims(token, [ENTRA_AUDIENCE])
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"not a Microsoft Entra ID token for Web PubSub: {exc}") from exc

    def _record_authorization(self, request: web.Request) -> None:
        entry = (request.method, request.path, request.headers.get("Authorization", ""))
        self.rest_authorizations.append(entry)
        if self.auth_log is not None:
            line = {"method": entry[0], "path": entry[1], "authorization": entry[2]}
            with self.auth_log.open("a", encoding="utf-8") as out:
                out.write(json.dumps(line) + "\n")

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _message(self, request: web.Request, group: str | None = None) -> dict[str, Any]:
        """The data message a REST send delivers, typed by the request's Content-Type."""
        if "filter" in request.query:
            raise web.HTTPBadRequest(text="The emulator does not support OData filters.")
        body = await request.read()
        data: Any
        if request.content_type == "application/json":
            data_type = "json"
            try:
                data = json.loads(body)
            except ValueError as exc:
                raise web.HTTPBadRequest(text=f"The body is not JSON: {exc}") from exc
        elif request.content_type == "text/plain":
            data_type, data = "text", body.decode("utf-8")
        else:
            data_type, data = "binary", base64.b64encode(body).decode("ascii")
        message: dict[str, Any] = {"type": "message", "from": "server"}
        if group is not None:
            message.update({"from": "group", "group": group})
        message.update({"dataType": data_type, "data": data})
        return message

    def _rest_hub(self, request: web.Request) -> Hub:
        return self._hub(request.match_info["hub"])

    @staticmethod
    def _not_excluded(request: web.Request, connections: Iterable[Connection]) -> list[Connection]:
        excluded = set(request.query.getall("excluded", []))
        return [c for c in connections if c.connection_id not in excluded]

    async def _generate_token(self, request: web.Request) -> web.Response:
        """A client access token, as the service mints it for a caller without the key."""
        hub = request.match_info["hub"]
        query = request.query
        client_type = query.get("clientType", "Default").lower()
        if client_type != DEFAULT_CLIENT_TYPE:
            raise web.HTTPBadRequest(
                text=f"The emulator serves clientType Default only, not {client_type!r}."
            )
        try:
            minutes = int(query.get("minutesToExpire", "60"))
        except ValueError:
            raise web.HTTPBadRequest(text="minutesToExpire must be an integer.") from None
        if minutes < 1:
            raise web.HTTPBadRequest(text="minutesToExpire must be at least 1.")
        now = datetime.now(UTC)
        claims: dict[str, Any] = {
            "aud": f"{request.scheme}://{request.host}/client/hubs/{hub}",
            "iat": now,
            "exp": now + timedelta(minutes=minutes),
        }
        if query.get("userId"):
            claims["sub"] = query["userId"]
        roles, groups = query.getall("role", []), query.getall("group", [])
        if roles:
            claims["role"] = roles
        if groups:
            claims["webpubsub.group"] = groups
        token = jwt.encode(claims, self.access_key, algorithm="HS256")
        return web.json_response({"token": token})

    async def _send_to_all(self, request: web.Request) -> web.Response:
        hub = self._rest_hub(request)
        message = await self._message(request)
        await self._deliver(hub, self._not_excluded(request, hub.connections.values()), message)
        return web.Response(status=202)

    async def _send_to_group(self, request: web.Request) -> web.Response:
        hub, group = self._rest_hub(request), request.match_info["group"]
        message = await self._message(request, group)
        await self._deliver(hub, self._not_excluded(request, hub.in_group(group)), message)
        return web.Response(status=202)

    async def _send_to_user(self, request: web.Request) -> web.Response:
        hub = self._rest_hub(request)
        message = await self._message(request)
        await self._deliver(hub, hub.of_user(request.match_info["user"]), message)
        return web.Response(status=202)

    async def _send_to_connection(self, request: web.Request) -> web.Response:
        hub = self._rest_hub(request)
        message = await self._message(request)
        connection = hub.connections.get(request.match_info["cid"])
        await self._deliver(hub, [connection] if connection else [], message)
        return web.Response(status=202)

    async def _group_exists(self, request: web.Request) -> web.Response:
        found = self._rest_hub(request).in_group(request.match_info["group"])
        return web.Response(status=200 if found else 404)

    async def _user_exists(self, request: web.Request) -> web.Response:
        found = self._rest_hub(request).of_user(request.match_info["user"])
        return web.Response(status=200 if found else 404)

    async def _connection_exists(self, request: web.Request) -> web.Response:
        found = request.match_info["cid"] in self._rest_hub(request).connections
        return web.Response(status=200 if found else 404)

    async def _add_user(self, request: web.Request) -> web.Response:
        hub, user, group = (
            self._rest_hub(request),
            request.match_info["user"],
            request.match_info["group"],
        )
        hub.user_groups.setdefault(user, set()).add(group)
        for connection in hub.of_user(user):
            connection.groups.add(group)
        return web.Response(status=200)

    async def _remove_user(self, request: web.Request) -> web.Response:
        hub, user, group = (
            self._rest_hub(request),
            request.match_info["user"],
            request.match_info["group"],
        )
        hub.user_groups.get(user, set()).discard(group)
        for connection in hub.of_user(user):
            connection.groups.discard(group)
        return web.Response(status=204)

    async def _remove_user_everywhere(self, request: web.Request) -> web.Response:
        hub, user = self._rest_hub(request), request.match_info["user"]
        hub.user_groups.pop(user, None)
        for connection in hub.of_user(user):
            connection.groups.clear()
        return web.Response(status=204)

    async def _add_connection(self, request: web.Request) -> web.Response:
        connection = self._rest_hub(request).connections.get(request.match_info["cid"])
        if connection is None:
            return web.Response(status=404)
        connection.groups.add(request.match_info["group"])
        return web.Response(status=200)

    async def _remove_connection(self, request: web.Request) -> web.Response:
        connection = self._rest_hub(request).connections.get(request.match_info["cid"])
        if connection is not None:
            connection.groups.discard(request.match_info["group"])
        return web.Response(status=204)

    async def _close(self, request: web.Request, connections: Iterable[Connection]) -> web.Response:
        hub = self._rest_hub(request)
        reason = request.query.get("reason") or "Closed by the server."
        for connection in self._not_excluded(request, connections):
            await self._end_session(hub, connection, reason)
        return web.Response(status=204)

    async def _close_all(self, request: web.Request) -> web.Response:
        return await self._close(request, self._rest_hub(request).connections.values())

    async def _close_group(self, request: web.Request) -> web.Response:
        return await self._close(
            request, self._rest_hub(request).in_group(request.match_info["group"])
        )

    async def _close_user(self, request: web.Request) -> web.Response:
        return await self._close(
            request, self._rest_hub(request).of_user(request.match_info["user"])
        )

    async def _close_connection(self, request: web.Request) -> web.Response:
        connection = self._rest_hub(request).connections.get(request.match_info["cid"])
        return await self._close(request, [connection] if connection else [])


# --- running it -------------------------------------------------------------------------------


def tls_context(cert: Path | str, key: Path | str) -> ssl.SSLContext:
    """A server TLS context from PEM files (devstack's certificate)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    return context


async def serve(
    emulator: WebPubSubEmulator, host: str, port: int, tls: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    """Start serving (HTTPS with `tls`); port 0 picks a free one. Returns the runner and the
    bound port."""
    runner = web.AppRunner(emulator.build_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=tls).start()
    bound_port: int = runner.addresses[0][1]
    return runner, bound_port


class EmulatorHandle:
    """An emulator running on its own event-loop thread (for tests and launchers)."""

    def __init__(
        self,
        emulator: WebPubSubEmulator,
        loop: asyncio.AbstractEventLoop,
        runner: web.AppRunner,
        thread: threading.Thread,
        host: str,
        port: int,
        scheme: str = "http",
    ) -> None:
        self.emulator, self.host, self.port, self.scheme = emulator, host, port, scheme
        self._loop, self._runner, self._thread = loop, runner, thread

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def connection_string(self) -> str:
        key = self.emulator.access_key
        return f"Endpoint=http://{self.host};Port={self.port};AccessKey={key};Version=1.0;"

    def drop_client_sockets(self) -> None:
        """Break every client socket, keeping sessions (simulates a network failure)."""
        future = asyncio.run_coroutine_threadsafe(self.emulator.drop_client_sockets(), self._loop)
        future.result(timeout=10)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        future.result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


def start_in_thread(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    access_key: str,
    identity: bool = False,
    tls: ssl.SSLContext | None = None,
) -> EmulatorHandle:
    """Run an emulator on a background thread; returns once it accepts connections."""
    emulator = WebPubSubEmulator(access_key, identity=identity)
    loop = asyncio.new_event_loop()
    started: concurrent.futures.Future[tuple[web.AppRunner, int]] = concurrent.futures.Future()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            started.set_result(loop.run_until_complete(serve(emulator, host, port, tls)))
        except BaseException as exc:
            started.set_exception(exc)
            loop.close()
            return
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, name="webpubsub-emulator", daemon=True)
    thread.start()
    runner, bound_port = started.result(timeout=10)
    scheme = "https" if tls is not None else "http"
    return EmulatorHandle(emulator, loop, runner, thread, host, bound_port, scheme)


async def _serve_until_signalled(
    emulator: WebPubSubEmulator, host: str, port: int, tls: ssl.SSLContext | None
) -> None:
    runner, bound_port = await serve(emulator, host, port, tls)
    scheme = "https" if tls is not None else "http"
    print(f"webpubsub emulator listening on {scheme}://{host}:{bound_port}", flush=True)
    await serve_until_signalled(runner)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Azure Web PubSub dev emulator")
    parser.add_argument("--host", default=os.environ.get("WEBPUBSUB_EMULATOR_HOST", "127.0.0.1"))
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("WEBPUBSUB_EMULATOR_PORT", "7080"))
    )
    parser.add_argument(
        "--access-key",
        default=os.environ.get("WEBPUBSUB_EMULATOR_KEY"),
        help="the AccessKey of the connection string (env WEBPUBSUB_EMULATOR_KEY)",
    )
    parser.add_argument(
        "--identity",
        action="store_true",
        help="local auth disabled: the REST API takes Microsoft Entra ID tokens only",
    )
    parser.add_argument("--cert", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--tls-key", help="the certificate's private key (PEM)")
    parser.add_argument("--auth-log", help="append each REST request's Authorization here")
    args = parser.parse_args(argv)
    if args.identity and not args.access_key:
        args.access_key = secrets.token_urlsafe(32)  # only signs the client tokens it mints
    if not args.access_key:
        parser.error("an access key is required (--access-key or WEBPUBSUB_EMULATOR_KEY)")
    if bool(args.cert) != bool(args.tls_key):
        parser.error("--cert and --tls-key go together")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    emulator = WebPubSubEmulator(
        args.access_key,
        identity=args.identity,
        auth_log=Path(args.auth_log) if args.auth_log else None,
    )
    tls = tls_context(args.cert, args.tls_key) if args.cert else None
    asyncio.run(_serve_until_signalled(emulator, args.host, args.port, tls))


if __name__ == "__main__":
    main()
