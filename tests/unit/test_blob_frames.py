"""How a stream segment's bytes are framed (`swarm_core.adapters.blob`): plain JSON lines and
deflated batches between them, split back the same however the bytes are cut into reads. Pure
functions; the Azurite suite (`test_blob_queue_adapters.py`) shows the store using them."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest

from swarm_core.adapters import blob

SWARM = "s" * 32


def batches() -> list[bytes]:
    """Blocks as `append` makes them: small ones plain, others deflated (binary, often with
    newlines and `"seq":` in their bytes by chance or by content)."""
    blocks = []
    for seq in range(1, 40):
        text = base64.b64encode(os.urandom(seq * 13)).decode() + '\n"seq":1}\n' * (seq % 3)
        records: list[dict[str, Any]] = [
            {"swarm_id": SWARM, "seq": seq, "text": text},
            {"type": "chat.message", "swarm_id": SWARM, "data": {"content": text}},
        ]
        if seq % 5 == 0:
            records = []
        block = blob._encode_batch(records, seq, {"op_id": f"op{seq}"} if seq % 2 else None)
        blocks.append(blob._pack(block, seq, SWARM))
    return blocks


def test_frames_split_back_whatever_the_reads_cut() -> None:
    blocks = batches()
    assert any(b.startswith(blob._DEFLATED_HEADER) for b in blocks)
    assert any(not b.startswith(blob._DEFLATED_HEADER) for b in blocks)
    data = b"".join(blocks)
    expected = [line for block in blocks for line in blob._all_lines(block, SWARM)]
    assert blob._all_lines(data, SWARM) == expected
    assert blob._last_seq(data) == 39
    for size in (1, 7, 64, 1000):
        cut, got = b"", []
        for start in range(0, len(data), size):
            frames, taken = blob._split_frames(cut + data[start : start + size])
            cut = (cut + data[start : start + size])[taken:]
            got += [line for frame in frames for line in blob._frame_lines(frame, SWARM)]
        assert (got, cut) == (expected, b""), f"reads of {size} bytes"


def test_a_segment_cut_at_a_seq_keeps_whole_batches() -> None:
    blocks = batches()
    data = b"".join(blocks)
    for until in (0, 1, 17, 39):
        assert blob._cut_after(data, until) == b"".join(blocks[:until])


def test_a_batch_cut_short_is_an_error_not_fewer_records() -> None:
    data = b"".join(batches())
    for missing in (1, 3, 40):
        with pytest.raises(ValueError):
            blob._all_lines(data[:-missing], SWARM)
