"""HdlcClient <-> HdlcServer, sans-I/O: negotiation, segmentation, windows, loss, errors."""

from __future__ import annotations

import os

import pytest

from edge_core.dlms.hdlc import (
    ApduReceived,
    ClientState,
    Connected,
    Control,
    Disconnected,
    FrameParser,
    FrameRejectError,
    FrameType,
    HdlcAddress,
    HdlcClient,
    HdlcFrame,
    HdlcParameters,
    PeerError,
    UnexpectedFrameError,
)
from edge_core.dlms.hdlc_server import HdlcServer

CLIENT = HdlcAddress.client(16)
SERVER = HdlcAddress.server(1, 17)


def pump(client: HdlcClient, server: HdlcServer, lose=lambda direction, n: False, limit=500):
    """Move bytes until both outboxes are empty; ``lose(direction, index)`` drops a write."""
    events = []
    for n in range(1, limit + 1):
        up = client.data_to_send()
        if not up:
            return events
        if not lose("up", n):
            server.receive_data(up)
        down = server.data_to_send()
        if down and not lose("down", n):
            events += client.receive_data(down)
    raise AssertionError("no quiescence")


def connected_pair(proposal=None, limits=None, response=b"\xc4\x01"):
    server = HdlcServer(lambda apdu: response, SERVER, limits)
    client = HdlcClient(CLIENT, SERVER, proposal)
    client.connect()
    events = pump(client, server)
    assert events == [Connected(client.parameters)]
    assert client.state is ClientState.CONNECTED
    return client, server


def test_snrm_proposal_and_ua_negotiation():
    client, server = connected_pair(
        HdlcParameters(1024, 512, 7, 4), HdlcParameters(256, 2000, 2, 7)
    )
    # client tx = min(client tx 1024, server rx 2000); client rx = min(512, server tx 256)
    assert client.parameters == HdlcParameters(1024, 256, 7, 2)
    assert server.parameters == client.parameters.flipped()


def test_snrm_without_parameters_uses_defaults():
    server = HdlcServer(lambda a: a, SERVER)
    client = HdlcClient(CLIENT, SERVER, send_parameters=False)
    client.connect()
    snrm = FrameParser().feed(client.data_to_send())[0]
    assert snrm.information == b""
    server.receive_data(snrm.encode())
    client.receive_data(server.data_to_send())
    assert client.parameters == HdlcParameters(128, 128, 1, 1)


@pytest.mark.parametrize(
    ("limits", "request_size"),
    [
        (HdlcParameters(128, 128, 1, 1), 10),
        (HdlcParameters(128, 128, 1, 1), 1000),
        (HdlcParameters(300, 200, 3, 2), 1000),
        (HdlcParameters(1024, 1024, 7, 7), 5000),
    ],
)
def test_segmented_request_and_response(limits, request_size):
    response = os.urandom(6000)
    got_requests = []

    def handler(apdu):
        got_requests.append(apdu)
        return response

    server = HdlcServer(handler, SERVER, limits)
    client = HdlcClient(CLIENT, SERVER)
    client.connect()
    pump(client, server)
    request = os.urandom(request_size)
    for _ in range(3):  # sequence numbers wrap modulo 8 across requests
        client.send_apdu(request)
        assert pump(client, server) == [ApduReceived(response)]
    assert got_requests == [request] * 3
    assert not client.busy


def test_response_frames_respect_negotiated_size_and_window():
    client, server = connected_pair(limits=HdlcParameters(200, 200, 3, 3), response=bytes(1500))
    client.send_apdu(b"\xc0\x01")
    server.receive_data(client.data_to_send())
    first_burst = FrameParser().feed(server.data_to_send())
    assert len(first_burst) == 3
    assert all(len(f.information) <= 200 for f in first_burst)
    assert [f.control.poll_final for f in first_burst] == [False, False, True]
    assert [f.control.ssn for f in first_burst] == [0, 1, 2]
    for f in first_burst:
        client.receive_frame(f)
    rr = FrameParser().feed(client.data_to_send())
    assert [(f.kind, f.control.rsn) for f in rr] == [(FrameType.RR, 3)]


@pytest.mark.parametrize("lost", [("up", 2), ("down", 2), ("down", 3), ("up", 4), ("down", 5)])
def test_lost_frames_recovered_by_timeout_resend(lost):
    response = os.urandom(900)
    server = HdlcServer(lambda a: response, SERVER, HdlcParameters(128, 128, 1, 1))
    client = HdlcClient(CLIENT, SERVER)
    client.connect()
    pump(client, server)
    client.send_apdu(os.urandom(300))
    dropped = []

    def lose(direction, n):
        if (direction, n) == lost and not dropped:
            dropped.append(n)
            return True
        return False

    events = pump(client, server, lose)
    for _ in range(3):
        if any(isinstance(e, ApduReceived) for e in events):
            break
        client.on_timeout()
        events += pump(client, server)
    assert dropped
    assert [e for e in events if isinstance(e, ApduReceived)] == [ApduReceived(response)]
    assert server.requests == 1


def test_duplicate_iframe_not_delivered_twice():
    client, server = connected_pair(response=b"\xc4\x01\x00")
    client.send_apdu(b"\xc0")
    server.receive_data(client.data_to_send())
    answer = server.data_to_send()
    assert client.receive_data(answer) == [ApduReceived(b"\xc4\x01\x00")]
    events = client.receive_data(answer)
    assert len(events) == 1
    assert isinstance(events[0], PeerError)
    assert isinstance(events[0].error, UnexpectedFrameError)


def test_frmr_and_unexpected_frames_are_typed_and_recoverable():
    client, server = connected_pair()
    frmr = HdlcFrame(CLIENT, SERVER, Control(FrameType.FRMR), b"\x10")
    events = client.receive_frame(frmr)
    assert isinstance(events[0], PeerError)
    assert isinstance(events[0].error, FrameRejectError)
    assert client.state is ClientState.DISCONNECTED
    # recoverable: connect again
    client.connect()
    assert isinstance(pump(client, server)[0], Connected)
    ua = HdlcFrame(CLIENT, SERVER, Control(FrameType.UA))
    events = client.receive_frame(ua)
    assert isinstance(events[0].error, UnexpectedFrameError)
    assert client.state is ClientState.CONNECTED


def test_disconnect_ua_and_dm():
    client, server = connected_pair()
    client.disconnect()
    assert pump(client, server) == [Disconnected(False)]
    assert client.state is ClientState.DISCONNECTED
    assert not server.connected
    # I-frame to a disconnected server is answered with DM
    client.state = ClientState.CONNECTED
    client.send_apdu(b"\xc0")
    events = pump(client, server)
    assert events == [Disconnected(True)]


def test_server_ignores_other_address():
    server = HdlcServer(lambda a: a, SERVER)
    other = HdlcFrame(HdlcAddress.server(1, 18), CLIENT, Control(FrameType.SNRM))
    server.receive_data(other.encode())
    assert server.data_to_send() == b""


def test_cannot_send_while_busy_or_disconnected():
    client = HdlcClient(CLIENT, SERVER)
    with pytest.raises(UnexpectedFrameError):
        client.send_apdu(b"\xc0")
    client, _ = connected_pair()
    client.send_apdu(b"\xc0")
    with pytest.raises(UnexpectedFrameError):
        client.send_apdu(b"\xc0")
