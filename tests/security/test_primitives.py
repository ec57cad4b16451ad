"""Suite 0 primitives: security control byte, AES-GCM encrypt/decrypt, GMAC, tamper."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_core.dlms.security import (
    AUTHENTICATED_ENCRYPTED,
    AUTHENTICATION_ONLY,
    ENCRYPTION_ONLY,
    TAG_LENGTH,
    AuthenticationTagError,
    Secret,
    SecurityControl,
    decrypt,
    decrypt_unauthenticated,
    encrypt,
    gmac,
    make_iv,
)
from edge_core.errors import ConfigError, DecodeError, EncodeError

from .strategies import any_controls, counters, keys, suite0_controls, system_titles

# DLMS Green Book (DLMS UA 1000-2) suite 0 example parameters.
EK = Secret(bytes.fromhex("000102030405060708090a0b0c0d0e0f"))
AK = Secret(bytes.fromhex("d0d1d2d3d4d5d6d7d8d9dadbdcdddedf"))
TITLE = bytes.fromhex("4d4d4d0000bc614e")


@pytest.mark.parametrize(
    ("byte", "auth", "enc", "bcast", "comp"),
    [
        (0x30, True, True, False, False),
        (0x10, True, False, False, False),
        (0x20, False, True, False, False),
        (0x40, False, False, True, False),
        (0x80, False, False, False, True),
        (0x00, False, False, False, False),
    ],
)
def test_security_control_bits(byte: int, auth: bool, enc: bool, bcast: bool, comp: bool) -> None:
    sc = SecurityControl.from_byte(byte)
    assert (sc.authenticated, sc.encrypted, sc.broadcast_key, sc.compressed) == (
        auth,
        enc,
        bcast,
        comp,
    )
    assert sc.suite == 0
    assert sc.to_byte() == byte


@settings(deadline=None)
@given(st.integers(min_value=0, max_value=255))
def test_security_control_round_trip_every_byte(byte: int) -> None:
    assert SecurityControl.from_byte(byte).to_byte() == byte


@settings(deadline=None)
@given(any_controls)
def test_security_control_round_trip_values(sc: SecurityControl) -> None:
    assert SecurityControl.from_byte(sc.to_byte()) == sc


def test_security_control_rejects_non_bytes() -> None:
    with pytest.raises(DecodeError):
        SecurityControl.from_byte(256)
    with pytest.raises(EncodeError):
        SecurityControl(True, True, suite=16).to_byte()


def test_iv_layout() -> None:
    assert make_iv(TITLE, 0x01234567) == TITLE + bytes.fromhex("01234567")
    with pytest.raises(EncodeError):
        make_iv(TITLE[:7], 1)
    with pytest.raises(EncodeError):
        make_iv(TITLE, 1 << 32)
    with pytest.raises(EncodeError):
        make_iv(TITLE, -1)


@settings(deadline=None)
@given(suite0_controls, system_titles, counters, keys, keys, st.binary(max_size=512))
def test_encrypt_decrypt_round_trip(
    sc: SecurityControl, title: bytes, ic: int, ek: Secret, ak: Secret, plain: bytes
) -> None:
    out = encrypt(sc, title, ic, plain, encryption_key=ek, authentication_key=ak)
    assert len(out) == len(plain) + (TAG_LENGTH if sc.authenticated else 0)
    if sc.encrypted and len(plain) >= 16:
        assert out[: len(plain)] != plain
    if not sc.encrypted:
        assert out[: len(plain)] == plain  # authentication only: plaintext travels in clear
    assert decrypt(sc, title, ic, out, encryption_key=ek, authentication_key=ak) == plain


@settings(deadline=None)
@given(
    st.sampled_from([AUTHENTICATED_ENCRYPTED, AUTHENTICATION_ONLY]),
    system_titles,
    counters,
    keys,
    keys,
    st.binary(min_size=1, max_size=64),
    st.data(),
)
def test_any_bit_flip_is_a_tag_error(
    sc: SecurityControl,
    title: bytes,
    ic: int,
    ek: Secret,
    ak: Secret,
    plain: bytes,
    data: st.DataObject,
) -> None:
    out = bytearray(encrypt(sc, title, ic, plain, encryption_key=ek, authentication_key=ak))
    bit = data.draw(st.integers(min_value=0, max_value=len(out) * 8 - 1))
    out[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(AuthenticationTagError):
        decrypt(sc, title, ic, bytes(out), encryption_key=ek, authentication_key=ak)


@settings(deadline=None)
@given(system_titles, counters, keys, keys, keys, st.binary(max_size=64))
def test_wrong_keys_title_or_counter_fail(
    title: bytes, ic: int, ek: Secret, ak: Secret, other: Secret, plain: bytes
) -> None:
    sc = AUTHENTICATED_ENCRYPTED
    out = encrypt(sc, title, ic, plain, encryption_key=ek, authentication_key=ak)
    if other != ak:
        with pytest.raises(AuthenticationTagError):
            decrypt(sc, title, ic, out, encryption_key=ek, authentication_key=other)
    if other != ek:
        with pytest.raises(AuthenticationTagError):
            decrypt(sc, title, ic, out, encryption_key=other, authentication_key=ak)
    with pytest.raises(AuthenticationTagError):
        decrypt(sc, title, ic ^ 1, out, encryption_key=ek, authentication_key=ak)
    with pytest.raises(AuthenticationTagError):
        decrypt(
            sc,
            bytes([title[0] ^ 0x80]) + title[1:],
            ic,
            out,
            encryption_key=ek,
            authentication_key=ak,
        )
    # The security control byte is authenticated data: claiming 0x10 instead of 0x30 fails.
    with pytest.raises(AuthenticationTagError):
        decrypt(AUTHENTICATION_ONLY, title, ic, out, encryption_key=ek, authentication_key=ak)


def test_unsupported_controls_are_typed_errors() -> None:
    for byte in (0x00, 0x31, 0x70, 0xB0):
        sc = SecurityControl.from_byte(byte)
        with pytest.raises(EncodeError):
            encrypt(sc, TITLE, 1, b"x", encryption_key=EK, authentication_key=AK)
        with pytest.raises(DecodeError):
            decrypt(sc, TITLE, 1, b"x" * 13, encryption_key=EK, authentication_key=AK)


def test_short_or_keyless_input_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        decrypt(
            AUTHENTICATED_ENCRYPTED,
            TITLE,
            1,
            b"\x00" * 11,
            encryption_key=EK,
            authentication_key=AK,
        )
    with pytest.raises(DecodeError):
        decrypt(
            AUTHENTICATED_ENCRYPTED,
            TITLE,
            1,
            b"\x00" * 20,
            encryption_key=EK,
            authentication_key=None,
        )
    with pytest.raises(DecodeError):
        decrypt(
            ENCRYPTION_ONLY,
            TITLE,
            1,
            b"abc",
            encryption_key=Secret(b"short"),
            authentication_key=None,
        )
    with pytest.raises(EncodeError):
        encrypt(AUTHENTICATED_ENCRYPTED, TITLE, 1, b"x", encryption_key=EK, authentication_key=None)


def test_greenbook_gmac_of_hls_challenge() -> None:
    # Green Book HLS-GMAC example: client system title 4D4D4D0000000001, IC 1, StoC "P6wRJ21F".
    tag = gmac(
        bytes.fromhex("4d4d4d0000000001"), 1, b"P6wRJ21F", encryption_key=EK, authentication_key=AK
    )
    assert tag.hex() == "1a52fe7dd3e72748973c1e28"


@settings(deadline=None)
@given(system_titles, counters, keys, st.binary(max_size=128))
def test_decrypt_unauthenticated_matches_gcm_keystream(
    title: bytes, ic: int, ek: Secret, plain: bytes
) -> None:
    tagged = encrypt(
        AUTHENTICATED_ENCRYPTED, title, ic, plain, encryption_key=ek, authentication_key=ek
    )
    assert decrypt_unauthenticated(title, ic, tagged, encryption_key=ek, tagged=True) == plain
    bare = encrypt(ENCRYPTION_ONLY, title, ic, plain, encryption_key=ek, authentication_key=None)
    assert bare == tagged[: len(plain)]
    assert decrypt_unauthenticated(title, ic, bare, encryption_key=ek, tagged=False) == plain


def test_secret_never_shows_its_bytes() -> None:
    raw = bytes.fromhex("00112233445566778899aabbccddeeff")
    s = Secret(raw, label="meter-7/guek")
    for text in (repr(s), str(s), f"{s}", f"{s!r}", "%s" % (s,)):  # noqa: UP031 - the %-operator path must hide it too
        assert raw.hex() not in text.lower()
        assert repr(raw) not in text
        assert "16 bytes" in text
    assert s == Secret(raw)
    assert s != Secret(raw[::-1])
    with pytest.raises(TypeError):
        hash(s)
    with pytest.raises(ConfigError) as info:
        Secret.from_hex("zz" + raw.hex()[2:], label="guek")
    assert raw.hex()[2:] not in str(info.value)
    assert Secret.from_hex(raw.hex()).reveal() == raw


def test_secret_from_store_values() -> None:
    raw = bytes.fromhex("00112233445566778899aabbccddeeff")
    assert Secret.from_secret_value(raw).reveal() == raw
    assert Secret.from_secret_value(raw.hex().encode()).reveal() == raw
    assert Secret.from_secret_value(b"  " + raw.hex().upper().encode() + b"\n").reveal() == raw
    for bad in (raw[:15], b"zz" * 16, raw.hex().encode()[:-1], "é".encode() * 16):
        with pytest.raises(ConfigError) as info:
            Secret.from_secret_value(bad, label="meters[0].auth.cipher_key_secret")
        assert "meters[0].auth.cipher_key_secret" in str(info.value)
        assert bad.hex() not in str(info.value)


def test_fingerprint_names_a_key_without_showing_it() -> None:
    a, b = Secret(bytes(16)), Secret(bytes(15) + b"\x01")
    assert a.fingerprint() == Secret(bytes(16)).fingerprint()
    assert a.fingerprint() != b.fingerprint()
    assert len(a.fingerprint()) == 16
    assert a.reveal().hex()[:16] != a.fingerprint()
