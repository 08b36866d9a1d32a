"""The Python client: start, follow, reconnect by itself, resume, no duplicates."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import ServerFactory

from durable_streams.client import FlowClient, RetryPolicy, StreamNotFound
from durable_streams.errors import FlowError, Unavailable
from support.proxy import TcpProxy
from support.servers import ROOT, Server

FAST_RETRY = RetryPolicy(initial_delay=0.1, max_delay=1.0, deadline=30.0)

# One write per chunk, a tick apart, so that a cut after the k-th chunk comes
# before the next chunk reaches the client.
PACED = {"COUNTDOWN_TICK_SECONDS": "0.1", "STREAM_WRITE_INTERVAL_SECONDS": "0"}


@pytest.fixture
def paced_server(start_server: ServerFactory) -> Server:
    return start_server(env=PACED)


@pytest.fixture
def paced_proxy(paced_server: Server) -> Iterator[TcpProxy]:
    running = TcpProxy(paced_server.port).up()
    yield running
    running.down()


def counts(chunks: list[Any]) -> list[int]:
    return [chunk["count"] for chunk in chunks]


def reconnect_positions(server: Server) -> list[int]:
    """Return the start position of every Genkit reconnect the server served."""
    messages = [json.loads(line).get("message", "") for line in log_lines(server)]
    prefix = "Reconnected to stream at position "
    return [int(text[len(prefix) :]) for text in messages if text.startswith(prefix)]


def log_lines(server: Server) -> list[str]:
    return [line for line in server.logs().splitlines() if line.startswith("{")]


def test_client_streams_countdown(server: Server) -> None:
    with FlowClient(server.url("countdown"), retry=FAST_RETRY) as client:
        stream = client.stream(4)
        chunks = list(stream)

    assert stream.stream_id
    assert counts(chunks) == [4, 3, 2, 1]
    assert stream.result == "Liftoff!"
    assert stream.position == 4
    assert stream.reconnects == 0


def test_client_resumes_after_cut_connections(
    paced_server: Server, paced_proxy: TcpProxy
) -> None:
    chunks: list[Any] = []
    with FlowClient(paced_proxy.url("countdown"), retry=FAST_RETRY) as client:
        stream = client.stream(30)
        for chunk in stream:
            chunks.append(chunk)
            if len(chunks) in (3, 12, 25):
                paced_proxy.cut()

    assert counts(chunks) == list(range(30, 0, -1))
    assert stream.result == "Liftoff!"
    assert stream.reconnects == 3
    assert reconnect_positions(paced_server) == [3, 12, 25]


def test_client_sends_last_event_id_and_headers(paced_proxy: TcpProxy) -> None:
    tokens = iter(["first", "second"])
    client = FlowClient(
        paced_proxy.url("countdown"),
        headers=lambda: {"Authorization": f"Bearer {next(tokens)}"},
        retry=FAST_RETRY,
    )
    stream = client.stream(6)
    for chunk in stream:
        if chunk["count"] == 4:
            paced_proxy.cut()
    client.close()

    start, reconnect = (request.decode() for request in paced_proxy.requests)
    assert "Authorization: Bearer first" in start
    assert "Authorization: Bearer second" in reconnect
    assert f"X-Genkit-Stream-Id: {stream.stream_id}" in reconnect
    assert "Last-Event-ID: 2" in reconnect


def test_client_survives_server_restart(start_server: ServerFactory) -> None:
    server = start_server(env={"STREAM_LEASE_SECONDS": "2"})
    chunks: list[Any] = []
    with FlowClient(server.url("countdown"), retry=FAST_RETRY) as client:
        stream = client.stream(60)
        for chunk in stream:
            chunks.append(chunk)
            if len(chunks) == 10:
                server.kill(signal.SIGKILL)
                time.sleep(1.0)
                server.start()

    assert counts(chunks) == list(range(60, 0, -1))
    assert stream.result == "Liftoff!"
    assert stream.reconnects >= 1
    assert "Took over stream" in server.logs()


def test_client_resume_starts_after_position(server: Server) -> None:
    with FlowClient(server.url("countdown")) as client:
        first = client.stream(5)
        list(first)
        resumed = client.resume(first.stream_id or "", after=1)
        chunks = list(resumed)

    assert counts(chunks) == [3, 2, 1]
    assert resumed.position == 5
    assert resumed.result == "Liftoff!"


def test_client_raises_flow_error_after_chunks(server: Server) -> None:
    chunks: list[Any] = []

    def read_all() -> None:
        for chunk in client.stream({"after": 2, "status": "ABORTED"}):
            chunks.append(chunk)

    with FlowClient(server.url("fail")) as client, pytest.raises(FlowError) as raised:
        read_all()

    assert chunks == [0, 1]
    assert raised.value.status == "ABORTED"
    assert raised.value.message == "failed on purpose"


def test_client_rejected_input_raises(server: Server) -> None:
    with (
        FlowClient(server.url("countdown")) as client,
        pytest.raises(FlowError) as raised,
    ):
        client.stream("five")

    assert raised.value.status == "INVALID_ARGUMENT"
    assert '"five"' in raised.value.message


def test_client_unknown_stream_raises_not_found(server: Server) -> None:
    with FlowClient(server.url("countdown")) as client:
        stream = client.resume("A" * 22)
        with pytest.raises(StreamNotFound):
            list(stream)


def test_client_gives_up_after_deadline(server: Server, proxy: TcpProxy) -> None:
    policy = RetryPolicy(initial_delay=0.1, max_delay=0.2, deadline=1.5)
    with FlowClient(proxy.url("countdown"), retry=policy) as client:
        stream = client.stream(100)
        iterator = iter(stream)
        next(iterator)
        proxy.down()
        started = time.monotonic()
        with pytest.raises(Unavailable) as raised:
            list(iterator)

    assert time.monotonic() - started >= 1.5
    assert stream.stream_id in raised.value.message
    assert stream.position >= 1


def test_stream_command_prints_json_lines(server: Server) -> None:
    finished = subprocess.run(
        [str(ROOT / "scripts" / "stream"), server.url("countdown"), "3"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert finished.returncode == 0, finished.stderr
    lines = [json.loads(line) for line in finished.stdout.splitlines()]
    assert [line.get("seq") for line in lines[:-1]] == [0, 1, 2]
    assert [line["message"]["count"] for line in lines[:-1]] == [3, 2, 1]
    assert lines[-1] == {"result": "Liftoff!"}
    assert "stream id: " in finished.stderr


def test_stream_command_reports_flow_error(server: Server) -> None:
    finished = subprocess.run(
        [str(ROOT / "scripts" / "stream"), server.url("fail"), '{"status": "ABORTED"}'],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert finished.returncode == 1
    assert "error: ABORTED: failed on purpose" in finished.stderr
