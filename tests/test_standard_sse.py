"""The standard SSE dialect: GET by stream id, ids, event types, 204 at the end."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import ServerFactory

from support.eventsource import follow, start_detached
from support.servers import Server
from support.sse import stream


def test_start_detached_returns_202_with_id(server: Server) -> None:
    response = httpx.post(
        server.url("countdown"),
        json={"data": 2},
        headers={"Prefer": "respond-async"},
        timeout=30,
    )

    assert response.status_code == 202
    stream_id = response.headers["x-genkit-stream-id"]
    assert response.json() == {"streamId": stream_id}
    assert response.headers["location"] == f"?streamId={stream_id}"
    assert response.headers["preference-applied"] == "respond-async"


def test_get_follows_countdown_with_ids(server: Server) -> None:
    stream_id = start_detached(server.url("countdown"), 4)

    result = follow(server.url("countdown"), stream_id)

    assert result.status_code == 200
    assert result.headers["content-type"] == "text/event-stream"
    assert result.headers["cache-control"] == "no-cache"
    assert result.headers["x-genkit-stream-id"] == stream_id
    assert result.text.startswith("retry: 2000\n\n")
    assert result.retry == 2000
    assert result.kinds == ["chunk"] * 4 + ["result"]
    assert result.ids == [0, 1, 2, 3, 4]
    assert [chunk["count"] for chunk in result.chunks] == [4, 3, 2, 1]
    assert result.events[-1].json == "Liftoff!"


def test_get_with_last_event_id_resumes(server: Server) -> None:
    stream_id = start_detached(server.url("countdown"), 5)

    result = follow(server.url("countdown"), stream_id, last_event_id="2")

    assert result.ids == [3, 4, 5]
    assert result.kinds == ["chunk", "chunk", "result"]
    assert [chunk["count"] for chunk in result.chunks] == [2, 1]


def test_get_with_query_position_resumes(server: Server) -> None:
    stream_id = start_detached(server.url("countdown"), 5)

    result = follow(server.url("countdown"), stream_id, params={"lastEventId": "3"})

    assert result.ids == [4, 5]


def test_get_header_position_wins_over_query(server: Server) -> None:
    stream_id = start_detached(server.url("countdown"), 5)

    result = follow(
        server.url("countdown"),
        stream_id,
        last_event_id="3",
        params={"lastEventId": "0"},
    )

    assert result.ids == [4, 5]


@pytest.mark.parametrize("last_event_id", ["5", "6", "999"])
def test_get_after_final_event_returns_204(server: Server, last_event_id: str) -> None:
    stream_id = start_detached(server.url("countdown"), 5)
    follow(server.url("countdown"), stream_id)

    result = follow(server.url("countdown"), stream_id, last_event_id=last_event_id)

    assert result.status_code == 204
    assert result.text == ""


def test_get_failed_flow_sends_error_event(server: Server) -> None:
    stream_id = start_detached(server.url("fail"), {"after": 2, "status": "ABORTED"})

    result = follow(server.url("fail"), stream_id)
    again = follow(server.url("fail"), stream_id, last_event_id="2")

    assert result.kinds == ["chunk", "chunk", "error"]
    assert result.ids == [0, 1, 2]
    assert result.events[-1].json == {
        "status": "ABORTED",
        "message": "failed on purpose",
    }
    assert again.status_code == 204


def test_get_follows_live_from_middle(server: Server) -> None:
    stream_id = start_detached(server.url("countdown"), 30)

    result = follow(server.url("countdown"), stream_id, last_event_id="9")

    assert result.ids == list(range(10, 31))
    assert [chunk["count"] for chunk in result.chunks] == list(range(20, 0, -1))


def test_heartbeat_comments_while_flow_is_silent(
    start_server: ServerFactory,
) -> None:
    server = start_server(env={"STREAM_HEARTBEAT_SECONDS": "0.5"})
    stream_id = start_detached(server.url("think"), {"seconds": 2.5})

    result = follow(server.url("think"), stream_id)

    assert result.kinds == ["chunk", "result"]
    assert len(result.comments) >= 2
    assert set(result.comments) == {"keep-alive"}
    before_chunk = result.text.split("event: chunk")[0]
    assert before_chunk.count(": keep-alive\n\n") >= 2


def test_get_unknown_stream_returns_404(server: Server) -> None:
    result = follow(server.url("countdown"), "A" * 22)

    assert result.status_code == 404
    assert result.headers["content-type"] == "application/json"
    assert json.loads(result.text)["error"]["status"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("params", "headers", "needle"),
    [
        ({}, {}, "streamId"),
        ({"streamId": "../../etc"}, {}, "is not a stream id"),
        ({"streamId": "A" * 22}, {"Last-Event-ID": "-1"}, "last event id"),
        ({"streamId": "A" * 22}, {"Last-Event-ID": "1.5"}, "last event id"),
        ({"streamId": "A" * 22, "lastEventId": "x"}, {}, "last event id"),
    ],
)
def test_get_bad_request_returns_400(
    server: Server, params: dict[str, str], headers: dict[str, str], needle: str
) -> None:
    response = httpx.get(server.url("countdown"), params=params, headers=headers)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert needle in error["message"]


def test_genkit_and_standard_dialects_carry_same_chunks(server: Server) -> None:
    genkit = stream(server.url("countdown"), 6)
    assert genkit.stream_id is not None

    standard = follow(server.url("countdown"), genkit.stream_id)

    assert standard.chunks == genkit.chunks
    assert standard.ids[:-1] == genkit.seqs
    assert standard.events[-1].json == genkit.final["result"]  # type: ignore[index]


def test_put_is_rejected_with_405(server: Server) -> None:
    response = httpx.put(server.url("countdown"), json={"data": 1})

    assert response.status_code == 405
    assert "GET" in response.json()["error"]["message"]
