"""Placing chunks in the record's tail and in chunk documents."""

from __future__ import annotations

import itertools

import pytest

from durable_streams.layout import Segment, pack_segments, place_chunks, stored_size
from durable_streams.record import join_chunks, split_chunks
from durable_streams.wire import encode_json


def texts(count: int, size: int = 9) -> list[str]:
    return [f'"{index:0{size - 3}d}"' for index in range(count)]


def test_stored_size_counts_utf8_bytes_plus_one() -> None:
    assert stored_size("abc") == 4
    assert stored_size("é") == 3


def test_chunks_that_fit_stay_in_tail() -> None:
    placement = place_chunks(0, texts(2), texts(3), tail_bytes=100, segment_bytes=1000)

    assert placement.tail_start == 0
    assert len(placement.tail) == 5
    assert placement.segments == ()


def test_full_tail_moves_to_segments_and_newest_stay() -> None:
    tail = texts(8)  # 8 chunks of 10 stored bytes each
    new = texts(5)
    placement = place_chunks(100, tail, new, tail_bytes=80, segment_bytes=1000)

    assert placement.segments == (Segment(100, tuple(tail)),)
    assert placement.tail_start == 108
    assert placement.tail == tuple(new)


def test_new_chunks_over_tail_size_spill_into_segments() -> None:
    new = texts(20)
    placement = place_chunks(0, [], new, tail_bytes=50, segment_bytes=60)

    moved = [text for segment in placement.segments for text in segment.chunks]
    assert moved + list(placement.tail) == new
    assert len(placement.tail) == 5
    assert placement.tail_start == 15
    assert [segment.first for segment in placement.segments] == [0, 6, 12]


def test_zero_tail_moves_everything() -> None:
    placement = place_chunks(3, texts(2), texts(2), tail_bytes=0, segment_bytes=1000)

    assert placement.tail == ()
    assert placement.tail_start == 7
    assert placement.segments[0].first == 3


def test_pack_segments_respects_size_and_order() -> None:
    chunks = texts(25)
    segments = pack_segments(40, chunks, segment_bytes=100)

    assert [text for segment in segments for text in segment.chunks] == chunks
    assert all(sum(map(stored_size, s.chunks)) <= 100 for s in segments)
    assert segments[0].first == 40
    assert segments[-1].last == 64
    for previous, following in itertools.pairwise(segments):
        assert following.first == previous.last + 1


def test_oversized_chunk_gets_its_own_segment() -> None:
    big = '"' + "x" * 300 + '"'
    segments = pack_segments(0, ["1", big, "2"], segment_bytes=100)

    assert [segment.chunks for segment in segments] == [("1",), (big,), ("2",)]


@pytest.mark.parametrize(
    "texts",
    [[], ['""'], ['{"a":"x\\ny"}', "1", '"\u2028"'], [encode_json("a\nb"), "null"]],
)
def test_join_then_split_chunks_round_trips(texts: list[str]) -> None:
    assert split_chunks(join_chunks(texts)) == texts


def test_joined_chunks_keep_stored_size() -> None:
    texts = ['{"n":1}', '"é"', "[]"]

    assert stored_size(join_chunks(texts)) == sum(map(stored_size, texts))


def test_split_chunks_reads_an_array() -> None:
    assert split_chunks(['"a"', '"b"']) == ['"a"', '"b"']
