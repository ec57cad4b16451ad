"""Golden vectors from ../shared/vectors/real-meter-frames.json (read at test time only: the
vectors carry third-party licences and are never copied into this repository)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edge_core.dlms.hdlc import (
    LLC_RESPONSE,
    ApduReceived,
    FrameParser,
    FrameType,
    HdlcAddress,
    HdlcClient,
    HdlcFrame,
    HdlcParameters,
    fcs16,
)

pytestmark = pytest.mark.shared


def _vectors(shared_dir: Path) -> list[dict]:
    path = shared_dir / "vectors" / "real-meter-frames.json"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return json.loads(path.read_text())["vectors"]


def _is_hdlc(v: dict) -> bool:
    return v["transport"].startswith("HDLC")


@pytest.fixture(scope="module")
def vectors(shared_dir: Path) -> list[dict]:
    vs = _vectors(shared_dir)
    assert sum(_is_hdlc(v) for v in vs) >= 30
    return vs


def _frames_hex(v: dict) -> list[str]:
    if "frames" in v:
        return v["frames"]
    if v["id"] == "amshan-hdlc-stream-start-mid-frame":
        return [v["hex"][v["hex"].index("7ea0") :]]
    return [v["hex"]]


def _checks(v: dict) -> list[dict]:
    c = v.get("hdlc_check_by_collector")
    if c is None:
        return []
    return c if isinstance(c, list) else [c]


def test_every_hdlc_vector_parses_exactly(vectors):
    for v in (v for v in vectors if _is_hdlc(v)):
        data = bytes.fromhex(v["hex"])
        parser = FrameParser()
        frames = parser.feed(data)
        expected = _frames_hex(v)
        assert [f.encode().hex() for f in frames] == expected, v["id"]
        assert parser.stats.rejected == {}, v["id"]
        assert parser.stats.frame_bytes + parser.stats.discarded_bytes == len(data), v["id"]
        # byte-by-byte feeding finds the same frames
        p2 = FrameParser()
        one_by_one = [f for b in data for f in p2.feed(bytes([b]))]
        assert one_by_one == frames, v["id"]
        for f, hx, chk in zip(frames, expected, _checks(v) or [None] * len(frames), strict=True):
            raw = bytes.fromhex(hx)
            assert HdlcFrame.decode(raw) == f
            if chk is not None:
                assert raw[1:3].hex() == chk["frame_format"], v["id"]
                assert f.segmented == chk["segmentation_bit"], v["id"]
                assert raw[-3:-1].hex() == chk["fcs_hex"], v["id"]
                assert fcs16(raw[1:-3]).to_bytes(2, "little").hex() == chk["fcs_hex"]


def _find(vectors, vid):
    return next(v for v in vectors if v["id"] == vid)


def _decode1(vectors, vid) -> HdlcFrame:
    frames = FrameParser().feed(bytes.fromhex(_find(vectors, vid)["hex"]))
    assert len(frames) == 1
    return frames[0]


def _check_addr(addr, spec: dict) -> None:
    assert addr.logical == spec["logical_address"]
    if "physical_address" in spec:
        assert addr.physical == spec["physical_address"]


def test_asserted_addresses_and_fields(vectors):
    checked = 0
    for v in vectors:
        ad = v.get("asserted_decode")
        if not _is_hdlc(v) or not isinstance(ad, dict):
            continue
        if "destination" in ad:
            f = _decode1(vectors, v["id"])
            _check_addr(f.destination, ad["destination"])
            _check_addr(f.source, ad["source"])
            if "information_hex" in ad:
                assert f.information.hex() == ad["information_hex"]
                assert f.control.ssn == ad["send_sequence_number"]
                assert f.control.rsn == ad["receive_sequence_number"]
                assert f.segmented == ad["segmented"]
                assert f.control.poll_final == ad["final"]
                assert f.kind is FrameType.I
            if ad.get("information") == "none":
                assert f.information == b""
            checked += 1
        if "destination_address" in ad:
            f = _decode1(vectors, v["id"])
            for addr, text in (
                (f.destination, ad["destination_address"]),
                (f.source, ad["source_address"]),
            ):
                logical, physical, length = re.match(r"\((\d+), (None|\d+), (\d+)\)", text).groups()
                assert addr.logical == int(logical)
                assert addr.physical == (None if physical == "None" else int(physical))
                assert addr.length == int(length)
            checked += 1
        if "reader_without_unstuffing" in ad:
            f = _decode1(vectors, v["id"])
            raw = bytes.fromhex(v["hex"])
            assert f.information == raw[9:-3]  # "frame bytes [8:-2] of the unflagged frame"
            checked += 1
        if "payload_hex" in ad:
            assert _decode1(vectors, v["id"]).information.hex() == ad["payload_hex"]
            checked += 1
        if ad.get("parses_as") == "UnNumberedAcknowledgmentFrame":
            assert _decode1(vectors, v["id"]).kind is FrameType.UA
            checked += 1
    assert checked == 11  # every vector with header facts asserted


def test_ua_parameters(vectors):
    p = HdlcParameters.decode(_decode1(vectors, "issue95-ua-4byte-server-address").information)
    assert (p.max_info_tx, p.max_info_rx) == (242, 242)
    assert HdlcParameters.decode(_decode1(vectors, "dlmscosem-hdlc-ua").information) == (
        HdlcParameters(154, 154, 1, 1)
    )
    assert _decode1(vectors, "issue95-ua-4byte-server-address").source.physical == 2836


def test_fcs_containing_flag(vectors):
    v = _find(vectors, "issue97-get-response-fcs-contains-7e")
    raw = bytes.fromhex(v["hex"])
    assert raw[-3] == 0x7E  # the FCS's first byte is the flag value
    stream = raw + raw + bytes.fromhex(_find(vectors, "issue97-get-request")["hex"])
    frames = FrameParser().feed(stream)
    assert len(frames) == 3
    assert frames[0].information.startswith(LLC_RESPONSE)
    assert _decode1(vectors, "amshan-hdlc-kaifa-flag-in-info").information.endswith(b"\x15\x7e")


def test_segmented_messages_reassemble(vectors):
    for vid, first in (("sdc-iskra-am550-unencrypted", 5), ("sdc-iskra-am550-vse-2026", 3)):
        v = _find(vectors, vid)
        frames = FrameParser().feed(bytes.fromhex(v["hex"]))
        assert [f.segmented for f in frames] == [True] * (first - 1) + [False]
        info = b"".join(f.information for f in frames)
        assert info.startswith(LLC_RESPONSE + b"\x0f")  # data-notification
        # the client state machine delivers the same bytes as one unsolicited APDU
        c = HdlcClient(frames[0].destination, HdlcAddress.server(1, 17))
        events = c.receive_data(bytes.fromhex(v["hex"]))
        assert events == [ApduReceived(info[3:], unsolicited=True)]


def test_stream_of_all_vectors_with_garbage_between(vectors):
    chunks, expected = [], []
    for i, v in enumerate(v for v in vectors if _is_hdlc(v)):
        chunks.append(bytes([i, 0x7E, 0xA0, i]))
        chunks.append(bytes.fromhex(v["hex"]))
        expected += _frames_hex(v)
    stream = b"".join(chunks)
    parser = FrameParser()
    got = []
    for i in range(0, len(stream), 37):
        got += [f.encode().hex() for f in parser.feed(stream[i : i + 37])]
    assert got == expected
    assert parser.stats.frame_bytes + parser.stats.discarded_bytes + parser.buffered == len(stream)
