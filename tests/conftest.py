"""Fixtures: the real Firestore emulator and real function servers."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from firestore_emulator import Emulator, start_emulator
from support.auth_emulator import AuthEmulator
from support.clients import client_for
from support.fault_report import fault_report, pytest_terminal_summary
from support.proxy import TcpProxy
from support.servers import Server, free_port, terminate_all

PROJECT = "demo-streams-test"

__all__ = ["fault_report", "pytest_terminal_summary"]

ServerFactory = Callable[..., Server]


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    log_path = tmp_path_factory.mktemp("emulator") / "firestore.log"
    running = start_emulator(port=free_port(), project=PROJECT, log_path=log_path)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def auth_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthEmulator]:
    """The Firebase Auth emulator, for the same project as the Firestore one."""
    workdir = tmp_path_factory.mktemp("auth-emulator")
    running = AuthEmulator(PROJECT, workdir).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def db(emulator: Emulator) -> Iterator[firestore.Client]:
    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.address
    client = firestore.Client(project=PROJECT, credentials=AnonymousCredentials())
    yield client
    client.close()


@pytest.fixture
def collection() -> str:
    """A collection of its own for each test, so tests never see each
    other's streams."""
    return f"streams-{secrets.token_hex(4)}"


@pytest.fixture
def server_env(emulator: Emulator, collection: str) -> dict[str, str]:
    return {
        "FIRESTORE_EMULATOR_HOST": emulator.address,
        "GCLOUD_PROJECT": emulator.project,
        "FIRESTORE_STREAMS_COLLECTION": collection,
        "COUNTDOWN_TICK_SECONDS": "0.05",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def start_server(server_env: dict[str, str], tmp_path: Path) -> Iterator[ServerFactory]:
    """Start function servers; every one is stopped when the test ends."""
    servers: list[Server] = []

    def start(**options: object) -> Server:
        env = {**server_env, **options.pop("env", {})}  # type: ignore[dict-item]
        log_path = tmp_path / f"server-{len(servers)}.log"
        server = Server(env=env, log_path=log_path, **options)  # type: ignore[arg-type]
        servers.append(server)
        return server.start()

    yield start
    terminate_all(servers)


@pytest.fixture
def server(start_server: ServerFactory) -> Server:
    return start_server()


@pytest.fixture(scope="module")
def hooked_db(hooked_emulator: Emulator) -> Iterator[firestore.Client]:
    """A client of the module's own emulator, `hooked_emulator`, which a test
    module defines when it needs trigger deliveries."""
    client = client_for(hooked_emulator)
    yield client
    client.close()


@pytest.fixture
def proxy(server: Server) -> Iterator[TcpProxy]:
    """A TCP proxy in front of `server`, to cut its connections."""
    running = TcpProxy(server.port).up()
    yield running
    running.down()
