"""docs/meter-makers.md against the DLMS stack and the `ami-edge read` command."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from edge_core.cli import main as cli_main
from edge_core.dlms.client import DEFAULT_CONFORMANCE
from edge_core.dlms.hdlc import HdlcAddress, HdlcClient
from edge_core.meter.reader import (
    CLOCK_OBIS,
    DAILY_PROFILE_OBIS,
    DEFAULT_REGISTERS,
    EVENT_LOG_OBIS,
    LOAD_PROFILE_OBIS,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "meter-makers.md"


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def test_stack_constants_are_those_of_the_code() -> None:
    text = _text()
    assert f"`0x{int(DEFAULT_CONFORMANCE):06X}`" in text
    proposal = HdlcClient(HdlcAddress.client(16), HdlcAddress.server(1)).proposal
    assert (proposal.max_info_tx, proposal.window_tx) == (1024, 7)
    assert "maximum information field of 1024 bytes and a\n  window of 7 frames" in text


def test_every_object_the_reader_reads_is_listed() -> None:
    text = _text()
    for obis in (CLOCK_OBIS, LOAD_PROFILE_OBIS, DAILY_PROFILE_OBIS, *EVENT_LOG_OBIS):
        assert str(obis) in text, obis
    for obis in DEFAULT_REGISTERS:
        assert str(obis) in text, obis


@pytest.fixture(scope="module")
def meter_url() -> Iterator[str]:
    """One simulated meter (seed 1, as in the doc) served from a thread's event loop."""
    from edge_core.simulator.server import serve_meters

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, object] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        start = date.today() - timedelta(days=3)
        box["sim"] = loop.run_until_complete(serve_meters(1, "127.0.0.1", 0, 1, start))
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    sim = box["sim"]
    try:
        yield sim.url(0)  # type: ignore[attr-defined]
    finally:
        asyncio.run_coroutine_threadsafe(sim.close(), loop).result(10)  # type: ignore[attr-defined]
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _blocks(after: str, lang: str = "") -> str:
    text = _text()
    start = text.index(after) + len(after)
    return re.search(rf"```{lang}\n(.*?)```", text[start:], flags=re.S).group(1)  # type: ignore[union-attr]


def test_plain_read_example_has_the_shape_of_the_real_output(
    meter_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = _blocks("ami-edge read --url tcp://127.0.0.1:47100\n```").strip().splitlines()
    assert cli_main(["read", "--url", meter_url]) == 0
    got = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in got] == [line.split()[0] for line in expected]
    assert [line.split()[2:] for line in got[1:-1]] == [line.split()[2:] for line in expected[1:-1]]
    assert got[-1].startswith("wire: ")


def test_named_register_example_scales_the_voltage(
    meter_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = _blocks("--obis 1.0.32.7.0.255 1.0.1.8.0.255\n```").strip().splitlines()
    assert cli_main(["read", "--url", meter_url, "--obis", "1.0.32.7.0.255", "1.0.1.8.0.255"]) == 0
    got = capsys.readouterr().out.strip().splitlines()
    assert [ln.split()[0] for ln in got] == [ln.split()[0] for ln in expected]
    assert got[1].split()[2] == "V"
    args = ["read", "--url", meter_url, "--obis", "1.0.32.7.0.255", "--json"]
    assert cli_main(args) == 0
    (volts,) = json.loads(capsys.readouterr().out)["registers"]
    assert volts["scaler"] == -1  # as the doc says: raw tenths of a volt, scaler applied
    assert volts["value"] == pytest.approx(volts["raw"] / 10)


def test_profile_example_columns_are_what_the_meter_reports(
    meter_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = json.loads(_blocks("Its `load_profile` member", "json"))
    day = date.today() - timedelta(days=1)
    args = ["read", "--url", meter_url, "--load-profile", "--json"]
    args += ["--from", f"{day}T00:00:00+00:00", "--to", f"{day}T00:30:00+00:00"]
    assert cli_main(args) == 0
    got = json.loads(capsys.readouterr().out)["load_profile"]
    assert got["obis"] == doc["obis"]
    assert got["capture_period_s"] == doc["capture_period_s"]
    assert got["columns"] == doc["columns"]
    assert len(got["rows"]) == len(doc["rows"]) == 3
    assert [len(r) for r in got["rows"]] == [len(r) for r in doc["rows"]]


def test_error_example_is_what_the_cli_prints(
    meter_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    quoted = _blocks("the error is printed on one line, e.g.").strip()
    assert cli_main(["read", "--url", meter_url, "--obis", "0.0.1.0.0.255"]) == 4
    err = capsys.readouterr().err.strip()
    assert err == quoted.replace("tcp://127.0.0.1:47100", meter_url)
