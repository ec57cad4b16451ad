"""HLS-GMAC against dlms-cosem 21.3.2 (test-only peer, never imported by edge_core):
dlms-cosem deciphers our glo-get-request, and dlms-cosem's own HLS-GMAC client associates with
our meter side (its AARQ, its f(StoC), its general-glo-ciphering GET) and decodes our answers."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from edge_core.dlms.apdu import AttributeDescriptor, GetRequestNormal
from edge_core.dlms.client import AuthenticationRequired, ClientConnection
from edge_core.dlms.obis import Obis
from edge_core.dlms.security import (
    CounterRange,
    GloCiphered,
    Secret,
    SecurityContext,
)
from edge_core.dlms.server import ServerConnection, ServerState
from edge_core.simulator.model import SimulatedMeter

pytestmark = pytest.mark.peer

EK_RAW = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
AK_RAW = bytes.fromhex("d0d1d2d3d4d5d6d7d8d9dadbdcdddedf")
CLIENT = bytes.fromhex("4d4d4d0000000001")
METER = bytes.fromhex("4d4d4d0000bc614e")
CLOCK = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


def _peer() -> Any:
    return pytest.importorskip("dlms_cosem.security", reason="dlms-cosem is not installed")


def test_peer_deciphers_our_glo_get_request() -> None:
    peer = _peer()
    ctx = SecurityContext(CLIENT, Secret(EK_RAW), Secret(AK_RAW))
    ctx.grant(CounterRange(41, 100))
    meter = SimulatedMeter(0, seed=3, start=date(2026, 3, 1), clock=lambda: CLOCK)
    server = ServerConnection(meter, security=lambda: _meter_context(0))
    client = ClientConnection(security=ctx, meter="m")
    aare = server.receive_apdu(client.associate())
    assert aare is not None
    event = client.receive_apdu(aare)
    assert isinstance(event, AuthenticationRequired)
    client.receive_apdu(server.receive_apdu(event.next_request) or b"")
    descriptor = AttributeDescriptor(8, Obis(0, 0, 1, 0, 0, 255), 2)
    wire = client.get(descriptor)
    env = GloCiphered.from_bytes(wire)
    sc = peer.SecurityControlField(security_suite=0, authenticated=True, encrypted=True)
    plain = peer.decrypt(sc, CLIENT, env.invocation_counter, EK_RAW, env.ciphered, AK_RAW)
    assert plain == GetRequestNormal(descriptor, None, plain[2] & 0x0F).to_bytes()
    assert env.invocation_counter >= 41


def _meter_context(start: int) -> SecurityContext:
    ctx = SecurityContext(METER, Secret(EK_RAW), Secret(AK_RAW))
    # dlms-cosem 21.3.2 refuses a meter invocation counter of 0 (it wants > its initial 0).
    ctx.grant(CounterRange(start + 1, start + 1000))
    return ctx


def test_peer_hls_client_associates_and_reads_our_meter() -> None:
    pytest.importorskip("dlms_cosem.connection", reason="dlms-cosem is not installed")
    from dlms_cosem import cosem, enumerations, utils  # type: ignore[import-untyped]
    from dlms_cosem import dlms_data as peer_data
    from dlms_cosem.connection import DlmsConnection  # type: ignore[import-untyped]
    from dlms_cosem.protocol import xdlms  # type: ignore[import-untyped]

    meter = SimulatedMeter(0, seed=3, start=date(2026, 3, 1), clock=lambda: CLOCK)
    server = ServerConnection(meter, security=lambda: _meter_context(0))
    conn = DlmsConnection(
        client_system_title=CLIENT,
        global_encryption_key=EK_RAW,
        global_authentication_key=AK_RAW,
        authentication_method=enumerations.AuthenticationMechanism.HLS_GMAC,
        challenge_length=16,
        client_invocation_counter=7,
    )

    def round_trip(event: Any) -> Any:
        answer = server.receive_apdu(conn.send(event))
        assert answer is not None
        conn.receive_data(answer)
        return conn.next_event()

    aare = round_trip(conn.get_aarq())
    assert aare.result == enumerations.AssociationResult.ACCEPTED
    assert conn.meter_system_title == METER
    assert server.state == ServerState.AUTHENTICATING
    reply = round_trip(
        xdlms.ActionRequestNormal(
            cosem_method=cosem.CosemMethod(
                enumerations.CosemInterface.ASSOCIATION_LN, cosem.Obis(0, 0, 40, 0, 0), 1
            ),
            data=peer_data.OctetStringData(conn.get_hls_reply()).to_bytes(),
        )
    )
    # dlms-cosem verified our f(CtoS) with its own GMAC before accepting the association.
    assert isinstance(reply, xdlms.ActionResponseNormalWithData)
    assert server.state == ServerState.ASSOCIATED
    assert str(conn.state.current_state) == "READY"
    got = round_trip(
        xdlms.GetRequestNormal(
            cosem.CosemAttribute(enumerations.CosemInterface.REGISTER, cosem.Obis(1, 0, 1, 8, 0), 2)
        )
    )
    parsed = utils.parse_as_dlms_data(got.data)
    ours = meter.get(AttributeDescriptor(3, Obis(1, 0, 1, 8, 0, 255), 2), None)
    assert parsed == ours.value
