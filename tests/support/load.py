"""Many concurrent readers from one thread, and a server's memory and threads."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from durable_streams.wire import STREAM_ID_HEADER
from support.servers import ROOT, Server
from support.sse import StreamResult, parse_frame, request_parts

DEPLOYED_ENV = ROOT / "functions" / ".env"


def deployed_threads(path: Path = DEPLOYED_ENV) -> str:
    """Return THREADS as the deployed functions get it from functions/.env."""
    for line in path.read_text().splitlines():
        name, _, value = line.partition("=")
        if name.strip() == "THREADS":
            return value.strip()
    raise AssertionError(f"{path} sets no THREADS")


async def read_stream(
    client: httpx.AsyncClient,
    url: str,
    data: Any = None,
    *,
    stream_id: str | None = None,
) -> StreamResult:
    """Start or reconnect to a stream and read it to the end."""
    headers, body = request_parts(data, stream_id)
    async with client.stream("POST", url, json=body, headers=headers) as response:
        result = StreamResult(
            response.status_code,
            response.headers.get(STREAM_ID_HEADER),
            response.headers,
        )
        buffer = ""
        async for text in response.aiter_text():
            buffer += text
            while "\n\n" in buffer:
                raw, buffer = buffer.split("\n\n", 1)
                result.frames.append(parse_frame(raw))
                result.arrivals.append(time.monotonic())
    return result


def read_many(requests: list[tuple[str, Any, str | None]]) -> list[StreamResult]:
    """Read every (url, data, stream id) stream at once, over one connection
    each, and return the results in order."""

    async def read_all() -> list[StreamResult]:
        limits = httpx.Limits(max_connections=len(requests) + 10)
        timeout = httpx.Timeout(120.0)
        async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
            return await asyncio.gather(
                *(
                    read_stream(client, url, data, stream_id=stream_id)
                    for url, data, stream_id in requests
                )
            )

    return asyncio.run(read_all())


class ServerProbe:
    """Memory and threads of a server's worker process, read from /proc."""

    def __init__(self, server: Server) -> None:
        assert server.process is not None
        arbiter = server.process.pid
        children = Path(f"/proc/{arbiter}/task/{arbiter}/children").read_text()
        self.pid = int(children.split()[0])
        self.peak_rss = 0
        self.peak_threads = 0

    def _status(self, name: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{name}:"):
                return int(line.split()[1])
        raise AssertionError(f"no {name} in /proc/{self.pid}/status")

    def rss_mib(self) -> float:
        """Return the worker's resident memory in MiB, and keep the peak."""
        rss = self._status("VmRSS")
        self.peak_rss = max(self.peak_rss, rss)
        return rss / 1024

    @property
    def peak_rss_mib(self) -> float:
        return self.peak_rss / 1024

    def threads(self) -> int:
        """Return the worker's number of threads, and keep the peak."""
        threads = self._status("Threads")
        self.peak_threads = max(self.peak_threads, threads)
        return threads

    @contextlib.contextmanager
    def sampling(self, interval: float = 0.1) -> Iterator[None]:
        """Sample the worker's memory and threads every `interval` seconds
        meanwhile, so that the peaks catch short bursts."""
        done = threading.Event()

        def sample() -> None:
            while not done.wait(interval):
                self.rss_mib()
                self.threads()

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            yield
        finally:
            done.set()
            sampler.join()
