"""Bytes in pieces: a value held as the list of buffers it is the concatenation of.

A partition's state snapshot is tens of megabytes made of parts (features, rule windows, the
duplicate filter), packed with lengths and checksums (:func:`fraudstream.processor.pack`),
packed again by the partition's task, then cut into changelog frames, all inside a commit on
the poll loop's thread. Joined at each step it was copied three times; held in pieces it is
copied once, into the frames, and checksummed where it lies. The core's parts come as uint8
arrays that own the bytes it wrote (``snapshot_array()``), not copied into bytes objects either.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from fraudstream import _core

Buffer = bytes | bytearray | memoryview | npt.NDArray[Any]
"""A piece: bytes, or any contiguous buffer (a uint8 array from the core)."""
Pieces = list[Buffer]
"""A value as its pieces, in order; ``b"".join(pieces)`` is the value."""


def crc32(data: Buffer, value: int = 0, start: int = 0, end: int | None = None) -> int:
    """zlib's CRC-32 of ``data[start:end]`` continuing from ``value``; bytes and uint8 arrays
    are summed by the core (``crc32fast``: about 5x zlib here, the GIL released) without
    copying the slice."""
    if type(data) is bytes or (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 1):
        return _core.crc32(data, value, start, end)
    return zlib.crc32(_view(data)[start:end], value)


def join(pieces: Sequence[Buffer]) -> bytes:
    """The value as one bytes object (a copy)."""
    return b"".join(map(_view, pieces))


def size(pieces: Sequence[Buffer]) -> int:
    """Bytes in the value."""
    return sum(map(len, pieces))


def chunks(pieces: Sequence[Buffer], chunk_bytes: int) -> Iterator[list[tuple[Buffer, int, int]]]:
    """The value cut into runs of ``chunk_bytes`` (the last one shorter; one empty run for an
    empty value), each run as the ``(piece, start, end)`` ranges that make it up."""
    if chunk_bytes <= 0:
        raise ValueError(f"chunk_bytes must be positive, not {chunk_bytes}")
    run: list[tuple[Buffer, int, int]] = []
    room, cut = chunk_bytes, False
    for piece in pieces:
        at = 0
        while at < len(piece):
            end = min(len(piece), at + room)
            run.append((piece, at, end))
            room -= end - at
            at = end
            if not room:
                yield run
                run, room, cut = [], chunk_bytes, True
    if run or not cut:
        yield run


def join_ranges(ranges: Sequence[tuple[Buffer, int, int]], *before: bytes) -> bytes:
    """``before`` then the ranges' bytes, as one bytes object (their only copy)."""
    return b"".join((*before, *(_view(p)[a:b] for p, a, b in ranges)))


def _view(piece: Buffer) -> memoryview:
    # numpy's stubs do not declare the array's buffer protocol
    return memoryview(piece)  # type: ignore[arg-type]


__all__ = ["Buffer", "Pieces", "chunks", "crc32", "join", "join_ranges", "size"]
