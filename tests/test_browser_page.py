"""The countdown page in headless Chromium, through a real network drop and a
real server restart.

The page is served from its own origin and calls the function through a TCP
proxy, so CORS is exercised and the proxy can cut the browser's connections.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ServerFactory

from support.browser import Browser, StaticServer
from support.proxy import TcpProxy
from support.servers import ROOT, Server

# One write per chunk, so the page shows chunks one by one; a short lease, so
# the restarted server takes over the countdown quickly.
PAGE_SERVER_ENV = {
    "COUNTDOWN_TICK_SECONDS": "0.1",
    "STREAM_WRITE_INTERVAL_SECONDS": "0",
    "STREAM_LEASE_SECONDS": "2",
}
COUNT = 60


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium, installed by scripts/setup-browser when missing."""
    finished = subprocess.run(
        [str(ROOT / "scripts" / "setup-browser")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    return finished.stdout.strip().splitlines()[-1]


@pytest.fixture
def browser(chromium: str, tmp_path: Path) -> Iterator[Browser]:
    running = Browser(chromium, tmp_path / "profile", tmp_path / "browser.log")
    yield running
    running.close()


@pytest.fixture
def web(tmp_path: Path) -> Iterator[StaticServer]:
    running = StaticServer(tmp_path / "web.log")
    yield running
    running.stop()


@pytest.fixture
def page_server(start_server: ServerFactory) -> Server:
    return start_server(env=PAGE_SERVER_ENV)


@pytest.fixture
def page_proxy(page_server: Server) -> Iterator[TcpProxy]:
    running = TcpProxy(page_server.port).up()
    yield running
    running.down()


def shown_count(browser: Browser) -> int:
    count: int = browser.eval("document.querySelectorAll('#chunks li').length")
    return count


def standard_follow_positions(server: Server) -> list[int]:
    """Return the start position of every GET the server served."""
    prefix = "Following stream as standard SSE from position "
    positions = []
    for line in server.logs().splitlines():
        if not line.startswith("{"):
            continue
        message = json.loads(line).get("message", "")
        if message.startswith(prefix):
            positions.append(int(message[len(prefix) :]))
    return positions


def test_page_survives_drop_and_restart(
    browser: Browser,
    web: StaticServer,
    page_server: Server,
    page_proxy: TcpProxy,
    tmp_path: Path,
) -> None:
    browser.goto(web.url(f"?api={page_proxy.url('countdown')}"))
    browser.fill("#count", str(COUNT))
    browser.click("#start-button")
    browser.wait("document.querySelectorAll('#chunks li').length >= 5")

    page_proxy.cut()
    browser.wait("document.querySelector('#status').dataset.state === 'reconnecting'")
    after_drop = shown_count(browser)
    browser.wait(f"document.querySelectorAll('#chunks li').length >= {after_drop + 5}")

    page_server.kill(signal.SIGKILL)
    page_proxy.cut()
    time.sleep(1.0)
    page_server.start()
    browser.wait("window.countdownPage.finished", timeout=90)
    browser.screenshot(tmp_path / "page.png")

    items = "[...document.querySelectorAll('#chunks li')]"
    texts = browser.eval(f"{items}.map((li) => li.textContent)")
    seqs = browser.eval(f"{items}.map((li) => Number(li.dataset.seq))")
    assert texts == [f"T-{i}..." for i in range(COUNT, 0, -1)]
    assert seqs == list(range(COUNT))
    assert browser.eval("window.countdownPage.duplicates") == 0
    assert browser.eval("document.querySelector('#result').textContent") == (
        "Result: Liftoff!"
    )
    assert browser.eval("document.querySelector('#status').dataset.state") == "done"
    assert browser.eval("window.countdownPage.connections") >= 3
    resumed_at = standard_follow_positions(page_server)
    assert any(position > 0 for position in resumed_at), resumed_at
    assert "Took over stream" in page_server.logs()


def test_page_resumes_stream_named_in_url(
    browser: Browser, web: StaticServer, page_server: Server
) -> None:
    api = page_server.url("countdown")
    browser.goto(web.url(f"?api={api}"))
    browser.fill("#count", "5")
    browser.click("#start-button")
    browser.wait("window.countdownPage.finished")
    stream_id = browser.eval("window.countdownPage.streamId")

    browser.goto(web.url(f"?api={api}#stream={stream_id}"))
    browser.wait("window.countdownPage.finished")

    assert shown_count(browser) == 5
    assert browser.eval("window.countdownPage.streamId") == stream_id


def test_eventsource_stops_after_final_event(
    browser: Browser, web: StaticServer, page_server: Server
) -> None:
    api = page_server.url("countdown")
    browser.goto(web.url(f"?api={api}"))
    browser.fill("#count", "3")
    browser.click("#start-button")
    browser.wait("window.countdownPage.finished")
    stream_id = browser.eval("window.countdownPage.streamId")

    # A bare EventSource that is never closed: the server's 204 after the
    # final event must stop its automatic reconnects.
    browser.eval(
        f"""(() => {{
          const source = new EventSource("{api}?streamId={stream_id}");
          window.bare = {{ source, chunks: 0, results: 0, opens: 0 }};
          source.addEventListener("open", () => window.bare.opens++);
          source.addEventListener("chunk", () => window.bare.chunks++);
          source.addEventListener("result", () => window.bare.results++);
        }})()"""
    )
    browser.wait("window.bare.source.readyState === EventSource.CLOSED", timeout=30)
    time.sleep(3.0)

    assert browser.eval("window.bare.chunks") == 3
    assert browser.eval("window.bare.results") == 1
    assert browser.eval("window.bare.opens") == 1
    assert browser.eval("window.bare.source.readyState") == 2
    seen_whole = page_server.logs().count("Follower has seen the whole stream")
    assert seen_whole == 1
