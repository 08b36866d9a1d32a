"""Reconnecting with X-Genkit-Stream-Id: replay, live follow, unknown ids."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from conftest import ServerFactory

from durable_streams.wire import STREAM_ID_HEADER
from support.servers import Server
from support.sse import SSE_HEADERS, stream


def reconnect_status(server: Server, stream_id: str) -> int:
    headers = {**SSE_HEADERS, STREAM_ID_HEADER: stream_id}
    response = httpx.post(server.url("countdown"), json={}, headers=headers)
    return response.status_code


def test_reconnect_mid_stream_replays_then_follows(start_server: ServerFactory) -> None:
    server = start_server(env={"COUNTDOWN_TICK_SECONDS": "0.2"})
    first = stream(server.url("countdown"), 10, max_frames=4)
    assert first.stream_id is not None
    assert first.seqs == [0, 1, 2, 3]

    resumed = stream(server.url("countdown"), stream_id=first.stream_id)

    assert resumed.status_code == 200
    assert resumed.stream_id == first.stream_id
    assert resumed.seqs == list(range(10))
    assert [chunk["count"] for chunk in resumed.chunks] == list(range(10, 0, -1))
    assert resumed.chunks[:4] == first.chunks
    assert resumed.final == {"result": "Liftoff!"}
    assert len(resumed.frames) == 11
    resumed.assert_one_final_frame_last()


def test_reconnect_mid_stream_receives_live_chunks(start_server: ServerFactory) -> None:
    server = start_server(env={"COUNTDOWN_TICK_SECONDS": "0.3"})
    first = stream(server.url("countdown"), 8, max_frames=2)
    assert first.stream_id is not None

    started = time.monotonic()
    resumed = stream(server.url("countdown"), stream_id=first.stream_id)
    elapsed = time.monotonic() - started

    # Six chunks were still to come, one every 0.3 s, so the reconnect must
    # have waited for live ones rather than received a finished stream.
    assert elapsed > 0.9
    assert resumed.seqs == list(range(8))
    assert resumed.final == {"result": "Liftoff!"}


def test_reconnect_after_completion_gets_everything(server: Server) -> None:
    first = stream(server.url("countdown"), 6)
    assert first.final == {"result": "Liftoff!"}
    assert first.stream_id is not None

    replay = stream(server.url("countdown"), stream_id=first.stream_id)

    assert replay.status_code == 200
    assert replay.frames == first.frames
    replay.assert_one_final_frame_last()


def test_reconnect_many_readers_at_once(server: Server) -> None:
    first = stream(server.url("countdown"), 12, max_frames=1)
    assert first.stream_id is not None
    results = []

    def follow() -> None:
        results.append(stream(server.url("countdown"), stream_id=first.stream_id))

    threads = [threading.Thread(target=follow) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(results) == 5
    for result in results:
        assert result.seqs == list(range(12))
        assert result.final == {"result": "Liftoff!"}


@pytest.mark.parametrize(
    "stream_id",
    [
        "AAAAAAAAAAAAAAAAAAAAAA",  # the right format, but no such stream
        "not-a-stream-id",
        "../../other/doc",
        "AAAAAAAAAAAAAAAAAAAAA/",
        "",
        "x" * 500,
    ],
)
def test_reconnect_unknown_or_malformed_id_gets_204(
    server: Server, stream_id: str
) -> None:
    headers = {**SSE_HEADERS, STREAM_ID_HEADER: stream_id}
    response = httpx.post(server.url("countdown"), json={"data": 3}, headers=headers)

    assert response.status_code == 204
    assert response.content == b""
    assert "content-type" not in response.headers


def test_reconnect_expired_stream_gets_204(start_server: ServerFactory) -> None:
    server = start_server(env={"STREAM_TTL_SECONDS": "1"})
    first = stream(server.url("countdown"), 2)
    assert first.final == {"result": "Liftoff!"}
    assert first.stream_id is not None
    assert reconnect_status(server, first.stream_id) == 200

    time.sleep(1.5)

    assert reconnect_status(server, first.stream_id) == 204


def test_reconnect_on_other_server_follows_live(start_server: ServerFactory) -> None:
    env = {"COUNTDOWN_TICK_SECONDS": "0.2"}
    server_a = start_server(env=env)
    server_b = start_server(env=env)
    first = stream(server_a.url("countdown"), 12, max_frames=3)
    assert first.stream_id is not None

    started = time.monotonic()
    resumed = stream(server_b.url("countdown"), stream_id=first.stream_id)
    elapsed = time.monotonic() - started

    assert elapsed > 1.0, "the other server should have followed live chunks"
    assert resumed.seqs == list(range(12))
    assert [chunk["count"] for chunk in resumed.chunks] == list(range(12, 0, -1))
    assert resumed.chunks[:3] == first.chunks
    assert resumed.final == {"result": "Liftoff!"}
    resumed.assert_one_final_frame_last()


def test_one_listener_per_stream_per_server(start_server: ServerFactory) -> None:
    env = {"COUNTDOWN_TICK_SECONDS": "0.2"}
    producer_server = start_server(env=env)
    reader_server = start_server(env=env)
    first = stream(producer_server.url("countdown"), 15, max_frames=1)
    assert first.stream_id is not None
    results: list[object] = []

    def follow() -> None:
        results.append(
            stream(reader_server.url("countdown"), stream_id=first.stream_id)
        )

    threads = [threading.Thread(target=follow) for _ in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    listeners_while_following = reader_server.listener_count()
    for thread in threads:
        thread.join(timeout=60)

    assert listeners_while_following == 1
    assert len(results) == 6
    assert reader_server.listener_count() == 0
    assert producer_server.listener_count() == 0
