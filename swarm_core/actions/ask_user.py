"""`ask_user`: a conversation with the user on the node's own chat.

Ask (LLM writes the question) -> wait for the user (the invocation ends; the reply resumes the
node) -> judge the answer (LLM) -> follow up while it does not suffice, up to `max_follow_ups` ->
thank the user and report upward what they want. One exchange is two steps: the resume (which
asks for the judgement) and the judgement (which asks again or reports).
"""

from __future__ import annotations

from typing import Any

from swarm_core.actions.facts import node_facts
from swarm_core.actions.schemas import AskResponse, JudgeResponse
from swarm_core.models import ChatRole, Lifecycle, Node
from swarm_core.step_context import FactsFunction, StepContext
from swarm_core.swarm import Swarm

CLOSING_MESSAGE = "Thank you, that is what I needed."


def start(ctx: StepContext, args: dict[str, Any]) -> None:
    node = ctx.require_node()
    node.lifecycle = Lifecycle.RUNNING
    ctx.touch(node)
    ctx.call_llm("ask", "on_question")


def on_question(ctx: StepContext, args: dict[str, Any]) -> None:
    answer = AskResponse.model_validate(args["completion"])
    ctx.ask_user(answer.message, "on_answer")


def on_answer(ctx: StepContext, args: dict[str, Any]) -> None:
    ctx.call_llm("judge", "on_judgement")


def judge_facts(swarm: Swarm, node: Node) -> dict[str, Any]:
    return {
        **node_facts(swarm, node),
        "conversation": node.context.get("conversation", []),
        "follow_ups": node.execution_memory.get("follow_ups", 0),
        "max_follow_ups": swarm.config.limits.max_follow_ups,
    }


def on_judgement(ctx: StepContext, args: dict[str, Any]) -> None:
    node = ctx.require_node()
    verdict = JudgeResponse.model_validate(args["completion"])
    follow_ups = int(node.execution_memory.get("follow_ups", 0))
    if not verdict.sufficient and verdict.follow_up and follow_ups < ctx.limits.max_follow_ups:
        node.execution_memory["follow_ups"] = follow_ups + 1
        ctx.touch(node)
        ctx.ask_user(verdict.follow_up, "on_answer")
        return
    if ctx.take_unread_replies():
        # The user wrote more while the answer was being judged: judge again with it, so the
        # conversation never ends on a message the node has not read.
        on_answer(ctx, args)
        return
    answers = [m["content"] for m in node.context.get("conversation", []) if m["role"] == "user"]
    report = verdict.report or "The user said: " + " / ".join(answers)
    ctx.chat(node, ChatRole.AGENT, CLOSING_MESSAGE)
    ctx.terminate(report)


FUNCTIONS = {
    "start": start,
    "on_question": on_question,
    "on_answer": on_answer,
    "on_judgement": on_judgement,
}
FACTS: dict[str, FactsFunction] = {"ask": node_facts, "judge": judge_facts}
