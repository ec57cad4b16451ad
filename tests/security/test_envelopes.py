"""Ciphered APDU envelopes: service-specific glo-/ded- and general-glo-ciphering."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_core.dlms.security import (
    GeneralGloCiphering,
    GloCiphered,
    SecurityControl,
    decode_ciphered,
    is_ciphered_tag,
    plain_tag_for,
    protected_tag_for,
)
from edge_core.errors import DecodeError, EncodeError

from .helpers import vector
from .strategies import any_controls, counters, system_titles

GLO_TAGS = {
    0xC0: 0xC8,  # get-request
    0xC4: 0xCC,  # get-response
    0xC1: 0xC9,  # set-request
    0xC5: 0xCD,  # set-response
    0xC3: 0xCB,  # action-request
    0xC7: 0xCF,  # action-response
    0x01: 0x21,  # initiate-request
    0x08: 0x28,  # initiate-response
    0xC2: 0xCA,  # event-notification
}


@pytest.mark.parametrize(("plain", "glo"), sorted(GLO_TAGS.items()))
def test_glo_tags(plain: int, glo: int) -> None:
    assert protected_tag_for(plain) == glo
    assert plain_tag_for(glo) == plain
    ded = protected_tag_for(plain, dedicated=True)
    assert ded is not None
    assert plain_tag_for(ded) == plain


def test_apdus_without_glo_tag_use_general_ciphering() -> None:
    for plain in (0x0F, 0xD8, 0x60):
        assert protected_tag_for(plain) is None


def test_ciphered_tags_are_recognised() -> None:
    ciphered = {t for t in range(256) if is_ciphered_tag(t)}
    assert set(GLO_TAGS.values()) <= ciphered
    assert 0xDB in ciphered
    assert not ciphered & {0x01, 0x08, 0x0F, 0x60, 0x61, 0xC0, 0xC4, 0xD8}


glo_envelopes = st.builds(
    GloCiphered,
    st.sampled_from([*sorted(GLO_TAGS.values()), 0xD0, 0xD4]),
    any_controls,
    counters,
    st.binary(max_size=400),
)
general_envelopes = st.builds(
    GeneralGloCiphering,
    st.one_of(st.just(b""), system_titles),
    any_controls,
    counters,
    st.binary(max_size=400),
)


@settings(deadline=None)
@given(glo_envelopes)
def test_glo_round_trip(env: GloCiphered) -> None:
    raw = env.to_bytes()
    assert GloCiphered.from_bytes(raw) == env
    assert decode_ciphered(raw) == env
    assert raw[0] == env.tag
    assert raw.endswith(env.ciphered)


@settings(deadline=None)
@given(general_envelopes)
def test_general_round_trip(env: GeneralGloCiphering) -> None:
    raw = env.to_bytes()
    assert GeneralGloCiphering.from_bytes(raw) == env
    assert decode_ciphered(raw) == env
    assert raw[:2] == bytes((0xDB, len(env.system_title)))


@settings(deadline=None)
@given(st.one_of(glo_envelopes, general_envelopes), st.data())
def test_every_truncation_or_extension_is_a_decode_error(
    env: GloCiphered | GeneralGloCiphering, data: st.DataObject
) -> None:
    raw = env.to_bytes()
    cut = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    with pytest.raises(DecodeError):
        decode_ciphered(raw[:cut])
    with pytest.raises(DecodeError):
        decode_ciphered(raw + b"\x00")


@settings(deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_raise_decode_error(raw: bytes) -> None:
    try:
        env = decode_ciphered(raw)
    except DecodeError:
        return
    assert env.to_bytes() == raw


def test_encode_refuses_bad_values() -> None:
    sc = SecurityControl(True, True)
    with pytest.raises(EncodeError):
        GloCiphered(0xC0, sc, 1, b"").to_bytes()  # a plain tag, not a ciphered one
    with pytest.raises(EncodeError):
        GloCiphered(0xC8, sc, 1 << 32, b"").to_bytes()
    with pytest.raises(EncodeError):
        GeneralGloCiphering(b"1234567", sc, 1, b"").to_bytes()


def test_known_bytes_glo_get_request() -> None:
    env = GloCiphered(0xC8, SecurityControl(True, True), 0x01234567, bytes.fromhex("aabb"))
    assert env.to_bytes().hex() == "c8073001234567aabb"


@pytest.mark.shared
def test_general_glo_ciphering_without_system_title(shared_dir: Path) -> None:
    v = vector(shared_dir, "dlmscosem-apdu-general-glo-ciphering-empty-system-title")
    raw = bytes.fromhex(v["hex"])
    env = GeneralGloCiphering.from_bytes(raw)
    want = v["asserted_decode"]
    assert env.system_title == b""
    sc = want["security_control"]
    assert env.security_control.suite == sc["security_suite"]
    assert env.security_control.authenticated is sc["authenticated"]
    assert env.security_control.encrypted is sc["encrypted"]
    assert env.security_control.broadcast_key is sc["broadcast_key"]
    assert env.security_control.compressed is sc["compressed"]
    assert env.invocation_counter == want["invocation_counter"]
    assert env.ciphered.hex() == want["ciphered_text_hex"]
    assert env.to_bytes() == raw


@pytest.mark.shared
def test_general_glo_ciphering_push_header(shared_dir: Path) -> None:
    v = vector(shared_dir, "dlmscosem-apdu-general-glo-ciphering-push")
    raw = bytes.fromhex(v["hex"])
    env = GeneralGloCiphering.from_bytes(raw)
    assert env.system_title.hex() == v["asserted_decode"]["system_title_hex"]
    assert env.security_control.to_byte() == 0x30
    assert env.to_bytes() == raw
