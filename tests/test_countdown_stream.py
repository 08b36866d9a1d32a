"""Streaming a countdown: frames, headers and the final result."""

from __future__ import annotations

from support.servers import Server
from support.sse import stream


def test_countdown_streams_chunks_then_result(server: Server) -> None:
    result = stream(server.url("countdown"), 5)

    assert result.status_code == 200
    assert result.stream_id
    assert result.headers["content-type"] == "text/event-stream"
    assert result.headers["cache-control"] == "no-cache"
    assert [chunk["count"] for chunk in result.chunks] == [5, 4, 3, 2, 1]
    assert [chunk["message"] for chunk in result.chunks] == [
        f"T-{i}..." for i in range(5, 0, -1)
    ]
    assert result.seqs == [0, 1, 2, 3, 4]
    assert result.final == {"result": "Liftoff!"}
    result.assert_one_final_frame_last()
