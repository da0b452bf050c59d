"""The committer's knowledge of applied commits: a commit is one seq of one swarm, not an op id.

An op id can name more than one commit: a fork's outstanding operations keep their ids (the
source committed them too), and an operation parked by its own commit commits again when it
runs. A commit cut short must still be rolled forward when its op id was applied before."""

from __future__ import annotations

from typing import Any

import pytest

from swarm_core.bootstrap import InMemorySwarmApp, build_in_memory
from swarm_core.commits import ControlCommit, Outcome
from swarm_core.models import utcnow
from swarm_core.ports import Versioned, history_stream
from swarm_core.swarm import Swarm

USER = "alice"


class HistoryDown(Exception):
    pass


def touch(got: Versioned[Swarm]) -> Any:
    """A control commit that changes nothing but the seq and says so with one event."""
    return ControlCommit(got.value, utcnow(), note="touch").decision()


@pytest.fixture
def app() -> InMemorySwarmApp:
    return build_in_memory()


def history_seqs(app: InMemorySwarmApp, swarm_id: str) -> list[int]:
    return sorted({e["seq"] for e in app.adapters.content.read(history_stream(swarm_id))})


def commit_cut_short(app: InMemorySwarmApp, swarm_id: str, op_id: str) -> int:
    """Commit `op_id` on the swarm, its apply dying at the history batch (the last write)."""
    content = app.committer.content
    append = content.append

    def failing_append(stream: str, *args: Any, **kwargs: Any) -> bool:
        if stream == history_stream(swarm_id):
            raise HistoryDown(stream)
        return bool(append(stream, *args, **kwargs))

    content.append = failing_append  # type: ignore[method-assign]
    try:
        with pytest.raises(HistoryDown):
            app.committer.run(swarm_id, op_id, touch)
    finally:
        del content.append  # the instance attribute: the class's method again
    got = app.adapters.store.get_swarm(swarm_id)
    assert got is not None and got.value.pending is not None
    assert got.value.pending.op_id == op_id
    return got.value.pending.seq


def test_a_commit_of_an_op_id_applied_on_another_swarm_is_rolled_forward(app):
    first = app.services.create_swarm(USER, "Plan a trip")
    second = app.services.create_swarm(USER, "Plan a trip")  # as a fork: the same op ids
    app.committer.run(first.swarm_id, "op-shared", touch)
    seq = commit_cut_short(app, second.swarm_id, "op-shared")

    app.committer.run(second.swarm_id, "op-next", touch)

    assert history_seqs(app, second.swarm_id) == list(range(1, seq + 2))


def test_a_redelivered_op_id_whose_earlier_commit_was_applied_redrives_its_new_one(app):
    swarm = app.services.create_swarm(USER, "Plan a trip")
    app.committer.run(swarm.swarm_id, "op-again", touch)  # as a parked operation's first commit
    app.committer.run(swarm.swarm_id, "op-between", touch)
    seq = commit_cut_short(app, swarm.swarm_id, "op-again")

    run = app.committer.run(swarm.swarm_id, "op-again", touch)

    assert run.outcome == Outcome.REDRIVEN and run.seq == seq
    assert history_seqs(app, swarm.swarm_id) == list(range(1, seq + 1))
