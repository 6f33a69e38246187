"""Bytes in pieces (fraudstream.pieces): checksums, cuts, packs and changelog frames of a value
held in pieces equal those of the value joined (the oracle: ``b"".join`` and zlib)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fraudstream.kafka.changelog import CHANGES, SNAPSHOT, FrameAssembly, frames, parse_frame
from fraudstream.pieces import chunks, crc32, join_ranges, size
from fraudstream.processor import pack, pack_pieces, unpack

pieces_st = st.lists(st.binary(max_size=70), max_size=8)


def cut(value: bytes, chunk: int) -> list[bytes]:
    """``value`` in runs of ``chunk`` bytes (one empty run for no bytes)."""
    return [value[i : i + chunk] for i in range(0, len(value), chunk)] or [b""]


def oracle_frames(kind: bytes, seq: int, value: bytes, chunk: int) -> list[bytes]:
    """The changelog's frames as its module docstring describes them, built from the joined value."""
    runs = cut(value, chunk)
    heads = [struct.pack("<4sBcQII", b"FSC2", 1, kind, seq, i, len(runs)) for i in range(len(runs))]
    return [h + struct.pack("<I", zlib.crc32(r, zlib.crc32(h))) + r for h, r in zip(heads, runs, strict=True)]


@given(st.binary(max_size=300), st.integers(0, 2**32 - 1), st.data())
def test_crc32_is_zlibs_over_any_slice(data: bytes, value: int, draw: st.DataObject) -> None:
    start = draw.draw(st.integers(0, len(data)))
    end = draw.draw(st.integers(start, len(data)))
    expected = zlib.crc32(data[start:end], value)
    assert crc32(data, value, start, end) == expected
    assert crc32(np.frombuffer(data, np.uint8).copy(), value, start, end) == expected  # the core's arrays
    assert crc32(bytearray(data), value, start, end) == expected  # neither: zlib's own
    assert crc32(data, value) == zlib.crc32(data, value)


def test_crc32_refuses_a_range_outside_the_bytes() -> None:
    with pytest.raises(ValueError, match="outside 3 bytes"):
        crc32(b"abc", 0, 1, 9)


@given(pieces_st, st.integers(1, 50))
def test_chunks_cut_the_joined_value_into_full_runs_but_the_last(pieces: list[bytes], chunk: int) -> None:
    value = b"".join(pieces)
    assert [join_ranges(r) for r in chunks(pieces, chunk)] == cut(value, chunk)
    assert size(pieces) == len(value)


def test_chunks_refuse_a_chunk_size_below_one() -> None:
    with pytest.raises(ValueError, match="positive"):
        list(chunks([b"x"], 0))


@given(st.lists(st.one_of(st.binary(max_size=40), pieces_st), max_size=6))
def test_a_pack_in_pieces_is_the_pack_of_the_parts_joined(parts: list[bytes | list[bytes]]) -> None:
    joined = [p if isinstance(p, bytes) else b"".join(p) for p in parts]
    packed = b"".join(pack_pieces(parts))
    assert packed == pack(joined)
    assert unpack(packed, len(parts)) == joined


@given(pieces_st, st.integers(1, 60), st.sampled_from([SNAPSHOT, CHANGES]), st.integers(0, 2**40))
def test_frames_of_pieces_are_the_frames_of_the_joined_value(
    pieces: list[bytes], chunk: int, kind: bytes, seq: int
) -> None:
    value = b"".join(pieces)
    built = list(frames(kind, seq, pieces, chunk))
    assert built == oracle_frames(kind, seq, value, chunk)
    assembly = FrameAssembly()
    got = [assembly.add(parse_frame(f), "test") for f in built]
    assert got[:-1] == [None] * (len(built) - 1)
    assert got[-1] == value
