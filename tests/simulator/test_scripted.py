"""Scripted events and faults in the simulator, read back by the reader: event logs by range,
clock check/set, outages, consumption factors, link faults, pushes, HDLC over a pty."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest

from edge_core.dlms.apdu import GetRequestNormal, GetRequestWithList, decode_apdu
from edge_core.dlms.obis import Obis
from edge_core.dlms.server import ServerConnection
from edge_core.errors import MeterError, MeterTimeoutError, ProtocolError, TransportError
from edge_core.meter import MeterReader, read_meter
from edge_core.meter.push import PushListener
from edge_core.meter.reader import EVENT_LOG_OBIS
from edge_core.simulator import SimulatedMeter, serve_meters
from edge_core.simulator.script import ALARM_LAST_GASP
from tests.simulator.test_reader import FakeTransport

NOW = datetime(2026, 11, 26, 10, 5, tzinfo=UTC)
START = date(2026, 11, 20)
STD, FRAUD, PQ, PF = EVENT_LOG_OBIS
LP = Obis.parse("1.0.99.1.0.255")


class Clock:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


def _reader(model: SimulatedMeter) -> tuple[MeterReader, FakeTransport]:
    t = FakeTransport(ServerConnection(model, max_pdu_size=512))
    return MeterReader(t, meter_id="m1"), t


def test_empty_obis_reads_no_register() -> None:
    async def run() -> list[bytes]:
        reader, t = _reader(SimulatedMeter(0, seed=5, start=START, clock=lambda: NOW))
        await reader.associate()
        clock, regs = await reader.read_clock_and_registers([])
        assert regs == []
        assert clock.year == 2026
        return t.requests

    requests = asyncio.run(run())
    gets = [decode_apdu(r) for r in requests[1:]]
    assert len(gets) == 1
    assert isinstance(gets[0], GetRequestNormal)
    assert gets[0].descriptor.class_id == 8
    assert not any(isinstance(g, GetRequestWithList) for g in gets)


def test_read_meter_empty_obis_over_tcp() -> None:
    async def run() -> object:
        async with await serve_meters(1, "127.0.0.1", 0, 3, START, lambda: NOW) as sim:
            return await read_meter(
                sim.url(0), obis=(), load_profile=(NOW - timedelta(hours=2), NOW), timeout=5
            )

    res = asyncio.run(run())
    assert res.registers == ()  # type: ignore[attr-defined]
    assert len(res.load_profile.rows) == 8  # type: ignore[attr-defined]


def test_clock_and_registers_in_one_round_trip() -> None:
    async def run() -> int:
        reader, t = _reader(SimulatedMeter(0, seed=5, start=START, clock=lambda: NOW))
        await reader.associate()
        before = t.stats.round_trips
        _, regs = await reader.read_clock_and_registers([Obis.parse("1.0.1.8.0.255")])
        assert regs[0].raw > 0
        return t.stats.round_trips - before

    assert asyncio.run(run()) == 1


def test_clock_drift_check_and_set() -> None:
    clock = Clock(NOW)
    model = SimulatedMeter(0, seed=5, start=START, clock=clock)
    model.set_clock_offset(-95)

    async def run() -> tuple[object, object, object]:
        reader, _ = _reader(model)
        await reader.associate()
        first = await reader.check_clock(NOW, 30)
        fixed = await reader.check_clock(NOW, 30, adjust=True)
        after = await reader.check_clock(NOW, 30)
        return first, fixed, after

    first, fixed, after = asyncio.run(run())
    assert first.drift_s == pytest.approx(-95, abs=1)
    assert not first.adjusted
    assert fixed.adjusted  # type: ignore[attr-defined]
    assert abs(after.drift_s) < 2  # type: ignore[attr-defined]
    codes = [e.code for e in model.log_entries(STD, 0, NOW.timestamp())]
    assert 4 in codes
    assert 5 in codes


def test_event_logs_by_range() -> None:
    clock = Clock(NOW)
    model = SimulatedMeter(0, seed=5, start=START, clock=clock)
    t0 = NOW - timedelta(hours=5)
    model.outage(t0, t0 + timedelta(seconds=45))
    model.phase_loss(2, NOW - timedelta(hours=3), NOW - timedelta(hours=2))
    model.tamper(NOW - timedelta(hours=1), "terminal_cover", end=NOW - timedelta(minutes=50))
    model.outage(NOW + timedelta(hours=1), NOW + timedelta(hours=2))  # future: invisible

    async def run() -> dict[Obis, list[object]]:
        reader, _ = _reader(model)
        await reader.associate()
        return {
            log: await reader.read_events(log, NOW - timedelta(hours=6), NOW)
            for log in EVENT_LOG_OBIS
        }

    got = asyncio.run(run())
    std = [(e.code, e.time) for e in got[STD]]  # type: ignore[attr-defined]
    assert (1, t0) in std
    assert (2, t0 + timedelta(seconds=45)) in std
    assert [e.code for e in got[PQ]] == [83, 86]  # type: ignore[attr-defined]
    assert [e.code for e in got[FRAUD]] == [40, 41]  # type: ignore[attr-defined]
    pf = [e for e in got[PF] if e.time == t0 + timedelta(seconds=45)]  # type: ignore[attr-defined]
    assert len(pf) == 1
    assert pf[0].duration_s == 45
    assert pf[0].code == 2
    assert all(
        e.meter == "m1" and NOW - timedelta(hours=6) <= e.time <= NOW
        for v in got.values()
        for e in v
    )  # type: ignore[attr-defined]

    async def narrow() -> list[object]:
        reader, _ = _reader(model)
        await reader.associate()
        return await reader.read_events(FRAUD, NOW - timedelta(minutes=55), NOW)

    assert [e.code for e in asyncio.run(narrow())] == [41]  # type: ignore[attr-defined]


def test_outage_flags_interval_and_scales_energy_and_factor() -> None:
    clock = Clock(NOW)
    plain = SimulatedMeter(0, seed=5, start=START, clock=clock)
    model = SimulatedMeter(0, seed=5, start=START, clock=clock)
    slot = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    model.outage(slot + timedelta(minutes=5), slot + timedelta(minutes=10))
    model.set_consumption_factor(datetime(2026, 11, 26, tzinfo=UTC), 0.5)

    async def rows(m: SimulatedMeter) -> object:
        reader, _ = _reader(m)
        await reader.associate()
        return await reader.read_profile(LP, datetime(2026, 11, 25, 11, tzinfo=UTC), NOW)

    a, b = asyncio.run(rows(plain)), asyncio.run(rows(model))
    by_time_a = {r.time: r for r in a.rows}  # type: ignore[attr-defined]
    by_time_b = {r.time: r for r in b.rows}  # type: ignore[attr-defined]
    end = slot + timedelta(minutes=15)
    assert b.status(by_time_b[end]) & 0x80
    assert not a.status(by_time_a[end]) & 0x80

    def delta(p: object, byt: dict, t: datetime) -> int:
        return byt[t].cells[2] - byt[t - timedelta(minutes=15)].cells[2]

    assert (
        delta(b, by_time_b, end) == round(delta(a, by_time_a, end) * 2 / 3)
        or abs(delta(b, by_time_b, end) - delta(a, by_time_a, end) * 2 / 3) <= 1
    )
    late = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    assert abs(delta(b, by_time_b, late) - delta(a, by_time_a, late) / 2) <= 1
    # registers stay monotonic through the scripted changes
    values = [r.cells[2] for r in b.rows]  # type: ignore[attr-defined]
    assert values == sorted(values)


def test_outage_silences_meter_and_last_gasp_push() -> None:
    clock = Clock(NOW)

    async def run() -> tuple[object, object]:
        async with PushListener() as listener:
            sim = await serve_meters(
                2,
                "127.0.0.1",
                0,
                3,
                START,
                clock,
                push_destination=("127.0.0.1", listener.port),
                push_poll_s=0.02,
            )
            async with sim:
                sim.meters[1].outage(NOW, NOW + timedelta(seconds=60), last_gasp=True)
                push = await listener.get(5.0)
                with pytest.raises((MeterTimeoutError, TransportError)):
                    await read_meter(sim.url(1), obis=(), timeout=0.3)
                clock.t = NOW + timedelta(seconds=61)
                after = await read_meter(
                    sim.url(1),
                    obis=(),
                    events=(NOW - timedelta(minutes=1), clock.t),
                    event_logs=(PF,),
                    timeout=5,
                )
                return push, after

    push, after = asyncio.run(run())
    assert push.meter == "SIM03000002"  # type: ignore[attr-defined]
    assert push.values[2] & ALARM_LAST_GASP  # type: ignore[attr-defined]
    assert push.time == NOW  # type: ignore[attr-defined]
    assert [e.duration_s for e in after.events] == [60]  # type: ignore[attr-defined]


def test_link_faults_drop_corrupt_delay_wrapper() -> None:
    async def run() -> None:
        async with await serve_meters(1, "127.0.0.1", 0, 3, START, lambda: NOW) as sim:
            m = sim.meters[0]
            m.inject_fault("drop")
            with pytest.raises(MeterTimeoutError):
                await read_meter(sim.url(0), obis=(), timeout=0.3)
            m.inject_fault("corrupt")  # a flipped byte: a typed error, never a wrong value
            with pytest.raises((ProtocolError, MeterError)):
                await read_meter(sim.url(0), obis=(), timeout=2)
            m.inject_fault("delay", delay_s=0.5)
            with pytest.raises(MeterTimeoutError):
                await read_meter(sim.url(0), obis=(), timeout=0.2)
            m.inject_fault("delay", delay_s=0.1)
            ok = await read_meter(sim.url(0), obis=(), timeout=2)
            assert ok.clock.year == 2026

    asyncio.run(run())


def test_hdlc_recovers_from_dropped_and_corrupted_frames() -> None:
    from edge_core.transport.hdlc import HdlcTcpTransport

    async def run() -> list[object]:
        sim = await serve_meters(1, "127.0.0.1", 0, 3, START, lambda: NOW, transport="hdlc")
        async with sim:
            link = HdlcTcpTransport("127.0.0.1", sim.ports[0], open_timeout=0.5)
            reader = MeterReader(link, meter_id="m", timeout=0.3)
            await link.open()
            try:
                await reader.associate()
                sim.meters[0].inject_fault("drop")  # lost answer: the client polls again
                sim.meters[0].inject_fault("corrupt")  # bad FCS: dropped, polled again
                regs = await reader.read_registers([Obis.parse("1.0.1.8.0.255")])
                await reader.release()
            finally:
                await link.close()
            return regs

    regs = asyncio.run(run())
    assert regs[0].raw > 0  # type: ignore[attr-defined]


@pytest.mark.slow
def test_hdlc_over_pty_with_serial_transport() -> None:
    async def run() -> tuple[object, object]:
        sim = await serve_meters(
            1, "127.0.0.1", 0, 3, START, lambda: NOW, transport="hdlc", serial=True
        )
        async with sim:
            assert sim.url(0).startswith("serial:///dev/")
            tcp_like = await read_meter(
                sim.url(0),
                transport="hdlc",
                baud=115200,
                load_profile=(NOW - timedelta(hours=3), NOW),
                timeout=5,
            )
        async with await serve_meters(1, "127.0.0.1", 0, 3, START, lambda: NOW) as ref:
            reference = await read_meter(
                ref.url(0), load_profile=(NOW - timedelta(hours=3), NOW), timeout=5
            )
        return tcp_like, reference

    got, ref = asyncio.run(run())
    assert [r.raw for r in got.registers] == [r.raw for r in ref.registers]  # type: ignore[attr-defined]
    assert got.load_profile.rows == ref.load_profile.rows  # type: ignore[attr-defined]


def test_push_listener_rejects_garbage_and_bounds_queue() -> None:
    async def run() -> PushListener:
        listener = PushListener(max_queue=1)
        async with listener:
            model = SimulatedMeter(0, seed=1, start=START, clock=lambda: NOW)
            from edge_core.dlms.wrapper import WrapperFrame

            _, w = await asyncio.open_connection("127.0.0.1", listener.port)
            w.write(WrapperFrame(1, 16, b"\xc4\x01\xc1\x00\x11\x01").to_bytes())
            for _ in range(2):
                w.write(WrapperFrame(1, 16, model.notification(1).to_bytes()).to_bytes())
            await w.drain()
            first = await listener.get(2.0)
            assert first.meter == model.serial
            w.close()
            await w.wait_closed()
            for _ in range(50):
                if listener.received + listener.rejected >= 3:
                    break
                await asyncio.sleep(0.01)
        return listener

    listener = asyncio.run(run())
    assert listener.rejected == 1
    assert listener.received == 2


def test_low_level_security_end_to_end_over_tcp() -> None:
    from edge_core.dlms.apdu import AARQ
    from edge_core.dlms.client import ClientConnection
    from edge_core.errors import AssociationError

    aarq = ClientConnection(password=b"12345678").associate()
    assert bytes.fromhex("8b0760857405080201") in aarq  # mechanism 2.16.756.5.8.2.1
    assert bytes.fromhex("ac0a80083132333435363738") in aarq  # calling-authentication-value
    assert AARQ.from_bytes(aarq).authentication_value == b"12345678"

    async def run() -> object:
        sim = await serve_meters(1, "127.0.0.1", 0, 3, START, lambda: NOW, password=b"12345678")
        async with sim:
            with pytest.raises(AssociationError):
                await read_meter(sim.url(0), obis=(), password=b"wrong", timeout=2)
            with pytest.raises(AssociationError):
                await read_meter(sim.url(0), obis=(), timeout=2)
            return await read_meter(sim.url(0), password=b"12345678", timeout=2)

    assert len(asyncio.run(run()).registers) == 4  # type: ignore[attr-defined]
