"""The state changelog: per input partition, snapshots and change records in a Kafka topic.

Each commit writes, for every input partition whose state changed, either the keys that
changed since the previous commit (``Engine.take_changes``) or, once those add up to more
than the state itself, a full snapshot. Records older than the latest committed snapshot are
deleted (``delete_records``), so restoring reads one snapshot plus the changes after it:
bounded by the state's size, never by the history.

Payloads larger than one Kafka record are cut into chunks. A record's value is a frame::

    b"FSC2" | version u8 (1) | kind (b"S" snapshot, b"C" changes) | seq u64 | chunk u32 |
    chunks u32 | crc32 u32 | payload

all little-endian; ``crc32`` (zlib's) covers every header field before it and the payload, so a
flipped bit anywhere in a frame is caught. Frames are written inside the processing
transaction, so a ``read_committed`` restore sees exactly the state of the last commit.
Each record's :data:`WRITER_HEADER` header names the transactional id that wrote it: the owner
whose open transaction holds a takeover up (:mod:`fraudstream.kafka.fencing`).

A restore refuses what it cannot trust with :class:`~fraudstream.errors.SnapshotError`: a
record that is not a frame, a checksum that does not match, a chunk outside its frame, a
frame left incomplete. It never rebuilds a state from part of the changelog. (Frames of the
first format, ``b"FSCL"`` without version or checksum, are still read.)
"""

from __future__ import annotations

import functools
import logging
import struct
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from fraudstream.errors import SnapshotError, StreamError
from fraudstream.kafka.producing import produce_waiting
from fraudstream.kafka.read_alerts import data_messages
from fraudstream.pieces import Buffer, Pieces, chunks, crc32, join_ranges, size

log = logging.getLogger(__name__)

MAGIC = b"FSC2"
FORMAT = 1
HEADER = struct.Struct("<4sBcQIII")
"""magic, format version, kind, seq, chunk, chunks, crc32."""
_CHECKED = struct.Struct("<4sBcQII")
"""The header fields the checksum covers (all but itself)."""
_CRC = struct.Struct("<I")
LEGACY_MAGIC = b"FSCL"
LEGACY_HEADER = struct.Struct("<4scQII")
SNAPSHOT, CHANGES = b"S", b"C"
WRITER_HEADER = "fraudstream-writer"
"""Record header: the transactional id of the instance that wrote the record."""
CHUNK_BYTES = 512 * 1024
RESTORE_FETCH_WAIT_MS = 10
RESTORE_POLL_S = 0.01
"""A restore's ``consume`` timeout: it returns what came within it, not a full batch."""


@dataclass
class PartitionLog:
    """What the writer knows of one partition's changelog."""

    seq: int = 0
    changes_bytes: int = 0
    """Bytes of change records since the latest snapshot."""
    snapshot_bytes: int = 0
    has_snapshot: bool = False
    snapshot_offset: int | None = None
    """Offset of the first chunk of the latest snapshot, once delivered."""


@dataclass
class Restored:
    """The state of one partition read back from its changelog."""

    snapshot: bytes | None = None
    changes: list[bytes] = field(default_factory=list)
    last_seq: int = -1
    bytes_read: int = 0
    records_read: int = 0


