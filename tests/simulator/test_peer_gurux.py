"""gurux-dlms (GPL-2, test-only peer) reads our simulator: gurux's GXDLMSClient generates
every request (SNRM/UA over HDLC, AARQ, GET of the clock, register value and scaler-unit,
profile capture objects and buffer by range with readRowsByRange, RLRQ), the bytes go over a
real TCP socket to ``serve_meters``, gurux parses the answers, and what it decodes must equal
what our own reader gets from the same meter."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from typing import Any

import pytest

from bench.dlms_peer_gurux import socket_session
from edge_core.dlms.obis import Obis
from edge_core.meter.reader import read_meter
from edge_core.simulator.server import serve_meters

pytestmark = pytest.mark.peer

pytest.importorskip("gurux_dlms", reason="gurux-dlms is not installed")

START = date(2026, 3, 1)
CLOCK = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
SPAN = (datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 2, 23, 59, 59, tzinfo=UTC))
ENERGY = "1.0.1.8.0.255"


def _gurux_read(port: int, transport: str) -> dict[str, Any]:
    from gurux_dlms.objects import GXDLMSClock, GXDLMSProfileGeneric, GXDLMSRegister

    session, sock = socket_session("127.0.0.1", port, transport)
    try:
        session.associate()
        clock = GXDLMSClock("0.0.1.0.0.255")
        session.read(clock, 2)
        energy = GXDLMSRegister(ENERGY)
        session.read(energy, 3)
        session.read(energy, 2)
        profile = GXDLMSProfileGeneric("1.0.99.1.0.255")
        session.read(profile, 3)
        session.read(profile, 4)
        rows = session.read_rows_by_range(profile, *SPAN)
        session.release()
    finally:
        sock.close()
    return {
        "clock": clock.time.value,
        "value": energy.value,
        "scaler": energy.scaler,
        "unit": int(energy.unit),
        "columns": [str(obj.logicalName) for obj, _ in profile.captureObjects],
        "period": profile.capturePeriod,
        "rows": rows,
        "bytes_tx": session.stats.bytes_tx,
    }


@pytest.mark.parametrize("transport", ["wrapper", "hdlc"])
def test_gurux_client_decodes_what_our_reader_reads(transport: str) -> None:
    async def main() -> tuple[dict[str, Any], Any]:
        sim = await serve_meters(
            1, "127.0.0.1", 0, 3, START, lambda: CLOCK, transport=transport, null_clocks=False
        )
        try:
            theirs = await asyncio.wait_for(
                asyncio.to_thread(_gurux_read, sim.ports[0], transport), 30
            )
            ours = await read_meter(
                sim.url(0),
                transport=transport,
                obis=[Obis.parse(ENERGY)],
                load_profile=SPAN,
                clock_reference=lambda: CLOCK,
            )
        finally:
            await sim.close()
        return theirs, ours

    theirs, ours = asyncio.run(main())
    assert theirs["clock"] == ours.clock
    (register,) = ours.registers
    assert theirs["value"] == register.raw
    assert theirs["scaler"] == pytest.approx(10.0**register.scaler_unit.scaler)
    assert theirs["unit"] == int(register.scaler_unit.unit)
    profile = ours.load_profile
    assert profile is not None
    assert theirs["period"] == profile.capture_period_s
    assert theirs["columns"] == [str(c.obis) for c in profile.columns]
    assert len(theirs["rows"]) == len(profile.rows) == 96
    clock_col = next(i for i, c in enumerate(profile.columns) if c.is_clock)
    for g_row, row in zip(theirs["rows"], profile.rows, strict=True):
        assert g_row[clock_col].value == row.time
        for i, cell in enumerate(row.cells):
            if i != clock_col:
                assert g_row[i] == cell
