"""Run a whole swarm in-process: in-memory stores, a queue drained by the worker, the offline LLM
(or any LLM port). `run_swarm` is the library form; `python -m swarm_core demo` the terminal one,
which prints the tree as it grows and asks the user's questions at the prompt.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from swarm_core.bootstrap import InMemorySwarmApp, build_in_memory
from swarm_core.in_process import reply_through_services, run_until_settled
from swarm_core.llm import LanguageModel
from swarm_core.models import Lifecycle, Node, SwarmConfig, SwarmStatus

DEMO_USER = "demo-user"

# (node name, the agent's question) -> the user's answer
Answerer = Callable[[str, str], str]

ACTION_SYMBOLS = {"plan": "◆", "ask_user": "?", "execute": "●"}
LIFECYCLE_MARKS = {
    "terminated": "done",
    "failed": "FAILED",
    "waiting_for_user": "waiting for you",
    "waiting_for_children": "waiting for children",
}


@dataclass
class SwarmRun:
    swarm_id: str
    status: str
    final_report: str | None
    nodes: list[Node]
    steps: int
    questions: list[tuple[str, str]] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    app: InMemorySwarmApp | None = None


class AutoAnswerer:
    """Answers by itself: the first question gets a too-short answer (to show a follow-up), the
    others a full one."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, node_name: str, question: str) -> str:
        self.count += 1
        if self.count == 1:
            return "Not sure."
        return (
            "I want something relaxed but memorable: a mid-range budget of about 900 EUR, "
            "good food, a bit of culture each day, and no early mornings."
        )


def run_swarm(
    goal: str,
    *,
    llm: LanguageModel | None = None,
    answer: Answerer | None = None,
    config: SwarmConfig | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    max_messages: int = 100_000,
) -> SwarmRun:
    """Create, spawn and run a swarm to the end; `answer` replies to every question."""
    app = build_in_memory(llm)
    if on_event is not None:
        app.adapters.publisher.subscribers.append(lambda _sid, event: on_event(event))
    answerer = answer or AutoAnswerer()
    swarm = app.services.create_swarm(DEMO_USER, goal, config)
    app.services.spawn(DEMO_USER, swarm.swarm_id)
    run = SwarmRun(swarm.swarm_id, "running", None, [], 0, app=app)

    def reply(node: Node, chat: list[dict[str, Any]]) -> str:
        question = chat[-1]["content"] if chat else node.directive
        text = answerer(node.name, question)
        run.questions.append((node.name, question))
        run.answers.append(text)
        return text

    answer_as_user = reply_through_services(app, DEMO_USER, swarm.swarm_id, reply)
    run_until_settled(app, swarm.swarm_id, answer_as_user, max_deliveries=max_messages)
    final = app.services.get_swarm(DEMO_USER, swarm.swarm_id)
    run.status = final.status.value
    run.final_report = final.final_report or final.error
    run.nodes = app.adapters.store.list_nodes(swarm.swarm_id)
    run.steps = final.seq
    return run


def render_tree(nodes: list[Node]) -> list[str]:
    by_parent: dict[str | None, list[Node]] = {}
    for node in nodes:
        by_parent.setdefault(node.parent_id, []).append(node)
    order = {n.node_id: i for i, n in enumerate(sorted(nodes, key=lambda n: n.created_at))}
    lines: list[str] = []

    def walk(parent_id: str | None, prefix: str) -> None:
        children = sorted(by_parent.get(parent_id, []), key=lambda n: order[n.node_id])
        for i, node in enumerate(children):
            last = i == len(children) - 1
            branch = "" if parent_id is None else ("└─ " if last else "├─ ")
            symbol = ACTION_SYMBOLS.get(node.action.value, "·")
            mark = LIFECYCLE_MARKS.get(node.lifecycle.value, node.lifecycle.value)
            lines.append(f"{prefix}{branch}{symbol} {node.name} [{node.action.value}] ({mark})")
            child_prefix = prefix if parent_id is None else prefix + ("   " if last else "│  ")
            walk(node.node_id, child_prefix)

    walk(None, "")
    return lines


class TerminalPrinter:
    """Prints events as the tree grows."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.names: dict[str, tuple[str, int]] = {}

    def __call__(self, event: dict[str, Any]) -> None:
        kind, data = event["type"], event["data"]
        if kind == "node.spawned":
            node = data["node"]
            self.names[node["node_id"]] = (node["name"], node["depth"])
            indent = "  " * node["depth"]
            symbol = ACTION_SYMBOLS.get(node["action"], "·")
            print(
                f"[{event['seq']:>4}] {indent}+ {symbol} {node['name']} [{node['action']}]",
                file=self.out,
            )
        elif kind == "node.updated" and data["node"]["lifecycle"] == "terminated":
            node = data["node"]
            indent = "  " * node["depth"]
            print(f"[{event['seq']:>4}] {indent}✓ {node['name']} reported", file=self.out)
        elif kind == "chat.message":
            name, depth = self.names.get(data["node_id"], ("?", 0))
            who = f"agent '{name}'" if data["role"] == "agent" else "you"
            print(f"[{event['seq']:>4}] {'  ' * depth}  {who}: {data['content']}", file=self.out)
        elif kind == "node.failed":
            print(f"[{event['seq']:>4}] node failed: {data['error']}", file=self.out)
        elif kind == "swarm.status":
            print(f"[{event['seq']:>4}] swarm is {data['status']}", file=self.out)


def main(argv: list[str], out: TextIO = sys.stdout) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m swarm_core demo", description=__doc__)
    parser.add_argument("goal", help="what the swarm should achieve")
    parser.add_argument("--auto-answer", action="store_true", help="answer questions by itself")
    parser.add_argument("--seed", type=int, default=0, help="varies the offline LLM's choices")
    parser.add_argument("--breadth", type=int, default=3, help="subtasks per plan (offline LLM)")
    parser.add_argument("--depth", type=int, default=2, help="levels the offline LLM plans")
    args = parser.parse_args(argv)
    config = SwarmConfig(seed=args.seed, offline_breadth=args.breadth, offline_depth=args.depth)

    def ask_at_prompt(node_name: str, question: str) -> str:
        while True:
            print(f"\n  agent '{node_name}' asks: {question}", file=out)
            try:
                reply = input("  your answer> ").strip()
            except EOFError:
                reply = ""
            if reply:
                return reply
            print("  (an empty answer cannot be sent; --auto-answer answers by itself)", file=out)

    answerer: Answerer = AutoAnswerer() if args.auto_answer else ask_at_prompt
    if args.auto_answer:
        inner = answerer

        def answerer(node_name: str, question: str) -> str:
            reply = inner(node_name, question)
            print(f"  (auto-answer) {reply}", file=out)
            return reply

    print(f"Goal: {args.goal}\n", file=out)
    run = run_swarm(args.goal, answer=answerer, config=config, on_event=TerminalPrinter(out))
    print("\nThe tree:", file=out)
    for line in render_tree(run.nodes):
        print("  " + line, file=out)
    done = sum(1 for n in run.nodes if n.lifecycle == Lifecycle.TERMINATED)
    print(
        f"\n{len(run.nodes)} nodes ({done} done), {run.steps} steps, "
        f"{len(run.questions)} questions answered. Swarm {run.status}.",
        file=out,
    )
    print(f"\nFinal report:\n{run.final_report}", file=out)
    return 0 if run.status == SwarmStatus.COMPLETED.value else 1
