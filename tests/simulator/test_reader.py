"""MeterReader and read_meter against the simulator: in memory (a fake transport) and over
real loopback TCP (serve_meters in-process)."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, date, datetime, timedelta

import pytest

from edge_core.dlms.apdu import DataNotification, ExceptionResponse, GetRequestWithList, decode_apdu
from edge_core.dlms.axdr import Data
from edge_core.dlms.obis import Obis
from edge_core.dlms.server import ServerConnection
from edge_core.dlms.wrapper import WrapperFrame
from edge_core.errors import (
    AssociationError,
    MeterTimeoutError,
    MeterUnreachableError,
    UnknownObjectError,
)
from edge_core.meter import MeterReader, ProfileData, read_meter
from edge_core.model import DataClass
from edge_core.simulator import SimulatedMeter, serve_meters
from edge_core.transport.base import WireStats
from edge_core.transport.tcp import TcpWrapperTransport
from tests.conftest import free_port

NOW = datetime(2026, 11, 26, 10, 5, tzinfo=UTC)
START = date(2026, 11, 20)
IMPORT = Obis.parse("1.0.1.8.0.255")
LP = Obis.parse("1.0.99.1.0.255")


class FakeTransport:
    """An ApduTransport that hands each request straight to a ServerConnection."""

    def __init__(self, server: ServerConnection) -> None:
        self.server = server
        self.stats = WireStats()
        self.requests: list[bytes] = []

    async def open(self) -> None:
        return None

    async def request(self, apdu: bytes, timeout: float) -> bytes:
        self.requests.append(apdu)
        self.stats.round_trips += 1
        answer = self.server.receive_apdu(apdu)
        assert answer is not None
        return answer

    async def receive(self, timeout: float) -> bytes:
        raise MeterTimeoutError("nothing pushed")

    async def close(self) -> None:
        return None


class NoWithListServer(ServerConnection):
    """Negotiates multiple references but answers with-list with an exception-response."""

    def receive_apdu(self, raw: bytes) -> bytes | None:
        if raw[:2] == b"\xc0\x03":
            return ExceptionResponse(1, 2).to_bytes()
        return super().receive_apdu(raw)


def _model(index: int = 0) -> SimulatedMeter:
    return SimulatedMeter(index, seed=5, start=START, clock=lambda: NOW)


def test_reader_in_memory_profile_and_readings() -> None:
    async def run() -> tuple[ProfileData, list[object], datetime]:
        reader = MeterReader(
            FakeTransport(ServerConnection(_model(1), max_pdu_size=256)), meter_id="m1"
        )
        await reader.associate()
        clock = await reader.read_clock()
        regs = await reader.read_registers([IMPORT])
        profile = await reader.read_profile(LP, NOW - timedelta(hours=24), NOW)
        await reader.release()
        return profile, regs, clock

    profile, regs, clock = asyncio.run(run())
    assert clock == NOW
    assert profile.capture_period_s == 900
    assert len(profile.rows) == 96
    times = [r.time for r in profile.rows]
    assert all(
        b - a == timedelta(seconds=900) for a, b in itertools.pairwise(times)
    )  # null clocks filled
    assert times[-1] == datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    readings = profile.to_readings("m1")
    assert len(readings) == 96 * 4
    assert {r.obis for r in readings} == {
        "1.0.1.8.0.255",
        "1.0.2.8.0.255",
        "1.0.3.8.0.255",
        "1.0.4.8.0.255",
    }
    assert all(r.data_class == DataClass.INTERVAL and r.unit in (30, 32) for r in readings)
    assert readings[0].capture_time == int(times[0].timestamp())
    last_import = max(r.value for r in readings if r.obis == "1.0.1.8.0.255")
    assert regs[0].raw >= last_import  # type: ignore[attr-defined]


def test_reader_falls_back_to_single_gets() -> None:
    async def run() -> tuple[list[object], FakeTransport]:
        fake = FakeTransport(NoWithListServer(_model(0)))
        reader = MeterReader(fake)
        await reader.associate()
        regs = await reader.read_registers([IMPORT, Obis.parse("1.0.2.8.0.255")])
        return regs, fake

    regs, fake = asyncio.run(run())
    assert len(regs) == 2
    kinds = [type(decode_apdu(r)).__name__ for r in fake.requests]
    assert "GetRequestWithList" in kinds
    assert kinds.count("GetRequestNormal") == 4
    assert GetRequestWithList  # imported for the name check above


def test_wrong_password_is_association_error() -> None:
    async def run() -> None:
        reader = MeterReader(
            FakeTransport(ServerConnection(_model(0), password=b"pw")), password=b"nope"
        )
        await reader.associate()

    with pytest.raises(AssociationError):
        asyncio.run(run())


def test_read_meter_over_tcp_and_bad_clients() -> None:
    async def run() -> None:
        handle = await serve_meters(2, "127.0.0.1", 0, 5, START, clock=lambda: NOW)
        async with handle:
            assert len(set(handle.meter_ids)) == 2
            # A bad client: wrong wrapper version, then a garbage APDU on another connection.
            for junk in (
                b"\x00\x07\x00\x10\x00\x01\x00\x01\x00",
                WrapperFrame(16, 1, b"\xff\x00").to_bytes(),
            ):
                r, w = await asyncio.open_connection("127.0.0.1", handle.ports[0])
                w.write(junk)
                await w.drain()
                await asyncio.wait_for(r.read(100), 5)
                w.close()
                await w.wait_closed()
            span = (NOW - timedelta(hours=24), NOW)
            result = await read_meter(handle.url(0), load_profile=span, timeout=5)
            assert [str(r.obis) for r in result.registers][:2] == ["1.0.1.8.0.255", "1.0.2.8.0.255"]
            assert result.load_profile is not None
            assert len(result.load_profile.rows) == 96
            assert result.wire.round_trips >= 5
            assert result.wire.bytes_rx > 96 * 20
            assert result.wire.bytes_tx >= 8 * result.wire.round_trips  # wrapper headers counted
            doc = result.to_json()
            assert doc["load_profile"]["capture_period_s"] == 900
            with pytest.raises(UnknownObjectError) as info:
                await read_meter(handle.url(1), obis=[Obis.parse("1.0.1.8.9.255")], timeout=5)
            assert info.value.obis == "1.0.1.8.9.255"

    asyncio.run(run())


def test_dead_port_and_silent_meter() -> None:
    async def run() -> None:
        with pytest.raises(MeterUnreachableError):
            await read_meter(f"tcp://127.0.0.1:{free_port()}", timeout=2)

        writers: list[asyncio.StreamWriter] = []

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)  # reads the AARQ, never answers
            await reader.read(1000)

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(MeterTimeoutError):
                await read_meter(f"tcp://127.0.0.1:{port}", timeout=0.3)
        finally:
            server.close()
            for w in writers:
                w.close()
                await w.wait_closed()
            await server.wait_closed()

    asyncio.run(run())


def test_read_meter_over_hdlc_framing() -> None:
    pytest.importorskip("edge_core.transport.hdlc", reason="HDLC transport not in this tree")

    async def run() -> None:
        handle = await serve_meters(
            1, "127.0.0.1", 0, 5, START, clock=lambda: NOW, transport="hdlc"
        )
        async with handle:
            span = (NOW - timedelta(hours=24), NOW)
            result = await read_meter(handle.url(0), transport="hdlc", load_profile=span, timeout=5)
            assert result.clock == NOW
            assert result.load_profile is not None
            assert len(result.load_profile.rows) == 96
            assert result.wire.bytes_rx > 96 * 20

    asyncio.run(run())


def test_simulator_push_reaches_the_transport() -> None:
    async def run() -> None:
        handle = await serve_meters(1, "127.0.0.1", 0, 5, START, clock=lambda: NOW)
        async with handle:
            link = TcpWrapperTransport("127.0.0.1", handle.ports[0])
            async with link:
                reader = MeterReader(link)
                await reader.associate()  # the server knows the connection once it has spoken
                body = Data.structure((Data.octet_string(IMPORT.to_bytes()), Data.unsigned(1)))
                assert await handle.push(0, body, date_time=NOW) == 1
                push = decode_apdu(await link.receive(5))
                assert isinstance(push, DataNotification)
                assert push.body == body
                assert push.date_time is not None
                assert push.date_time.to_datetime() == NOW
                # a push arriving while a request is outstanding does not disturb it
                await handle.push(0, body)
                assert await reader.read_clock() == NOW

    asyncio.run(run())


def test_meter_on_local_time_gives_aware_rows_and_utc_readings() -> None:
    async def run() -> tuple[datetime, ProfileData]:
        model = SimulatedMeter(0, seed=5, start=START, clock=lambda: NOW, utc_offset_min=60)
        reader = MeterReader(FakeTransport(ServerConnection(model)))
        await reader.associate()
        clock = await reader.read_clock()
        profile = await reader.read_profile(LP, NOW - timedelta(hours=2), NOW)
        return clock, profile

    clock, profile = asyncio.run(run())
    assert clock == NOW
    assert clock.utcoffset() == timedelta(hours=1)
    assert profile.rows[0].time.utcoffset() == timedelta(hours=1)
    assert profile.rows[-1].time == datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    readings = profile.to_readings("m0")
    assert readings[-1].capture_time == int(datetime(2026, 11, 26, 10, 0, tzinfo=UTC).timestamp())
