"""Property tests: codec symmetry, stream parsing through garbage and splits, fuzzing."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_core.dlms.hdlc import (
    Control,
    FrameParser,
    HdlcAddress,
    HdlcClient,
    HdlcFrame,
    HdlcParameters,
)
from edge_core.dlms.hdlc_server import HdlcServer
from edge_core.errors import ProtocolError
from tests.hdlc.strategies import addresses, controls, frames, parameters

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(frames)
def test_frame_round_trip(frame):
    assert HdlcFrame.decode(frame.encode()) == frame


@FAST
@given(addresses)
def test_address_round_trip(addr):
    assert HdlcAddress.decode(addr.encode()) == addr


@FAST
@given(controls)
def test_control_round_trip(ctrl):
    assert Control.decode(ctrl.encode()) == ctrl


@FAST
@given(parameters)
def test_parameters_round_trip(p):
    assert HdlcParameters.decode(p.encode()) == p


@FAST
@given(
    st.lists(st.tuples(st.binary(max_size=20), frames), max_size=8),
    st.binary(max_size=20),
    st.lists(st.integers(1, 64), min_size=1, max_size=20),
)
def test_stream_with_garbage_and_splits(items, tail, splits):
    """Good frames separated by random garbage, fed in random pieces, all come back in order.

    Garbage may accidentally contain a valid frame (practically never: it needs HCS and FCS);
    so the check is that the good frames appear in order as a subsequence, and every byte is
    accounted for.
    """
    stream = b"".join(g + f.encode() for g, f in items) + tail
    parser = FrameParser()
    got, i, k = [], 0, 0
    while i < len(stream):
        n = splits[k % len(splits)]
        got += parser.feed(stream[i : i + n])
        i, k = i + n, k + 1
    it = iter(got)
    assert all(any(g == f for g in it) for _, f in items)
    s = parser.stats
    assert s.frame_bytes + s.discarded_bytes + parser.buffered == len(stream)
    assert parser.buffered <= len(stream)


@FAST
@given(st.binary(max_size=600))
def test_fuzz_decoders_raise_only_protocol_errors(data):
    for decode in (HdlcFrame.decode, HdlcAddress.decode, HdlcParameters.decode):
        with contextlib.suppress(ProtocolError):
            decode(data)
    if data:
        with contextlib.suppress(ProtocolError):
            Control.decode(data[0])
    parser = FrameParser()
    parser.feed(data)
    s = parser.stats
    assert s.frame_bytes + s.discarded_bytes + parser.buffered == len(data)


@FAST
@given(st.binary(max_size=400), st.binary(max_size=400))
def test_fuzz_state_machines_never_raise(a, b):
    server = HdlcServer(lambda apdu: apdu, HdlcAddress.server(1, 17))
    client = HdlcClient(HdlcAddress.client(16), HdlcAddress.server(1, 17))
    client.connect()
    server.receive_data(client.data_to_send() + a)
    client.receive_data(server.data_to_send() + b)
    server.receive_data(client.data_to_send())


@FAST
@given(st.lists(st.sampled_from([0x7E, 0xA0, 0xA8, 0x21, 0x03, 0x10, 0x00]), max_size=300))
def test_fuzz_flag_heavy_streams_do_not_stall(data):
    parser = FrameParser()
    parser.feed(bytes(data))
    # a partial candidate may hold at most one maximum-length frame
    assert parser.buffered <= 2050
