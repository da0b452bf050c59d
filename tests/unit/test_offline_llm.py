"""The offline scripted LLM: deterministic, varied by seed and config, valid for every task."""

from __future__ import annotations

from swarm_core.actions.schemas import RESPONSE_MODELS
from swarm_core.adapters.offline_llm import OfflineScriptedLLM
from swarm_core.demo import run_swarm
from swarm_core.llm import LLMRequest
from swarm_core.models import SwarmConfig

GOAL = "Plan a 3-day trip to Lisbon"


def shape(seed: int, breadth: int = 3, depth: int = 2) -> tuple[int, int, str | None]:
    config = SwarmConfig(seed=seed, offline_breadth=breadth, offline_depth=depth)
    run = run_swarm(GOAL, config=config)
    assert run.status == "completed", run.final_report
    return len(run.nodes), max(n.depth for n in run.nodes), run.final_report


def test_the_same_goal_and_seed_give_the_same_swarm():
    assert shape(3) == shape(3)


def test_seed_breadth_and_depth_change_the_tree():
    shapes = {shape(seed)[:2] for seed in range(6)}
    assert len(shapes) > 1, "seeds vary the trees"
    assert shape(0, depth=1)[1] == 1, "depth 1: the root's children do the work"
    wide = shape(0, breadth=6, depth=1)[0]
    narrow = shape(0, breadth=2, depth=1)[0]
    assert wide > narrow


def test_every_task_answer_validates_against_its_model():
    llm = OfflineScriptedLLM()
    facts = {
        "goal": GOAL,
        "directive": GOAL,
        "name": "Root",
        "depth": 0,
        "is_root": False,
        "child_reports": [{"name": "a", "report": "A report"}],
        "conversation": [{"role": "user", "content": "Four words are enough here"}],
    }
    for task, model in RESPONSE_MODELS.items():
        result = llm.complete(LLMRequest(task=task, messages=[], facts=facts), model)
        model.model_validate(result.data)
        assert result.usage.llm_calls == 1 and result.usage.total_tokens > 0


def test_a_too_short_answer_gets_a_follow_up_and_a_full_one_suffices():
    llm = OfflineScriptedLLM()
    model = RESPONSE_MODELS["judge"]

    def judge(answer: str, follow_ups: int = 0) -> dict:
        facts = {
            "directive": "d",
            "conversation": [{"role": "user", "content": answer}],
            "follow_ups": follow_ups,
            "max_follow_ups": 2,
        }
        return llm.complete(LLMRequest(task="judge", messages=[], facts=facts), model).data

    assert judge("ok")["sufficient"] is False
    assert judge("ok")["follow_up"]
    assert judge("ok", follow_ups=2)["sufficient"] is True
    assert judge("About 900 EUR, relaxed pace, good food")["sufficient"] is True
