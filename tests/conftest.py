"""Shared fixtures: a real Mosquitto broker on a free port, and the path to ../shared."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge_core.broker import LocalBroker, free_port
from edge_core.errors import BusUnavailableError

__all__ = ["ROOT", "SHARED", "Broker", "free_port"]

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("AMI_SHARED_DIR", ROOT.parent / "shared"))


@dataclass(frozen=True)
class Broker:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


def _start(tmp: Path) -> LocalBroker:
    try:
        return LocalBroker(workdir=tmp).start()
    except BusUnavailableError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A real Mosquitto broker for the whole session, on a free port of 127.0.0.1."""
    b = _start(tmp_path_factory.mktemp("mosquitto"))
    yield Broker(b.host, b.port)
    b.close()


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[tuple[Broker, LocalBroker]]:
    """A broker of the test's own, which the test may stop() and start() again on the same port
    (outage tests). The second item is the :class:`edge_core.broker.LocalBroker`; its ``proc``
    is the mosquitto process."""
    b = _start(tmp_path)
    yield Broker(b.host, b.port), b
    b.close()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (read-only material); tests that need it skip where it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (a user's clone has no ../shared)")
    return SHARED