def frames(
    kind: bytes, seq: int, payload: Buffer | Pieces, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[bytes]:
    """``payload`` (bytes, or bytes in pieces: :mod:`fraudstream.pieces`) as one or more frames
    of at most ``chunk_bytes`` of payload each, built as they are taken: each chunk is copied
    once, into its frame, and a frame sent before the next is built leaves its memory to it."""
    parts = payload if isinstance(payload, list) else [payload]
    count = max(1, -(-size(parts) // chunk_bytes))
    for i, ranges in enumerate(chunks(parts, chunk_bytes)):
        head = _CHECKED.pack(MAGIC, FORMAT, kind, seq, i, count)
        crc = crc32(head)
        for piece, start, end in ranges:
            crc = crc32(piece, crc, start, end)
        yield join_ranges(ranges, head, _CRC.pack(crc))


@dataclass
class Frame:
    """One changelog record, parsed and checked."""

    kind: bytes
    seq: int
    index: int
    count: int
    payload: bytes


def parse_frame(value: bytes | None, where: str = "changelog record") -> Frame:
    """The frame in a changelog record's value; :class:`SnapshotError` for anything else: not a
    frame, an unknown format, a checksum mismatch, a chunk index outside its frame."""
    if value is None or len(value) < LEGACY_HEADER.size:
        raise SnapshotError(f"{where}: not a changelog frame ({0 if value is None else len(value)} bytes)")
    magic = value[:4]
    if magic == MAGIC:
        if len(value) < HEADER.size:
            raise SnapshotError(f"{where}: truncated frame header")
        _, version, kind, seq, index, count, crc = HEADER.unpack_from(value)
        if version != FORMAT:
            raise SnapshotError(f"{where}: changelog frame format {version}, this build reads {FORMAT}")
        payload = value[HEADER.size :]
        actual = crc32(value, crc32(value, 0, 0, _CHECKED.size), HEADER.size)
        if actual != crc:
            raise SnapshotError(
                f"{where}: checksum mismatch (stored {crc:#010x}, computed {actual:#010x}): "
                "the frame is corrupt"
            )
    elif magic == LEGACY_MAGIC:
        _, kind, seq, index, count = LEGACY_HEADER.unpack_from(value)
        payload = value[LEGACY_HEADER.size :]
    else:
        raise SnapshotError(f"{where}: not a changelog frame (magic {magic!r})")
    if kind not in (SNAPSHOT, CHANGES) or not 0 <= index < count:
        raise SnapshotError(f"{where}: malformed frame (kind {kind!r}, chunk {index} of {count})")
    return Frame(kind, seq, index, count, payload)


class FrameAssembly:
    """The chunks of one changelog partition's frames being put together, in offset order."""

    def __init__(self) -> None:
        self.partial: dict[tuple[bytes, int], tuple[list[bytes], list[int]]] = {}
        """(kind, seq) -> the chunks so far, and how many are still missing."""

    def add(self, frame: Frame, where: str) -> bytes | None:
        """Takes one chunk; the frame's whole payload once its last chunk is in, else None."""
        key, count = (frame.kind, frame.seq), frame.count
        parts, missing = self.partial.setdefault(key, ([b""] * count, [count]))
        if len(parts) != count or parts[frame.index]:
            raise SnapshotError(
                f"{where}: chunk {frame.index} of {count} does not fit frame {frame.seq} "
                f"({len(parts)} chunks)"
            )
        parts[frame.index] = frame.payload
        missing[0] -= 1
        if missing[0]:
            return None
        del self.partial[key]
        return b"".join(parts)

    def incomplete(self) -> list[int]:
        """The seqs of the frames still missing chunks."""
        return sorted(seq for _, seq in self.partial)


class ChangelogWriter:
    """Writes snapshots or changes of a partition's engine inside the open transaction."""

    def __init__(
        self,
        producer: Producer,
        topic: str,
        snapshot_min_bytes: int = 1 << 20,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self.producer, self.topic = producer, topic
        self.snapshot_min_bytes = snapshot_min_bytes
        self.chunk_bytes = chunk_bytes
        """Payload bytes per record: a record must fit the producer's local queue."""
        self.logs: dict[int, PartitionLog] = {}
        self._truncating: list[Future[object]] = []
        self._snapshots_since_commit = 0
        """Snapshots written since the last commit (:meth:`truncate` runs after each one)."""
        self.headers: list[tuple[str, bytes]] | None = None
        """Headers of every record: the writer's id (:meth:`name_writer`)."""

    def name_writer(self, writer: str) -> None:
        """Names ``writer`` (a transactional id) in the :data:`WRITER_HEADER` of every record."""
        self.headers = [(WRITER_HEADER, writer.encode())]

    def write(
        self, partition: int, snapshot: Callable[[], bytes | Pieces], changes: Callable[[], bytes]
    ) -> None:
        """Writes the partition's changes, or a snapshot when the changes since the last one
        outgrow it (or there is none yet): a restore then reads at most about three times the
        serialized state, however long the history. ``snapshot`` may give it in pieces.

        One transaction takes at most one snapshot that is merely due (changes past the last
        snapshot's size); the other partitions' due snapshots wait for later commits, unless
        their changes outgrow twice the snapshot. Partitions under the same load come due at
        the same commit, and writing all their snapshots in it made that one commit (and every
        record waiting behind it) many times slower than the others."""
        plog = self.logs.setdefault(partition, PartitionLog())
        plog.seq += 1
        outgrown = max(plog.snapshot_bytes, self.snapshot_min_bytes)
        due = plog.changes_bytes > outgrown and not self._snapshots_since_commit
        if not plog.has_snapshot or due or plog.changes_bytes > 2 * outgrown:
            self._snapshots_since_commit += 1
            snapped = snapshot()
            payload: Pieces = snapped if isinstance(snapped, list) else [snapped]
            changes()  # the snapshot includes them
            kind = SNAPSHOT
            plog.has_snapshot, plog.snapshot_bytes, plog.changes_bytes = True, size(payload), 0
        else:
            payload = [changes()]
            kind = CHANGES
            plog.changes_bytes += size(payload)
        for i, frame in enumerate(frames(kind, plog.seq, payload, self.chunk_bytes)):
            on_delivery = None
            if kind == SNAPSHOT and i == 0:
                plog.snapshot_offset = None

                def on_delivery(err: KafkaError | None, msg: Message, plog: PartitionLog = plog) -> None:
                    if err is None:
                        plog.snapshot_offset = msg.offset()

            produce_waiting(
                self.producer, self.topic, value=frame, key=kind, partition=partition,
                on_delivery=on_delivery, headers=self.headers,
            )  # fmt: skip

    def truncate(self, admin: AdminClient) -> None:
        """Deletes the records before each partition's latest committed snapshot (called after
        each commit)."""
        self._snapshots_since_commit = 0
        targets = [
            TopicPartition(self.topic, p, plog.snapshot_offset)
            for p, plog in self.logs.items()
            if plog.snapshot_offset
        ]
        for plog in self.logs.values():
            plog.snapshot_offset = None
        self._truncating = [f for f in self._truncating if not f.done()]
        if targets:
            for tp, future in admin.delete_records(targets).items():
                future.add_done_callback(functools.partial(_log_failure, tp=tp))
                self._truncating.append(future)

    def wait_truncated(self, timeout: float) -> None:
        """Waits for the deletions under way (at shutdown: the next restore reads less)."""
        _, not_done = wait(self._truncating, timeout)
        self._truncating = list(not_done)
        if not_done:
            log.warning("%d changelog truncations still pending after %.0f s", len(not_done), timeout)

    def forget(self, partition: int) -> None:
        self.logs.pop(partition, None)


def _log_failure(future: Future[object], tp: TopicPartition) -> None:
    exc = future.exception()
    if exc is not None:
        log.warning("could not truncate changelog %s[%d]: %s", tp.topic, tp.partition, exc)


def read_changelog(
    client: dict[str, object], topic: str, group: str, partitions: list[int], timeout: float = 60.0
) -> dict[int, Restored]:
    """The committed snapshot and later changes of each partition (empty when none)."""
    reader = Consumer(
        {
            **client,
            "group.id": group,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            # a fetch at the end waits this long for more before the broker answers, and the
            # end-of-partition event that finishes a restore comes with that answer (librdkafka's
            # default, 500 ms, was most of a small restore, and of every rewind after an abort)
            "fetch.wait.max.ms": RESTORE_FETCH_WAIT_MS,
        }
    )
    restored = {p: Restored() for p in partitions}
    try:
        _wait_stable(client, reader, topic, partitions, timeout)
        assignment, pending = [], set()
        for p in partitions:
            low, high = _watermarks(reader, TopicPartition(topic, p), timeout)
            if high > low:
                assignment.append(TopicPartition(topic, p, low))
                pending.add(p)
        if not assignment:
            return restored
        reader.assign(assignment)
        partial = {p: FrameAssembly() for p in partitions}
        deadline = time.monotonic() + timeout  # moved on by every record: a stall, not a size limit
        next_report = time.monotonic() + 1.0
        while pending:
            now = time.monotonic()
            if now > deadline:
                raise StreamError(
                    f"restoring changelog partitions {sorted(pending)}: nothing received for {timeout:.0f} s"
                )
            if now >= next_report:  # progress of a long restore
                next_report = now + 1.0
                log.info(
                    "restoring: %d changelog records (%d bytes) read, partitions %s pending",
                    sum(r.records_read for r in restored.values()),
                    sum(r.bytes_read for r in restored.values()),
                    sorted(pending),
                )
            msgs = reader.consume(num_messages=1_000, timeout=RESTORE_POLL_S)
            if msgs:
                deadline = time.monotonic() + timeout
            for m in data_messages(msgs, pending):
                part = m.partition()
                if part is None:
                    continue
                p = part
                value = m.value()
                frame = parse_frame(value, f"changelog {topic}[{p}] offset {m.offset()}")
                r = restored[p]
                r.records_read += 1
                r.bytes_read += len(value or b"")
                payload = partial[p].add(frame, f"changelog {topic}[{p}] offset {m.offset()}")
                if payload is not None:
                    if frame.kind == SNAPSHOT:
                        r.snapshot, r.changes = payload, []
                    elif r.snapshot is not None:
                        r.changes.append(payload)
                    r.last_seq = max(r.last_seq, frame.seq)
        left = {p: a.incomplete() for p, a in partial.items() if a.incomplete()}
        if left:
            raise SnapshotError(
                f"changelog {topic}: frames left incomplete at its end (partition: seq) {left}"
            )
    finally:
        reader.close()
    return restored


def _wait_stable(
    client: dict[str, object], reader: Consumer, topic: str, partitions: list[int], timeout: float
) -> None:
    """Waits until every transaction that wrote to the changelog partitions before this call is
    resolved.

    The committed input offsets turn stable as soon as the commit marker of the previous owner's
    transaction reaches the offsets topic; its markers on the changelog partitions may land a
    moment later. A ``read_committed`` reader that started in between would stop at the last
    stable offset, before that transaction's state, and resume from offsets the state has not
    seen. Waiting for the last stable offset to pass the log end seen at the start closes the
    gap (an aborted transaction resolves too, at the latest after the transaction timeout)."""
    uncommitted = Consumer(
        {**client, "group.id": "fraudstream-log-end", "isolation.level": "read_uncommitted"}
    )
    try:
        log_end = {p: _watermarks(uncommitted, TopicPartition(topic, p), timeout)[1] for p in partitions}
    finally:
        uncommitted.close()
    deadline = time.monotonic() + timeout
    waiting = set(partitions)
    while waiting:
        # the reader is read_committed: its high watermark is the last stable offset
        waiting = {
            p for p in waiting if _watermarks(reader, TopicPartition(topic, p), timeout)[1] < log_end[p]
        }
        if not waiting:
            break
        if time.monotonic() > deadline:
            raise StreamError(
                f"changelog partitions {sorted(waiting)} of {topic} still hold an open transaction "
                f"after {timeout:.0f} s"
            )
        time.sleep(0.02)


def _watermarks(reader: Consumer, tp: TopicPartition, timeout: float) -> tuple[int, int]:
    for attempt in range(20):
        try:
            low_high: tuple[int, int] = reader.get_watermark_offsets(tp, timeout=timeout)
            return low_high
        except KafkaException as exc:
            code = exc.args[0].code()
            if (
                code not in (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE)
                and not exc.args[0].retriable()
            ):
                raise
            time.sleep(0.05 * (attempt + 1))
    raise StreamError(f"no leader for {tp.topic}[{tp.partition}]")
