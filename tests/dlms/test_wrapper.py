from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_core.dlms.wrapper import WrapperDecoder, WrapperFrame
from edge_core.errors import EncodeError, FrameError

VECTORS = [
    (
        "AARQ from client 16 to server 1",
        "0001001000010003c00102",
        WrapperFrame(16, 1, bytes.fromhex("c00102")),
    ),
    ("empty payload", "0001000100100000", WrapperFrame(1, 16, b"")),
]


@pytest.mark.parametrize(("name", "hexstr", "frame"), VECTORS)
def test_vectors(name: str, hexstr: str, frame: WrapperFrame) -> None:
    assert frame.to_bytes().hex() == hexstr
    assert WrapperDecoder().feed(bytes.fromhex(hexstr)) == [frame]


@settings(deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=100)),
        max_size=5,
    ),
    st.lists(st.integers(1, 50), min_size=1, max_size=10),
)
def test_split_and_concatenated(frames: list[tuple[int, int, bytes]], cuts: list[int]) -> None:
    objs = [WrapperFrame(*f) for f in frames]
    stream = b"".join(f.to_bytes() for f in objs)
    decoder = WrapperDecoder()
    got: list[WrapperFrame] = []
    pos = 0
    i = 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        got += decoder.feed(stream[pos : pos + step])
        pos += step
        i += 1
    assert got == objs
    assert decoder.pending == 0


def test_bad_version_and_limits() -> None:
    with pytest.raises(FrameError):
        WrapperDecoder().feed(bytes.fromhex("0002001000010000"))
    with pytest.raises(FrameError):
        WrapperDecoder(max_payload=10).feed(bytes.fromhex("000100100001000b"))
    with pytest.raises(EncodeError):
        WrapperFrame(70000, 1, b"").to_bytes()
    with pytest.raises(EncodeError):
        WrapperFrame(1, 1, b"\x00" * 70000).to_bytes()
