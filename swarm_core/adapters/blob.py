"""The content store on Azure Blob storage: history, chats and logs as segmented append blobs.

A stream (`{swarm_id}/history`, `{swarm_id}/chats/{node_id}`, `{swarm_id}/logs/{node_id}`) is a run
of append blobs `{stream}/{segment:06d}.jsonl`. Each committed batch is ONE appended block of JSON
lines, each line `{"r": record, "seq": N}` (first, for a history batch, its commit's record `{"c":
record, "seq": N}`, which `read_batches` reads and record reads skip) with the batch's seq written
last, so the tail bytes of a segment tell its last seq. `append` writes with `appendpos_condition` =
the length at which the writer saw that last seq: the append lands only if nobody appended in
between, which makes "append iff the last seq is lower" atomic (racers with the same batch append it
once, a stalled worker with an old seq is skipped). A per-process cache of each stream's tail
(segment, length, last seq) makes a typical append one round trip; the condition validates the hint,
and a 412 refreshes it. A stream the process does not know yet is most often new: its first append
creates the first segment if missing, then appends (two round trips); one that exists is then listed
and its last segment's tail read. A caller that knows the seq of the stream's batch before
(`after_seq`: a node's chat, which the API and the worker append to in turn) saves the refused
requests: a cached tail behind it is read before the append, and a stream with batches that the
process does not know has its first segment read (two round trips either way). A full segment (block
or byte limit) is sealed and the next one is created with metadata `prev_seq` (the sealed segment's
last seq), so `read(after_seq)` starts at the right segment. A batch larger than one block is stored
as its own block blob and appended as a one-line pointer. A batch is stored deflated
(`swarm_core.packing`) when that is shorter (most batches but the smallest): a line `{"zb":
LENGTH}`, the deflated lines (LENGTH bytes, binary), and a line `{"seq": N}`, so that a segment
still ends with its last seq; the swarm's own id is left out of it (`_pack`), so a
fork copies it byte for byte. Readers split a segment into such frames (`_split_frames`).
Snapshots and claim checks are block blobs; everything of a swarm lives under `{swarm_id}/`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobClient, BlobProperties, BlobServiceClient, ContainerClient

from swarm_core.adapters.identity import storage_service
from swarm_core.packing import deflate, inflate
from swarm_core.ports import SNAPSHOT_KINDS, Batch, rewrite_swarm_id
from swarm_core.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
# Azure allows 50,000 blocks per append blob; rolling far earlier keeps every segment small to read.
DEFAULT_SEGMENT_BLOCKS = 1_000
DEFAULT_SEGMENT_BYTES = 4 * MIB
# The append-block limit is 4 MiB on older service versions (100 MiB on newer ones): stay at 4.
DEFAULT_BLOCK_BYTES = 4 * MIB
DEFAULT_TAIL_CACHE = 10_000

# How much of a segment's end a cold start reads to find its last seq (one short line suffices,
# longer last lines still end in `"seq":N}`), and how far past a stale hint a refresh reads
# (enough to take in what a racer typically appended, in one request).
_TAIL_PROBE_BYTES = 256
_REFRESH_WINDOW_BYTES = 16 * 1024
# Appenders of one stream are at most the few racers re-driving the same commit: a handful of
# refreshes settles any race; more means something else is writing to the stream.
_MAX_APPEND_ATTEMPTS = 16
# What `read_batches` downloads per request: a snapshot interval of deflated history (50 batches
# of a few hundred bytes to a few KB) in one or two. Not more: a read of an append blob costs the
# emulator (Azurite) per block it spans, and a deflated batch is a small block.
_READ_CHUNK_BYTES = 64 * 1024
_MAX_PROBES = 8

_SEGMENT_NAME = re.compile(r"/(\d{6,})\.jsonl\Z")
_LAST_SEQ = re.compile(rb'"seq":(-?\d+)\}\n\Z')
_PREV_SEQ_KEY = "prev_seq"
# Below this a deflated batch is rarely shorter than the plain one (the frame takes two lines).
_PACK_MIN_BYTES = 120
_DEFLATED = "zb"
_DEFLATED_HEADER = b'{"zb":'


class AppendContentionError(RuntimeError):
    """An append kept losing its position condition: the message is retried by the queue."""


@dataclass(frozen=True)
class _Tail:
    """What a writer knows of a stream's last segment; a hint until an append confirms it."""

    segment: int
    length: int
    blocks: int
    last_seq: int | None  # None: an empty stream
    sealed: bool = False


