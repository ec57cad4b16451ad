"""HLS-GMAC (mechanism 5): challenges, f(StoC)/f(CtoS), the AARQ/AARE fields and the
reply_to_HLS_authentication ACTION, run as a whole client/meter handshake."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_core.dlms.apdu import (
    AARE,
    AARQ,
    AssociationResult,
    Conformance,
    InitiateRequest,
    InitiateResponse,
)
from edge_core.dlms.security import (
    HLS_GMAC_MECHANISM_ID,
    HLS_GMAC_MECHANISM_OID,
    AuthenticationTagError,
    CounterRange,
    HlsReplyRequest,
    HlsReplyResponse,
    Secret,
    SecurityContext,
    hls_gmac_response,
    make_challenge,
    verify_hls_gmac_response,
)
from edge_core.errors import DecodeError, EncodeError

from .helpers import vector
from .strategies import challenges, counters, keys, system_titles

EK = Secret(bytes.fromhex("000102030405060708090a0b0c0d0e0f"))
AK = Secret(bytes.fromhex("d0d1d2d3d4d5d6d7d8d9dadbdcdddedf"))
CLIENT = bytes.fromhex("4d4d4d0000000001")
METER = bytes.fromhex("4d4d4d0000bc614e")
CONFORMANCE = Conformance(0x001E1D)


def test_greenbook_f_stoc() -> None:
    # Green Book HLS-GMAC example: f(StoC) = SC 10 || IC 00000001 || GMAC.
    f = hls_gmac_response(CLIENT, 1, b"P6wRJ21F", encryption_key=EK, authentication_key=AK)
    assert f.hex() == "10000000011a52fe7dd3e72748973c1e28"
    assert (
        verify_hls_gmac_response(CLIENT, b"P6wRJ21F", f, encryption_key=EK, authentication_key=AK)
        == 1
    )


@settings(deadline=None)
@given(system_titles, counters, keys, keys, challenges, st.data())
def test_f_verifies_and_any_flip_fails(
    title: bytes, ic: int, ek: Secret, ak: Secret, challenge: bytes, data: st.DataObject
) -> None:
    f = hls_gmac_response(title, ic, challenge, encryption_key=ek, authentication_key=ak)
    assert len(f) == 17
    assert (
        verify_hls_gmac_response(title, challenge, f, encryption_key=ek, authentication_key=ak)
        == ic
    )
    bit = data.draw(st.integers(min_value=0, max_value=17 * 8 - 1))
    bad = bytearray(f)
    bad[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(DecodeError):  # AuthenticationTagError, or a bad security control
        verify_hls_gmac_response(
            title, challenge, bytes(bad), encryption_key=ek, authentication_key=ak
        )
    other = bytes([challenge[0] ^ 1]) + challenge[1:]
    with pytest.raises(AuthenticationTagError):
        verify_hls_gmac_response(title, other, f, encryption_key=ek, authentication_key=ak)


def test_challenge_lengths() -> None:
    assert len(make_challenge()) == 16
    assert len(make_challenge(8)) == 8
    assert len(make_challenge(64)) == 64
    assert make_challenge(8) != make_challenge(8)
    assert make_challenge(8, random=lambda n: b"A" * n) == b"AAAAAAAA"
    for bad in (7, 65):
        with pytest.raises(EncodeError):
            make_challenge(bad)
    with pytest.raises(DecodeError):
        verify_hls_gmac_response(
            CLIENT, b"short", bytes(17), encryption_key=EK, authentication_key=AK
        )
    with pytest.raises(DecodeError):
        hls_gmac_response(CLIENT, 1, b"x" * 65, encryption_key=EK, authentication_key=AK)


def test_action_request_bytes() -> None:
    f = bytes.fromhex("10000000011a52fe7dd3e72748973c1e28")
    raw = HlsReplyRequest(0xC1, f).to_bytes()
    assert raw.hex() == "c301c1000f0000280000ff01010911" + f.hex()
    assert HlsReplyRequest.from_bytes(raw) == HlsReplyRequest(0xC1, f)
    for cut in range(len(raw)):
        with pytest.raises(DecodeError):
            HlsReplyRequest.from_bytes(raw[:cut])
    with pytest.raises(DecodeError):  # method 2, not reply_to_HLS_authentication
        HlsReplyRequest.from_bytes(raw[:11] + b"\x02" + raw[12:])


def test_action_response_bytes() -> None:
    f = bytes(range(17))
    raw = HlsReplyResponse(0xC1, 0, f).to_bytes()
    assert raw.hex() == "c701c10001000911" + f.hex()
    assert HlsReplyResponse.from_bytes(raw) == HlsReplyResponse(0xC1, 0, f)
    refused = HlsReplyResponse(0xC1, 250).to_bytes()
    assert refused.hex() == "c701c1fa00"
    assert HlsReplyResponse.from_bytes(refused) == HlsReplyResponse(0xC1, 250, None)
    # Meters that leave out the optional-data byte altogether (FIELD-NOTES).
    assert HlsReplyResponse.from_bytes(bytes.fromhex("c701c1fa")).response is None
    for bad in ("c701c1", "c701c10002", "c701c1000101", "c701c100010009"):
        with pytest.raises(DecodeError):
            HlsReplyResponse.from_bytes(bytes.fromhex(bad))


@settings(deadline=None)
@given(st.integers(0, 255), st.binary(max_size=300))
def test_action_codecs_round_trip(invoke: int, value: bytes) -> None:
    assert HlsReplyRequest.from_bytes(HlsReplyRequest(invoke, value).to_bytes()).response == value
    assert (
        HlsReplyResponse.from_bytes(HlsReplyResponse(invoke, 0, value).to_bytes()).response == value
    )


def _handshake(client_keys: tuple[Secret, Secret], meter_keys: tuple[Secret, Secret]) -> bytes:
    """Run AARQ -> AARE -> ACTION -> ACTION response with the real ACSE codec; returns the
    meter's f(CtoS) after the client verified it."""
    client = SecurityContext(CLIENT, *client_keys)
    meter = SecurityContext(METER, *meter_keys)
    client.grant(CounterRange(0, 10))
    meter.grant(CounterRange(0, 10))

    ctos = make_challenge(16)
    fields = client.association_fields(ctos)
    aarq = AARQ(
        InitiateRequest(CONFORMANCE),
        application_context=fields.application_context,
        mechanism=fields.mechanism,
        authentication_value=fields.authentication_value,
        calling_ap_title=fields.ap_title,
    ).to_bytes()
    assert HLS_GMAC_MECHANISM_OID in aarq
    assert bytes.fromhex("a60a0408") + CLIENT in aarq
    assert bytes.fromhex("ac128010") + ctos in aarq

    got = AARQ.from_bytes(aarq)
    assert got.mechanism == HLS_GMAC_MECHANISM_ID
    assert got.calling_ap_title is not None
    assert got.authentication_value is not None
    meter.learn_peer_system_title(got.calling_ap_title)
    stoc = make_challenge(32)
    mfields = meter.association_fields(stoc)
    aare = AARE(
        AssociationResult.ACCEPTED,
        0x0E,  # authentication-required
        InitiateResponse(CONFORMANCE, 1024),
        application_context=mfields.application_context,
        mechanism=mfields.mechanism,
        authentication_value=mfields.authentication_value,
        responding_ap_title=mfields.ap_title,
    ).to_bytes()

    answer = AARE.from_bytes(aare)
    assert answer.responding_ap_title is not None
    assert answer.authentication_value is not None
    client.learn_peer_system_title(answer.responding_ap_title)
    request = HlsReplyRequest(0xC1, client.hls_response(answer.authentication_value)).to_bytes()

    call = HlsReplyRequest.from_bytes(request)
    try:
        meter.verify_hls_response(stoc, call.response)
    except AuthenticationTagError:
        reply = HlsReplyResponse(call.invoke, 250).to_bytes()
    else:
        reply = HlsReplyResponse(
            call.invoke, 0, meter.hls_response(got.authentication_value)
        ).to_bytes()

    result = HlsReplyResponse.from_bytes(reply)
    if result.result != 0 or result.response is None:
        raise AuthenticationTagError("meter refused our f(StoC)")
    client.verify_hls_response(ctos, result.response)
    return result.response


