"""Shared fixtures: a real Mosquitto broker on a free port, and the path to ../shared."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("AMI_SHARED_DIR", ROOT.parent / "shared"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Broker:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


def _start_mosquitto(tmp: Path) -> tuple[subprocess.Popen[bytes], Broker]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        pytest.skip("mosquitto is not installed (scripts/setup.sh installs it with apt-get)")
    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_inflight_messages 100\nmax_queued_messages 100000\n"
    )
    proc = subprocess.Popen(
        [exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, Broker("127.0.0.1", port)
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("mosquitto did not start")


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A real Mosquitto broker for the whole session, on a free port of 127.0.0.1."""
    proc, b = _start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield b
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[tuple[Broker, subprocess.Popen[bytes]]]:
    """A broker of the test's own, which the test may stop and restart (outage tests)."""
    proc, b = _start_mosquitto(tmp_path)
    yield b, proc
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (read-only material); tests that need it skip where it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (a user's clone has no ../shared)")
    return SHARED