@dataclass(frozen=True)
class _Segment:
    index: int
    size: int
    prev_seq: int | None


def build_blob_service(
    settings: Settings, credential: TokenCredential | None = None, **options: Any
) -> BlobServiceClient:
    """A Blob service client: by connection string (local key mode), else by URI with
    `credential` (default: the app's managed identity)."""
    client: BlobServiceClient = storage_service(
        BlobServiceClient, settings, "storage_blob_uri", credential, **options
    )
    return client


def _encode_line(payload: Mapping[str, Any], seq: int) -> bytes:
    # `seq` goes last so that a segment's final bytes always read `"seq":N}\n`.
    line = {**payload, "seq": seq}
    return json.dumps(line, separators=(",", ":"), ensure_ascii=False, default=str).encode() + b"\n"


def _encode_batch(
    records: Sequence[Mapping[str, Any]], seq: int, commit: Mapping[str, Any] | None
) -> bytes:
    """A batch's block: its commit record's line (`"c"`), if any, then a line per record
    (`"r"`); with neither, one empty line that still carries the seq."""
    lines = [] if commit is None else [_encode_line({"c": dict(commit)}, seq)]
    lines += [_encode_line({"r": dict(record)}, seq) for record in records]
    return b"".join(lines) or _encode_line({"n": 0}, seq)


def _placeholder(swarm_id: str) -> str:
    # A JSON text never holds a raw control character (they are escaped), so this stands for
    # the swarm's id without ever meaning anything else.
    return "\x01" * len(swarm_id)


def _pack(block: bytes, seq: int, swarm_id: str) -> bytes:
    """A batch's block as one deflated frame, if that is shorter: a line `{"zb": LENGTH}`, the
    deflated lines (LENGTH bytes, binary), and a line `{"seq": N}` (so that a segment still ends
    with its last seq). The swarm's id is replaced by a placeholder where
    `rewrite_swarm_id` would rewrite it, so that a deflated frame holds no id: a fork
    (`copy_swarm`) copies it unchanged, and `_frame_lines` names the copy's swarm."""
    if len(block) < _PACK_MIN_BYTES:
        return block
    deflated = deflate(rewrite_swarm_id(block, swarm_id, _placeholder(swarm_id)))
    header = json.dumps({_DEFLATED: len(deflated)}, separators=(",", ":")).encode()
    framed = b"".join((header, b"\n", deflated, _encode_line({}, seq)))
    return framed if len(framed) < len(block) else block


def _split_frames(data: bytes) -> tuple[list[bytes], int]:
    """The whole frames at the start of `data` (which starts with one): JSON lines, and
    deflated batches (`_pack`) whole; and the length they take (the rest is a frame cut)."""
    frames: list[bytes] = []
    start = 0
    while (end := data.find(b"\n", start)) >= 0:
        if data.startswith(_DEFLATED_HEADER, start):
            length = int(data[start + len(_DEFLATED_HEADER) : end - 1])
            end = data.find(b"\n", end + 1 + length)  # the seq's line after the deflated bytes
            if end < 0:
                break
        frames.append(data[start : end + 1])
        start = end + 1
    return frames, start


def _deflated_bytes(frame: bytes) -> tuple[int, int]:
    """Where a deflated frame's bytes start, and where they end."""
    start = frame.index(b"\n") + 1
    return start, start + int(frame[len(_DEFLATED_HEADER) : start - 2])


def _frame_lines(frame: bytes, swarm_id: str) -> list[dict[str, Any]]:
    """The lines a frame stands for: itself, or a deflated batch's lines."""
    if not frame.startswith(_DEFLATED_HEADER):
        return [json.loads(frame)]
    start, end = _deflated_bytes(frame)
    block = rewrite_swarm_id(inflate(frame[start:end]), _placeholder(swarm_id), swarm_id)
    return [json.loads(raw) for raw in block.split(b"\n") if raw]


