"""A worker runs next, itself, the first operation each of its steps enqueues (`RUN_NEXT_STEPS`),
held from the queue until it settles it: a node's steps follow one another without a trip through
the queue, with the same result as one step per delivery. (The fault-injection suite crashes at
every port call of such chains: `tests/harness.py` runs them.)"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from swarm_core.adapters.offline_llm import OfflineScriptedLLM
from swarm_core.bootstrap import InMemorySwarmApp, MemoryAdapters, build_in_memory
from swarm_core.commits import Outcome
from swarm_core.in_process import drain
from swarm_core.llm import LLMError, LLMRequest, LLMResult
from swarm_core.operations import parse_operation
from swarm_core.settings import Settings
from tests.harness import (
    assert_completed,
    final_state,
    one_step_per_delivery,
    run_scenario,
    scenario_config,
)

USER = "user-1"


def app_running_next(steps: int, llm: Any = None) -> InMemorySwarmApp:
    settings = Settings(BCRYPT_ROUNDS=4, AUTH_SECRET="r" * 40, RUN_NEXT_STEPS=steps)
    adapters = MemoryAdapters(llm=llm) if llm is not None else MemoryAdapters()
    return build_in_memory(adapters=adapters, settings=settings)


def spawned(app: InMemorySwarmApp) -> str:
    swarm = app.services.create_swarm(USER, "Plan a 3-day trip to Lisbon", scenario_config())
    app.services.spawn(USER, swarm.swarm_id)
    return swarm.swarm_id


def deliver_one(app: InMemorySwarmApp) -> Outcome:
    message = app.adapters.queue.receive()
    assert message is not None
    outcome = app.worker.process(message.body)
    app.adapters.queue.ack(message)
    return outcome


def test_one_message_runs_the_steps_its_steps_enqueue_and_settles_each():
    app = app_running_next(16)
    swarm_id = spawned(app)
    assert deliver_one(app) == Outcome.COMMITTED
    seq = app.services.get_swarm(USER, swarm_id).seq
    assert seq > 3, "the spawn's message ran the steps after it too"
    assert app.adapters.queue.release_held() == 0, "every step run next was settled"
    # What is queued is what the chain did not run (its steps' other operations), once each.
    queued = [parse_operation(body).op_id for body in app.adapters.queue.pending_bodies()]
    assert len(set(queued)) == len(queued)


def test_a_chain_stops_after_run_next_steps():
    seqs = []
    for app in (app_running_next(0), app_running_next(2)):
        swarm_id = spawned(app)
        deliver_one(app)
        seqs.append(app.services.get_swarm(USER, swarm_id).seq)
        assert app.adapters.queue.release_held() == 0
    assert seqs[1] == seqs[0] + 2  # the spawn's step, then two more


class FailingOnce:
    """The offline LLM, failing its first call with a retryable error."""

    def __init__(self) -> None:
        self.llm = OfflineScriptedLLM()
        self.failed = False

    def complete(self, request: LLMRequest, response_model: type[BaseModel]) -> LLMResult:
        if not self.failed:
            self.failed = True
            raise LLMError("rate limited", retryable=True)
        return self.llm.complete(request, response_model)


def test_a_step_run_next_that_fails_is_left_to_the_queue():
    app = app_running_next(16, FailingOnce())
    swarm_id = spawned(app)
    assert deliver_one(app) == Outcome.COMMITTED  # the spawn's own step stands
    assert app.services.get_swarm(USER, swarm_id).seq == 2  # create, spawn: the llm step failed
    [body] = app.adapters.queue.pending_bodies()
    assert parse_operation(body).kind == "llm"  # visible again: the next delivery runs it
    assert app.adapters.queue.release_held() == 0
    drain(app)
    assert app.services.get_swarm(USER, swarm_id).seq > 3


def test_chained_and_one_by_one_runs_end_alike():
    chained, stepped = run_scenario(), run_scenario(make_rig=one_step_per_delivery)
    assert chained.rig.worker.run_next_steps > 0
    assert chained.deliveries < stepped.deliveries / 2
    assert_completed(chained)
    assert final_state(chained) == final_state(stepped)
