"""The byte examples of docs/dlms-security.md are what the code produces."""

from __future__ import annotations

import re
from pathlib import Path

from edge_core.dlms.apdu import Conformance, InitiateRequest, InitiateResponse
from edge_core.dlms.security import (
    CounterRange,
    HlsReplyRequest,
    HlsReplyResponse,
    Secret,
    SecurityContext,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "dlms-security.md"
EK = Secret(bytes(range(16)))
AK = Secret(bytes(range(0xD0, 0xE0)))
C = bytes.fromhex("4d4d4d0000000001")
M = bytes.fromhex("4d4d4d0000bc614e")


def _squash(text: str) -> str:
    return re.sub(r"[^0-9a-f]", "", text.lower())


def test_documented_session_bytes() -> None:
    doc = _squash(DOC.read_text())
    client, meter = SecurityContext(C, EK, AK), SecurityContext(M, EK, AK)
    client.grant(CounterRange(0, 10))
    meter.grant(CounterRange(0, 10))
    conformance = Conformance(0x001E1D)

    glo_init = client.protect(InitiateRequest(conformance).to_bytes())
    assert glo_init.hex() in doc
    meter.learn_peer_system_title(C)
    meter.unprotect(glo_init)
    glo_resp = meter.protect(InitiateResponse(conformance, 1024).to_bytes())
    assert glo_resp.hex()[:14] in doc  # "28 1F 30 00000000"
    client.learn_peer_system_title(M)
    client.unprotect(glo_resp)

    f_stoc = client.hls_response(b"P6wRJ21F")
    action = HlsReplyRequest(0xC1, f_stoc).to_bytes()
    assert action.hex() in doc
    wire = client.protect(action)
    assert wire.hex()[:14] in doc  # "CB 31 30 00000002"
    meter.verify_hls_response(
        b"P6wRJ21F", HlsReplyRequest.from_bytes(meter.unprotect(wire)).response
    )

    reply = HlsReplyResponse(0xC1, 0, meter.hls_response(b"K56iVagY")).to_bytes()
    assert reply.hex() in doc
    client.verify_hls_response(b"K56iVagY", reply[-17:])

    get = bytes.fromhex("c001c1000800000100 00ff0200".replace(" ", ""))
    assert client.protect(get).hex() in doc
