"""Deflate for the stored JSON that nothing queries: stream batches (`adapters/blob.py`) and a
swarm's pending effects (`swarm.PendingCommit`).

zlib with a preset dictionary (`packing_v1.txt`): the JSON keys, event types, record shapes and
fixed prompt texts those documents repeat, with every id, time and text left out. A batch of a
few hundred bytes then does not pay for spelling them out: an exchange's history batches, journal
and pending effects deflate to about two thirds of what zlib alone makes of them.

A zlib stream names the dictionary it was made with (its Adler-32, in the stream's header, RFC
1950), so `inflate` reads every stream ever written as long as its dictionary is in
`_DICTIONARIES`, and a stream made without one too. A dictionary is never changed (a test pins
its checksum): a better one is added next to it and made `_CURRENT`.
"""

from __future__ import annotations

import zlib
from pathlib import Path

# zlib's default level: on a few KB, well under a tenth of a millisecond.
LEVEL = 6

_DICTIONARY_V1 = (Path(__file__).parent / "packing_v1.txt").read_bytes()
_DICTIONARIES = {zlib.adler32(_DICTIONARY_V1): _DICTIONARY_V1}
_CURRENT = _DICTIONARY_V1
# RFC 1950: bit 5 of a zlib stream's second byte (FDICT) says the dictionary's Adler-32 follows.
_FDICT = 0x20


def deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(LEVEL, zdict=_CURRENT)
    return compressor.compress(data) + compressor.flush()


def inflate(data: bytes) -> bytes:
    """The bytes of a zlib stream, made with one of the known dictionaries or with none."""
    if len(data) < 6 or not data[1] & _FDICT:
        return zlib.decompress(data)
    dictionary = _DICTIONARIES.get(int.from_bytes(data[2:6], "big"))
    if dictionary is None:
        raise ValueError("a deflated document names a dictionary this version does not know")
    decompressor = zlib.decompressobj(zdict=dictionary)
    inflated = decompressor.decompress(data) + decompressor.flush()
    if not decompressor.eof:  # cut short: its checksum was never read (`zlib.decompress` checks)
        raise ValueError("a deflated document is cut short")
    return inflated
