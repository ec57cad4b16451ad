"""A private Mosquitto broker on a free loopback port, for the demo, tests and benchmarks.

By default it sets ``set_tcp_nodelay true`` when the binary is Mosquitto 2.x or later: a
stock Mosquitto holds small writes such as an alarm's PUBACK under Nagle's algorithm while the
previous segment waits for a delayed ACK (up to ~40 ms on Linux). ``tcp_nodelay=False`` gives
a stock broker (the benchmarks' baseline).

It never touches the system broker on 1883: each instance writes its own configuration into a
temporary directory, listens on 127.0.0.1 only, and is stopped (SIGTERM, then SIGKILL) by
:meth:`LocalBroker.stop`. Raises :class:`~edge_core.errors.BusUnavailableError` when no
mosquitto binary is installed or it does not start.
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from edge_core.errors import BusUnavailableError

__all__ = ["LocalBroker", "find_mosquitto", "free_port"]

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def find_mosquitto() -> str:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        raise BusUnavailableError(
            "mosquitto is not installed (scripts/setup.sh installs it with apt-get)"
        )
    return exe


@functools.cache
def _has_nodelay(exe: str) -> bool:
    """Whether ``exe`` is Mosquitto 2 or later (it knows ``set_tcp_nodelay``; an older broker
    would refuse the whole configuration)."""
    try:
        out = subprocess.run(
            [exe, "-h"], check=False, capture_output=True, text=True, timeout=5
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    m = re.search(r"mosquitto version (\d+)\.", out)
    return m is not None and int(m.group(1)) >= 2


class LocalBroker:
    """``with LocalBroker() as b: ... b.port``; ``restart()`` keeps the port (outage tests)."""

    def __init__(
        self,
        port: int | None = None,
        workdir: str | Path | None = None,
        *,
        tcp_nodelay: bool = True,
    ) -> None:
        self.host = "127.0.0.1"
        self.tcp_nodelay = tcp_nodelay
        self.port = port or free_port()
        self._tmp = (
            tempfile.TemporaryDirectory(prefix="ami-mosquitto-") if workdir is None else None
        )
        self.workdir = Path(workdir) if workdir is not None else Path(self._tmp.name)  # type: ignore[union-attr]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> LocalBroker:
        exe = find_mosquitto()
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {self.host}\nallow_anonymous true\npersistence false\n"
            "max_inflight_messages 100\nmax_queued_messages 1000000\n"
            + ("set_tcp_nodelay true\n" if self.tcp_nodelay and _has_nodelay(exe) else "")
        )
        self.proc = subprocess.Popen(
            [exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                log.info("mosquitto listening on %s:%d", self.host, self.port)
                return self
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise BusUnavailableError(f"mosquitto did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    # Process-style control, so an outage test can treat the broker like its process.
    def terminate(self) -> None:
        if self.proc is not None:
            self.proc.terminate()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()

    def poll(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def wait(self, timeout: float | None = None) -> int | None:
        return None if self.proc is None else self.proc.wait(timeout=timeout)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