def _all_lines(data: bytes, swarm_id: str, after_seq: int | None = None) -> list[dict[str, Any]]:
    """The lines of a segment's (or batch blob's) bytes, deflated batches inflated; with
    `after_seq`, only those of the batches after it (the others are not inflated). A frame's
    seq is its end's (`_last_seq`): a plain line's is written last, a deflated batch ends with
    its seq's line."""
    frames, taken = _split_frames(data)
    _require_whole(data, taken)
    if after_seq is not None:
        frames = [frame for frame in frames if _last_seq(frame) > after_seq]
    return [line for frame in frames for line in _frame_lines(frame, swarm_id)]


def _require_whole(data: bytes, taken: int) -> None:
    # Appends and copies write whole batches: a frame cut short is damage, not a batch to skip.
    if taken != len(data):
        raise ValueError(f"a stream segment ends inside a batch ({len(data) - taken} bytes)")


def _swarm_of(name: str) -> str:
    # Every stream and batch blob lives under `{swarm_id}/`.
    return name.partition("/")[0]


def _last_seq(data: bytes) -> int:
    found = _LAST_SEQ.search(data)
    if found is None:
        raise ValueError("a stream segment does not end with a seq-stamped line")
    return int(found.group(1))


def _cut_after(data: bytes, until_seq: int) -> bytes:
    """A segment's bytes up to its first frame with a seq after `until_seq`."""
    offset = 0
    for frame in _split_frames(data)[0]:
        if _last_seq(frame) > until_seq:
            break
        offset += len(frame)
    return data[:offset]


def _line_chunks(data: bytes, limit: int) -> Iterator[bytes]:
    """`data` in pieces of at most `limit` bytes, cut after a newline where one is in reach
    (where a piece ends does not matter to readers, only that the last ends the data)."""
    while data:
        if len(data) <= limit:
            yield data
            return
        cut = data.rfind(b"\n", 0, limit) + 1 or limit
        yield data[:cut]
        data = data[cut:]


def _prev_seq(metadata: Mapping[str, str] | None) -> int | None:
    value = (metadata or {}).get(_PREV_SEQ_KEY)
    return int(value) if value is not None else None


def _blob_length(props: BlobProperties) -> int:
    # A ranged download's `size` is the range's; the blob's length ends its Content-Range.
    content_range = props.content_range
    if content_range and "/" in content_range:
        return int(content_range.rsplit("/", 1)[1])
    return int(props.size)


def _ranged_read(blob: BlobClient, offset: int, length: int) -> tuple[bytes, BlobProperties] | None:
    """Up to `length` bytes of the blob from `offset` and its properties: b"" at or past its end
    (or when it is empty); None when there is no such blob."""
    try:
        download = blob.download_blob(offset=offset, length=length)
        return download.readall(), download.properties
    except ResourceNotFoundError:
        return None
    except HttpResponseError as error:
        if error.status_code != 416:  # 416: a range at or past the end, or an empty blob
            raise
    try:
        return b"", blob.get_blob_properties()
    except ResourceNotFoundError:
        return None


def _error_code(error: HttpResponseError) -> object:
    # Storage errors carry the service's code (a str enum, equal to the code's text);
    # azure-core's base type does not declare it.
    return getattr(error, "error_code", None)


def _is_position_conflict(error: HttpResponseError) -> bool:
    return error.status_code == 412 and _error_code(error) == "AppendPositionConditionNotMet"


def _is_sealed_conflict(error: HttpResponseError) -> bool:
    return error.status_code == 409 and _error_code(error) == "BlobIsSealed"


