"""Keys never reach a log, a repr or an exception message."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edge_core.dlms.counters import CounterStore, ensure_counters
from edge_core.dlms.security import (
    AuthenticationTagError,
    CounterRange,
    HlsReplyRequest,
    HlsReplyResponse,
    Secret,
    SecurityContext,
    make_challenge,
)

EK_RAW = bytes.fromhex("a1b2c3d4e5f60718293a4b5c6d7e8f90")
AK_RAW = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
CLIENT = bytes.fromhex("4d4d4d0000bc614e")
METER = bytes.fromhex("4d4d4d0000000001")


def _forms(raw: bytes) -> list[str]:
    """Ways a key could show up in text: hex (both cases, spaced), repr, latin-1."""
    h = raw.hex()
    return [h, h.upper(), " ".join(f"{b:02x}" for b in raw), repr(raw)[2:-1], raw.decode("latin-1")]


def _assert_clean(text: str) -> None:
    for raw in (EK_RAW, AK_RAW):
        for form in _forms(raw):
            assert form not in text, "key material leaked"


def test_session_logs_and_reprs_hold_no_key(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    ek, ak = Secret(EK_RAW, label="guek"), Secret(AK_RAW, label="gak")
    client = SecurityContext(CLIENT, ek, ak)
    meter = SecurityContext(METER, ek, ak, peer_system_title=CLIENT)
    store = CounterStore(tmp_path, reserve_ahead=4)
    meter.grant(CounterRange(0, 100))

    ctos, stoc = make_challenge(), make_challenge()
    client.learn_peer_system_title(METER)
    ensure_counters(client, store, "meter-1", "guek/1")
    call = HlsReplyRequest.from_bytes(HlsReplyRequest(0xC1, client.hls_response(stoc)).to_bytes())
    meter.verify_hls_response(stoc, call.response)
    reply = HlsReplyResponse(0xC1, 0, meter.hls_response(ctos))
    assert reply.response is not None
    client.verify_hls_response(ctos, reply.response)
    for i in range(10):
        ensure_counters(client, store, "meter-1", "guek/1")
        apdu = bytes((0xC0, 0x01, 0xC1)) + bytes([i]) * 20
        assert meter.unprotect(client.protect(apdu)) == apdu
        assert client.unprotect(meter.protect(b"\xc4\x01\xc1\x00")) == b"\xc4\x01\xc1\x00"

    bad = SecurityContext(METER, Secret(bytes(16)), ak, peer_system_title=CLIENT)
    ensure_counters(client, store, "meter-1", "guek/1")
    with pytest.raises(AuthenticationTagError) as info:
        bad.unprotect(client.protect(b"\xc0\x01"))

    assert caplog.records, "the session logged nothing at DEBUG: the test would prove nothing"
    text = "\n".join(
        [r.getMessage() for r in caplog.records]
        + [repr(r.args) for r in caplog.records]
        + [caplog.text, repr(client), str(meter), repr(ek), str(ak), f"{ek}", str(info.value)]
        + [repr(info.value.args)]
        + [p.read_text() for p in tmp_path.iterdir()]
    )
    _assert_clean(text)
