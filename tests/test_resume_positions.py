"""Reconnecting from a position in Genkit's dialect, and from inside chunk
documents in both dialects."""

from __future__ import annotations

import httpx
import pytest
from google.cloud import firestore

from durable_streams.record import CHUNKS
from support.eventsource import follow
from support.servers import Server
from support.sse import SSE_HEADERS, stream


def test_reconnect_without_position_replays_all(server: Server) -> None:
    first = stream(server.url("countdown"), 5)

    again = stream(server.url("countdown"), stream_id=first.stream_id)

    assert again.seqs == [0, 1, 2, 3, 4]
    assert again.chunks == first.chunks
    again.assert_one_final_frame_last()


def test_reconnect_with_last_event_id_sends_rest(server: Server) -> None:
    first = stream(server.url("countdown"), 5)

    again = stream(
        server.url("countdown"),
        stream_id=first.stream_id,
        headers={"Last-Event-ID": "2"},
    )

    assert again.seqs == [3, 4]
    assert again.chunks == first.chunks[3:]
    assert again.final == {"result": "Liftoff!"}
    again.assert_one_final_frame_last()


def test_reconnect_with_query_position_sends_rest(server: Server) -> None:
    first = stream(server.url("countdown"), 5)

    again = stream(
        server.url("countdown") + "?lastEventId=0", stream_id=first.stream_id
    )

    assert again.seqs == [1, 2, 3, 4]


def test_reconnect_past_end_sends_only_final_frame(server: Server) -> None:
    first = stream(server.url("countdown"), 3)

    again = stream(
        server.url("countdown"),
        stream_id=first.stream_id,
        headers={"Last-Event-ID": "7"},
    )

    assert again.status_code == 200
    assert again.frames == [{"result": "Liftoff!"}]


def test_reconnect_mid_stream_gets_live_rest(server: Server) -> None:
    first = stream(server.url("countdown"), 30, max_frames=4)

    again = stream(
        server.url("countdown"),
        stream_id=first.stream_id,
        headers={"Last-Event-ID": str(first.seqs[-1])},
    )

    assert first.seqs == [0, 1, 2, 3]
    assert again.seqs == list(range(4, 30))
    again.assert_one_final_frame_last()


@pytest.mark.parametrize("value", ["-1", "abc", "1e3", "9" * 19])
def test_reconnect_with_bad_position_returns_400(server: Server, value: str) -> None:
    first = stream(server.url("countdown"), 1)
    assert first.stream_id is not None

    response = httpx.post(
        server.url("countdown"),
        json={},
        headers={
            **SSE_HEADERS,
            "X-Genkit-Stream-Id": first.stream_id,
            "Last-Event-ID": value,
        },
    )

    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert repr(value) in response.json()["error"]["message"]


def test_resume_inside_chunk_documents(
    server: Server, db: firestore.Client, collection: str
) -> None:
    data = {"count": 300, "size": 2000}
    first = stream(server.url("blast"), data)
    assert first.stream_id is not None
    chunk_documents = (
        db.collection(collection).document(first.stream_id).collection(CHUNKS).get()
    )

    genkit = stream(
        server.url("blast"),
        stream_id=first.stream_id,
        headers={"Last-Event-ID": "149"},
    )
    standard = follow(server.url("blast"), first.stream_id, last_event_id="149")

    assert len(chunk_documents) >= 1
    assert genkit.seqs == list(range(150, 300))
    assert [chunk["i"] for chunk in genkit.chunks] == list(range(150, 300))
    assert genkit.final == {"result": {"sent": 300}}
    assert standard.ids == list(range(150, 301))
    assert [chunk["i"] for chunk in standard.chunks] == list(range(150, 300))