class BlobContentStore:
    """`ContentStore` on one blob container (`settings.swarm_container`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        credential: TokenCredential | None = None,
        service_client: BlobServiceClient | None = None,
        max_segment_blocks: int = DEFAULT_SEGMENT_BLOCKS,
        max_segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        max_block_bytes: int = DEFAULT_BLOCK_BYTES,
        tail_cache_size: int = DEFAULT_TAIL_CACHE,
    ) -> None:
        if not 1 <= max_segment_blocks <= 50_000:
            raise ValueError("max_segment_blocks must be between 1 and 50,000")
        if max_segment_bytes < 1 or not 1 <= max_block_bytes <= DEFAULT_BLOCK_BYTES:
            raise ValueError("segment and block byte limits must be positive (blocks <= 4 MiB)")
        self._settings = settings
        self._credential = credential
        self._service_client = service_client
        self._container_client: ContainerClient | None = None
        self._client_lock = threading.Lock()
        self._max_blocks = max_segment_blocks
        self._max_bytes = max_segment_bytes
        self._max_block = max_block_bytes
        self._tails: OrderedDict[str, _Tail] = OrderedDict()
        self._tail_cache_size = tail_cache_size
        self._tails_lock = threading.Lock()

    # --- clients ------------------------------------------------------------------------------

    def _container(self) -> ContainerClient:
        # Built on first use and shared by all threads (the client holds a connection pool).
        with self._client_lock:
            if self._container_client is None:
                service = self._service_client or build_blob_service(
                    self._settings, self._credential
                )
                self._container_client = service.get_container_client(
                    self._settings.swarm_container
                )
            return self._container_client

    def ensure_container(self) -> None:
        """Create the container if missing (local stacks and tests; Azure has it from infra)."""
        with contextlib.suppress(ResourceExistsError):
            self._container().create_container()

    def _blob(self, name: str) -> BlobClient:
        return self._container().get_blob_client(name)

    @staticmethod
    def _segment_name(stream: str, segment: int) -> str:
        return f"{stream}/{segment:06d}.jsonl"

    @staticmethod
    def _batch_name(stream: str, seq: int) -> str:
        # Outside the stream's own prefix, so that listing segments never lists these.
        swarm_id, sep, rest = stream.partition("/")
        if not sep or not swarm_id or not rest:
            raise ValueError(f"stream {stream!r} is not of the form '{{swarm_id}}/...'")
        return f"{swarm_id}/batches/{rest}/{seq:012d}.jsonl"

    # --- the tail cache -----------------------------------------------------------------------

    def _cached_tail(self, stream: str) -> _Tail | None:
        with self._tails_lock:
            tail = self._tails.get(stream)
            if tail is not None:
                self._tails.move_to_end(stream)
            return tail

    def _remember(self, stream: str, tail: _Tail) -> None:
        with self._tails_lock:
            current = self._tails.get(stream)
            # Another thread may have recorded a later tail meanwhile: never step back.
            if current is not None and (current.segment, current.length) > (
                tail.segment,
                tail.length,
            ):
                return
            self._tails[stream] = tail
            self._tails.move_to_end(stream)
            while len(self._tails) > self._tail_cache_size:
                self._tails.popitem(last=False)

    def _forget(self, prefix: str) -> None:
        with self._tails_lock:
            for stream in [s for s in self._tails if s == prefix or s.startswith(prefix)]:
                del self._tails[stream]

    # --- finding the tail ---------------------------------------------------------------------

    def _segments(self, stream: str) -> list[_Segment]:
        """The stream's segments in order (one listing request per 5,000 segments)."""
        found: list[_Segment] = []
        for item in self._container().list_blobs(
            name_starts_with=f"{stream}/", include=["metadata"]
        ):
            match = _SEGMENT_NAME.search(item.name)
            if match is None or item.name != self._segment_name(stream, int(match.group(1))):
                continue
            found.append(_Segment(int(match.group(1)), item.size, _prev_seq(item.metadata)))
        found.sort(key=lambda s: s.index)
        return found

    def _discover(self, stream: str) -> _Tail | None:
        """The tail from scratch: list the segments, read the last one's final bytes."""
        segments = self._segments(stream)
        if not segments:
            return None
        return self._probe(stream, segments[-1].index, segments[-1].size)

    def _probe(self, stream: str, segment: int, known_length: int) -> _Tail | None:
        """The segment's current tail, given a length it had (the caller's hint).

        Reads a window starting just before `known_length`, so one ranged GET covers the known
        end plus what a racer typically appended; its response also gives the length, block
        count and sealed flag. None if the segment is gone."""
        blob = self._blob(self._segment_name(stream, segment))
        start = max(0, known_length - _TAIL_PROBE_BYTES)
        for _ in range(_MAX_PROBES):
            got = _ranged_read(blob, start, _REFRESH_WINDOW_BYTES)
            if got is None:
                return None
            data, props = got
            total = _blob_length(props)
            sealed = bool(props.is_append_blob_sealed)
            if total == 0:
                return _Tail(segment, 0, 0, _prev_seq(props.metadata), sealed)
            if not data or start + len(data) < total:
                # The blob grew past the window (or shrank below it): read just its end.
                start = max(0, total - _TAIL_PROBE_BYTES)
                continue
            blocks = int(props.append_blob_committed_block_count or 0)
            return _Tail(segment, total, blocks, _last_seq(data), sealed)
        raise AppendContentionError(f"the tail of {stream} kept moving while being read")

    def _next_segment(self, stream: str, sealed: _Tail) -> _Tail | None:
        """Open the segment after a sealed one (its creator may have crashed before doing so)."""
        segment = sealed.segment + 1
        metadata = {} if sealed.last_seq is None else {_PREV_SEQ_KEY: str(sealed.last_seq)}
        try:
            self._blob(self._segment_name(stream, segment)).create_append_blob(
                metadata=metadata, match_condition=MatchConditions.IfMissing
            )
        except (ResourceExistsError, ResourceModifiedError):
            # Opened by someone else and maybe filled and sealed too: jump to the real tail
            # rather than walk segment by segment (a very stale hint may be many behind).
            return self._discover(stream)
        logger.info("stream %s: opened segment %s after seq %s", stream, segment, sealed.last_seq)
        return _Tail(segment, 0, 0, sealed.last_seq)

    def _first_segment(self, stream: str) -> _Tail | None:
        try:
            self._blob(self._segment_name(stream, 0)).create_append_blob(
                match_condition=MatchConditions.IfMissing
            )
        except (ResourceExistsError, ResourceModifiedError):
            return self._discover(stream)  # its last segment may be any one
        return _Tail(0, 0, 0, None)

    def _is_full(self, tail: _Tail, size: int) -> bool:
        if tail.length == 0:
            return False  # any block fits an empty segment: rolling over would not help
        return tail.blocks >= self._max_blocks or tail.length + size > self._max_bytes

    # --- ContentStore -------------------------------------------------------------------------

    def append(
        self,
        stream: str,
        seq: int,
        records: Sequence[Mapping[str, Any]],
        commit: Mapping[str, Any] | None = None,
        after_seq: int | None = None,
    ) -> bool:
        """Append the batch as one block iff the stream's last seq is lower; False otherwise."""
        seq = int(seq)
        block = _pack(_encode_batch(records, seq, commit), seq, _swarm_of(stream))
        oversize = len(block) > self._max_block
        # A stream this process has not seen is most often a new one (a new node's logs or
        # chat): its first segment is created if missing (one request, then the append), and
        # only a stream that exists is listed and probed (`_first_segment`).
        tail = self._cached_tail(stream)
        if after_seq is not None:
            tail = self._hinted_tail(stream, tail, after_seq)
        for _ in range(_MAX_APPEND_ATTEMPTS):
            if tail is None:
                tail = self._first_segment(stream)
                continue
            if tail.sealed:
                tail = self._next_segment(stream, tail)
                continue
            if tail.last_seq is not None and tail.last_seq >= seq:
                # Streams only grow, so even a cached tail proves the batch is there already.
                self._remember(stream, tail)
                logger.debug("stream %s: seq %s skipped (at %s)", stream, seq, tail.last_seq)
                return False
            if oversize:
                block = self._store_oversize_batch(stream, seq, block, len(records))
                oversize = False
            if self._is_full(tail, len(block)):
                # Sealing needs no condition: whoever seals, the next segment starts after the
                # last seq read back from the (now immutable) sealed segment.
                self._blob(self._segment_name(stream, tail.segment)).seal_append_blob()
                logger.info("stream %s: sealed segment %s", stream, tail.segment)
                tail = self._probe(stream, tail.segment, tail.length)
                continue
            try:
                result = self._blob(self._segment_name(stream, tail.segment)).append_block(
                    block, appendpos_condition=tail.length
                )
            except ResourceNotFoundError:
                self._forget(stream)
                tail = self._discover(stream)
                continue
            except HttpResponseError as error:
                if not (_is_position_conflict(error) or _is_sealed_conflict(error)):
                    raise
                # Someone appended (perhaps this very batch) or sealed since the hint: re-read.
                logger.debug("stream %s: tail moved, refreshing (seq %s)", stream, seq)
                tail = self._probe(stream, tail.segment, tail.length)
                continue
            self._remember(
                stream,
                _Tail(
                    tail.segment,
                    int(str(result["blob_append_offset"])) + len(block),
                    int(str(result["blob_committed_block_count"])),
                    seq,
                ),
            )
            return True
        raise AppendContentionError(f"could not append seq {seq} to {stream}")

    def _hinted_tail(self, stream: str, tail: _Tail | None, after_seq: int) -> _Tail | None:
        """The tail to append at, given the caller's word that the stream's last batch is
        `after_seq`. Where the cache is behind that (another process appended since), its
        tail is read first: one request, instead of an append refused (412) and then the read.
        A stream new to this process that holds batches already has its first segment read
        (most streams have one; a sealed one leads on to the rest): one request, instead of a
        refused create, a listing and the read."""
        if tail is None:
            if after_seq > 0:
                return self._probe(stream, 0, 0)
        elif tail.last_seq is None or tail.last_seq < after_seq:
            return self._probe(stream, tail.segment, tail.length)
        return tail

    def has_seq(self, stream: str, seq: int) -> bool:
        """From the tail this process knows (no request) when that proves it; else one ranged
        read of the tail (two when the stream is new to this process)."""
        tail = self._cached_tail(stream)
        if tail is not None and tail.last_seq is not None and tail.last_seq >= seq:
            return True
        tail = (
            self._discover(stream)
            if tail is None
            else self._probe(stream, tail.segment, tail.length)
        )
        if tail is not None and tail.sealed:
            tail = self._discover(stream)  # a later segment may hold it
        if tail is None or tail.last_seq is None:
            return False
        self._remember(stream, tail)
        return tail.last_seq >= seq

    def _store_oversize_batch(self, stream: str, seq: int, block: bytes, count: int) -> bytes:
        """Store a batch too big for one block on its own; return the pointer line to append.

        Create-only: a batch blob that exists is this same batch from an earlier attempt (a seq
        names one committed batch), and uploads are all-or-nothing, so it is complete."""
        name = self._batch_name(stream, seq)
        with contextlib.suppress(ResourceExistsError):
            self._blob(name).upload_blob(block, overwrite=False)
        logger.info("stream %s: seq %s stored as %s (%s bytes)", stream, seq, name, len(block))
        return _encode_line({"batch": name, "n": count}, seq)

    def read(
        self, stream: str, after_seq: int = 0, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Records with seq > after_seq, whole batches, from the segment holding after_seq on."""
        segments = self._segments(stream)
        start = 0
        for i, segment in enumerate(segments):
            if segment.prev_seq is not None and segment.prev_seq > after_seq:
                break
            start = i  # the last segment that starts at or before after_seq
        out: list[dict[str, Any]] = []
        for segment in segments[start:]:
            if segment.size == 0:
                continue
            data = self._blob(self._segment_name(stream, segment.index)).download_blob().readall()
            for count, batch in self._batches(data, _swarm_of(stream), after_seq):
                if limit is not None and out and len(out) + count > limit:
                    return out
                # An oversize batch's blob is fetched only once the batch is known to be wanted.
                out.extend(self._read_batch_blob(batch)[0] if isinstance(batch, str) else batch)
        return out

    @staticmethod
    def _batches(
        data: bytes, swarm_id: str, after_seq: int
    ) -> Iterator[tuple[int, list[dict[str, Any]] | str]]:
        """(record count, the records or the name of the blob holding them) per batch after
        `after_seq`; a batch's lines are contiguous and share its seq (its commit line is
        not a record)."""
        lines = _all_lines(data, swarm_id, after_seq)
        i = 0
        while i < len(lines):
            seq, j = int(lines[i]["seq"]), i
            while j < len(lines) and int(lines[j]["seq"]) == seq:
                j += 1
            group, i = lines[i:j], j
            pointer = next((line for line in group if "batch" in line), None)
            if pointer is not None:  # an oversize batch
                yield int(pointer["n"]), str(pointer["batch"])
            else:
                records = [line["r"] for line in group if "r" in line]
                yield len(records), records

    def _read_batch_blob(self, name: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """An oversize batch's records and commit record."""
        data = self._blob(name).download_blob().readall()
        lines = _all_lines(data, _swarm_of(name))
        commit = next((line["c"] for line in lines if "c" in line), None)
        return [line["r"] for line in lines if "r" in line], commit

    def mark(self, stream: str) -> dict[str, Any]:
        """The end of the stream as this process last saw it (a hint that may lag, never lead),
        else as found now."""
        tail = self._cached_tail(stream)
        if tail is None:
            tail = self._discover(stream)
        if tail is None:
            return {"segment": 0, "offset": 0}
        return {"segment": tail.segment, "offset": tail.length}

    def read_batches(
        self, stream: str, mark: Mapping[str, Any], after_seq: int, until_seq: int
    ) -> Iterator[Batch]:
        seq: int | None = None
        commit: dict[str, Any] | None = None
        records: list[dict[str, Any]] = []
        for line in self._lines_from(stream, mark, after_seq, until_seq):
            if line["seq"] != seq:
                if seq is not None:
                    yield Batch(seq, commit, records)
                seq, commit, records = int(line["seq"]), None, []
            if "c" in line:
                commit = line["c"]
            elif "r" in line:
                records.append(line["r"])
            elif "batch" in line:  # an oversize batch: the lines are in a blob of its own
                records, commit = self._read_batch_blob(str(line["batch"]))
        if seq is not None:
            yield Batch(seq, commit, records)

    def _lines_from(
        self, stream: str, mark: Mapping[str, Any], after_seq: int, until_seq: int
    ) -> Iterator[dict[str, Any]]:
        """The lines of the batches with after_seq < seq <= until_seq: ranged reads from the
        mark, a chunk at a time, until a line past `until_seq` (or the stream's end); a
        batch's lines are contiguous and streams are in seq order."""
        segment, offset = int(mark.get("segment", 0)), int(mark.get("offset", 0))
        swarm_id = _swarm_of(stream)
        cut = b""  # a frame cut by the chunk's end, completed by the next chunk(s)
        last_seq = after_seq
        while True:
            data = self._read_chunk(self._segment_name(stream, segment), offset)
            if data is None:
                return  # no such segment: the stream ends before it
            offset += len(data)
            frames, taken = _split_frames(cut + data)
            cut = (cut + data)[taken:]
            for frame in frames:
                seq = last_seq = _last_seq(frame)
                if seq > until_seq:
                    return
                if seq > after_seq:
                    yield from _frame_lines(frame, swarm_id)
            if len(data) < _READ_CHUNK_BYTES:
                _require_whole(cut, 0)  # the segment's end: nothing of a batch left over
                if last_seq >= until_seq:
                    return  # a segment ends with a whole batch: nothing more to take
                # The segment's end: a later one exists only if this one is sealed (full).
                segment, offset = segment + 1, 0

    def _read_chunk(self, name: str, offset: int) -> bytes | None:
        """Up to `_READ_CHUNK_BYTES` of a blob from `offset` (b"" past its end; None: no blob)."""
        got = _ranged_read(self._blob(name), offset, _READ_CHUNK_BYTES)
        return None if got is None else got[0]

    @staticmethod
    def _snapshot_name(swarm_id: str, seq: int, kind: str = "state") -> str:
        if kind not in SNAPSHOT_KINDS:
            raise ValueError(f"unknown snapshot kind {kind!r}")
        folder = "snapshots" if kind == "state" else f"{kind}s"
        return f"{swarm_id}/{folder}/{seq:012d}.json"

    def put_snapshot(
        self, swarm_id: str, seq: int, document: Mapping[str, Any], kind: str = "state"
    ) -> None:
        body = json.dumps(dict(document), separators=(",", ":"), default=str).encode()
        self._blob(self._snapshot_name(swarm_id, seq, kind)).upload_blob(body, overwrite=True)

    def get_snapshot(self, swarm_id: str, seq: int, kind: str = "state") -> dict[str, Any] | None:
        try:
            name = self._snapshot_name(swarm_id, seq, kind)
            data = self._blob(name).download_blob().readall()
        except ResourceNotFoundError:
            return None
        document: dict[str, Any] = json.loads(data)
        return document

    def latest_snapshot(
        self, swarm_id: str, at_or_before: int, kind: str = "state"
    ) -> dict[str, Any] | None:
        prefix = self._snapshot_name(swarm_id, 0, kind).rsplit("/", 1)[0] + "/"
        best: tuple[int, str] | None = None
        for name in self._container().list_blob_names(name_starts_with=prefix):
            stem = name[len(prefix) :].removesuffix(".json")
            if not stem.isdigit():
                continue
            seq = int(stem)
            if seq <= at_or_before and (best is None or seq > best[0]):
                best = (seq, name)
        if best is None:
            return None
        try:
            data = self._blob(best[1]).download_blob().readall()
        except ResourceNotFoundError:  # deleted with its swarm meanwhile
            return None
        document: dict[str, Any] = json.loads(data)
        return document

    # --- copies -------------------------------------------------------------------------------

    def copy_swarm(self, source_id: str, target_id: str, until_seq: int) -> None:
        """Segment by segment, so that positions (marks) are kept: each copied segment holds
        the same bytes up to the first batch after `until_seq`, ids rewritten in place (same
        length). Streams are copied at once on a few threads."""
        rewrite_swarm_id(b"", source_id, target_id)  # the length check, before anything
        container = self._container()
        if next(iter(container.list_blob_names(name_starts_with=f"{target_id}/")), None):
            raise ValueError(f"swarm {target_id} has content already")
        source = f"{source_id}/"
        segments: dict[str, list[BlobProperties]] = {}
        singles: list[str] = []  # oversize batches and snapshots at or before until_seq
        for item in container.list_blobs(name_starts_with=source, include=["metadata"]):
            rest = item.name[len(source) :]
            folder, _, leaf = rest.partition("/")
            if folder in ("snapshots", "checkpoints", "batches"):
                stem = leaf.rsplit("/", 1)[-1].split(".")[0]
                if stem.isdigit() and int(stem) <= until_seq:
                    singles.append(item.name)
                continue
            match = _SEGMENT_NAME.search(item.name)
            if match is not None and folder in ("history", "commits", "chats", "logs"):
                segments.setdefault(item.name[: match.start()], []).append(item)

        def target_name(name: str) -> str:
            return target_id + name[len(source_id) :]

        def copy_single(name: str) -> None:
            data = self._blob(name).download_blob().readall()
            self._blob(target_name(name)).upload_blob(
                rewrite_swarm_id(data, source_id, target_id), overwrite=False
            )

        def copy_stream(items: list[BlobProperties]) -> None:
            for item in sorted(items, key=lambda i: i.name):
                prev_seq = _prev_seq(item.metadata)
                if prev_seq is not None and prev_seq >= until_seq:
                    return  # this segment and the later ones hold later batches only
                data = self._blob(item.name).download_blob().readall()
                kept = _cut_after(data, until_seq)
                blob = self._blob(target_name(item.name))
                blob.create_append_blob(metadata=dict(item.metadata or {}))
                kept = rewrite_swarm_id(kept, source_id, target_id)
                for chunk in _line_chunks(kept, self._max_block):
                    blob.append_block(chunk)
                if len(kept) < len(data):
                    return  # cut: the batches after until_seq are left out
                if item.is_append_blob_sealed:
                    blob.seal_append_blob()

        calls = [partial(copy_stream, items) for items in segments.values()]
        calls += [partial(copy_single, name) for name in singles]
        with ThreadPoolExecutor(8, thread_name_prefix="copy") as pool:
            for future in [pool.submit(call) for call in calls]:
                future.result()
        logger.info(
            "copied swarm %s to %s until seq %s: %s streams, %s snapshots and batches",
            source_id,
            target_id,
            until_seq,
            len(segments),
            len(singles),
        )

    def probe(self) -> None:
        """One read of the container's properties (readiness)."""
        self._container().get_container_properties()

    def put_claim(self, name: str, data: bytes) -> None:
        self._blob(name).upload_blob(bytes(data), overwrite=True)

    def get_claim(self, name: str) -> bytes:
        try:
            data: bytes = self._blob(name).download_blob().readall()
        except ResourceNotFoundError:
            raise KeyError(name) from None
        return data

    def delete_swarm(self, swarm_id: str) -> None:
        """Delete every blob under `{swarm_id}/` (streams, batches, snapshots, claim checks)."""
        prefix = f"{swarm_id}/"
        container = self._container()
        deleted = 0
        for name in container.list_blob_names(name_starts_with=prefix):
            try:
                container.delete_blob(name)
                deleted += 1
            except ResourceNotFoundError:
                pass
        self._forget(prefix)
        logger.info("deleted %s blobs swarm_id=%s", deleted, swarm_id)
