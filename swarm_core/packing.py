"""Deflate for the stored JSON that nothing queries: stream batches (`adapters/blob.py`) and a
swarm's pending effects (`swarm.PendingCommit`).

Deflate with a preset dictionary (`packing_v1.txt`): the JSON keys, event types, record shapes
and fixed prompt texts those documents repeat, with every id, time and text left out. A batch of
a few hundred bytes then does not pay for spelling them out: an exchange's history batches,
journal and pending effects deflate to about two thirds of what zlib alone makes of them.

A packed document is one byte naming the dictionary (`_DICTIONARIES`), then the raw deflate
stream (RFC 1951; a zlib header and checksum would add 10 bytes to each batch of a few hundred).
A zlib stream is read too (what `PendingCommit` stored before there was a dictionary; its first
byte is never a dictionary's). A stream cut short is refused; a damaged one fails to inflate or
to parse as JSON. A dictionary is never changed (a test pins it): a better one is added next to
it, under the next byte, and made `_CURRENT`.
"""

from __future__ import annotations

import zlib
from pathlib import Path

# zlib's default level: on a few KB, well under a tenth of a millisecond.
LEVEL = 6

_DICTIONARIES = {1: (Path(__file__).parent / "packing_v1.txt").read_bytes()}
_CURRENT = 1
# A zlib stream's first byte says "deflate" in its low four bits (8); a dictionary's byte, 1 to 7,
# never does.
_ZLIB_METHOD = 8


def deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -15, zdict=_DICTIONARIES[_CURRENT])
    return bytes((_CURRENT,)) + compressor.compress(data) + compressor.flush()


def inflate(data: bytes) -> bytes:
    """The bytes of a packed document (or of a zlib stream)."""
    if data and data[0] & 0x0F == _ZLIB_METHOD:
        return zlib.decompress(data)
    dictionary = _DICTIONARIES.get(data[0]) if data else None
    if dictionary is None:
        raise ValueError("a packed document names a dictionary this version does not know")
    decompressor = zlib.decompressobj(-15, zdict=dictionary)
    inflated = decompressor.decompress(data[1:]) + decompressor.flush()
    if not decompressor.eof or decompressor.unused_data:
        raise ValueError("a packed document is cut short, or has bytes after its end")
    return inflated
