"""Hypothesis strategies shared by the security tests."""

from __future__ import annotations

from hypothesis import strategies as st

from edge_core.dlms.security import MAX_INVOCATION_COUNTER, Secret, SecurityControl

keys = st.binary(min_size=16, max_size=16).map(Secret)
system_titles = st.binary(min_size=8, max_size=8)
counters = st.integers(min_value=0, max_value=MAX_INVOCATION_COUNTER)
challenges = st.binary(min_size=8, max_size=64)
suite0_controls = st.sampled_from(
    [
        SecurityControl(authenticated=True, encrypted=True),
        SecurityControl(authenticated=True, encrypted=False),
        SecurityControl(authenticated=False, encrypted=True),
    ]
)
any_controls = st.builds(
    SecurityControl,
    authenticated=st.booleans(),
    encrypted=st.booleans(),
    broadcast_key=st.booleans(),
    compressed=st.booleans(),
    suite=st.integers(min_value=0, max_value=15),
)
# Plain APDUs whose first byte has a glo- tag, and some that go in general-glo-ciphering.
_TAGGED = [0x01, 0x08, 0x0E, 0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC7]
_GENERAL = [0x0F, 0xD8, 0x60, 0x61]
plain_apdus = st.builds(
    lambda tag, body: bytes((tag,)) + body,
    st.sampled_from(_TAGGED + _GENERAL),
    st.binary(max_size=300),
)
