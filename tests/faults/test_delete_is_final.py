"""Delete is final (DESIGN.md §4.8): a swarm deleted at any point of its run — with its operations
still queued, a worker's effects landing after the purge, or the delete itself cut short — ends
with not one blob, document or listing entry left once its work has drained and maintenance has
run. In memory and on the emulators (Cosmos DB server, Azurite)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from swarm_core.adapters.blob import BlobContentStore
from swarm_core.adapters.cosmos import NODES, CosmosClients, CosmosSwarmStore
from swarm_core.adapters.memory import MemoryContentStore, MemorySwarmStore
from swarm_core.bootstrap import InMemorySwarmApp, MemoryAdapters, build_in_memory
from swarm_core.commits import Outcome, SwarmNotFound
from swarm_core.forks import commit_record
from swarm_core.in_process import drain, reply_through_services, waiting_nodes
from swarm_core.models import SwarmConfig, SwarmStatus
from swarm_core.services import NotFound
from tests.harness import emulator_storage

USER = "alice"
NOW = timedelta(0)  # maintenance's `stuck_after` in these tests: every delete is old enough
Leftovers = Callable[[str], list[str]]


def memory_leftovers(store: MemorySwarmStore, content: MemoryContentStore) -> Leftovers:
    def leftovers(swarm_id: str) -> list[str]:
        found = []
        if store.get_swarm(swarm_id) is not None:
            found.append("swarm")  # the document ids the Cosmos store uses
        found += [n.node_id for n in store.list_nodes(swarm_id)]
        if store.get_summary(USER, swarm_id) is not None:
            found.append(f"summary {swarm_id}")
        found += [k for k in content._streams if k.startswith(f"{swarm_id}/")]
        found += [k for k in content._claims if k.startswith(f"{swarm_id}/")]
        found += [f"snapshots of {swarm_id}"] * (swarm_id in content._snapshots)
        return found

    return leftovers


def azure_leftovers(clients: CosmosClients, content: BlobContentStore) -> Leftovers:
    def leftovers(swarm_id: str) -> list[str]:
        nodes = clients.container(NODES)
        found = list(
            nodes.query_items(
                "SELECT VALUE c.id FROM c WHERE c.swarm_id = @pk",
                parameters=[{"name": "@pk", "value": swarm_id}],
                partition_key=swarm_id,
            )
        )
        summaries = clients.container("swarms")
        found += [
            f"summary {i}"
            for i in summaries.query_items(
                "SELECT VALUE c.id FROM c WHERE c.user_id = @pk AND c.id = @id",
                parameters=[{"name": "@pk", "value": USER}, {"name": "@id", "value": swarm_id}],
                partition_key=USER,
            )
        ]
        found += list(content._container().list_blob_names(name_starts_with=f"{swarm_id}/"))
        return found

    return leftovers


@pytest.fixture(params=["memory", pytest.param("emulators", marks=pytest.mark.emulators)])
def rig(request: pytest.FixtureRequest) -> Iterator[tuple[InMemorySwarmApp, Leftovers, int]]:
    """An app, a way to list everything stored for a swarm, and how many points to delete at."""
    if request.param == "memory":
        adapters = MemoryAdapters()
        yield (
            build_in_memory(adapters=adapters),
            memory_leftovers(adapters.store, adapters.content),
            40,
        )
        return
    stack = request.getfixturevalue("emulator_stack")
    clients, content = emulator_storage(stack.settings, "delete")
    adapters: Any = MemoryAdapters(store=CosmosSwarmStore(clients), content=content)  # type: ignore[arg-type]
    yield build_in_memory(adapters=adapters), azure_leftovers(clients, content), 6


def start(app: InMemorySwarmApp) -> str:
    config = SwarmConfig(offline_breadth=2, offline_depth=1)
    swarm = app.services.create_swarm(USER, "Plan a 3-day trip to Lisbon", config)
    app.services.spawn(USER, swarm.swarm_id)
    return swarm.swarm_id


def run_for(app: InMemorySwarmApp, swarm_id: str, deliveries: int) -> int:
    """Run the swarm for up to `deliveries` queue messages, answering its questions."""
    answer = reply_through_services(app, USER, swarm_id, lambda node, chat: "Mid-range, May")
    done = 0
    while done < deliveries:
        ran = drain(app, limit=deliveries - done)
        done += ran
        waiting = waiting_nodes(app, swarm_id)
        if not ran and not waiting:
            break
        for node in waiting:
            answer(node, [])
    return done


def test_a_swarm_deleted_at_any_point_of_its_run_leaves_nothing(rig):
    app, leftovers, points = rig
    total = run_for(app, start(app), 10_000)
    assert total > 10
    for at in sorted({round(i * total / (points - 1)) for i in range(points)}):
        swarm_id = start(app)
        run_for(app, swarm_id, at)
        app.services.delete_swarm(USER, swarm_id)
        with pytest.raises(NotFound):
            app.services.get_swarm(USER, swarm_id)
        assert swarm_id not in [s.swarm_id for s in app.services.list_swarms(USER, 100)[0]]
        drain(app)  # the swarm's operations still queued: each is dropped, writing nothing
        assert set(leftovers(swarm_id)) <= {"swarm", f"summary {swarm_id}"}  # the tombstone
        app.services.maintain(stuck_after=NOW)
        assert leftovers(swarm_id) == [], f"deleted after {at} of {total} steps"


def test_effects_written_after_the_purge_are_purged_by_maintenance(rig):
    """A worker of another process committed a step just before the delete and writes its
    effects after the purge (a slow worker): maintenance finds and purges them."""
    app, leftovers, _ = rig
    swarm_id = start(app)
    run_for(app, swarm_id, 3)
    got = app.adapters.store.get_swarm(swarm_id)
    assert got is not None and got.value.pending is not None
    late = got.value
    # The slow worker holds the nodes its commit wrote (its record is made of them).
    store = app.adapters.store
    written = [store.get_node(swarm_id, node_id) for node_id in late.pending.effects.node_ids]
    nodes = [got.value for got in written if got is not None]
    app.services.delete_swarm(USER, swarm_id)
    before = leftovers(swarm_id)
    with pytest.raises(SwarmNotFound, match="is gone"):
        # Another process rolling the commit forward reads its nodes back: gone, so it
        # writes nothing (its message is dropped next time: the swarm is deleted).
        app.committer.apply(late, late.pending)
    assert leftovers(swarm_id) == before
    record = commit_record(late.pending, None, late, nodes)
    app.committer.apply(late, late.pending, record, nodes)  # the slow worker's writes land now
    assert leftovers(swarm_id)
    counts = app.services.maintain(stuck_after=timedelta(hours=1))
    assert counts["purged"] == 0 and leftovers(swarm_id)  # it might still be writing
    assert app.services.maintain(stuck_after=NOW)["purged"] == 1
    assert leftovers(swarm_id) == []


def test_operations_of_a_deleted_swarm_are_dropped(rig):
    app, leftovers, _ = rig
    swarm_id = start(app)
    message = app.adapters.queue.receive()
    assert message is not None
    app.services.delete_swarm(USER, swarm_id)
    assert app.worker.process(message.body) == Outcome.DROPPED
    app.adapters.queue.ack(message)
    app.services.maintain(stuck_after=NOW)
    assert app.worker.process(message.body) == Outcome.DROPPED  # after the purge too
    assert leftovers(swarm_id) == []


class CutShort(Exception):
    pass


def test_a_delete_cut_short_is_finished_by_asking_again_or_by_maintenance(rig):
    app, leftovers, _ = rig
    for finish in ("again", "maintenance"):
        swarm_id = start(app)
        run_for(app, swarm_id, 5)
        content = app.adapters.content
        real = content.delete_swarm

        def crash(swarm_id: str) -> None:
            raise CutShort

        content.delete_swarm = crash  # type: ignore[method-assign]
        try:
            with pytest.raises(CutShort):
                app.services.delete_swarm(USER, swarm_id)
        finally:
            content.delete_swarm = real  # type: ignore[method-assign]
        # The tombstone is committed: the swarm is gone for every reader and writer.
        with pytest.raises(NotFound):
            app.services.pause(USER, swarm_id)
        assert swarm_id not in [s.swarm_id for s in app.services.list_swarms(USER, 100)[0]]
        if finish == "again":
            with pytest.raises(NotFound):
                app.services.delete_swarm(USER, swarm_id)
            drain(app)
            assert set(leftovers(swarm_id)) <= {"swarm", f"summary {swarm_id}"}
        app.services.maintain(stuck_after=NOW)
        assert leftovers(swarm_id) == [], finish


def test_the_tombstone_is_announced_and_maintenance_leaves_young_deletes(rig):
    app, leftovers, _ = rig
    swarm_id = start(app)
    app.services.delete_swarm(USER, swarm_id)
    last = app.adapters.publisher.published[swarm_id][-1]
    assert last["type"] == "swarm.status"
    assert last["data"]["status"] == SwarmStatus.DELETED.value
    assert app.services.maintain(stuck_after=timedelta(hours=1))["purged"] == 0
    assert leftovers(swarm_id)  # the tombstone, until maintenance's turn
    drain(app)
    app.services.maintain(stuck_after=NOW)
    assert leftovers(swarm_id) == []
