"""HLS-GMAC end to end: ClientConnection against ServerConnection (sans-I/O), then
``read_meter`` against ``serve_meters`` over the TCP wrapper and over HDLC."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_core.dlms.apdu import (
    AARQ,
    AttributeDescriptor,
    Conformance,
    ExceptionResponse,
    InitiateRequest,
)
from edge_core.dlms.client import (
    AssociationAccepted,
    AuthenticationRequired,
    ClientConnection,
    ClientState,
    GetResults,
)
from edge_core.dlms.counters import CounterStore
from edge_core.dlms.obis import Obis
from edge_core.dlms.security import (
    AuthenticationTagError,
    CounterRange,
    ReplayError,
    Secret,
    SecurityContext,
    decode_ciphered,
)
from edge_core.dlms.server import ServerConnection, ServerState
from edge_core.errors import AssociationError, ProtocolError
from edge_core.meter.reader import MeterReader, open_transport, read_meter
from edge_core.meter.security import ReaderSecurity
from edge_core.simulator.model import SimulatedMeter
from edge_core.simulator.script import LinkFault
from edge_core.simulator.security import MeterSecurity
from edge_core.simulator.server import serve_meters

EK_HEX = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
AK_HEX = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
EK, AK = Secret(bytes.fromhex(EK_HEX)), Secret(bytes.fromhex(AK_HEX))
CLIENT = bytes.fromhex("4d4d4d0000000001")
START = date(2026, 3, 1)
CLOCK = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
DAY = (datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 2, 23, 59, 59, tzinfo=UTC))
REGISTER = AttributeDescriptor(3, Obis(1, 0, 1, 8, 0, 255), 2)


def _pair(
    client_keys: tuple[Secret, Secret] = (EK, AK),
) -> tuple[ClientConnection, ServerConnection]:
    meter = SimulatedMeter(0, seed=3, start=START, clock=lambda: CLOCK)
    ctx = SecurityContext(CLIENT, *client_keys)
    ctx.grant(CounterRange(100, 10_000))
    client = ClientConnection(security=ctx, meter="m-1")
    server = ServerConnection(meter, security=MeterSecurity(EK, AK).context_factory(0))
    return client, server


def _associate(client: ClientConnection, server: ServerConnection) -> None:
    aare = server.receive_apdu(client.associate())
    assert aare is not None
    event = client.receive_apdu(aare)
    assert isinstance(event, AuthenticationRequired)
    assert client.state == ClientState.AUTHENTICATING
    assert server.state == ServerState.AUTHENTICATING
    reply = server.receive_apdu(event.next_request)
    assert reply is not None
    assert isinstance(client.receive_apdu(reply), AssociationAccepted)
    assert client.state == ClientState.ASSOCIATED
    assert server.state == ServerState.ASSOCIATED


def test_handshake_and_ciphered_get_sans_io() -> None:
    client, server = _pair()
    aarq = client.associate()
    parsed = AARQ.from_bytes(aarq)
    assert parsed.mechanism == 5
    assert parsed.application_context == 3
    assert parsed.calling_ap_title == CLIENT
    assert isinstance(parsed.user_information, bytes)
    assert parsed.user_information[0] == 0x21
    aare = server.receive_apdu(aarq)
    assert aare is not None
    event = client.receive_apdu(aare)
    assert isinstance(event, AuthenticationRequired)
    assert event.next_request[0] == 0xCB  # glo-action-request
    # Nothing but the HLS reply is served before authentication.
    early = server.receive_apdu(b"\xc0\x01\xc1" + REGISTER.to_bytes() + b"\x00")
    assert early is not None
    assert early[0] == ExceptionResponse.TAG
    assert server.state == ServerState.AUTHENTICATING
    reply = server.receive_apdu(event.next_request)
    assert reply is not None
    assert reply[0] == 0xCF
    assert isinstance(client.receive_apdu(reply), AssociationAccepted)
    request = client.get(REGISTER)
    assert request[0] == 0xC8  # glo-get-request
    answer = server.receive_apdu(request)
    assert answer is not None
    assert answer[0] == 0xCC
    result = client.receive_apdu(answer)
    assert isinstance(result, GetResults)
    assert isinstance(result.results[0].value, int)  # type: ignore[union-attr]


def test_plain_get_refused_in_a_ciphered_association() -> None:
    client, server = _pair()
    _associate(client, server)
    plain = b"\xc0\x01\xc1" + REGISTER.to_bytes() + b"\x00"
    answer = server.receive_apdu(plain)
    assert answer is not None
    assert answer[0] == ExceptionResponse.TAG


def test_replayed_request_is_refused_by_the_meter() -> None:
    client, server = _pair()
    _associate(client, server)
    request = client.get(REGISTER)
    first = server.receive_apdu(request)
    assert first is not None
    assert first[0] == 0xCC
    client.receive_apdu(first)
    again = server.receive_apdu(request)
    assert again is not None
    assert again[0] == ExceptionResponse.TAG


def test_replayed_response_ends_the_association() -> None:
    client, server = _pair()
    _associate(client, server)
    answer = server.receive_apdu(client.get(REGISTER))
    assert answer is not None
    client.receive_apdu(answer)
    client.get(REGISTER)
    with pytest.raises(ReplayError, match="m-1"):
        client.receive_apdu(answer)
    assert client.state == ClientState.IDLE


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_any_tampered_byte_of_a_ciphered_response_ends_the_association(
    data: st.DataObject,
) -> None:
    client, server = _pair()
    _associate(client, server)
    answer = server.receive_apdu(client.get(REGISTER))
    assert answer is not None
    i = data.draw(st.integers(0, len(answer) - 1))
    bit = data.draw(st.integers(0, 7))
    bad = bytearray(answer)
    bad[i] ^= 1 << bit
    with pytest.raises(ProtocolError):  # tag, envelope or plain-in-ciphered: all typed
        client.receive_apdu(bytes(bad))
    assert client.state == ClientState.IDLE


@pytest.mark.parametrize("wrong", ["ek", "ak"])
def test_wrong_client_key_is_an_association_error_naming_the_meter(wrong: str) -> None:
    other = Secret(bytes(16))
    keys = (other, AK) if wrong == "ek" else (EK, other)
    client, server = _pair(keys)
    aare = server.receive_apdu(client.associate())
    assert aare is not None
    with pytest.raises(AssociationError, match="m-1") as info:
        client.receive_apdu(aare)
    assert info.value.meter == "m-1"
    assert client.state == ClientState.IDLE
    assert server.state == ServerState.IDLE


def test_meter_with_other_keys_after_aare_fails_hls() -> None:
    """A meter whose f(CtoS) does not verify (here: a forged ACTION answer that deciphers,
    but carries a wrong f) is refused by the client."""
    client, server = _pair()
    aare = server.receive_apdu(client.associate())
    assert aare is not None
    event = client.receive_apdu(aare)
    assert isinstance(event, AuthenticationRequired)
    reply = server.receive_apdu(event.next_request)
    assert reply is not None
    # Re-cipher the meter's answer with a wrong f(CtoS) under the meter's own context.
    assert server.context is not None
    plain = client.security.unprotect(reply)  # type: ignore[union-attr]
    client.security.last_peer_counter = None  # type: ignore[union-attr]
    forged = server.context.protect(plain[:-1] + bytes((plain[-1] ^ 1,)))
    with pytest.raises(AssociationError, match="failed HLS-GMAC"):
        client.receive_apdu(forged)
    assert client.state == ClientState.IDLE


def test_client_with_wrong_f_stoc_is_refused() -> None:
    client, server = _pair()
    aare = server.receive_apdu(client.associate())
    assert aare is not None
    event = client.receive_apdu(aare)
    assert isinstance(event, AuthenticationRequired)
    assert server.context is not None
    plain = server.context.unprotect(event.next_request)
    server.context.last_peer_counter = None
    forged = client.security.protect(plain[:-1] + bytes((plain[-1] ^ 1,)))  # type: ignore[union-attr]
    reply = server.receive_apdu(forged)
    assert reply is not None
    assert server.state == ServerState.IDLE
    with pytest.raises(AssociationError, match="refused f"):
        client.receive_apdu(reply)


def test_plain_aarq_refused_by_a_secured_meter() -> None:
    _, server = _pair()
    plain = ClientConnection(meter="m-1")
    with pytest.raises(AssociationError):
        plain.receive_apdu(server.receive_apdu(plain.associate()) or b"")
    ciphered_info = AARQ(b"\x21\x05\x30\x00\x00\x00\x01", 3, 5, b"12345678", CLIENT)
    answer = server.receive_apdu(ciphered_info.to_bytes())
    assert answer is not None
    assert answer[0] == 0x61
    assert server.state == ServerState.IDLE
    # And a meter without keys refuses a ciphered AARQ (no exception escapes).
    keyless = ServerConnection(SimulatedMeter(0, seed=3, start=START, clock=lambda: CLOCK))
    plain_info = AARQ(InitiateRequest(Conformance.GET), 1).to_bytes()
    assert keyless.receive_apdu(plain_info) is not None
    assert keyless.receive_apdu(ciphered_info.to_bytes()) is not None
    assert keyless.state == ServerState.IDLE


# --------------------------------------------------------------------------- over TCP


class _Recording:
    """An ApduTransport that remembers every request it sent."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sent: list[bytes] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def request(self, apdu: bytes, timeout: float) -> bytes:
        self.sent.append(bytes(apdu))
        return bytes(await self.inner.request(apdu, timeout))


