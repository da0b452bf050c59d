"""The deflate of stored JSON (`swarm_core.packing`): its dictionary is fixed for good, every
stream it ever made reads back, and it is worth having."""

from __future__ import annotations

import base64
import json
import re
import zlib

import pytest

from swarm_core import packing
from swarm_core.swarm import PendingCommit


def test_the_dictionary_never_changes() -> None:
    # Stored documents were deflated with it: a changed dictionary would make every one of them
    # unreadable. Add a new one instead (see the module's docstring).
    dictionary = packing._DICTIONARIES[1]
    assert (len(dictionary), zlib.adler32(dictionary)) == (12264, 53600326)


def test_the_dictionary_holds_shapes_not_data() -> None:
    text = packing._DICTIONARIES[1].decode()
    assert not re.search(r"[0-9a-f]{16}", text), "no ids"
    assert not re.search(r"\d{4}-\d\d-\d\dT", text), "no times"
    assert "Lisbon" not in text and "offline" not in text, "no run's texts, no model's name"


def test_what_is_deflated_inflates_and_so_does_plain_zlib() -> None:
    data = json.dumps({"type": "chat.message", "data": {"content": "hello " * 50}}).encode()
    assert packing.inflate(packing.deflate(data)) == data
    assert packing.inflate(zlib.compress(data)) == data, "a stream made without a dictionary"
    deflated = packing.deflate(data)
    for missing in (1, 4, len(deflated) // 2):
        with pytest.raises((ValueError, zlib.error)):
            packing.inflate(deflated[:-missing])
    with pytest.raises(ValueError, match="after its end"):
        packing.inflate(deflated + b"x")
    with pytest.raises(ValueError, match="dictionary"):
        packing.inflate(bytes((2,)) + deflated[1:])


def test_the_dictionary_saves_what_a_small_batch_spends_on_its_keys() -> None:
    event = {
        "type": "interrupt.answered",
        "swarm_id": "\x01" * 32,
        "seq": 177,
        "index": 1,
        "at": "2026-11-29T12:10:16.792582Z",
        "data": {
            "interrupt_id": "575f0542554fcc01eb5c1a83",
            "node_id": "a1b5652b8b7a0dcd35ac15b4",
            "status": "answered",
            "answer_message_ids": ["151b7edfd095be5fae979147"],
        },
    }
    line = json.dumps({"r": event, "seq": 177}, separators=(",", ":")).encode()
    assert len(packing.deflate(line)) < 0.8 * len(zlib.compress(line))


def test_a_pending_commit_packed_by_an_earlier_version_still_reads() -> None:
    pending = PendingCommit.model_validate(
        {"op_id": "op1", "seq": 3, "effects": {"node_ids": ["n1"], "consumed": ["op1"]}}
    )
    stored = pending.model_dump(mode="json")
    effects_json = pending.effects.model_dump_json().encode()
    earlier = {**stored, "effects": base64.b64encode(zlib.compress(effects_json)).decode()}
    assert PendingCommit.model_validate(earlier) == pending
    assert PendingCommit.model_validate(stored) == pending
