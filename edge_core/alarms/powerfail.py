"""The concentrator's own power-fail input, as an async stream of DcuPowerFail/DcuPowerRestored.

Two sources, chosen in :class:`PowerFailSettings`:

- ``gpio``: a value file holding ``0`` or ``1`` (sysfs ``/sys/class/gpio/gpioN/value``, or any
  file a board driver keeps up to date). ``fail_level`` says which level means "power failed"
  (supervisor PFO outputs are usually active low: 0). If ``edge`` is on and the GPIO directory
  has an ``edge`` file set to ``rising``, ``falling`` or ``both`` (write it once at boot: sysfs
  only signals edges after that), the monitor waits in ``poll(POLLPRI | POLLERR)`` on the value
  file, in a worker thread, so an edge wakes it at once; in every case it also re-reads the
  value at least every ``poll_interval_s`` (a missed edge, or a file without edge support, is
  caught by polling).
- ``command``: a command run every ``poll_interval_s``; exit status 0 means power ok, any other
  status power failed. A command that does not finish within ``command_timeout_s`` is killed and
  its result ignored (the state stays as it was).

Debounce: a new level is reported only once it has been read continuously for ``debounce_s``.
The reported state starts as "ok": an input that is already failed at start yields a
``DcuPowerFail`` after the debounce.

Errors: a value file that cannot be opened, or a command that cannot be started, raises
:class:`~edge_core.errors.ConfigError` (the one boundary for ``OSError`` here); a value that is
neither 0 nor 1 is logged and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from edge_core.alarms.events import DcuPowerFail, DcuPowerRestored
from edge_core.errors import ConfigError

__all__ = ["PowerFailMonitor", "PowerFailSettings"]

log = logging.getLogger(__name__)

_EDGE_VALUES = ("rising", "falling", "both")


@dataclass(frozen=True, slots=True)
class PowerFailSettings:
    """Where the power-fail signal comes from. Times in seconds."""

    source: Literal["gpio", "command"] = "gpio"
    path: str = ""  # gpio: the value file
    fail_level: int = 0  # gpio: the level that means "power failed"
    edge: bool = True  # gpio: wait for edges where the platform signals them
    command: tuple[str, ...] = field(default=())  # command: argv; exit 0 = power ok
    command_timeout_s: float = 2.0
    # 0: the source's default (:meth:`PowerFailMonitor.poll_interval_s`): 5 ms for a polled
    # value file (one pread each, well under 1 % of a core), 0.2 s when edges wake the monitor,
    # 0.5 s for a command. The last gasp has the hold-up time of the supply (often 50-200 ms) and
    # its target is 50 ms from the signal to the broker's PUBACK (bench.alarm_latency).
    poll_interval_s: float = 0.0
    # Supervisor outputs are clean; a 2 ms debounce rejects glitches and spends little budget.
    debounce_s: float = 0.002

    def __post_init__(self) -> None:
        if self.source not in ("gpio", "command"):
            raise ConfigError(f"unknown source {self.source!r}", path="powerfail.source")
        if self.source == "gpio" and not self.path:
            raise ConfigError("gpio source needs a value file path", path="powerfail.path")
        if self.source == "command" and not self.command:
            raise ConfigError("command source needs a command", path="powerfail.command")
        if self.fail_level not in (0, 1):
            raise ConfigError("must be 0 or 1", path="powerfail.fail_level")
        if self.command_timeout_s <= 0:
            raise ConfigError("must be > 0", path="powerfail.command_timeout_s")
        if self.poll_interval_s < 0:
            raise ConfigError(
                "must be >= 0 (0: the source's default)", path="powerfail.poll_interval_s"
            )
        if self.debounce_s < 0:
            raise ConfigError("must be >= 0", path="powerfail.debounce_s")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], path: str = "powerfail") -> PowerFailSettings:
        kw: dict[str, Any] = {}
        try:
            for key, value in raw.items():
                if key in ("source", "path"):
                    kw[key] = str(value)
                elif key == "command":
                    kw[key] = (value,) if isinstance(value, str) else tuple(str(v) for v in value)
                elif key == "fail_level":
                    kw[key] = int(value)
                elif key == "edge":
                    kw[key] = value if isinstance(value, bool) else str(value).lower() == "true"
                elif key in ("command_timeout_s", "poll_interval_s", "debounce_s"):
                    kw[key] = float(value)
                else:
                    raise ConfigError("unknown setting", path=f"{path}.{key}")
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad value: {exc}", path=path) from exc
        return cls(**kw)


PowerEvent = DcuPowerFail | DcuPowerRestored


class PowerFailMonitor:
    """``async for event in PowerFailMonitor(settings).events(): ...``

    ``clock`` stamps the events (DCU wall clock, aware); ``monotonic`` measures debounce.
    """

    def __init__(
        self,
        settings: PowerFailSettings,
        *,
        clock: Callable[[], datetime] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._monotonic = monotonic
        self._fd: int | None = None
        self._poller: select.poll | None = None

    @property
    def poll_interval_s(self) -> float:
        """The interval between reads: the configured one, or the source's default."""
        s = self.settings
        if s.poll_interval_s > 0:
            return s.poll_interval_s
        if s.source == "command":
            return 0.5
        return 0.2 if self.edge_triggered else 0.005

    @property
    def edge_triggered(self) -> bool:
        """True when the GPIO ``edge`` file next to the value file enables edge wake-ups."""
        s = self.settings
        if s.source != "gpio" or not s.edge or not hasattr(select, "poll"):
            return False
        edge_file = Path(s.path).with_name("edge")
        try:
            return edge_file.read_text().strip() in _EDGE_VALUES
        except OSError:
            return False

    async def events(self) -> AsyncIterator[PowerEvent]:
        """Yield a DcuPowerFail / DcuPowerRestored on every debounced transition. Runs until
        the consumer stops iterating (or the task is cancelled)."""
        s = self.settings
        reported_failed = False
        candidate: bool | None = None
        candidate_since = 0.0
        edge = self.edge_triggered
        poll = self.poll_interval_s
        if s.source == "gpio":
            self._open()
        try:
            while True:
                failed = await self._read()
                now = self._monotonic()
                wait = poll
                if failed is None or failed == reported_failed:
                    candidate = None
                elif candidate != failed:
                    candidate, candidate_since = failed, now
                if candidate is not None:
                    remaining = s.debounce_s - (now - candidate_since)
                    if remaining <= 0:
                        reported_failed, candidate = candidate, None
                        stamp = self._clock()
                        log.info("DCU power %s", "failed" if reported_failed else "restored")
                        yield DcuPowerFail(stamp) if reported_failed else DcuPowerRestored(stamp)
                        continue
                    wait = min(wait, remaining)
                if edge:
                    await asyncio.to_thread(self._wait_edge, wait)
                else:
                    await asyncio.sleep(wait)
        finally:
            self._close()

    # ------------------------------------------------------------------ sources

    def _open(self) -> None:
        try:
            self._fd = os.open(self.settings.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            raise ConfigError(
                f"cannot open power-fail value file: {exc.strerror}", path="powerfail.path"
            ) from exc
        if self.edge_triggered:
            self._poller = select.poll()
            self._poller.register(self._fd, select.POLLPRI | select.POLLERR)

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd, self._poller = self._fd, None, None
            with contextlib.suppress(OSError):
                os.close(fd)

    def _wait_edge(self, timeout_s: float) -> None:
        """Block until an edge is signalled or the timeout passes (worker thread)."""
        poller = self._poller
        if poller is None:
            time.sleep(timeout_s)
            return
        poller.poll(max(1, int(timeout_s * 1000)))

    async def _read(self) -> bool | None:
        """Return True for "power failed", False for ok, None when the reading is unusable."""
        if self.settings.source == "gpio":
            return self._read_gpio()
        return await self._run_command()

    def _read_gpio(self) -> bool | None:
        fd = self._fd
        assert fd is not None
        try:
            os.lseek(fd, 0, os.SEEK_SET)  # sysfs: re-read from the start clears the edge
            raw = os.read(fd, 16).strip()
        except OSError as exc:
            log.warning("power-fail value file unreadable: %s", exc)
            return None
        if raw not in (b"0", b"1"):
            log.warning("power-fail value file holds %r, not 0 or 1", raw)
            return None
        return int(raw) == self.settings.fail_level

    async def _run_command(self) -> bool | None:
        s = self.settings
        try:
            proc = await asyncio.create_subprocess_exec(
                *s.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot run power-fail command: {exc.strerror}", path="powerfail.command"
            ) from exc
        try:
            code = await asyncio.wait_for(proc.wait(), timeout=s.command_timeout_s)
        except asyncio.TimeoutError:
            log.warning("power-fail command did not finish in %.1f s", s.command_timeout_s)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            return None
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.shield(proc.wait())
            raise
        return code != 0
