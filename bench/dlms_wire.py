"""One day of load profile over HDLC through a 9600-baud emulated serial line, in-process.

Our reader (negotiated frames and window) reads our simulator's HDLC server through
:class:`~edge_core.transport.link_emulator.LinkEmulator`; the baseline, measured in the same
run on its own emulated line, is the reference behaviour of a client that sends SNRM without
parameters (128-byte frames, window 1, as dlms-cosem 21.3.2 does) reading the same rows from
the same meter. Reported per scenario: seconds, bytes each way, frames, round trips, the ideal
wire time of the same bytes and the ratio of both (target <= 1.15). A second part reads a
backfill of ``--backfill-days`` days (default 7: the whole run takes about 22 s, both
scenarios run side by side on their own emulated lines).

Second, independent reference (where the test-only peer gurux-dlms is installed): gurux's
GXDLMSClient at its default HDLC settings generates every request (SNRM, AARQ, capture
objects, capture period, readRowsByRange, RLRQ, DISC) over its own emulated line to the same
simulated meter; ``bytes_ratio_vs_gurux`` compares the bytes our reader needs for the same
rows (our reader also fetches the register scaler-units, gurux does not). ``--no-gurux``
leaves it out. Prints one JSON object.

    python -m bench.dlms_wire [--days 1] [--backfill-days 7] [--baud 9600] [--no-gurux]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from edge_core.dlms.hdlc import HdlcAddress, HdlcParameters
from edge_core.dlms.hdlc_server import HdlcServer
from edge_core.dlms.server import ServerConnection
from edge_core.meter.reader import LOAD_PROFILE_OBIS, MeterReader
from edge_core.simulator.model import SimulatedMeter
from edge_core.transport.hdlc import HdlcTransport
from edge_core.transport.link_emulator import EmulatedEndpoint, LinkEmulator, wire_time

__all__ = ["main", "read_over_emulator"]

NOW = datetime(2026, 11, 26, tzinfo=UTC)
OURS = HdlcParameters(1024, 1024, 7, 7)


async def _serve(end: EmulatedEndpoint, server: HdlcServer) -> None:
    while True:
        try:
            data = await end.read(4096, 3600.0)
        except Exception:  # the link closed: the session is over
            return
        server.receive_data(data)
        out = server.data_to_send()
        if out:
            await end.write(out)


async def read_over_emulator(
    days: float,
    *,
    baud: int = 9600,
    proposal: HdlcParameters | None = OURS,
    meter_pdu: int = 2048,
    null_clocks: bool = True,
) -> dict[str, Any]:
    """Associate, read ``days`` of load profile, release, over a fresh emulated line."""
    meter = SimulatedMeter(
        0,
        seed=1,
        start=(NOW - timedelta(days=days + 2)).date(),
        clock=lambda: NOW,
        null_clocks=null_clocks,
    )
    conn = ServerConnection(meter, max_pdu_size=meter_pdu, name=meter.serial)
    emu = LinkEmulator(baud=baud)
    server = HdlcServer(conn.receive_apdu, HdlcAddress.server(1, None))
    task = asyncio.create_task(_serve(emu.b, server))
    link = HdlcTransport.from_link(
        emu.a, proposal=proposal, send_parameters=proposal is not None, name="bench"
    )
    reader = MeterReader(link, meter_id=meter.serial, timeout=60.0)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    try:
        await link.open()
        await reader.associate()
        profile = await reader.read_profile(
            LOAD_PROFILE_OBIS, NOW - timedelta(days=days), NOW - timedelta(seconds=1)
        )
        await reader.release()
        await link.close()
        elapsed = loop.time() - t0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    total = emu.bytes_total
    ideal = wire_time(total, baud)
    return {
        "rows": len(profile.rows),
        "columns": len(profile.columns),
        "parameters": {
            "max_info_tx": link.parameters.max_info_tx,
            "max_info_rx": link.parameters.max_info_rx,
            "window_tx": link.parameters.window_tx,
            "window_rx": link.parameters.window_rx,
        },
        "seconds": round(elapsed, 3),
        "bytes_client_to_meter": emu.a.bytes_written,
        "bytes_meter_to_client": emu.b.bytes_written,
        "frames_tx": link.stats.frames_tx,
        "frames_rx": link.stats.frames_rx,
        "round_trips": link.stats.round_trips,
        "ideal_wire_s": round(ideal, 3),
        "ratio_to_ideal": round(elapsed / ideal, 3),
        "_rows": [(r.time, r.cells) for r in profile.rows],
    }


async def gurux_over_emulator(
    days: float,
    *,
    baud: int = 9600,
    meter_pdu: int = 2048,
    null_clocks: bool = True,
) -> dict[str, Any]:
    """The same read as :func:`read_over_emulator`, every request made by gurux-dlms's
    client (in a worker thread; its blocking I/O is bridged to the emulated line)."""
    from bench.dlms_peer_gurux import GuruxSession

    meter = SimulatedMeter(
        0,
        seed=1,
        start=(NOW - timedelta(days=days + 2)).date(),
        clock=lambda: NOW,
        null_clocks=null_clocks,
    )
    conn = ServerConnection(meter, max_pdu_size=meter_pdu, name=meter.serial)
    emu = LinkEmulator(baud=baud)
    server = HdlcServer(conn.receive_apdu, HdlcAddress.server(1, None))
    task = asyncio.create_task(_serve(emu.b, server))
    loop = asyncio.get_running_loop()

    def send(data: bytes) -> None:
        asyncio.run_coroutine_threadsafe(emu.a.write(data), loop).result(120)

    def recv() -> bytes:
        return asyncio.run_coroutine_threadsafe(emu.a.read(4096, 60.0), loop).result(120)

    def work() -> tuple[list[Any], GuruxSession]:
        from gurux_dlms.objects import GXDLMSProfileGeneric

        session = GuruxSession(send, recv, "hdlc")
        session.associate()
        profile = GXDLMSProfileGeneric(str(LOAD_PROFILE_OBIS))
        session.read(profile, 3)
        session.read(profile, 4)
        rows = session.read_rows_by_range(
            profile, NOW - timedelta(days=days), NOW - timedelta(seconds=1)
        )
        session.release()
        return rows, session

    t0 = loop.time()
    try:
        rows, session = await asyncio.to_thread(work)
        elapsed = loop.time() - t0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    total = emu.bytes_total
    settings = session.client.hdlcSettings
    return {
        "rows": len(rows),
        "parameters": {
            "max_info_tx": settings.maxInfoTX,
            "max_info_rx": settings.maxInfoRX,
            "window_tx": settings.windowSizeTX,
            "window_rx": settings.windowSizeRX,
        },
        "seconds": round(elapsed, 3),
        "bytes_client_to_meter": emu.a.bytes_written,
        "bytes_meter_to_client": emu.b.bytes_written,
        "round_trips": session.stats.round_trips,
        "ideal_wire_s": round(wire_time(total, baud), 3),
        "_rows": [list(r[1:]) for r in rows],
    }


def _gurux_available() -> bool:
    try:
        from bench.dlms_peer_gurux import available
    except ImportError:
        return False
    return available()


async def _pair(days: float, baud: int, meter_pdu: int, gurux: bool) -> dict[str, Any]:
    runs = [
        read_over_emulator(days, baud=baud, meter_pdu=meter_pdu),
        read_over_emulator(days, baud=baud, proposal=None, meter_pdu=meter_pdu),
    ]
    if gurux:
        runs.append(gurux_over_emulator(days, baud=baud, meter_pdu=meter_pdu))
    got = await asyncio.gather(*runs)
    ours, ref = got[0], got[1]
    our_rows = ours.pop("_rows")
    same = our_rows == ref.pop("_rows")
    total_ours = ours["bytes_client_to_meter"] + ours["bytes_meter_to_client"]
    total_ref = ref["bytes_client_to_meter"] + ref["bytes_meter_to_client"]
    out: dict[str, Any] = {
        "ours": ours,
        "reference_128_w1": ref,
        "same_rows": same,
        "bytes_ratio_vs_reference": round(total_ours / total_ref, 3),
        "time_ratio_vs_reference": round(ours["seconds"] / ref["seconds"], 3),
        "round_trips_ratio_vs_reference": round(ours["round_trips"] / ref["round_trips"], 3),
    }
    if gurux:
        gx = got[2]
        # gurux gives the cells after the clock column as plain values, like ours.
        out["gurux"] = gx
        out["same_rows_as_gurux"] = gx.pop("_rows") == [list(cells[1:]) for _, cells in our_rows]
        total_gx = gx["bytes_client_to_meter"] + gx["bytes_meter_to_client"]
        out["bytes_ratio_vs_gurux"] = round(total_ours / total_gx, 3)
        out["time_ratio_vs_gurux"] = round(ours["seconds"] / gx["seconds"], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dlms_wire")
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--backfill-days", type=float, default=7.0)
    parser.add_argument("--baud", type=int, default=9600)
    parser.add_argument("--meter-pdu", type=int, default=2048, help="meter max PDU (bytes)")
    parser.add_argument("--no-gurux", action="store_true", help="leave out the gurux reference")
    args = parser.parse_args(argv)
    gurux = not args.no_gurux and _gurux_available()

    async def run() -> dict[str, Any]:
        one, backfill = await asyncio.gather(
            _pair(args.days, args.baud, args.meter_pdu, gurux),
            _pair(args.backfill_days, args.baud, args.meter_pdu, gurux),
        )
        return {
            "baud": args.baud,
            "one_day": one,
            "backfill": {"days": args.backfill_days, **backfill},
            "targets": {
                "ratio_to_ideal_max": 1.15,
                "one_day_seconds_max": 4.0,
                "met": one["ours"]["ratio_to_ideal"] <= 1.15
                and (args.baud != 9600 or args.days != 1 or one["ours"]["seconds"] < 4.0)
                and one["bytes_ratio_vs_reference"] < 1.0
                and one.get("bytes_ratio_vs_gurux", 0.0) < 1.0,
                "backfill_met": backfill["ours"]["ratio_to_ideal"] <= 1.15
                and backfill["bytes_ratio_vs_reference"] < 1.0
                and backfill.get("bytes_ratio_vs_gurux", 0.0) < 1.0,
            },
        }

    print(json.dumps({"days": args.days, **asyncio.run(run())}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
