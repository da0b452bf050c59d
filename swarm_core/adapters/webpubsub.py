"""Azure Web PubSub adapter: pushes swarm events to browsers and mints their receive-only URLs.

Every swarm has one Web PubSub group, `swarm.{swarm_id}`; `publish` sends each event there as JSON
and `client_access_url` gives a user a client URL whose token joins that group at connect time and
carries no roles, so the connection can neither join other groups nor send. The service client is
built on first use (importing this module or building the publisher never touches the network):
from a connection string locally (the dev emulator in key mode) or from an endpoint and a
credential (the managed identity in Azure, where keys are disabled). With a credential the SDK
cannot sign client tokens itself and asks the service for one (`:generateToken`), so negotiating
costs a round trip; `ca_file` is the CA to verify the endpoint's TLS with (devstack only).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from azure.messaging.webpubsubservice import WebPubSubServiceClient

from swarm_core.adapters import sdk_http

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

logger = logging.getLogger(__name__)


def group_for_swarm(swarm_id: str) -> str:
    """The Web PubSub group that carries one swarm's events."""
    return f"swarm.{swarm_id}"


class WebPubSubEventPublisher:
    """Publishes swarm events to the swarm's group and mints receive-only client URLs."""

    def __init__(
        self,
        *,
        hub: str,
        connection_string: str | None = None,
        endpoint: str | None = None,
        credential: TokenCredential | None = None,
        ca_file: str | None = None,
    ) -> None:
        self._ca_file = ca_file
        self._make_client: Callable[[], WebPubSubServiceClient]
        if connection_string is not None and endpoint is None and credential is None:
            self._make_client = partial(
                WebPubSubServiceClient.from_connection_string,
                connection_string,
                hub=hub,
            )
        elif connection_string is None and endpoint is not None and credential is not None:
            self._make_client = partial(
                WebPubSubServiceClient,
                endpoint=endpoint,
                hub=hub,
                credential=credential,
            )
        else:
            raise ValueError("give either connection_string, or endpoint and credential")
        self._client: WebPubSubServiceClient | None = None
        self._client_lock = threading.Lock()

    def _service(self) -> WebPubSubServiceClient:
        # One client per publisher, shared by the worker's threads (it keeps a connection pool).
        with self._client_lock:
            if self._client is None:
                self._client = self._make_client(**sdk_http.client_options(ca_file=self._ca_file))
            return self._client

    def probe(self) -> None:
        """One authenticated question to the hub (readiness): does a user that never
        connects have a connection (no)."""
        self._service().user_exists("readiness-probe")

    def publish(self, swarm_id: str, events: Sequence[Mapping[str, Any]]) -> None:
        """Send each event, in order, as a JSON message to the swarm's group."""
        group = group_for_swarm(swarm_id)
        client = self._service()
        for event in events:
            client.send_to_group(group, dict(event), content_type="application/json")
        logger.debug("published %s events swarm_id=%s", len(events), swarm_id)

    def client_access_url(
        self, user_id: str, swarm_id: str, minutes: int = 60
    ) -> tuple[str, datetime]:
        """A client URL for `user_id`, joined to the swarm's group only, and when it expires."""
        # Taken before the token is signed, so the token never expires before the stated time.
        expires_at = datetime.now(UTC) + timedelta(minutes=minutes)
        token = self._service().get_client_access_token(
            user_id=user_id, groups=[group_for_swarm(swarm_id)], minutes_to_expire=minutes
        )
        url: str = token["url"]
        return url, expires_at
