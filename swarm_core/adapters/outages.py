"""What an outage of a dependency looks like through the Azure SDKs, in one place: the HTTP layer
answers these with 503 and `Retry-After` (the request changed nothing that was not committed)
instead of 500."""

from __future__ import annotations

from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.cosmos.exceptions import CosmosClientTimeoutError

# Seconds a client is asked to wait before trying again.
RETRY_AFTER_SECONDS = 5


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says a dependency (Cosmos DB, Storage, Web PubSub) is down or overloaded:
    unreachable, timed out, throttling (429) or failing on its side (5xx)."""
    if isinstance(
        exc,
        ServiceRequestError
        | ServiceResponseError
        | CosmosClientTimeoutError
        | ConnectionError
        | TimeoutError,
    ):
        return True
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        return status == 429 or status >= 500
    return False
