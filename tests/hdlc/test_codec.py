"""Frame codec, CRC, parameters and stream parser: hand-checked cases."""

from __future__ import annotations

import binascii

import pytest

from edge_core.dlms.hdlc import (
    Control,
    FrameParser,
    FrameType,
    HdlcAddress,
    HdlcFrame,
    HdlcParameters,
    fcs16,
    negotiate,
    segment,
)
from edge_core.errors import ChecksumError, FrameError

SERVER = HdlcAddress.server(1, 17)
CLIENT = HdlcAddress.client(16)


def test_crc_x25_check_value_and_not_crc_hqx():
    assert fcs16(b"123456789") == 0x906E  # CRC-16/X.25 catalogue check value
    assert binascii.crc_hqx(b"123456789", 0xFFFF) != 0x906E


@pytest.mark.parametrize(
    ("addr", "wire"),
    [
        (HdlcAddress.client(16), "21"),
        (HdlcAddress.server(1, 17), "0223"),
        (HdlcAddress.server(1, 2836), "00022c29"),
        (HdlcAddress.server(1), "03"),
    ],
)
def test_address_both_ways(addr, wire):
    assert addr.encode().hex() == wire
    assert HdlcAddress.decode(bytes.fromhex(wire)) == addr


@pytest.mark.parametrize("bad", ["", "02", "020202", "0202020203", "000000"])
def test_bad_address(bad):
    with pytest.raises(FrameError):
        HdlcAddress.decode(bytes.fromhex(bad))


@pytest.mark.parametrize(
    ("ctrl", "byte"),
    [
        (Control(FrameType.SNRM), 0x93),
        (Control(FrameType.UA), 0x73),
        (Control(FrameType.DISC), 0x53),
        (Control(FrameType.DM), 0x1F),
        (Control(FrameType.FRMR), 0x97),
        (Control(FrameType.UI), 0x13),
        (Control(FrameType.UI, False), 0x03),
        (Control(FrameType.I, True, 0, 0), 0x10),
        (Control(FrameType.I, True, 2, 1), 0x34),
        (Control(FrameType.RR, True, 0, 1), 0x31),
        (Control(FrameType.RNR, False, 0, 7), 0xE5),
    ],
)
def test_control_both_ways(ctrl, byte):
    assert ctrl.encode() == byte
    assert Control.decode(byte) == ctrl


def test_snrm_bytes_and_no_hcs_without_information():
    frame = HdlcFrame(SERVER, CLIENT, Control(FrameType.SNRM))
    assert frame.encode().hex() == "7ea00802232193bd647e"
    assert HdlcFrame.decode(frame.encode()) == frame


def test_decode_rejects_bad_hcs_and_fcs():
    good = bytearray(HdlcFrame(SERVER, CLIENT, Control(FrameType.I), b"\xe6\xe6\x00\x01").encode())
    bad_fcs = bytearray(good)
    bad_fcs[-3] ^= 1
    with pytest.raises(ChecksumError):
        HdlcFrame.decode(bytes(bad_fcs))
    bad_hcs = bytearray(good)
    bad_hcs[7] ^= 0xFF
    bad_hcs[-3:-1] = fcs16(bad_hcs[1:-3]).to_bytes(2, "little")
    with pytest.raises(ChecksumError, match="HCS"):
        HdlcFrame.decode(bytes(bad_hcs))


def test_parameters_encode_decode_and_defaults():
    p = HdlcParameters(1024, 512, 7, 3)
    assert HdlcParameters.decode(p.encode()) == p
    assert p.encode()[:3] == bytes([0x81, 0x80, len(p.encode()) - 3])
    assert HdlcParameters.decode(b"") == HdlcParameters(128, 128, 1, 1)
    # a UA that leaves out the windows keeps the standard's default window 1
    assert HdlcParameters.decode(bytes.fromhex("8180060501f20601f2")) == HdlcParameters(
        242, 242, 1, 1
    )


def test_negotiation_takes_minimum_of_each_direction():
    client = HdlcParameters(1024, 1024, 7, 7)
    server_ua = HdlcParameters(max_info_tx=410, max_info_rx=242, window_tx=1, window_rx=3)
    assert negotiate(client, server_ua) == HdlcParameters(242, 410, 3, 1)


def test_segment():
    assert segment(b"", 10) == [b""]
    assert segment(bytes(25), 10) == [bytes(10), bytes(10), bytes(5)]


def test_frame_too_long_refused():
    with pytest.raises(FrameError):
        HdlcFrame(SERVER, CLIENT, Control(FrameType.I), bytes(2040)).encode()


def test_parser_counts_every_byte_through_garbage_and_corruption():
    f1 = HdlcFrame(SERVER, CLIENT, Control(FrameType.I, True, 1, 2), b"\x7e" * 20).encode()
    f2 = HdlcFrame(CLIENT, SERVER, Control(FrameType.RR, True, 0, 3)).encode()
    broken = bytearray(f1)
    broken[-2] ^= 0x55  # FCS broken
    stream = b"\x00\x7e\xa7\xff" + bytes(broken) + f1 + b"\x7e\x7e" + f2 + b"junk"
    parser = FrameParser()
    frames = []
    for i in range(0, len(stream), 3):
        frames += parser.feed(stream[i : i + 3])
    assert [f.encode() for f in frames] == [f1, f2]
    s = parser.stats
    assert s.frame_bytes + s.discarded_bytes + parser.buffered == len(stream)
    assert s.rejected["fcs"] >= 1


def test_parser_shared_flag_between_frames():
    f1 = HdlcFrame(SERVER, CLIENT, Control(FrameType.DISC)).encode()
    f2 = HdlcFrame(CLIENT, SERVER, Control(FrameType.UA)).encode()
    stream = f1 + f2[1:]  # the closing flag of f1 opens f2
    parser = FrameParser()
    assert [f.kind for f in parser.feed(stream)] == [FrameType.DISC, FrameType.UA]
    assert parser.stats.frame_bytes == len(stream)


def test_parser_does_not_wait_for_bogus_long_frame():
    good = HdlcFrame(CLIENT, SERVER, Control(FrameType.I), b"\xe6\xe7\x00\xc4").encode()
    bogus = bytes.fromhex("7ea7ff022103100000")  # claims 2047 bytes, bad HCS
    parser = FrameParser()
    assert [f.encode() for f in parser.feed(bogus + good)] == [good]
    assert parser.stats.rejected["hcs"] == 1


def test_discard_partial():
    parser = FrameParser()
    good = HdlcFrame(CLIENT, SERVER, Control(FrameType.UA)).encode()
    assert parser.feed(good[:5]) == []
    assert parser.discard_partial() == 5
    assert parser.feed(good) != []
