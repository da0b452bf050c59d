"""Cosmos DB adapters of the swarm and user stores (`SwarmStore`, `UserStore`) on the sync SDK.

Layout, database `swarmdb`: `nodes` (pk `/swarm_id`) holds one swarm's runtime
document (`id` "swarm") and its nodes (`node:{node_id}`), all in the swarm's logical partition;
`swarms` (pk `/user_id`) holds one listing summary per swarm (`id` = swarm_id); `users` (pk
`/username`) one document per user (`id` = username). Conditional
writes carry the ETag the service gave (`IfNotModified`), so a lost race is a `ConflictError` or a
skipped write, never a crash. Every port method is one round trip where the port allows it: these
calls sit on the hot path of every step. `CosmosClients` builds one `CosmosClient` per process on
first use, with the key locally and the managed identity in Azure, and verifies the local server's
TLS certificate against the CA file `COSMOS_CA_CERT` (devstack's) when that is set (unset in Azure);
`ensure_containers` creates the database and containers for local development and tests only
(Bicep creates them in Azure).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from azure.core import MatchConditions
from azure.cosmos import ContainerProxy, CosmosClient, CosmosDict, PartitionKey, SSLConfiguration
from azure.cosmos import exceptions as cosmos_errors

from swarm_core.adapters import sdk_http
from swarm_core.adapters.identity import app_credential
from swarm_core.models import MAINTAINED_STATUSES, Document, Node, User
from swarm_core.ports import (
    MAX_ATTEMPTS_KEPT,
    MAX_COMMIT_NODES,
    CommitChanges,
    ConflictError,
    Versioned,
)
from swarm_core.settings import Settings
from swarm_core.swarm import Swarm, SwarmSummary

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

log = logging.getLogger(__name__)

USERS = "users"
SWARMS = "swarms"
NODES = "nodes"
PARTITION_KEYS = {USERS: "/username", SWARMS: "/user_id", NODES: "/swarm_id"}
# What each container indexes (as infra/app/db.bicep declares it): only the properties the
# queries below filter or sort on. Every indexed value costs request units on every write, and
# a node document carries its conversation window and recent op ids, written at every step;
# the users container is only ever read by id.
INDEXED_PATHS: dict[str, tuple[str, ...]] = {
    USERS: (),
    SWARMS: ("/user_id/?", "/status/?", "/created_order/?"),
    NODES: ("/swarm_id/?", "/kind/?"),
}

SWARM_DOC_ID = "swarm"
# A swarm has at most a few thousand documents (Limits.max_nodes <= 2000 nodes):
# ask for big pages so that listing them is one round trip, not one per 100 items.
LIST_PAGE_SIZE = 1000
# Contention on one summary is rare (one writer per swarm commit); this only bounds a pathology.
SUMMARY_ATTEMPTS = 10

D = TypeVar("D", bound=Document)


def node_doc_id(node_id: str) -> str:
    return f"node:{node_id}"


def storable_id(value: str) -> bool:
    """True if Cosmos can hold `value` as an item id.

    Ids come from URLs and logins; the SDK puts them in the request path, where "" reads the whole
    feed, "/" is a 400 and ".." walks up, so those are refused before any call."""
    return (
        0 < len(value) <= 255
        and value not in (".", "..")
        and not any(ch in value for ch in "/\\?#")
    )


def _require_storable(value: str, what: str) -> None:
    if not storable_id(value):
        raise ValueError(f"{what} {value!r} cannot be stored (empty, too long, or has / \\ ? #)")


def _strip_system_fields(item: Mapping[str, Any]) -> dict[str, Any]:
    """The model's fields of a stored item: without `id` and Cosmos' `_rid`, `_etag`, `_ts`, ..."""
    return {k: v for k, v in item.items() if k != "id" and not k.startswith("_")}


def _load(model: type[D], item: Mapping[str, Any]) -> D:
    fields = _strip_system_fields(item)
    if model is Node:
        # A node's progress fields (older documents have them at the top level).
        fields.update(fields.pop(NODE_PROGRESS, None) or {})
    return model.model_validate(fields)


def _as_item(document: Document, item_id: str) -> dict[str, Any]:
    item = document.model_dump(mode="json")
    if isinstance(document, Node):
        item[NODE_PROGRESS] = {field: item.pop(field) for field in NODE_PROGRESS_FIELDS}
    item["id"] = item_id
    return item


def _written_etag(response: CosmosDict) -> str:
    # Writes ask for no body (`no_response`): the new ETag is in the response headers.
    etag = response.get_response_headers().get("etag")
    if not etag:  # pragma: no cover - the service always sends one on a successful write
        raise RuntimeError("Cosmos DB answered a write without an ETag")
    return str(etag)


def _created_order(created_at: datetime) -> int:
    """The listing's sort key: microseconds since the epoch.

    ISO strings do not sort as instants (`...:00Z` sorts after `...:00.5Z`, offsets differ), so
    summaries carry this number and `list_summaries` orders by it."""
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    delta = created_at - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _encode_continuation(token: str) -> str:
    # Cosmos tokens are JSON; callers put ours in URLs.
    return base64.urlsafe_b64encode(token.encode()).decode()


def _decode_continuation(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except ValueError as exc:  # binascii.Error, UnicodeDecodeError
        raise ValueError("invalid continuation token") from exc


def cosmos_credential(
    settings: Settings, credential: TokenCredential | None = None
) -> str | TokenCredential:
    """The key when one is set (the local emulator in key mode), else `credential` (default: the
    app's managed identity).

    In Azure the account has local auth disabled; `AZURE_CLIENT_ID` pins DefaultAzureCredential to
    the user-assigned identity instead of trying every identity on the host."""
    if settings.cosmos_key:
        return settings.cosmos_key
    return credential or app_credential(settings)


class CosmosClients:
    """One `CosmosClient` per thread, built on the thread's first use and kept for the life of the
    worker.

    Per thread, not per process: the SDK's client keeps the headers of its latest response on
    itself and writes to them after every call, so two threads sharing one client race on that
    dict (`RuntimeError: OrderedDict mutated during iteration`, a 500 in the middle of a delete).
    A thread's client is only ever used by that thread. Building one costs a round trip (the SDK
    reads the account), so importing the function app or creating the stores never connects; the
    Functions worker's thread pool is bounded, and so is the number of clients."""

    def __init__(
        self,
        settings: Settings,
        *,
        credential: TokenCredential | None = None,
        client_factory: Callable[..., CosmosClient] = CosmosClient,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._settings = settings
        self._credential = credential
        self._client_factory = client_factory
        self._client_options = dict(client_options or {})
        self._local = threading.local()

    @property
    def database_name(self) -> str:
        return self._settings.cosmos_database

    def client(self) -> CosmosClient:
        """This thread's client."""
        client: CosmosClient | None = getattr(self._local, "client", None)
        if client is None:
            client = self._build_client()
            self._local.client = client
            self._local.containers = {}
        return client

    def _build_client(self) -> CosmosClient:
        self._settings.require("cosmos_endpoint")
        endpoint = self._settings.cosmos_endpoint
        assert endpoint is not None
        log.info(
            "connecting to Cosmos DB endpoint=%s database=%s auth=%s thread=%s",
            endpoint,
            self.database_name,
            "key" if self._settings.cosmos_key else "managed identity",
            threading.current_thread().name,
        )
        # Cosmos DB also bounds a whole operation, its own retries included (`timeout`).
        options = sdk_http.client_options(
            timeout=sdk_http.OPERATION_TIMEOUT_SECONDS, **self._client_options
        )
        if self._settings.cosmos_ca_cert:
            # The SDK skips verification for 127.0.0.1 unless given a CA to verify with.
            tls = SSLConfiguration()
            tls.SSLCaCerts = self._settings.cosmos_ca_cert
            options.setdefault("ssl_config", tls)
        credential = cosmos_credential(self._settings, self._credential)
        return self._client_factory(endpoint, credential, **options)

    def container(self, name: str) -> ContainerProxy:
        """A container of the database, on this thread's client; a local proxy (no round trip)."""
        client = self.client()
        containers: dict[str, ContainerProxy] = self._local.containers
        proxy = containers.get(name)
        if proxy is None:
            proxy = client.get_database_client(self.database_name).get_container_client(name)
            containers[name] = proxy
        return proxy

    def ensure_containers(self) -> None:
        """Create the database and its containers if missing (local dev and tests only).

        In Azure, Bicep creates them and the app's identity has data-plane rights only, so this is
        never called on a request path."""
        client = self.client()
        database = client.create_database_if_not_exists(self.database_name)
        for name, path in PARTITION_KEYS.items():
            # `users` expires the documents that carry a `ttl` (login attempts), as in Bicep.
            database.create_container_if_not_exists(
                name,
                PartitionKey(path=path),
                default_ttl=-1 if name == USERS else None,
                indexing_policy=indexing_policy(name),
            )
        log.info(
            "Cosmos DB database=%s containers=%s ready", self.database_name, list(PARTITION_KEYS)
        )


# Cosmos DB applies at most this many operations in one patch.
MAX_PATCH_OPERATIONS = 10

# The node fields that nearly every step changes, kept in the node's document under one property
# (`_as_item`; `_load` puts them back): a step that changes them and much else (an llm step: its
# lifecycle, continuation, chat counters, conversation, interrupt and usage) can set them with one
# patch operation, and stays one patch. Written whole, a node is several times that patch.
NODE_PROGRESS = "progress"
NODE_PROGRESS_FIELDS = (
    "lifecycle",
    "continuation",
    "chat_length",
    "chat_seq",
    "last_message_at",
    "updated_at",
)
_CHANGE_KINDS = ("set", "merge", "slide")


def patch_operations(
    changes: Mapping[str, Any], stored: Callable[[str], Any] | None = None
) -> list[dict[str, Any]] | None:
    """`changes` (`forks.changes`: of an object its changed keys, set, unset or merged; of a
    window, the items that left its head and those that came at its end) as the operations of
    a Cosmos DB patch, in order; None when they are the whole document or too many for one.

    Given (`stored`) the new value of a top-level property as the document stores it
    (`_stored_property`), a property whose changes take more bytes than its value is set whole
    (a few counters, a node's progress fields), and while the operations are more than one patch
    takes, the property whose changes take the most operations per byte is set whole (a node
    written whole is several times a patch that sets a few of its parts)."""
    if "all" in changes:
        return None
    parts = _patch_parts(changes)
    # Only a merged or slid property of several operations can be fewer (set whole).
    several = [i for i, (key, operations) in enumerate(parts) if key and len(operations) > 1]
    if stored is None or not several:
        operations = _joined(parts)
        return operations if len(operations) <= MAX_PATCH_OPERATIONS else None
    wholes = {i: [_set_whole(str(parts[i][0]), stored(str(parts[i][0])))] for i in several}
    for i in several:
        if len(_json(wholes[i])) < len(_json(parts[i][1])):
            parts[i] = (parts[i][0], wholes[i])
    count = sum(len(operations) for _, operations in parts)
    while count > MAX_PATCH_OPERATIONS:
        candidates = [
            (len(parts[i][1]) - 1, len(_json(wholes[i])), i)
            for i in several
            if len(parts[i][1]) > 1
        ]
        if not candidates:
            return None
        saved, _, i = max(candidates, key=lambda c: c[0] / (c[1] + 1))
        parts[i] = (parts[i][0], wholes[i])
        count -= saved
    return _joined(parts)


def _joined(parts: list[tuple[str | None, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    return [operation for _, operations in parts for operation in operations]


def _set_whole(key: str, value: Any) -> dict[str, Any]:
    return {"op": "set", "path": f"/{_pointer(key)}", "value": value}


def _stored_property(document: Document, key: str) -> Any:
    """One top-level property of `document` as `_as_item` stores it, without the rest (a
    swarm document's dump would pack its pending effects again)."""
    if isinstance(document, Node) and key == NODE_PROGRESS:
        return document.model_dump(mode="json", include=set(NODE_PROGRESS_FIELDS))
    return document.model_dump(mode="json", include={key})[key]


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _patch_parts(changes: Mapping[str, Any]) -> list[tuple[str | None, list[dict[str, Any]]]]:
    """The operations of `changes` (`_patch_into`'s, in its order), by the top-level property
    they change (None for a key set or removed: one operation that cannot be fewer)."""
    parts: list[tuple[str | None, list[dict[str, Any]]]] = []
    for kind in ("set", "unset", "merge", "slide"):
        keys = changes.get(kind, ())
        for key in keys:
            one: dict[str, Any] = {kind: [key]} if kind == "unset" else {kind: {key: keys[key]}}
            operations: list[dict[str, Any]] = []
            _patch_into(one, "", operations)
            parts.append((key if kind in ("merge", "slide") else None, operations))
    return parts


def _patch_into(changes: Mapping[str, Any], path: str, operations: list[dict[str, Any]]) -> None:
    """Add the operations of `changes` (of a property inside the document) under `path`."""
    for key, value in changes.get("set", {}).items():
        operations.append({"op": "set", "path": f"{path}/{_pointer(key)}", "value": value})
    for key in changes.get("unset", ()):
        operations.append({"op": "remove", "path": f"{path}/{_pointer(key)}"})
    for key, inner in changes.get("merge", {}).items():
        _patch_into(inner, f"{path}/{_pointer(key)}", operations)
    for key, (dropped, added) in changes.get("slide", {}).items():
        window = f"{path}/{_pointer(key)}"
        operations += [{"op": "remove", "path": f"{window}/0"} for _ in range(dropped)]
        operations += [{"op": "add", "path": f"{window}/-", "value": item} for item in added]


def node_item_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """A node's `changes` (of its model's fields) as changes of its stored document, where the
    `NODE_PROGRESS_FIELDS` are under `NODE_PROGRESS`."""
    if "all" in changes:
        return dict(changes)
    out: dict[str, Any] = {kind: dict(changes.get(kind, {})) for kind in _CHANGE_KINDS}
    out["unset"] = list(changes.get("unset", ()))
    progress: dict[str, Any] = {}
    for kind in _CHANGE_KINDS:
        for field in NODE_PROGRESS_FIELDS:
            if field in out[kind]:
                progress.setdefault(kind, {})[field] = out[kind].pop(field)
    if gone := [field for field in out["unset"] if field in NODE_PROGRESS_FIELDS]:
        progress["unset"] = gone
        out["unset"] = [field for field in out["unset"] if field not in gone]
    if progress:
        out["merge"][NODE_PROGRESS] = progress
    return {kind: value for kind, value in out.items() if value}


def _pointer(key: str) -> str:
    """A property name in a patch path (JSON Pointer: `~` and `/` escaped)."""
    return key.replace("~", "~0").replace("/", "~1")


def indexing_policy(container: str) -> dict[str, Any]:
    """The container's indexing policy: its `INDEXED_PATHS`, nothing else."""
    return {
        "indexingMode": "consistent",
        "automatic": True,
        "includedPaths": [{"path": path} for path in INDEXED_PATHS[container]],
        "excludedPaths": [{"path": "/*"}],
    }


def _read(container: ContainerProxy, item_id: str, partition_key: str) -> dict[str, Any] | None:
    try:
        item: dict[str, Any] = container.read_item(item_id, partition_key=partition_key)
    except cosmos_errors.CosmosResourceNotFoundError:
        return None
    return item


def _status(error: cosmos_errors.CosmosBatchOperationError, index: int) -> int | None:
    """The status of one operation of a failed transactional batch."""
    responses = error.operation_responses or []
    return responses[index].get("statusCode") if index < len(responses) else None


def _delete(container: ContainerProxy, item_id: str, partition_key: str) -> None:
    # Gone already is fine: deleting is idempotent.
    with contextlib.suppress(cosmos_errors.CosmosResourceNotFoundError):
        container.delete_item(item_id, partition_key=partition_key)


def _query_partition(
    container: ContainerProxy,
    query: str,
    partition_key: str,
    parameters: Iterable[tuple[str, Any]] = (),
) -> list[Any]:
    # `query` filters on `c.<partition field> = @pk` in its text as well: the local server
    # ignores `partition_key` (and refuses a query without such a filter); in Azure the filter
    # is redundant and harmless.
    params: list[dict[str, object]] = [{"name": "@pk", "value": partition_key}]
    params.extend({"name": name, "value": value} for name, value in parameters)
    return list(
        container.query_items(
            query, parameters=params, partition_key=partition_key, max_item_count=LIST_PAGE_SIZE
        )
    )


class CosmosSwarmStore:
    """Swarm runtime documents and nodes in `nodes`; summaries in `swarms`."""

    def __init__(self, clients: CosmosClients) -> None:
        self._clients = clients

    @property
    def _nodes(self) -> ContainerProxy:
        return self._clients.container(NODES)

    @property
    def _swarms(self) -> ContainerProxy:
        return self._clients.container(SWARMS)

    def probe(self) -> None:
        """One read of the database (readiness)."""
        self._clients.client().get_database_client(self._clients.database_name).read()

    # --- the swarm runtime document (the commit point) ----------------------------------------

    def create_swarm(self, swarm: Swarm) -> str:
        try:
            response = self._nodes.create_item(_as_item(swarm, SWARM_DOC_ID), no_response=True)
        except cosmos_errors.CosmosResourceExistsError as exc:
            raise ConflictError(f"swarm {swarm.swarm_id} exists") from exc
        return _written_etag(response)

    def get_swarm(self, swarm_id: str) -> Versioned[Swarm] | None:
        item = _read(self._nodes, SWARM_DOC_ID, swarm_id)
        if item is None:
            return None
        return Versioned(_load(Swarm, item), item["_etag"])

    def replace_swarm(
        self,
        swarm: Swarm,
        etag: str,
        nodes: Sequence[Node] = (),
        deleted_node_ids: Sequence[str] = (),
        changes: CommitChanges | None = None,
    ) -> str:
        try:
            if not nodes and not deleted_node_ids:
                response = self._nodes.replace_item(
                    SWARM_DOC_ID,
                    _as_item(swarm, SWARM_DOC_ID),
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                    no_response=True,
                )
                return _written_etag(response)
            try:
                return self._commit_batch(swarm, etag, nodes, deleted_node_ids, changes)
            except cosmos_errors.CosmosBatchOperationError as refused:
                if refused.status_code != 400 or changes is None:
                    raise
                # A patch the service refuses (a path it cannot take, as a property name it
                # reads otherwise, or a parent missing from an older document): the batch
                # wrote nothing, so the same commit goes again, every document whole.
                log.warning(
                    "patch refused swarm_id=%s seq=%s: written whole (%s)",
                    swarm.swarm_id,
                    swarm.seq,
                    refused,
                )
                return self._commit_batch(swarm, etag, nodes, deleted_node_ids, None)
        except (
            cosmos_errors.CosmosAccessConditionFailedError,
            cosmos_errors.CosmosResourceNotFoundError,
            cosmos_errors.CosmosBatchOperationError,
        ) as exc:
            if isinstance(exc, cosmos_errors.CosmosBatchOperationError) and (
                exc.error_index != 0 or exc.status_code not in (404, 412)
            ):
                if exc.status_code != 412:
                    raise  # not a condition: a real error of the batch
                # A node patched is not as the commit read it (no other commit can have
                # changed it: only a write outside commits). The committer decides again on
                # fresh reads (it forgets what it remembered of the swarm).
                log.warning(
                    "node not as read swarm_id=%s seq=%s: commit refused",
                    swarm.swarm_id,
                    swarm.seq,
                )
            # 412: another step committed first; 404: the swarm was deleted. Either way this
            # commit lost (wrote nothing), and the worker retries from a fresh read.
            log.info(
                "commit lost swarm_id=%s seq=%s status=%s",
                swarm.swarm_id,
                swarm.seq,
                exc.status_code,
            )
            raise ConflictError(f"swarm {swarm.swarm_id} changed") from exc

    def _commit_batch(
        self,
        swarm: Swarm,
        etag: str,
        nodes: Sequence[Node],
        deleted_node_ids: Sequence[str],
        changes: CommitChanges | None,
    ) -> str:
        """The swarm document (iff at `etag`), its changed nodes and the deletes of its
        discarded nodes in one transactional batch: the swarm's replace comes first, so a lost
        race fails it at index 0 (before any delete could fail on a node deleted meanwhile).
        A document the commit read is patched with its changes when one patch can take them
        (`patch_operations`; a node's conversation window and recent op ids then travel as one
        item each, not whole: a commit's request is a fraction of the size): the swarm document
        iff at `etag`, a node iff still at the `seq` read."""
        if len(nodes) + len(deleted_node_ids) > MAX_COMMIT_NODES:
            # A step writes at most max_children (20) + 2 nodes; a rerun that would discard
            # more is refused before it commits (`services.rerun_node`).
            raise ValueError(f"a commit writes and deletes at most {MAX_COMMIT_NODES} nodes")
        swarm_patch = (
            None
            if changes is None
            else patch_operations(changes.swarm, partial(_stored_property, swarm))
        )
        operations: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
            ("patch", (SWARM_DOC_ID, swarm_patch), {"if_match_etag": etag})
            if swarm_patch
            else ("replace", (SWARM_DOC_ID, _as_item(swarm, SWARM_DOC_ID)), {"if_match_etag": etag})
        ]
        for node in nodes:
            item_id = node_doc_id(node.node_id)
            _require_storable(item_id, "node id")
            changed = None if changes is None else changes.nodes.get(node.node_id)
            patch = (
                None
                if changed is None
                else patch_operations(
                    node_item_changes(changed.changes), partial(_stored_property, node)
                )
            )
            if changed is not None and patch:
                condition = f"from c where c.seq = {int(changed.base_seq)}"
                operations.append(("patch", (item_id, patch), {"filter_predicate": condition}))
            else:
                operations.append(("upsert", (_as_item(node, item_id),), {}))
        for node_id in deleted_node_ids:
            operations.append(("delete", (node_doc_id(node_id),), {}))
        results = self._nodes.execute_item_batch(operations, partition_key=swarm.swarm_id)
        return str(results[0]["eTag"])

    def delete_swarm(self, swarm_id: str) -> None:
        self._delete_partition(swarm_id, keep_swarm_document=False)

    def delete_nodes(self, swarm_id: str) -> None:
        self._delete_partition(swarm_id, keep_swarm_document=True)

    def _delete_partition(self, swarm_id: str, keep_swarm_document: bool) -> None:
        nodes = self._nodes
        ids: list[str] = _query_partition(
            nodes, "SELECT VALUE c.id FROM c WHERE c.swarm_id = @pk", swarm_id
        )
        if keep_swarm_document:
            ids = [item_id for item_id in ids if item_id != SWARM_DOC_ID]
        # The swarm document goes last: until it is gone the purge can find the swarm again, so
        # one interrupted half-way is finished by the next.
        ids.sort(key=lambda item_id: item_id == SWARM_DOC_ID)
        for item_id in ids:
            _delete(nodes, item_id, swarm_id)
        log.info("deleted swarm documents swarm_id=%s documents=%s", swarm_id, len(ids))

    # --- nodes -------------------------------------------------------------------------------

    def get_node(self, swarm_id: str, node_id: str) -> Versioned[Node] | None:
        if not storable_id(node_doc_id(node_id)):
            return None  # such a node cannot exist
        item = _read(self._nodes, node_doc_id(node_id), swarm_id)
        if item is None:
            return None
        return Versioned(_load(Node, item), item["_etag"])

    def get_swarm_and_node(
        self, swarm_id: str, node_id: str
    ) -> tuple[Versioned[Swarm] | None, Versioned[Node] | None]:
        """Both reads in one transactional batch: one round trip, one snapshot of the
        partition, the cost of two point reads (the batch of a commit, read-only). A batch
        fails as a whole when a document is missing: then the swarm document, and after it the
        node, are read one by one (a node is read after the swarm document it goes with)."""
        item_id = node_doc_id(node_id)
        if not storable_id(item_id):
            return self.get_swarm(swarm_id), None
        reads = [("read", (SWARM_DOC_ID,)), ("read", (item_id,))]
        try:
            results = self._nodes.execute_item_batch(reads, partition_key=swarm_id)
        except cosmos_errors.CosmosBatchOperationError as exc:
            if exc.error_index == 0 and _status(exc, 0) == 404:
                return None, None
            if exc.error_index != 1 or _status(exc, 1) != 404:
                raise
            swarm = self.get_swarm(swarm_id)
            return swarm, None if swarm is None else self.get_node(swarm_id, node_id)
        swarm_item, node_item = results[0]["resourceBody"], results[1]["resourceBody"]
        return (
            Versioned(_load(Swarm, swarm_item), swarm_item["_etag"]),
            Versioned(_load(Node, node_item), node_item["_etag"]),
        )

    def get_swarm_and_nodes(self, swarm_id: str) -> tuple[Versioned[Swarm] | None, list[Node]]:
        """Every document of the swarm's partition in one query: its swarm document and nodes."""
        swarm: Versioned[Swarm] | None = None
        nodes = []
        everything = "SELECT * FROM c WHERE c.swarm_id = @pk"
        for item in _query_partition(self._nodes, everything, swarm_id):
            if item["id"] == SWARM_DOC_ID:
                swarm = Versioned(_load(Swarm, item), item["_etag"])
            elif item.get("kind") == "node":
                nodes.append(_load(Node, item))
        return swarm, nodes

    def list_nodes(self, swarm_id: str) -> list[Node]:
        items = _query_partition(
            self._nodes,
            "SELECT * FROM c WHERE c.swarm_id = @pk AND c.kind = @kind",
            swarm_id,
            [("@kind", "node")],
        )
        return [_load(Node, item) for item in items]

    # --- summaries (listing per user) --------------------------------------------------------

    def put_summary(self, summary: SwarmSummary) -> None:
        """Read, then create or replace iff unchanged; a stored higher `seq` wins (2 calls).

        Cosmos has no "write iff seq is lower" in one call that the local server also runs, and
        summaries change only when a swarm's status does, so the read is off the common path."""
        _require_storable(summary.swarm_id, "swarm id")
        swarms = self._swarms
        item = _as_item(summary, summary.swarm_id)
        item["created_order"] = _created_order(summary.created_at)
        for _ in range(SUMMARY_ATTEMPTS):
            current = _read(swarms, summary.swarm_id, summary.user_id)
            try:
                if current is None:
                    swarms.create_item(item, no_response=True)
                elif int(current.get("seq", 0)) > summary.seq:
                    return  # never go back to an older view of the swarm
                else:
                    swarms.replace_item(
                        summary.swarm_id,
                        item,
                        etag=current["_etag"],
                        match_condition=MatchConditions.IfNotModified,
                        no_response=True,
                    )
                return
            except (
                cosmos_errors.CosmosResourceExistsError,
                cosmos_errors.CosmosAccessConditionFailedError,
                cosmos_errors.CosmosResourceNotFoundError,
            ):
                continue  # someone wrote (or deleted) it in between: look again
        raise ConflictError(f"summary of swarm {summary.swarm_id} kept changing")

    def get_summary(self, user_id: str, swarm_id: str) -> SwarmSummary | None:
        if not storable_id(swarm_id):
            return None
        item = _read(self._swarms, swarm_id, user_id)
        return None if item is None else _load(SwarmSummary, item)

    def list_summaries(
        self, user_id: str, limit: int, continuation: str | None = None
    ) -> tuple[list[SwarmSummary], str | None]:
        """One page, newest first, in one round trip; the token resumes the query (by_page)."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        token = _decode_continuation(continuation) if continuation else None
        pager = self._swarms.query_items(
            "SELECT * FROM c WHERE c.user_id = @pk AND c.status != 'deleted' "
            "ORDER BY c.created_order DESC",
            parameters=[{"name": "@pk", "value": user_id}],
            partition_key=user_id,
            max_item_count=limit,
        ).by_page(token)
        try:
            page = next(pager, None)
            items = [] if page is None else [_load(SwarmSummary, item) for item in page]
        except cosmos_errors.CosmosHttpResponseError as exc:
            if continuation and exc.status_code == 400:
                raise ValueError("invalid continuation token") from exc
            raise
        # by_page is typed as a plain Iterator; it is an azure-core PageIterator.
        next_token: str | None = pager.continuation_token  # type: ignore[attr-defined]
        return items, _encode_continuation(next_token) if next_token else None

    def delete_summary(self, user_id: str, swarm_id: str) -> None:
        if storable_id(swarm_id):
            _delete(self._swarms, swarm_id, user_id)

    def list_active_summaries(self, limit: int) -> list[SwarmSummary]:
        """A cross-partition query (the maintenance timer's, never a request's), sorted here:
        the emulator cannot order a cross-partition query."""
        statuses = ", ".join(f"'{status.value}'" for status in sorted(MAINTAINED_STATUSES))
        items = self._swarms.query_items(
            f"SELECT * FROM c WHERE c.status IN ({statuses})",
            enable_cross_partition_query=True,
            max_item_count=max(limit, 1),
        )
        active = [_load(SwarmSummary, item) for item in itertools.islice(items, limit * 4)]
        return sorted(active, key=lambda s: s.updated_at)[:limit]


class CosmosAttemptStore:
    """Attempts in `users`, one document per key (id and partition `attempts:<key>`, which no
    username can be: usernames have no colon). Each carries a `ttl`, so Cosmos DB deletes it
    when its window has passed (the container's default TTL is on, -1: only items with a `ttl`
    expire); reads also ignore attempts older than the window, so expiry is never relied on."""

    ATTEMPTS = 8  # read-modify-write rounds before giving up under contention

    def __init__(self, clients: CosmosClients) -> None:
        self._clients = clients

    @staticmethod
    def _id(key: str) -> str:
        return f"attempts:{hashlib.sha256(key.encode()).hexdigest()}"

    def recent(self, key: str, since: float) -> list[float]:
        item_id = self._id(key)
        item = _read(self._clients.container(USERS), item_id, item_id)
        return [t for t in (item or {}).get("attempts", []) if t >= since]

    def add(self, key: str, at: float, since: float) -> list[float]:
        users, item_id = self._clients.container(USERS), self._id(key)
        for _ in range(self.ATTEMPTS):
            item = _read(users, item_id, item_id)
            kept = sorted([t for t in (item or {}).get("attempts", []) if t >= since] + [at])
            document = {
                "id": item_id,
                "username": item_id,
                "kind": "attempts",
                "attempts": kept[-MAX_ATTEMPTS_KEPT:],
                "ttl": max(int(at - since) + 60, 60),
            }
            try:
                if item is None:
                    users.create_item(document, no_response=True)
                else:
                    users.replace_item(
                        item_id,
                        document,
                        etag=item["_etag"],
                        match_condition=MatchConditions.IfNotModified,
                        no_response=True,
                    )
                return kept
            except (
                cosmos_errors.CosmosResourceExistsError,
                cosmos_errors.CosmosAccessConditionFailedError,
                cosmos_errors.CosmosResourceNotFoundError,
            ):
                continue  # another instance recorded one in between: read again
        raise ConflictError(f"attempts of {item_id} kept changing")

    def clear(self, key: str) -> None:
        item_id = self._id(key)
        _delete(self._clients.container(USERS), item_id, item_id)


class CosmosUserStore:
    """Users in `users`, one document per (normalised) username, which is also its id."""

    def __init__(self, clients: CosmosClients) -> None:
        self._clients = clients

    def create_user(self, user: User) -> None:
        _require_storable(user.username, "username")
        try:
            self._clients.container(USERS).create_item(
                _as_item(user, user.username), no_response=True
            )
        except cosmos_errors.CosmosResourceExistsError as exc:
            raise ConflictError(f"username {user.username} is taken") from exc

    def get_user(self, username: str) -> User | None:
        if not storable_id(username):
            return None
        item = _read(self._clients.container(USERS), username, username)
        return None if item is None else _load(User, item)

    def replace_user(self, user: User) -> bool:
        if not storable_id(user.username):
            return False
        try:
            self._clients.container(USERS).replace_item(
                user.username, _as_item(user, user.username), no_response=True
            )
        except cosmos_errors.CosmosResourceNotFoundError:
            return False
        return True
