"""The newcomer's demo, run as a user would run it."""

from __future__ import annotations

import subprocess
import sys


def test_demo_with_auto_answer_completes_a_tree_with_questions_and_a_report():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "swarm_core",
            "demo",
            "--auto-answer",
            "Plan a 3-day trip to Lisbon",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    tree = out.split("The tree:")[1].split("\n\n")[0].strip().splitlines()
    assert len(tree) >= 5 and all("(done)" in line for line in tree)
    assert "agent 'Clarify preferences'" in out and "you: " in out
    assert "(auto-answer)" in out
    assert "Swarm completed." in out
    assert out.split("Final report:")[1].strip().startswith("Final plan for")


def test_demo_asks_at_the_prompt_without_auto_answer():
    answers = "ok\n" + "A relaxed pace, mid-range budget, great food please\n" * 20
    done = subprocess.run(
        [sys.executable, "-m", "swarm_core", "demo", "Plan a picnic"],
        input=answers,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "your answer>" in done.stdout
    assert "bit short" in done.stdout, "the short answer got a follow-up"