def test_full_handshake() -> None:
    f = _handshake((EK, AK), (EK, AK))
    assert f[0] == 0x10
    assert int.from_bytes(f[1:5], "big") == 0  # the meter's first counter


@pytest.mark.parametrize("which", ["client_ak", "client_ek", "meter_ak"])
def test_handshake_with_a_wrong_key_fails(which: str) -> None:
    other = Secret(bytes(16))
    client = (other if which == "client_ek" else EK, other if which == "client_ak" else AK)
    meter = (EK, other if which == "meter_ak" else AK)
    with pytest.raises(AuthenticationTagError):
        _handshake(client, meter)


def test_meter_f_ctos_checked_with_the_meter_title() -> None:
    meter = SecurityContext(METER, EK, AK)
    meter.grant(CounterRange(7, 8))
    f_ctos = meter.hls_response(b"challenge-from-client")
    client = SecurityContext(CLIENT, EK, AK, peer_system_title=CLIENT)  # wrong peer title
    with pytest.raises(AuthenticationTagError):
        client.verify_hls_response(b"challenge-from-client", f_ctos)
    client.learn_peer_system_title(METER)
    client.verify_hls_response(b"challenge-from-client", f_ctos)
    with pytest.raises(DecodeError):
        SecurityContext(CLIENT, EK, AK).verify_hls_response(b"challenge-from-client", f_ctos)


@pytest.mark.shared
def test_greenbook_aare_carries_the_stoc(shared_dir: Path) -> None:
    v = vector(shared_dir, "dlmscosem-apdu-aare-hls-gmac-greenbook")
    aare = AARE.from_bytes(bytes.fromhex(v["hex"]))
    assert aare.mechanism == HLS_GMAC_MECHANISM_ID
    assert aare.authentication_value == b"P6wRJ21F"
    assert HLS_GMAC_MECHANISM_OID in bytes.fromhex(v["hex"])
    ctx = SecurityContext(CLIENT, EK, AK)
    ctx.grant(CounterRange(1, 2))
    assert ctx.hls_response(aare.authentication_value).hex() == (
        "10000000011a52fe7dd3e72748973c1e28"
    )
