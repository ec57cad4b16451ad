"""Hypothesis strategies for HDLC value objects (shared by the property tests)."""

from __future__ import annotations

from hypothesis import strategies as st

from edge_core.dlms.hdlc import Control, FrameType, HdlcAddress, HdlcFrame, HdlcParameters

addresses = st.one_of(
    st.builds(HdlcAddress, st.integers(0, 127), st.none(), st.just(1)),
    st.builds(HdlcAddress, st.integers(0, 127), st.integers(0, 127), st.just(2)),
    st.builds(HdlcAddress, st.integers(0, 0x3FFF), st.integers(0, 0x3FFF), st.just(4)),
)

seq = st.integers(0, 7)
controls = st.one_of(
    st.builds(Control, st.just(FrameType.I), st.booleans(), seq, seq),
    st.builds(
        Control, st.sampled_from([FrameType.RR, FrameType.RNR]), st.booleans(), st.just(0), seq
    ),
    st.builds(
        Control,
        st.sampled_from(
            [
                FrameType.SNRM,
                FrameType.DISC,
                FrameType.UA,
                FrameType.DM,
                FrameType.FRMR,
                FrameType.UI,
            ]
        ),
        st.booleans(),
    ),
)

frames = st.builds(
    HdlcFrame, addresses, addresses, controls, st.binary(max_size=300), st.booleans()
)

parameters = st.builds(
    HdlcParameters,
    st.integers(1, 2030),
    st.integers(1, 2030),
    st.integers(1, 7),
    st.integers(1, 7),
)