def _sent_counters(sent: list[bytes]) -> list[int]:
    out = []
    for raw in sent:
        apdu = raw
        if raw[0] == 0x60:  # AARQ: the glo-initiate-request inside
            info = AARQ.from_bytes(raw).user_information
            assert isinstance(info, bytes)
            apdu = info
        if apdu[0] in (0x21, 0xC8, 0xCB):
            out.append(decode_ciphered(apdu).invocation_counter)
    return out


def _reader_security(tmp_path: Path, ek: str = EK_HEX, ak: str = AK_HEX) -> ReaderSecurity:
    return ReaderSecurity.from_hex(
        system_title=CLIENT.hex(), auth_key=ak, cipher_key=ek, counter_dir=tmp_path / "ic"
    )


@pytest.mark.parametrize("transport", ["wrapper", "hdlc"])
def test_read_meter_with_hls_gmac(transport: str, tmp_path: Path) -> None:
    async def main() -> None:
        sim = await serve_meters(
            1,
            "127.0.0.1",
            0,
            3,
            START,
            lambda: CLOCK,
            transport=transport,
            security=MeterSecurity(EK, AK),
        )
        plain_sim = await serve_meters(
            1, "127.0.0.1", 0, 3, START, lambda: CLOCK, transport=transport
        )
        try:
            secured = await read_meter(
                sim.url(0),
                transport=transport,
                security=_reader_security(tmp_path),
                load_profile=DAY,
                meter_id="m-1",
                clock_reference=lambda: CLOCK,
            )
            plain = await read_meter(
                plain_sim.url(0),
                transport=transport,
                load_profile=DAY,
                clock_reference=lambda: CLOCK,
            )
        finally:
            await sim.close()
            await plain_sim.close()
        # The same meter model read with and without security gives the same data.
        assert secured.clock == plain.clock == CLOCK
        assert secured.registers == plain.registers
        assert secured.load_profile is not None
        assert plain.load_profile is not None
        assert len(secured.load_profile.rows) == 96
        assert secured.load_profile.rows == plain.load_profile.rows
        assert secured.wire.bytes_tx > plain.wire.bytes_tx  # ciphering costs bytes

    asyncio.run(main())


