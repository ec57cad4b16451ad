"""The DCU power-fail input: a temp file as the GPIO value file, and a command."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from edge_core.alarms import DcuPowerFail, DcuPowerRestored, PowerFailMonitor, PowerFailSettings
from edge_core.errors import ConfigError

STAMP = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
TIMEOUT = 5.0  # s; a bound on every wait, never an expectation


class FakeMonotonic:
    """A monotonic clock that moves only when told; counts how often it was read."""

    def __init__(self) -> None:
        self.now = 0.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now

    async def wait_reads(self, n: int) -> None:
        target = self.reads + n
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while self.reads < target:
            assert loop.time() < deadline, "the monitor stopped reading"
            await asyncio.sleep(0.005)


async def _next(events: AsyncIterator[object]) -> object:
    return await asyncio.wait_for(anext(events), TIMEOUT)


def _gpio(tmp_path: Path, level: str, edge: str | None = None) -> Path:
    d = tmp_path / "gpio17"
    d.mkdir()
    (d / "value").write_text(level + "\n")
    if edge is not None:
        (d / "edge").write_text(edge + "\n")
    return d / "value"


@pytest.mark.parametrize("edge", [None, "both"])
def test_gpio_value_file_transitions(tmp_path: Path, edge: str | None) -> None:
    value = _gpio(tmp_path, "1", edge)
    settings = PowerFailSettings(path=str(value), poll_interval_s=0.01, debounce_s=0.0)
    monitor = PowerFailMonitor(settings, clock=lambda: STAMP)
    assert monitor.edge_triggered is (edge is not None)

    async def run() -> list[object]:
        seen: list[object] = []
        async with contextlib.aclosing(monitor.events()) as events:
            task = asyncio.ensure_future(_next(events))
            await asyncio.sleep(0.03)
            assert not task.done()  # power ok at start: nothing to say
            value.write_text("0\n")
            seen.append(await task)
            value.write_text("1\n")
            seen.append(await _next(events))
        return seen

    assert asyncio.run(run()) == [DcuPowerFail(STAMP), DcuPowerRestored(STAMP)]


def test_debounce_ignores_a_glitch(tmp_path: Path) -> None:
    value = _gpio(tmp_path, "1")
    mono = FakeMonotonic()
    settings = PowerFailSettings(path=str(value), poll_interval_s=0.01, debounce_s=1.0)
    monitor = PowerFailMonitor(settings, clock=lambda: STAMP, monotonic=mono)

    async def run() -> object:
        async with contextlib.aclosing(monitor.events()) as events:
            task = asyncio.ensure_future(_next(events))
            value.write_text("0\n")
            await mono.wait_reads(3)  # seen low, but for less than the debounce
            value.write_text("1\n")
            await mono.wait_reads(3)
            mono.now += 5.0  # long after: the glitch must not be reported
            await mono.wait_reads(3)
            assert not task.done()
            value.write_text("0\n")
            await mono.wait_reads(3)
            mono.now += 1.0
            return await task

    assert asyncio.run(run()) == DcuPowerFail(STAMP)


def test_initially_failed_input_is_reported(tmp_path: Path) -> None:
    value = _gpio(tmp_path, "1")
    settings = PowerFailSettings(path=str(value), fail_level=1, poll_interval_s=0.01, debounce_s=0)

    async def run() -> object:
        async with contextlib.aclosing(PowerFailMonitor(settings).events()) as events:
            return await _next(events)

    ev = asyncio.run(run())
    assert isinstance(ev, DcuPowerFail)
    assert ev.event_time.tzinfo is not None


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_command_exit_status(tmp_path: Path) -> None:
    state = tmp_path / "ups-status"
    state.write_text("0")
    settings = PowerFailSettings(
        source="command",
        command=("sh", "-c", f'exit "$(cat {state})"'),
        poll_interval_s=0.01,
        debounce_s=0,
    )

    async def run() -> list[object]:
        async with contextlib.aclosing(
            PowerFailMonitor(settings, clock=lambda: STAMP).events()
        ) as events:
            state.write_text("1")
            first = await _next(events)
            state.write_text("0")
            return [first, await _next(events)]

    assert asyncio.run(run()) == [DcuPowerFail(STAMP), DcuPowerRestored(STAMP)]


def test_bad_sources_raise_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="path"):
        PowerFailSettings(source="gpio")
    with pytest.raises(ConfigError, match="command"):
        PowerFailSettings(source="command")
    with pytest.raises(ConfigError, match="fail_level"):
        PowerFailSettings.from_mapping({"path": "/x", "fail_level": "2"})
    s = PowerFailSettings.from_mapping(
        {"source": "command", "command": "/bin/true", "poll_interval_s": "0.5", "edge": "false"}
    )
    assert (s.command, s.poll_interval_s, s.edge) == (("/bin/true",), 0.5, False)

    async def first(settings: PowerFailSettings) -> object:
        async with contextlib.aclosing(PowerFailMonitor(settings).events()) as events:
            return await _next(events)

    with pytest.raises(ConfigError, match="value file"):
        asyncio.run(first(PowerFailSettings(path=str(tmp_path / "missing"))))
    with pytest.raises(ConfigError, match="command"):
        asyncio.run(first(PowerFailSettings(source="command", command=(str(tmp_path / "nope"),))))


def test_poll_interval_defaults_follow_the_source(tmp_path: Path) -> None:
    value = tmp_path / "gpio17" / "value"
    value.parent.mkdir()
    value.write_text("1\n")
    polled = PowerFailMonitor(PowerFailSettings(path=str(value)))
    assert (polled.edge_triggered, polled.poll_interval_s) == (False, 0.005)
    (value.parent / "edge").write_text("both\n")
    edged = PowerFailMonitor(PowerFailSettings(path=str(value)))
    assert (edged.edge_triggered, edged.poll_interval_s) == (True, 0.2)
    command = PowerFailMonitor(PowerFailSettings(source="command", command=("/bin/true",)))
    assert command.poll_interval_s == 0.5
    assert (
        PowerFailMonitor(PowerFailSettings(path=str(value), poll_interval_s=0.05)).poll_interval_s
        == 0.05
    )
    with pytest.raises(ConfigError, match="poll_interval_s"):
        PowerFailSettings(path=str(value), poll_interval_s=-1)
