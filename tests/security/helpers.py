"""Test-only helpers: vector loading from ../shared and general-block-transfer reassembly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edge_core.dlms.hdlc import HdlcFrame, strip_llc

VECTORS = "vectors/real-meter-frames.json"


def load_vectors(shared_dir: Path) -> dict[str, dict[str, Any]]:
    path = shared_dir / VECTORS
    if not path.is_file():
        pytest.skip(f"{path} is absent (a user's clone has no ../shared vectors)")
    doc = json.loads(path.read_text())
    return {v["id"]: v for v in doc["vectors"]}


def vector(shared_dir: Path, vector_id: str) -> dict[str, Any]:
    vectors = load_vectors(shared_dir)
    if vector_id not in vectors:
        pytest.skip(f"vector {vector_id} not in {VECTORS}")
    return vectors[vector_id]


def _length(buf: bytes, pos: int) -> tuple[int, int]:
    first = buf[pos]
    if first < 0x80:
        return first, pos + 1
    n = first & 0x7F
    return int.from_bytes(buf[pos + 1 : pos + 1 + n], "big"), pos + 1 + n


def reassemble_push(frames: list[str]) -> bytes:
    """Join HDLC information fields, drop the LLC header and undo general-block-transfer
    (0xE0, block control, block number (2), ack (2), raw-data length, raw data)."""
    info = b"".join(HdlcFrame.decode(bytes.fromhex(f)).information for f in frames)
    stream = strip_llc(info)
    if stream[:1] != b"\xe0":
        return stream
    out = bytearray()
    pos = 0
    last = False
    while pos < len(stream):
        assert stream[pos] == 0xE0, f"block header expected at {pos}"
        last = bool(stream[pos + 1] & 0x80)
        n, pos = _length(stream, pos + 6)
        out += stream[pos : pos + n]
        pos += n
    assert last, "last block flag never seen"
    return bytes(out)