def test_counters_persist_and_grow_across_two_reads(tmp_path: Path) -> None:
    async def one_read(sim_url: str) -> list[int]:
        link = _Recording(open_transport(sim_url))
        reader = MeterReader(link, meter_id="m-1", security=_reader_security(tmp_path))
        await link.open()
        try:
            await reader.associate()
            await reader.read_clock_and_registers([REGISTER.obis])
            await reader.release()
        finally:
            await link.close()
        return _sent_counters(link.sent)

    async def main() -> tuple[list[int], list[int]]:
        sim = await serve_meters(
            1, "127.0.0.1", 0, 3, START, lambda: CLOCK, security=MeterSecurity(EK, AK)
        )
        try:
            return await one_read(sim.url(0)), await one_read(sim.url(0))
        finally:
            await sim.close()

    first, second = asyncio.run(main())
    assert len(first) >= 3
    assert len(second) >= 3
    assert first == sorted(set(first))
    assert min(second) > max(first)
    store = CounterStore(tmp_path / "ic")
    key_id = _reader_security(tmp_path).key_id
    assert store.reserved_until("m-1", key_id) > max(second)


def test_wrong_keys_over_tcp_raise_association_error(tmp_path: Path) -> None:
    async def main() -> None:
        sim = await serve_meters(
            1, "127.0.0.1", 0, 3, START, lambda: CLOCK, security=MeterSecurity(EK, AK)
        )
        try:
            with pytest.raises(AssociationError, match="m-7"):
                await read_meter(
                    sim.url(0), security=_reader_security(tmp_path, ak="00" * 16), meter_id="m-7"
                )
        finally:
            await sim.close()

    asyncio.run(main())


def test_tampered_response_over_tcp_ends_the_association(tmp_path: Path) -> None:
    async def main() -> None:
        sim = await serve_meters(
            1, "127.0.0.1", 0, 3, START, lambda: CLOCK, security=MeterSecurity(EK, AK)
        )
        link = open_transport(sim.url(0))
        reader = MeterReader(link, meter_id="m-1", security=_reader_security(tmp_path))
        await link.open()
        try:
            await reader.associate()
            sim.meters[0].script.faults.append(LinkFault("corrupt"))
            with pytest.raises(AuthenticationTagError, match="m-1"):
                await reader.read_clock()
            assert reader.connection.state == ClientState.IDLE
        finally:
            await link.close()
            await sim.close()

    asyncio.run(main())


def test_no_key_material_in_debug_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def main() -> None:
        sim = await serve_meters(
            1,
            "127.0.0.1",
            0,
            3,
            START,
            lambda: CLOCK,
            transport="hdlc",
            security=MeterSecurity(EK, AK),
        )
        try:
            await read_meter(
                sim.url(0),
                transport="hdlc",
                security=_reader_security(tmp_path),
                load_profile=DAY,
                meter_id="m-1",
            )
            with pytest.raises(AssociationError):
                await read_meter(
                    sim.url(0), transport="hdlc", security=_reader_security(tmp_path, ek="11" * 16)
                )
        finally:
            await sim.close()

    asyncio.run(main())
    text = (
        "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
        + caplog.text
    )
    assert "HLS-GMAC" in text or "IC" in text  # the session did log at DEBUG
    for raw in (EK.reveal(), AK.reveal()):
        h = raw.hex()
        for form in (h, h.upper(), " ".join(f"{b:02x}" for b in raw), repr(raw)[2:-1]):
            assert form not in text, "key material leaked"
