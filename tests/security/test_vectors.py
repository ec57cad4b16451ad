"""Green Book examples and ciphered pushes of real meters, from ../shared (never copied here).

Keys are the ones the sources publish as their test keys (given in the vector file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_core.dlms.apdu import DataNotification, decode_apdu
from edge_core.dlms.axdr import Data, DataType
from edge_core.dlms.security import (
    ENCRYPTION_ONLY,
    AuthenticationTagError,
    CounterRange,
    GeneralGloCiphering,
    GloCiphered,
    Secret,
    SecurityContext,
    SecurityControl,
    decrypt,
    decrypt_unauthenticated,
    encrypt,
)
from edge_core.errors import DecodeError

from .helpers import reassemble_push, vector

pytestmark = pytest.mark.shared


def _sc(fields: dict[str, bool | int]) -> SecurityControl:
    return SecurityControl(
        authenticated=bool(fields["authenticated"]),
        encrypted=bool(fields["encrypted"]),
        suite=int(fields["security_suite"]),
    )


def test_greenbook_ciphered_get_both_directions(shared_dir: Path) -> None:
    v = vector(shared_dir, "dlmscosem-security-greenbook-ciphered-get")
    want = v["asserted_decode"]
    ek = Secret.from_hex(want["encryption_key_hex"])
    ak = Secret.from_hex(want["authentication_key_hex"])
    title = bytes.fromhex(want["system_title_hex"])
    ic = want["invocation_counter"]
    plain = bytes.fromhex(want["plain_apdu_hex"])
    sc = _sc(want["security_control"])
    ciphered = bytes.fromhex(v["hex"])

    assert encrypt(sc, title, ic, plain, encryption_key=ek, authentication_key=ak) == ciphered
    assert decrypt(sc, title, ic, ciphered, encryption_key=ek, authentication_key=ak) == plain

    # The same example as a glo-get-request through two contexts.
    client = SecurityContext(title, ek, ak)
    client.grant(CounterRange(ic, ic + 1))
    wire = client.protect(plain)
    assert wire == GloCiphered(0xC8, sc, ic, ciphered).to_bytes()
    meter = SecurityContext(bytes(8), ek, ak, peer_system_title=title)
    assert meter.unprotect(wire) == plain


def test_dlms_cosem_general_glo_push_decrypts(shared_dir: Path) -> None:
    v = vector(shared_dir, "dlmscosem-apdu-general-glo-ciphering-push")
    want = v["asserted_decode"]
    ek = Secret.from_hex(want["encryption_key_hex"])
    ak = Secret.from_hex(want["authentication_key_hex"])
    assert ek.reveal() == want["encryption_key_ascii"].encode()
    listener = SecurityContext(bytes(8), ek, ak)
    plain = listener.unprotect(bytes.fromhex(v["hex"]))
    assert listener.peer_system_title is not None
    assert listener.peer_system_title.hex() == want["system_title_hex"]
    assert type(decode_apdu(plain)).__name__ == want["decrypts_to"]
    with pytest.raises(AuthenticationTagError):
        SecurityContext(bytes(8), ek, Secret(bytes(16))).unprotect(bytes.fromhex(v["hex"]))


def _octet_strings(data: Data, size: int) -> list[bytes]:
    if data.type is DataType.OCTET_STRING and isinstance(data.value, bytes):
        return [data.value] if len(data.value) == size else []
    if data.type in (DataType.STRUCTURE, DataType.ARRAY) and isinstance(data.value, tuple):
        return [s for item in data.value for s in _octet_strings(item, size)]
    return []


def test_lg_e450_encrypted_push(shared_dir: Path) -> None:
    v = vector(shared_dir, "sdc-lg-e450-encrypted-no-pushlist")
    want = v["asserted_decode"]
    ek = Secret.from_hex(want["decryption_key_hex"])
    env = GeneralGloCiphering.from_bytes(reassemble_push(v["frames"]))
    assert env.system_title.hex() == "4c475a6773781fd0"
    assert env.security_control == SecurityControl(authenticated=True, encrypted=True)
    # The source gives only the encryption key, so the tag cannot be checked: a context that
    # guesses AK = EK must refuse it, and only the explicit unauthenticated path reads it.
    with pytest.raises(AuthenticationTagError):
        SecurityContext(bytes(8), ek, ek).unprotect(env.to_bytes())
    plain = decrypt_unauthenticated(
        env.system_title, env.invocation_counter, env.ciphered, encryption_key=ek, tagged=True
    )
    note = decode_apdu(plain)
    assert isinstance(note, DataNotification)
    assert note.long_invoke_id == env.invocation_counter
    names = _octet_strings(note.body, 6)
    assert len(names) == want["dlms_objects"]
    assert all(n[5] == 0xFF for n in names)  # every logical name is a.b.c.d.e.255


def test_lg_e570_encryption_only_push(shared_dir: Path) -> None:
    v = vector(shared_dir, "sdc-lg-e570-encrypted")
    want = v["asserted_decode"]
    ek = Secret.from_hex(want["decryption_key_hex"])
    wire = reassemble_push(v["frames"])
    env = GeneralGloCiphering.from_bytes(wire)
    assert env.system_title.hex() == "4c475a6774206295"
    assert env.security_control == ENCRYPTION_ONLY
    strict = SecurityContext(bytes(8), ek, ek)  # default policy demands authentication
    with pytest.raises(DecodeError, match="weaker"):
        strict.unprotect(wire)
    listener = SecurityContext(bytes(8), ek, ek, policy=ENCRYPTION_ONLY)
    plain = listener.unprotect(wire)
    note = decode_apdu(plain)
    assert isinstance(note, DataNotification)
    assert want["meter_id"].encode() in plain
    assert listener.last_peer_counter is None  # nothing authenticated the counter
    wrong = SecurityContext(bytes(8), Secret(bytes(16)), ek, policy=ENCRYPTION_ONLY)
    assert want["meter_id"].encode() not in wrong.unprotect(wire)
