"""Cross-checks with HDLC codecs written outside the project (test-only imports).

dlms-cosem 21.3.2 (MIT release) and gurux-dlms (GPL-2) are peers here only; edge_core never
imports them.
"""

from __future__ import annotations

import os

import pytest

from edge_core.dlms.hdlc import (
    Control,
    FrameParser,
    FrameType,
    HdlcAddress,
    HdlcFrame,
    HdlcParameters,
)
from edge_core.dlms.hdlc_server import HdlcServer

pytestmark = pytest.mark.peer

SERVER = HdlcAddress.server(1, 17)
CLIENT = HdlcAddress.client(16)


@pytest.fixture
def dc():
    frames = pytest.importorskip("dlms_cosem.hdlc.frames")
    address = pytest.importorskip("dlms_cosem.hdlc.address")
    return frames, address


def test_dlms_cosem_frames_parse_with_ours(dc):
    F, A = dc
    srv = A.HdlcAddress(1, 17, "server")
    cli = A.HdlcAddress(16, None, "client")
    cases = [
        (F.SetNormalResponseModeFrame(srv, cli), Control(FrameType.SNRM), b""),
        (F.DisconnectFrame(srv, cli), Control(FrameType.DISC), b""),
        (
            F.ReceiveReadyFrame(srv, cli, receive_sequence_number=5),
            Control(FrameType.RR, True, 0, 5),
            b"",
        ),
    ]
    for ssn in range(8):
        payload = os.urandom(1 + ssn * 17)
        cases.append(
            (
                F.InformationFrame(
                    srv,
                    cli,
                    payload=payload,
                    send_sequence_number=ssn,
                    receive_sequence_number=7 - ssn,
                ),
                Control(FrameType.I, True, ssn, 7 - ssn),
                payload,
            )
        )
    for theirs, control, info in cases:
        raw = theirs.to_bytes()
        ours = HdlcFrame.decode(raw)
        assert (ours.destination, ours.source, ours.control, ours.information) == (
            SERVER,
            CLIENT,
            control,
            info,
        )
        assert ours.encode() == raw  # byte-identical both ways


def test_our_frames_parse_with_dlms_cosem(dc):
    F, _ = dc
    params = HdlcParameters(1024, 1024, 7, 7)
    ua = HdlcFrame(CLIENT, SERVER, Control(FrameType.UA), params.encode())
    theirs = F.UnNumberedAcknowledgmentFrame.from_bytes(ua.encode())
    assert theirs.payload == params.encode()
    assert theirs.source_address.physical_address == 17
    for ssn in range(8):
        info = os.urandom(5 + ssn * 31)
        i = HdlcFrame(CLIENT, SERVER, Control(FrameType.I, True, ssn, (ssn + 3) % 8), info)
        t = F.InformationFrame.from_bytes(i.encode())
        assert (t.payload, t.send_sequence_number, t.receive_sequence_number) == (
            info,
            ssn,
            (ssn + 3) % 8,
        )
        assert t.destination_address.logical_address == 16
    rr = HdlcFrame(CLIENT, SERVER, Control(FrameType.RR, True, 0, 6))
    assert F.ReceiveReadyFrame.from_bytes(rr.encode()).receive_sequence_number == 6
    seg = HdlcFrame(CLIENT, SERVER, Control(FrameType.I, False, 1, 2), b"\x01" * 100, True)
    assert F.InformationFrame.from_bytes(seg.encode()).segmented is True


def test_gurux_client_against_our_server():
    gurux = pytest.importorskip("gurux_dlms")
    enums = pytest.importorskip("gurux_dlms.enums")
    c = gurux.GXDLMSClient(
        True,
        16,
        gurux.GXDLMSClient.getServerAddress(1, 17),
        enums.Authentication.NONE,
        None,
        enums.InterfaceType.HDLC,
    )
    c.limits.maxInfoTX = 512
    c.limits.maxInfoRX = 300
    c.limits.windowSizeTX = 3
    c.limits.windowSizeRX = 2
    snrm = bytes(c.snrmRequest())
    ours = HdlcFrame.decode(snrm)
    assert ours.kind is FrameType.SNRM
    assert ours.destination == SERVER
    assert HdlcParameters.decode(ours.information) == HdlcParameters(512, 300, 3, 2)
    got = []
    server = HdlcServer(
        lambda apdu: got.append(apdu) or b"\x61\x00", SERVER, HdlcParameters(1024, 256, 7, 1)
    )
    server.receive_data(snrm)
    reply = gurux.GXReplyData()
    assert c.getData(gurux.GXByteBuffer(server.data_to_send()), reply, None)
    c.parseUAResponse(reply.data)
    # gurux's view: tx = min(512, our rx 256), rx = min(300, our tx 1024), windows 1 / 2
    assert (c.limits.maxInfoTX, c.limits.maxInfoRX) == (256, 300)
    assert (c.limits.windowSizeTX, c.limits.windowSizeRX) == (1, 2)
    aarq_frames = [bytes(f) for f in c.aarqRequest()]
    parsed = FrameParser().feed(b"".join(aarq_frames))
    assert len(parsed) == len(aarq_frames)
    assert parsed[0].kind is FrameType.I
    server.receive_data(b"".join(aarq_frames))
    assert got
    assert got[0].startswith(b"\x60")  # AARQ reached the handler without LLC
    answer = FrameParser().feed(server.data_to_send())
    assert answer[-1].information == b"\xe6\xe7\x00\x61\x00"
