"""How a commit's changes become one Cosmos DB patch (`patch_operations`, `node_item_changes`):
pure functions, so without the emulator. The emulator suite (`test_cosmos_adapter.py`) shows the
service taking these patches."""

from __future__ import annotations

import copy
from typing import Any

from swarm_core.adapters.cosmos import (
    MAX_PATCH_OPERATIONS,
    NODE_PROGRESS,
    node_item_changes,
    patch_operations,
)
from swarm_core.forks import changes


def stored(document: dict[str, Any]) -> Any:
    return lambda key: document[key]


def test_a_property_whose_changes_are_longer_than_its_value_is_set_whole() -> None:
    before = {"seq": 1, "usage": {"prompt_tokens": 1, "completion_tokens": 2, "llm_calls": 3}}
    after = {"seq": 2, "usage": {"prompt_tokens": 5, "completion_tokens": 6, "llm_calls": 4}}
    diff = changes(before, after)
    assert len(patch_operations(diff) or []) == 4, "without the document: one per counter"
    assert patch_operations(diff, stored(after)) == [
        {"op": "set", "path": "/seq", "value": 2},
        {"op": "set", "path": "/usage", "value": after["usage"]},
    ]


def test_too_many_changes_set_whole_the_parts_that_save_most_for_their_bytes() -> None:
    window = [f"op{i:02d}" for i in range(64)]
    before = {
        "a": 0,
        "small": {f"k{i}": 0 for i in range(6)},
        "big": {"text": "x" * 2000, **{f"k{i}": 0 for i in range(6)}},
        "window": window,
    }
    after = {
        "a": 1,
        "small": {f"k{i}": 1 for i in range(6)},
        "big": {"text": "x" * 2000, **{f"k{i}": 1 for i in range(6)}},
        "window": [*window[1:], "op64"],
    }
    diff = changes(before, after)
    assert patch_operations(diff) is None, "15 operations, and no document to set parts from"
    operations = patch_operations(diff, stored(after))
    assert operations is not None and len(operations) <= MAX_PATCH_OPERATIONS
    paths = [op["path"] for op in operations]
    # `small` goes whole (one short value), `big` keeps its six sets (its value is long), and
    # the window slides (two operations).
    assert "/small" in paths and "/big" not in paths and "/window/-" in paths
    assert _patched(before, operations) == after


def test_changes_that_no_part_can_shorten_are_the_whole_document() -> None:
    before = {f"k{i}": 0 for i in range(12)}
    after = {f"k{i}": 1 for i in range(12)}
    assert patch_operations(changes(before, after), stored(after)) is None
    assert patch_operations({"all": after}, stored(after)) is None


def test_a_nodes_progress_fields_are_changed_under_their_property() -> None:
    before = {
        "seq": 1,
        "lifecycle": "running",
        "continuation": {"function_to_call": "f", "args": {}},
        "chat_length": 1,
        "context": {"x": 1},
    }
    after = {
        "seq": 2,
        "lifecycle": "waiting_for_user",
        "continuation": {"function_to_call": "g", "args": {}},
        "context": {"x": 2},
    }
    item = node_item_changes(changes(before, after))
    assert item == {
        "set": {"seq": 2},
        "merge": {
            "context": {"set": {"x": 2}},
            NODE_PROGRESS: {
                "set": {"lifecycle": "waiting_for_user"},
                "merge": {"continuation": {"set": {"function_to_call": "g"}}},
                "unset": ["chat_length"],
            },
        },
    }
    assert node_item_changes({"all": after}) == {"all": after}


def _patched(document: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    """The document with the patch applied, as the service does it (the operations we send)."""
    out = copy.deepcopy(document)
    for op in operations:
        *parents, leaf = op["path"].strip("/").split("/")
        target: Any = out
        for name in parents:
            target = target[name]
        if op["op"] == "set":
            target[leaf] = op["value"]
        elif op["op"] == "remove":
            if isinstance(target, list):
                del target[int(leaf)]
            else:
                del target[leaf]
        elif op["op"] == "add" and leaf == "-":
            target.append(op["value"])
    return out
