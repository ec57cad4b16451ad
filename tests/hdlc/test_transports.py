"""HDLC transports against an in-process HdlcServer: TCP, pyserial socket://, link emulator."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from edge_core.dlms.hdlc import HdlcParameters
from edge_core.errors import MeterTimeoutError, MeterUnreachableError
from edge_core.transport.hdlc import HdlcSerialTransport, HdlcTcpTransport, HdlcTransport
from edge_core.transport.link_emulator import LinkEmulator, wire_time
from tests.conftest import free_port
from tests.hdlc.helpers import make_server, serve_link, tcp_meter


def test_tcp_transport_round_trip_and_stats():
    async def main():
        server = make_server(lambda a: b"\xc4\x01" + a * 10, HdlcParameters(256, 256, 2, 2))
        async with tcp_meter(server) as port:
            t = HdlcTcpTransport("127.0.0.1", port, 16, (1, 17))
            await t.open()
            assert t.parameters == HdlcParameters(256, 256, 2, 2)
            answer = await t.request(b"\xc0\x01\x02" * 50, timeout=2.0)
            await t.close()
            await t.close()  # idempotent
        assert answer == b"\xc4\x01" + b"\xc0\x01\x02" * 500
        assert not server.connected  # DISC reached the server
        return t.stats

    stats = asyncio.run(main())
    assert stats.bytes_rx > 1500
    assert stats.frames_rx >= 8
    assert stats.frames_tx >= 3
    assert stats.round_trips >= 4


def test_tcp_unreachable():
    async def main():
        t = HdlcTcpTransport("127.0.0.1", free_port())
        await t.open()

    with pytest.raises(MeterUnreachableError):
        asyncio.run(main())


def test_serial_transport_over_pyserial_socket_url():
    async def main():
        server = make_server()
        async with tcp_meter(server) as port:
            t = HdlcSerialTransport(f"socket://127.0.0.1:{port}", 9600, 16, (1, 17))
            await t.open()
            answer = await t.request(b"\xc0\x01" * 400, timeout=2.0)
            await t.close()
        return answer

    assert asyncio.run(main()) == b"\xc4\x01" + b"\xc0\x01" * 400


def test_serial_missing_device():
    async def main():
        await HdlcSerialTransport("/dev/does-not-exist-ami").open()

    with pytest.raises(MeterUnreachableError):
        asyncio.run(main())


def test_timeout_retries_then_recovers_over_emulator():
    async def main():
        emu = LinkEmulator(baud=115200)
        server = make_server()
        task = asyncio.create_task(serve_link(emu.b, server, drop_first_answers=2))
        t = HdlcTransport.from_link(emu.a, server_address=(1, 17), retries=3, open_timeout=0.2)
        await t.open()  # first two UAs are lost; SNRM resent
        answer = await t.request(b"\xc0\x07", timeout=0.5)
        await t.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return answer, t.stats

    answer, stats = asyncio.run(main())
    assert answer == b"\xc4\x01\xc0\x07"
    assert stats.frames_tx >= 5  # 3 SNRM + I + DISC


def test_timeout_gives_up_after_retries():
    async def main():
        emu = LinkEmulator(baud=115200)
        t = HdlcTransport.from_link(emu.a, retries=1, open_timeout=0.05)
        try:
            await t.open()
        finally:
            await emu.a.close()

    with pytest.raises(MeterTimeoutError):
        asyncio.run(main())


def test_emulator_paces_bytes():
    async def main():
        emu = LinkEmulator(baud=9600)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await emu.a.write(bytes(96))
        got = b""
        while len(got) < 96:
            got += await emu.b.read(4096, 2.0)
        return loop.time() - t0

    elapsed = asyncio.run(main())
    # 96 bytes x 10 bits at 9600 baud is 0.1 s; the emulator may never deliver early
    assert elapsed >= wire_time(96) - 1e-3


async def _day_of_load_profile(limits: HdlcParameters, proposal: HdlcParameters | None):
    emu = LinkEmulator(baud=9600)
    response = os.urandom(6000)
    server = make_server(lambda a: response, limits)
    task = asyncio.create_task(serve_link(emu.b, server))
    t = HdlcTransport.from_link(emu.a, server_address=(1, 17), proposal=proposal)
    await t.open()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    bytes0 = emu.bytes_total
    answer = await t.request(b"\xc0\x01\xc1\x00\x07\x01\x00\x63\x01\x00\xff\x02\x00", 30.0)
    elapsed = loop.time() - t0
    ideal = wire_time(emu.bytes_total - bytes0)
    await t.close()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert answer == response
    return {
        "params": t.parameters,
        "wire_s": elapsed,
        "ideal_s": ideal,
        "bytes": emu.bytes_total - bytes0,
        "round_trips": t.stats.round_trips - 1,
    }


@pytest.mark.slow
def test_six_kb_response_at_9600_baud_small_vs_large_frames(capsys):
    async def both():
        # two independent emulated lines, run side by side to halve the test's duration
        return await asyncio.gather(
            _day_of_load_profile(HdlcParameters(128, 128, 1, 1), None),
            _day_of_load_profile(HdlcParameters(1024, 1024, 7, 7), None),
        )

    small, large = asyncio.run(both())
    assert small["params"].max_info_rx == 128
    assert large["params"].max_info_rx == 1024
    assert large["bytes"] < small["bytes"]
    assert large["round_trips"] < small["round_trips"]
    for r in (small, large):
        assert r["wire_s"] >= r["ideal_s"] * 0.99  # bytes cannot beat their serialisation
    with capsys.disabled():
        print(
            json.dumps(
                {
                    k: {**v, "params": repr(v["params"])}
                    for k, v in (("128_w1", small), ("1024_w7", large))
                }
            )
        )


def test_request_timeout_leaves_transport_usable_for_reconnect():
    async def main():
        emu = LinkEmulator(baud=115200)
        server = make_server()
        task = asyncio.create_task(serve_link(emu.b, server))
        t = HdlcTransport.from_link(emu.a, server_address=(1, 17), retries=1)
        await t.open()
        task.cancel()  # the meter goes silent
        await asyncio.gather(task, return_exceptions=True)
        with pytest.raises(MeterTimeoutError):
            await t.request(b"\xc0\x01", timeout=0.05)
        assert not t.client.busy
        task = asyncio.create_task(serve_link(emu.b, server))  # the meter is back
        await t.reconnect()
        answer = await t.request(b"\xc0\x02", timeout=1.0)
        await t.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return answer

    assert asyncio.run(main()) == b"\xc4\x01\xc0\x02"
