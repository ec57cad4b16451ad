"""Bounded fuzz: random and mutated bytes into every decoder. Only ProtocolError subclasses
may escape (DecodeError, FrameError); the server connection must never raise at all."""

from __future__ import annotations

import contextlib
from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_core.dlms.apdu import MethodDescriptor, decode_apdu, decode_results
from edge_core.dlms.axdr import decode_data
from edge_core.dlms.client import ClientConnection
from edge_core.dlms.cosem import CaptureObject, CosemDateTime, ScalerUnit
from edge_core.dlms.obis import Obis
from edge_core.dlms.server import ServerConnection
from edge_core.dlms.wrapper import WrapperDecoder
from edge_core.errors import AmiError, ProtocolError
from edge_core.simulator.model import SimulatedMeter
from tests.dlms.vectors import APDU_VECTORS, AXDR_VECTORS

SEEDS = [bytes.fromhex(h) for _, h, _ in APDU_VECTORS + AXDR_VECTORS]
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _mutated() -> st.SearchStrategy[bytes]:
    """Known-good messages with a byte changed, cut short or extended."""

    def mutate(args: tuple[bytes, int, int, int]) -> bytes:
        seed, pos, value, mode = args
        if not seed:
            return bytes([value])
        pos %= len(seed)
        if mode == 0:
            return seed[:pos] + bytes([value]) + seed[pos + 1 :]
        if mode == 1:
            return seed[:pos]
        return seed[:pos] + bytes([value]) + seed[pos:]

    return st.tuples(
        st.sampled_from(SEEDS), st.integers(0, 400), st.integers(0, 255), st.integers(0, 2)
    ).map(mutate)


INPUTS = st.one_of(st.binary(max_size=300), _mutated())


@FUZZ
@given(INPUTS)
def test_decoders_raise_only_protocol_errors(raw: bytes) -> None:
    for decoder in (
        decode_data,
        decode_apdu,
        decode_results,
        Obis.from_bytes,
        CosemDateTime.from_bytes,
    ):
        with contextlib.suppress(ProtocolError):
            decoder(raw)
    with contextlib.suppress(ProtocolError):
        CosemDateTime.from_bytes(raw[:12].ljust(12, b"\x00")).to_datetime()
    for value_decoder in (ScalerUnit.from_data, CaptureObject.from_data):
        with contextlib.suppress(ProtocolError):
            value_decoder(decode_data(raw))


@FUZZ
@given(st.lists(st.binary(max_size=40), max_size=8))
def test_wrapper_decoder_raises_only_frame_errors(chunks: list[bytes]) -> None:
    decoder = WrapperDecoder()
    try:
        for chunk in chunks:
            decoder.feed(chunk)
    except ProtocolError:
        pass


@FUZZ
@given(INPUTS)
def test_client_raises_only_ami_errors(raw: bytes) -> None:
    c = ClientConnection()
    c.associate()
    with contextlib.suppress(AmiError):
        c.receive_apdu(raw)


@pytest.fixture(scope="module")
def meter() -> SimulatedMeter:
    return SimulatedMeter(
        0, seed=1, start=date(2026, 11, 25), clock=lambda: datetime(2026, 11, 26, tzinfo=UTC)
    )


@FUZZ
@given(st.lists(INPUTS, min_size=1, max_size=4))
def test_server_never_raises(meter: SimulatedMeter, requests: list[bytes]) -> None:
    s = ServerConnection(meter, max_pdu_size=128)
    s.receive_apdu(bytes.fromhex("601da109060760857405080101be10040e01000000065f1f0400007e1f04b0"))
    for raw in requests:
        answer = s.receive_apdu(raw)
        if answer is not None:
            decode_apdu(answer)  # whatever it answers is well-formed


_SET_ACTION_SEEDS = [
    bytes.fromhex(h)
    for h in (
        "c101c1000800000100 00ff0200 090c07ea0b1a040a050000ffc400".replace(" ", ""),
        "c102c1000100006001 00ff020000000000010209 02".replace(" ", ""),
        "c103c3010000000202 6162".replace(" ", ""),
        "c501c100",
        "c503c10000000002",
        "c301c1000f0000280000ff0101091110101010101010101010101010101010101010",
        "c701c100",
        "c701c1000100090201 02".replace(" ", ""),
    )
]


@FUZZ
@given(
    st.sampled_from(_SET_ACTION_SEEDS),
    st.integers(0, 63),
    st.integers(0, 255),
    st.integers(0, 2),
)
def test_set_action_mutations_raise_only_protocol_errors(
    seed: bytes, pos: int, value: int, mode: int
) -> None:
    pos %= len(seed)
    data = (
        seed[:pos] + bytes([value]) + seed[pos + 1 :]
        if mode == 0
        else seed[:pos]
        if mode == 1
        else seed[:pos] + bytes([value]) + seed[pos:]
    )
    with contextlib.suppress(ProtocolError):
        decode_apdu(data)
    meter = SimulatedMeter(
        0, seed=1, start=date(2026, 1, 1), clock=lambda: datetime(2026, 1, 2, tzinfo=UTC)
    )
    server = ServerConnection(meter)
    client = ClientConnection()
    aare = server.receive_apdu(client.associate())
    assert aare is not None
    server.receive_apdu(data)  # never raises (robustness rule)
    client.receive_apdu(aare)
    client.action(MethodDescriptor(7, Obis(1, 0, 99, 1, 0, 255), 1))
    # a mutated answer to an ACTION: a typed error or an event, nothing else
    with contextlib.suppress(AmiError):
        client.receive_apdu(data)
