"""Benchmark: the web console in headless Chromium with a tree of N nodes (default 500).

The built console (web/dist, from scripts/bootstrap.sh) is served to the browser by Playwright's
request routing, with the page's real Content-Security-Policy, and the API answers from a
synthetic swarm of N nodes (breadth 8, breadth-first), whose tree after step k is its first k
nodes. No backend runs: this measures the page alone. It prints the JavaScript the first load
fetches (bytes, gzipped), the time from navigation to N nodes drawn, and the time for the slider
to show a new position (a state read answered at once, then the redraw) and a position it has
already read (the redraw alone), medians over several moves.

    .venv/bin/python bench/console.py [--nodes 500] [--moves 15]
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import Route, sync_playwright  # noqa: E402

from swarm_core.entrypoints.console import content_security_policy  # noqa: E402
from tests.e2e.test_console import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

DIST = ROOT / "web" / "dist"
ORIGIN = "http://console.bench"
SWARM = "bench0000000000000000000000000000"
AT = "2026-01-01T00:00:00Z"
LIFECYCLES = ["terminated", "running", "waiting_for_children", "waiting_for_user", "failed"]


def synthetic_nodes(count: int, breadth: int = 8) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []
    for i in range(count):
        parent = None if i == 0 else (i - 1) // breadth
        nodes.append(
            {
                "node_id": f"n{i:05d}",
                "parent_id": None if parent is None else f"n{parent:05d}",
                "children_ids": [],
                "depth": 0 if parent is None else nodes[parent]["depth"] + 1,
                "action": "plan" if i * breadth + 1 < count else ("ask_user", "execute")[i % 2],
                "name": f"Node {i}",
                "directive": f"Directive {i}",
                "lifecycle": LIFECYCLES[i % len(LIFECYCLES)],
                "termination_policy": "simple",
                "report": None,
                "error": None,
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "llm_calls": 1},
                "interrupt": None,
                "chat_length": 0,
                "created_at": f"2026-01-01T00:00:{i // 1000:02d}.{i % 1000:03d}Z",
                "updated_at": AT,
            }
        )
        if parent is not None:
            nodes[parent]["children_ids"].append(f"n{i:05d}")
    return nodes


def tree_at(nodes: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    kept = {n["node_id"] for n in nodes[:k]}
    return [{**n, "children_ids": [c for c in n["children_ids"] if c in kept]} for n in nodes[:k]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--moves", type=int, default=15)
    args = parser.parse_args()
    if not (DIST / "index.html").is_file():
        sys.exit("web/dist is missing: run bash scripts/bootstrap.sh")
    nodes = synthetic_nodes(args.nodes)
    detail = {
        "swarm_id": SWARM,
        "goal": "A synthetic swarm",
        "status": "running",
        "spawned": True,
        "failed_nodes": 0,
        "error": None,
        "paused_reason": None,
        "created_at": AT,
        "updated_at": AT,
        "root_node_id": "n00000",
        "seq": args.nodes,
        "node_counts": {},
        "node_count": args.nodes,
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "llm_calls": 0},
        "final_report": None,
    }
    script_bytes: list[bytes] = []

    def serve(route: Route) -> None:
        url = urlsplit(route.request.url)
        path, query = url.path, parse_qs(url.query)
        if path.startswith("/api/"):
            body: Any = {"type": "about:blank", "title": "Not found", "status": 404}
            status = 404
            if path == f"/api/swarms/{SWARM}":
                body, status = detail, 200
            elif path == f"/api/swarms/{SWARM}/state":
                k = int(query.get("at", [args.nodes])[0])
                body, status = {"seq": k, "nodes": tree_at(nodes, k)}, 200
            elif path == f"/api/swarms/{SWARM}/history":
                body, status = {"events": [], "next_after": args.nodes}, 200
            route.fulfill(status=status, body=json.dumps(body), content_type="application/json")
            return
        file = DIST / (path.strip("/") or "index.html")
        if not file.is_file():
            route.fulfill(status=404, body="")
            return
        data = file.read_bytes()
        headers = {"Content-Security-Policy": content_security_policy(None)}
        if file.suffix == ".js":
            script_bytes.append(data)
        kind = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
        route.fulfill(
            body=data, headers=headers, content_type=kind.get(file.suffix, "image/svg+xml")
        )

    count_is = "n => document.querySelectorAll('svg.tree .node').length === n"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1360, "height": 860})
        page.route(f"{ORIGIN}/**", serve)
        page.add_init_script(
            "sessionStorage.setItem('swarm.console.token', 'bench');"
            "sessionStorage.setItem('swarm.console.username', 'bench');"
        )
        started = time.perf_counter()
        page.goto(f"{ORIGIN}/#/swarms/{SWARM}")
        page.wait_for_function(count_is, arg=args.nodes, timeout=60_000, polling="raf")
        first = time.perf_counter() - started

        slider = page.locator("input[type=range]")
        positions = [args.nodes // 2 + (i % 2) * (args.nodes // 3) - i for i in range(args.moves)]

        def move(k: int) -> float:
            began = time.perf_counter()
            slider.fill(str(k))
            page.wait_for_function(count_is, arg=k, timeout=30_000, polling="raf")
            return (time.perf_counter() - began) * 1000

        fresh = [move(k) for k in positions]
        again = [move(k) for k in positions]
        browser.close()

    js = b"".join(script_bytes)
    zipped = len(gzip.compress(js))

    def spread(times: list[float]) -> str:
        return f"median {statistics.median(times):.0f} ms, max {max(times):.0f} ms"

    print(f"nodes: {args.nodes}")
    print(f"first load JavaScript: {len(js) / 1024:.1f} KB ({zipped / 1024:.1f} KB gzipped)")
    print(f"navigation to {args.nodes} nodes drawn: {first * 1000:.0f} ms")
    print(f"slider, new position (state read + redraw): {spread(fresh)}")
    print(f"slider, position read before (redraw):      {spread(again)}")


if __name__ == "__main__":
    main()
