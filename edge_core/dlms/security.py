"""DLMS/COSEM security suite 0 (AES-GCM-128) and HLS-GMAC authentication, sans-I/O.

Theory of operation
-------------------
Suite 0 protects an xDLMS APDU with AES-GCM under the 16-byte global unicast encryption key
(EK). The 12-byte initialisation vector is the *sender's* 8-byte system title followed by the
sender's 4-byte invocation counter (IC, big-endian); the tag is truncated to 12 bytes. The
security control byte (SC) says what was applied::

    bit 7 compression (0x80, unsupported)   bit 6 broadcast key (0x40, unsupported)
    bit 5 encryption (0x20)                 bit 4 authentication (0x10)
    bits 3..0 security suite id (0)

    SC 0x30  authenticated encryption   AAD = SC || AK              out = C || T
    SC 0x20  encryption only            no AAD, no tag              out = C
    SC 0x10  authentication only        AAD = SC || AK || P         out = P || T

and the protected APDU travels as ``SC || IC || out`` inside either a service-specific
glo- APDU (``tag, length, SC, IC, out``; the system title is the association's peer title) or
general-glo-ciphering (``0xDB, len(ST), ST, length, SC, IC, out``).

Invariants the :class:`SecurityContext` keeps:

* An (EK, system title, IC) triple is never used twice. GCM with a repeated IV leaks the
  authentication subkey, so the context only sends with counters from a
  :class:`CounterRange` the caller obtained from durable storage
  (:mod:`edge_core.dlms.counters` persists the end of a range *before* it is handed out), and
  a new range must start at or after the next counter: the counter never goes backwards and
  never wraps past 2**32 - 1.
* A received APDU is accepted only after its tag verified, and only if its IC is strictly
  greater than the last accepted one. The very first IC from a peer is accepted whatever its
  value (a fresh meter starts at 0, FIELD-NOTES). The last-seen IC only moves after a tag
  verified, so a forged message cannot push it up.
* Keys live in :class:`Secret`, whose ``repr``/``str`` never show the bytes; nothing in this
  module logs a key, a plaintext or a tag.

HLS-GMAC (mechanism 5): client and server each send a random challenge (CtoS in the AARQ,
StoC in the AARE, 8..64 bytes). Each side proves knowledge of the keys by returning
``f(challenge) = SC || IC || GMAC(SC || AK || challenge)`` with SC = 0x10 and its *own* system
title and a fresh IC of its own in the IV; the other side verifies with the *peer's* system
title and the IC carried in the value. The client's f(StoC) goes in the ACTION
reply_to_HLS_authentication (class 15, 0.0.40.0.0.255, method 1); the server's f(CtoS) comes
back as the ACTION's return parameter. See docs/dlms-security.md for the wiring.

Errors::

    DecodeError (edge_core.errors)
    ├── AuthenticationTagError    a GCM tag or HLS-GMAC value did not verify
    └── ReplayError               an IC not greater than the last accepted one
    EncodeError (edge_core.errors)
    └── InvocationCounterExhaustedError   no counter left to send with (reserve more / rekey)
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edge_core.dlms.axdr import decode_length, encode_length
from edge_core.errors import ConfigError, DecodeError, EncodeError

__all__ = [
    "AUTHENTICATED_ENCRYPTED",
    "AUTHENTICATION_ONLY",
    "ENCRYPTION_ONLY",
    "GENERAL_GLO_CIPHERING",
    "HLS_GMAC_MECHANISM_ID",
    "HLS_GMAC_MECHANISM_OID",
    "KEY_LENGTH",
    "LN_CIPHERING_CONTEXT_OID",
    "MAX_INVOCATION_COUNTER",
    "SYSTEM_TITLE_LENGTH",
    "TAG_LENGTH",
    "AssociationSecurityFields",
    "AuthenticationTagError",
    "CounterRange",
    "GeneralGloCiphering",
    "GloCiphered",
    "HlsReplyRequest",
    "HlsReplyResponse",
    "InvocationCounterExhaustedError",
    "ReplayError",
    "Secret",
    "SecurityContext",
    "SecurityControl",
    "decode_ciphered",
    "decrypt",
    "decrypt_unauthenticated",
    "encrypt",
    "gmac",
    "hls_gmac_response",
    "is_ciphered_tag",
    "make_challenge",
    "make_iv",
    "plain_tag_for",
    "protected_tag_for",
    "verify_hls_gmac_response",
]

logger = logging.getLogger(__name__)

KEY_LENGTH = 16
"""Suite 0 key length in bytes (AES-128)."""
SYSTEM_TITLE_LENGTH = 8
"""System title length in bytes (3-letter FLAG manufacturer id + 5 bytes)."""
TAG_LENGTH = 12
"""Authentication tag length in bytes used by DLMS (GCM tag truncated from 16)."""
MAX_INVOCATION_COUNTER = 0xFFFF_FFFF
"""The last usable invocation counter; after it the key must be changed."""
GENERAL_GLO_CIPHERING = 0xDB
"""general-glo-ciphering APDU tag."""
GENERAL_DED_CIPHERING = 0xDC
HLS_GMAC_MECHANISM_ID = 5
"""Last arc of the mechanism name 2.16.756.5.8.2.5 (high-level-security GMAC)."""
HLS_GMAC_MECHANISM_OID = bytes.fromhex("60857405080205")
"""BER encoding (without tag/length) of the OID 2.16.756.5.8.2.5."""
LN_CIPHERING_CONTEXT_OID = bytes.fromhex("60857405080103")
"""BER encoding of the application context Logical_Name_Referencing_With_Ciphering."""
CHALLENGE_MIN = 8
CHALLENGE_MAX = 64

# plain xDLMS tag -> service-specific global-key tag (dedicated-key tag = global + 0x08 for the
# C-range services, 0x20 more for initiate / confirmed-service-error).
_GLO_FOR_PLAIN: dict[int, int] = {
    0x01: 0x21,  # initiate-request
    0x08: 0x28,  # initiate-response
    0x0E: 0x2E,  # confirmed-service-error
    0xC0: 0xC8,  # get-request
    0xC1: 0xC9,  # set-request
    0xC2: 0xCA,  # event-notification-request
    0xC3: 0xCB,  # action-request
    0xC4: 0xCC,  # get-response
    0xC5: 0xCD,  # set-response
    0xC7: 0xCF,  # action-response
}
_DED_FOR_PLAIN: dict[int, int] = {
    0x01: 0x41,
    0x08: 0x48,
    0x0E: 0x4E,
    0xC0: 0xD0,
    0xC1: 0xD1,
    0xC2: 0xD2,
    0xC3: 0xD3,
    0xC4: 0xD4,
    0xC5: 0xD5,
    0xC7: 0xD7,
}
_PLAIN_FOR_PROTECTED: dict[int, int] = {
    **{v: k for k, v in _GLO_FOR_PLAIN.items()},
    **{v: k for k, v in _DED_FOR_PLAIN.items()},
}


class AuthenticationTagError(DecodeError):
    """A GCM authentication tag or an HLS-GMAC response did not verify. ``data`` is empty:
    the offending bytes are not kept, they may be a forgery aimed at the logs."""


class ReplayError(DecodeError):
    """A received invocation counter is not greater than the last accepted one.
    ``received`` and ``last`` are the two counters."""

    def __init__(self, message: str, *, received: int, last: int) -> None:
        super().__init__(message)
        self.received = received
        self.last = last


class InvocationCounterExhaustedError(EncodeError):
    """No invocation counter left: the granted :class:`CounterRange` is used up (reserve
    more) or the counter reached 2**32 - 1 (the key must be changed)."""


# --------------------------------------------------------------------------- values


class Secret:
    """Key material that never shows itself: ``repr``/``str``/``format`` give the length and
    an optional label only. ``reveal()`` returns the bytes, for the cipher calls alone.
    Equality is constant-time; secrets are not hashable (nobody should key a dict by a key)."""

    __slots__ = ("_value", "label")

    def __init__(self, value: bytes, *, label: str = "") -> None:
        self._value = bytes(value)
        self.label = label

    @classmethod
    def from_hex(cls, text: str, *, label: str = "") -> Secret:
        """Parse hex (spaces allowed). Raises ConfigError without echoing the text."""
        try:
            return cls(bytes.fromhex(text), label=label)
        except ValueError as exc:
            # ValueError names a position, never the text; the text itself is not echoed.
            raise ConfigError("secret is not valid hex", path=label) from exc

    @classmethod
    def from_secret_value(
        cls, value: bytes, *, label: str = "", length: int = KEY_LENGTH
    ) -> Secret:
        """A key from a secret store value (``Bus.get_secret``): ``length`` raw bytes, or
        2 * ``length`` hex digits (surrounding whitespace ignored). Raises ConfigError naming
        ``label`` and the sizes only."""
        raw = bytes(value)
        if len(raw) == length:
            return cls(raw, label=label)
        text = raw.strip()
        if len(text) == 2 * length:
            try:
                return cls(bytes.fromhex(text.decode("ascii")), label=label)
            except (UnicodeDecodeError, ValueError):
                pass
        raise ConfigError(
            f"secret value is neither {length} bytes nor {2 * length} hex digits", path=label
        )

    def reveal(self) -> bytes:
        return self._value

    def fingerprint(self) -> str:
        """16 hex digits of SHA-256 over a fixed prefix and the key: names a key (for the
        invocation counter store, for logs) without revealing it."""
        return hashlib.sha256(b"ami-edge key fingerprint\0" + self._value).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        name = f" {self.label!r}" if self.label else ""
        return f"<Secret{name} ({len(self._value)} bytes)>"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value, other._value)

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("Secret cannot be pickled")


@dataclass(frozen=True, slots=True)
class SecurityControl:
    """The security control byte. ``suite`` is the security suite id (0 here)."""

    authenticated: bool
    encrypted: bool
    broadcast_key: bool = False
    compressed: bool = False
    suite: int = 0

    def to_byte(self) -> int:
        if not 0 <= self.suite <= 0x0F:
            raise EncodeError(f"security suite {self.suite} out of range 0..15")
        return (
            self.suite
            | (0x10 if self.authenticated else 0)
            | (0x20 if self.encrypted else 0)
            | (0x40 if self.broadcast_key else 0)
            | (0x80 if self.compressed else 0)
        )

    def to_bytes(self) -> bytes:
        return bytes((self.to_byte(),))

    @classmethod
    def from_byte(cls, value: int) -> SecurityControl:
        if not 0 <= value <= 0xFF:
            raise DecodeError(f"security control {value} is not a byte")
        return cls(
            authenticated=bool(value & 0x10),
            encrypted=bool(value & 0x20),
            broadcast_key=bool(value & 0x40),
            compressed=bool(value & 0x80),
            suite=value & 0x0F,
        )

    def covers(self, required: SecurityControl) -> bool:
        """True when this protection is at least ``required`` (authentication, encryption)."""
        return (self.authenticated or not required.authenticated) and (
            self.encrypted or not required.encrypted
        )


AUTHENTICATED_ENCRYPTED = SecurityControl(authenticated=True, encrypted=True)
AUTHENTICATION_ONLY = SecurityControl(authenticated=True, encrypted=False)
ENCRYPTION_ONLY = SecurityControl(authenticated=False, encrypted=True)


@dataclass(frozen=True, slots=True)
class CounterRange:
    """Invocation counters ``start`` (inclusive) to ``stop`` (exclusive) that may be used to
    send; obtained from durable storage (:class:`edge_core.dlms.counters.CounterStore`)."""

    start: int
    stop: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.stop <= MAX_INVOCATION_COUNTER + 1:
            raise EncodeError(f"bad invocation counter range {self.start}..{self.stop}")

    def __len__(self) -> int:
        return self.stop - self.start


# --------------------------------------------------------------------------- primitives


def _check_title(system_title: bytes) -> bytes:
    if len(system_title) != SYSTEM_TITLE_LENGTH:
        raise EncodeError(f"system title must be 8 bytes, not {len(system_title)}")
    return bytes(system_title)


def _check_key(key: Secret, what: str) -> bytes:
    raw = key.reveal()
    if len(raw) != KEY_LENGTH:
        raise EncodeError(f"{what} must be {KEY_LENGTH} bytes for suite 0, not {len(raw)}")
    return raw


def _check_suite0(sc: SecurityControl) -> None:
    if sc.suite != 0:
        raise DecodeError(f"security suite {sc.suite} not supported (suite 0 only)")
    if sc.compressed:
        raise DecodeError("compressed ciphered APDUs are not supported")
    if sc.broadcast_key:
        raise DecodeError("broadcast-key ciphered APDUs are not supported")
    if not (sc.authenticated or sc.encrypted):
        raise DecodeError("security control applies neither authentication nor encryption")


def make_iv(system_title: bytes, invocation_counter: int) -> bytes:
    """The 12-byte GCM IV: system title (8 bytes) || invocation counter (4 bytes, big-endian)."""
    if not 0 <= invocation_counter <= MAX_INVOCATION_COUNTER:
        raise EncodeError(f"invocation counter {invocation_counter} out of range")
    return _check_title(system_title) + invocation_counter.to_bytes(4, "big")


def _ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    # GCM without a tag is CTR mode starting at inc32(J0), J0 = IV || 0x00000001.
    c = Cipher(algorithms.AES(key), modes.CTR(iv + b"\x00\x00\x00\x02")).encryptor()
    return c.update(data) + c.finalize()


def encrypt(
    sc: SecurityControl,
    system_title: bytes,
    invocation_counter: int,
    plaintext: bytes,
    *,
    encryption_key: Secret,
    authentication_key: Secret | None,
) -> bytes:
    """Protect ``plaintext`` as SC says; returns ciphertext || tag (see the module table).
    ``system_title`` and ``invocation_counter`` are the sender's."""
    try:
        _check_suite0(sc)
    except DecodeError as exc:
        raise EncodeError(str(exc)) from exc
    iv = make_iv(system_title, invocation_counter)
    ek = _check_key(encryption_key, "encryption key")
    if not sc.authenticated:
        return _ctr(ek, iv, plaintext)
    if authentication_key is None:
        raise EncodeError("authentication requested without an authentication key")
    aad = sc.to_bytes() + _check_key(authentication_key, "authentication key")
    if sc.encrypted:
        # AESGCM returns C || 16-byte tag; DLMS keeps the first 12 tag bytes.
        return AESGCM(ek).encrypt(iv, bytes(plaintext), aad)[: len(plaintext) + TAG_LENGTH]
    tag = AESGCM(ek).encrypt(iv, b"", aad + plaintext)[:TAG_LENGTH]
    return bytes(plaintext) + tag


def decrypt(
    sc: SecurityControl,
    system_title: bytes,
    invocation_counter: int,
    protected: bytes,
    *,
    encryption_key: Secret,
    authentication_key: Secret | None,
) -> bytes:
    """Inverse of :func:`encrypt`: verify the tag (if any) and return the plaintext.
    Raises AuthenticationTagError when the tag does not verify, DecodeError when malformed.
    ``system_title`` and ``invocation_counter`` are the sender's."""
    _check_suite0(sc)
    try:
        iv = make_iv(system_title, invocation_counter)
        ek = _check_key(encryption_key, "encryption key")
        ak = (
            None
            if authentication_key is None
            else _check_key(authentication_key, "authentication key")
        )
    except EncodeError as exc:
        raise DecodeError(str(exc)) from exc
    if not sc.authenticated:
        return _ctr(ek, iv, bytes(protected))
    if ak is None:
        raise DecodeError("authenticated APDU but no authentication key")
    if len(protected) < TAG_LENGTH:
        raise DecodeError(f"ciphered text shorter than the {TAG_LENGTH}-byte tag")
    body, tag = bytes(protected[:-TAG_LENGTH]), bytes(protected[-TAG_LENGTH:])
    aad = sc.to_bytes() + ak
    if not sc.encrypted:
        aad += body
    # AESGCM.decrypt cannot check a 12-byte tag; the GCM mode object can (min_tag_length).
    d = Cipher(algorithms.AES(ek), modes.GCM(iv, tag, min_tag_length=TAG_LENGTH)).decryptor()
    d.authenticate_additional_data(aad)
    out = d.update(body if sc.encrypted else b"")
    try:
        out += d.finalize()
    except InvalidTag:
        raise AuthenticationTagError("authentication tag does not verify") from None
    return out if sc.encrypted else body


def decrypt_unauthenticated(
    system_title: bytes,
    invocation_counter: int,
    protected: bytes,
    *,
    encryption_key: Secret,
    tagged: bool,
) -> bytes:
    """Decrypt without checking any tag (``tagged``: drop the trailing 12 tag bytes first).

    Only for listeners of customer-interface pushes whose operator hands out the encryption
    key but not the authentication key: the result is NOT authenticated and may be forged.
    :class:`SecurityContext` never uses this."""
    try:
        iv = make_iv(system_title, invocation_counter)
        ek = _check_key(encryption_key, "encryption key")
    except EncodeError as exc:
        raise DecodeError(str(exc)) from exc
    if tagged:
        if len(protected) < TAG_LENGTH:
            raise DecodeError(f"ciphered text shorter than the {TAG_LENGTH}-byte tag")
        protected = protected[:-TAG_LENGTH]
    return _ctr(ek, iv, bytes(protected))


def gmac(
    system_title: bytes,
    invocation_counter: int,
    data: bytes,
    *,
    encryption_key: Secret,
    authentication_key: Secret,
    sc: SecurityControl = AUTHENTICATION_ONLY,
) -> bytes:
    """GMAC(SC || AK || data): the 12-byte tag of AES-GCM over empty plaintext."""
    iv = make_iv(system_title, invocation_counter)
    ek = _check_key(encryption_key, "encryption key")
    aad = sc.to_bytes() + _check_key(authentication_key, "authentication key") + bytes(data)
    return AESGCM(ek).encrypt(iv, b"", aad)[:TAG_LENGTH]


# --------------------------------------------------------------------------- envelopes


def plain_tag_for(protected_tag: int) -> int | None:
    """The plain xDLMS tag a service-specific glo-/ded- tag protects (None if not one)."""
    return _PLAIN_FOR_PROTECTED.get(protected_tag)


def is_ciphered_tag(tag: int) -> bool:
    """True for the first byte of any ciphered APDU this module decodes (service-specific
    glo-/ded- tags and general-glo-ciphering): hand those to :meth:`SecurityContext.unprotect`
    before :func:`edge_core.dlms.apdu.decode_apdu`."""
    return tag == GENERAL_GLO_CIPHERING or tag in _PLAIN_FOR_PROTECTED


def protected_tag_for(plain_tag: int, *, dedicated: bool = False) -> int | None:
    """The service-specific glo- (or ded-) tag for a plain xDLMS tag; None means the APDU
    has none (data-notification, exception-response...) and goes in general-glo-ciphering."""
    return (_DED_FOR_PLAIN if dedicated else _GLO_FOR_PLAIN).get(plain_tag)


def _read_octets(buf: bytes, pos: int, what: str) -> tuple[bytes, int]:
    n, pos = decode_length(buf, pos)
    if pos + n > len(buf):
        raise DecodeError(f"{what} truncated: {n} bytes announced, {len(buf) - pos} left", data=buf)
    return buf[pos : pos + n], pos + n


def _split_content(content: bytes, buf: bytes) -> tuple[SecurityControl, int, bytes]:
    if len(content) < 5:
        raise DecodeError("ciphered content shorter than SC + invocation counter", data=buf)
    return (
        SecurityControl.from_byte(content[0]),
        int.from_bytes(content[1:5], "big"),
        bytes(content[5:]),
    )


@dataclass(frozen=True, slots=True)
class GloCiphered:
    """A service-specific ciphered APDU (glo-get-request 0xC8, ..., ded- variants):
    ``tag, length, SC, IC(4), ciphered`` where ``ciphered`` is ciphertext and/or tag."""

    tag: int
    security_control: SecurityControl
    invocation_counter: int
    ciphered: bytes

    @property
    def plain_tag(self) -> int:
        """The tag of the APDU inside."""
        plain = plain_tag_for(self.tag)
        if plain is None:
            raise DecodeError(f"0x{self.tag:02x} is not a service-specific ciphered tag")
        return plain

    @property
    def dedicated(self) -> bool:
        return self.tag in _DED_FOR_PLAIN.values()

    def to_bytes(self) -> bytes:
        if plain_tag_for(self.tag) is None:
            raise EncodeError(f"0x{self.tag:02x} is not a service-specific ciphered tag")
        if not 0 <= self.invocation_counter <= MAX_INVOCATION_COUNTER:
            raise EncodeError(f"invocation counter {self.invocation_counter} out of range")
        content = (
            self.security_control.to_bytes()
            + self.invocation_counter.to_bytes(4, "big")
            + self.ciphered
        )
        return bytes((self.tag,)) + encode_length(len(content)) + content

    @classmethod
    def from_bytes(cls, buf: bytes) -> GloCiphered:
        buf = bytes(buf)
        if not buf or plain_tag_for(buf[0]) is None:
            raise DecodeError("not a service-specific ciphered APDU", data=buf[:8])
        content, end = _read_octets(buf, 1, "ciphered APDU")
        if end != len(buf):
            raise DecodeError(f"{len(buf) - end} bytes after the ciphered APDU", data=buf)
        sc, ic, ciphered = _split_content(content, buf)
        return cls(buf[0], sc, ic, ciphered)


@dataclass(frozen=True, slots=True)
class GeneralGloCiphering:
    """general-glo-ciphering (0xDB): ``0xDB, len, system title, length, SC, IC, ciphered``.
    ``system_title`` is the sender's; empty when the sender left it out."""

    system_title: bytes
    security_control: SecurityControl
    invocation_counter: int
    ciphered: bytes

    TAG = GENERAL_GLO_CIPHERING

    def to_bytes(self) -> bytes:
        if len(self.system_title) not in (0, SYSTEM_TITLE_LENGTH):
            raise EncodeError(f"system title must be 0 or 8 bytes, not {len(self.system_title)}")
        if not 0 <= self.invocation_counter <= MAX_INVOCATION_COUNTER:
            raise EncodeError(f"invocation counter {self.invocation_counter} out of range")
        content = (
            self.security_control.to_bytes()
            + self.invocation_counter.to_bytes(4, "big")
            + self.ciphered
        )
        return (
            bytes((self.TAG, len(self.system_title)))
            + self.system_title
            + encode_length(len(content))
            + content
        )

    @classmethod
    def from_bytes(cls, buf: bytes) -> GeneralGloCiphering:
        buf = bytes(buf)
        if not buf or buf[0] != cls.TAG:
            raise DecodeError("not a general-glo-ciphering APDU", data=buf[:8])
        title, pos = _read_octets(buf, 1, "system title")
        if len(title) not in (0, SYSTEM_TITLE_LENGTH):
            raise DecodeError(f"system title of {len(title)} bytes", data=buf)
        content, end = _read_octets(buf, pos, "ciphered content")
        if end != len(buf):
            raise DecodeError(f"{len(buf) - end} bytes after general-glo-ciphering", data=buf)
        sc, ic, ciphered = _split_content(content, buf)
        return cls(title, sc, ic, ciphered)


def decode_ciphered(buf: bytes) -> GloCiphered | GeneralGloCiphering:
    """Decode either envelope by its first byte; DecodeError for anything else."""
    if buf and buf[0] == GENERAL_GLO_CIPHERING:
        return GeneralGloCiphering.from_bytes(buf)
    return GloCiphered.from_bytes(buf)


# --------------------------------------------------------------------------- HLS-GMAC


def make_challenge(length: int = 16, *, random: Callable[[int], bytes] = os.urandom) -> bytes:
    """A fresh HLS challenge of ``length`` bytes (8..64); ``random`` is injectable for tests."""
    if not CHALLENGE_MIN <= length <= CHALLENGE_MAX:
        raise EncodeError(f"HLS challenge must be 8..64 bytes, not {length}")
    out = random(length)
    if len(out) != length:
        raise EncodeError("random source returned the wrong number of bytes")
    return out


def _check_challenge(challenge: bytes) -> None:
    if not CHALLENGE_MIN <= len(challenge) <= CHALLENGE_MAX:
        raise DecodeError(f"HLS challenge must be 8..64 bytes, not {len(challenge)}")


HLS_RESPONSE_LENGTH = 1 + 4 + TAG_LENGTH
"""f(challenge) is SC (1) || IC (4) || GMAC (12) = 17 bytes."""


def hls_gmac_response(
    own_system_title: bytes,
    invocation_counter: int,
    peer_challenge: bytes,
    *,
    encryption_key: Secret,
    authentication_key: Secret,
) -> bytes:
    """f(challenge) = SC || IC || GMAC(SC || AK || challenge), SC = 0x10, computed with the
    computing party's own system title and a fresh IC of its own (17 bytes)."""
    _check_challenge(peer_challenge)
    sc = AUTHENTICATION_ONLY
    tag = gmac(
        own_system_title,
        invocation_counter,
        peer_challenge,
        encryption_key=encryption_key,
        authentication_key=authentication_key,
        sc=sc,
    )
    return sc.to_bytes() + invocation_counter.to_bytes(4, "big") + tag


def verify_hls_gmac_response(
    peer_system_title: bytes,
    own_challenge: bytes,
    response: bytes,
    *,
    encryption_key: Secret,
    authentication_key: Secret,
) -> int:
    """Check the peer's f(own_challenge); returns the peer's IC carried in it.
    Raises AuthenticationTagError when it does not verify (DecodeError when malformed)."""
    _check_challenge(own_challenge)
    if len(response) != HLS_RESPONSE_LENGTH:
        raise DecodeError(f"HLS-GMAC response of {len(response)} bytes, expected 17")
    sc = SecurityControl.from_byte(response[0])
    if sc != AUTHENTICATION_ONLY:
        raise DecodeError(f"HLS-GMAC response with security control 0x{response[0]:02x}")
    ic = int.from_bytes(response[1:5], "big")
    try:
        expected = gmac(
            peer_system_title,
            ic,
            own_challenge,
            encryption_key=encryption_key,
            authentication_key=authentication_key,
            sc=sc,
        )
    except EncodeError as exc:
        raise DecodeError(str(exc)) from exc
    if not hmac.compare_digest(expected, response[5:]):
        raise AuthenticationTagError("HLS-GMAC response does not verify")
    return ic


class _Acse(enum.IntEnum):
    LOGICAL_NAME = 1
    LOGICAL_NAME_CIPHERING = 3


@dataclass(frozen=True, slots=True)
class AssociationSecurityFields:
    """What an AARQ (client) or AARE (server) carries for HLS-GMAC, as plain values.

    ``application_context`` is the last arc of 2.16.756.5.8.1.x (1 LN, 3 LN with ciphering),
    ``mechanism`` the last arc of 2.16.756.5.8.2.x (5), ``ap_title`` the sender's system
    title (AARQ calling-AP-title [6] / AARE responding-AP-title [4]) and
    ``authentication_value`` the sender's challenge (CtoS in the AARQ calling-authentication-
    value [12], StoC in the AARE responding-authentication-value [10])."""

    application_context: int
    mechanism: int
    ap_title: bytes
    authentication_value: bytes


# ACTION reply_to_HLS_authentication: class 15 (association LN), 0.0.40.0.0.255, method 1.
_HLS_METHOD = bytes.fromhex("000f0000280000ff01")
_ACTION_REQUEST_NORMAL = bytes.fromhex("c301")
_ACTION_RESPONSE_NORMAL = bytes.fromhex("c701")


def _octet_string(value: bytes) -> bytes:
    return b"\x09" + encode_length(len(value)) + value


def _read_octet_string(buf: bytes, pos: int) -> tuple[bytes, int]:
    if pos >= len(buf) or buf[pos] != 0x09:
        raise DecodeError("expected an octet-string (0x09)", data=buf)
    return _read_octets(buf, pos + 1, "octet-string")


@dataclass(frozen=True, slots=True)
class HlsReplyRequest:
    """ACTION-Request-Normal calling reply_to_HLS_authentication with the client's f(StoC):
    ``C3 01 invoke | 000F 0000280000FF 01 | 01 09 len f(StoC)``. ``invoke`` is the whole
    invoke-id-and-priority byte."""

    invoke: int
    response: bytes

    def to_bytes(self) -> bytes:
        if not 0 <= self.invoke <= 0xFF:
            raise EncodeError(f"invoke-id-and-priority {self.invoke} is not a byte")
        return (
            _ACTION_REQUEST_NORMAL
            + bytes((self.invoke,))
            + _HLS_METHOD
            + b"\x01"
            + _octet_string(self.response)
        )

    @classmethod
    def from_bytes(cls, buf: bytes) -> HlsReplyRequest:
        buf = bytes(buf)
        head = len(_ACTION_REQUEST_NORMAL) + 1 + len(_HLS_METHOD)
        if len(buf) < head + 1 or not buf.startswith(_ACTION_REQUEST_NORMAL):
            raise DecodeError("not an ACTION-Request-Normal", data=buf)
        if buf[3:head] != _HLS_METHOD:
            raise DecodeError("ACTION is not reply_to_HLS_authentication", data=buf)
        if buf[head] != 0x01:
            raise DecodeError("reply_to_HLS_authentication without parameters", data=buf)
        value, end = _read_octet_string(buf, head + 1)
        if end != len(buf):
            raise DecodeError("bytes after the ACTION request", data=buf)
        return cls(buf[2], value)


@dataclass(frozen=True, slots=True)
class HlsReplyResponse:
    """ACTION-Response-Normal to reply_to_HLS_authentication:
    ``C7 01 invoke result | 01 00 09 len f(CtoS)`` on success (``response`` set), or
    ``C7 01 invoke result 00`` without return parameters. ``result`` is the action-result
    (0 success, 3 read-write-denied / 250 other-reason... as the meter chooses)."""

    invoke: int
    result: int
    response: bytes | None = None

    def to_bytes(self) -> bytes:
        if not 0 <= self.invoke <= 0xFF or not 0 <= self.result <= 0xFF:
            raise EncodeError("invoke or result is not a byte")
        head = _ACTION_RESPONSE_NORMAL + bytes((self.invoke, self.result))
        if self.response is None:
            return head + b"\x00"
        return head + b"\x01\x00" + _octet_string(self.response)

    @classmethod
    def from_bytes(cls, buf: bytes) -> HlsReplyResponse:
        buf = bytes(buf)
        if len(buf) < 4 or not buf.startswith(_ACTION_RESPONSE_NORMAL):
            raise DecodeError("not an ACTION-Response-Normal", data=buf)
        invoke, result = buf[2], buf[3]
        # Some meters end after the result (no optional-data byte at all, FIELD-NOTES).
        if len(buf) == 4 or (len(buf) == 5 and buf[4] == 0x00):
            return cls(invoke, result, None)
        if buf[4] != 0x01 or len(buf) < 6:
            raise DecodeError("bad return-parameters in ACTION response", data=buf)
        if buf[5] != 0x00:
            raise DecodeError("ACTION return-parameters carry a data-access-result", data=buf)
        value, end = _read_octet_string(buf, 6)
        if end != len(buf):
            raise DecodeError("bytes after the ACTION response", data=buf)
        return cls(invoke, result, value)


# --------------------------------------------------------------------------- context


@dataclass(slots=True)
class _Counters:
    next: int | None = None
    stop: int = 0


@dataclass(slots=True, repr=False, eq=False)
class SecurityContext:
    """One association's suite-0 state (see the module's theory of operation).

    ``system_title`` is ours; ``peer_system_title`` the other side's (client: from the AARE
    responding-AP-title; server: from the AARQ calling-AP-title; a push listener may set it
    from configuration or leave it to the general-glo-ciphering header). ``policy`` is the
    protection we send with and the minimum we accept. ``general_glo`` sends every APDU as
    general-glo-ciphering instead of the service-specific glo- tags.
    """

    system_title: bytes
    encryption_key: Secret
    authentication_key: Secret
    peer_system_title: bytes | None = None
    last_peer_counter: int | None = None
    policy: SecurityControl = AUTHENTICATED_ENCRYPTED
    general_glo: bool = False
    _counters: _Counters = field(default_factory=_Counters, init=False)

    def __post_init__(self) -> None:
        _check_title(self.system_title)
        _check_key(self.encryption_key, "encryption key")
        _check_key(self.authentication_key, "authentication key")
        _check_suite0_policy(self.policy)
        if self.peer_system_title is not None:
            _check_title(self.peer_system_title)

    def __repr__(self) -> str:
        return (
            f"<SecurityContext title={self.system_title.hex()} "
            f"peer={self.peer_system_title.hex() if self.peer_system_title else None} "
            f"next_ic={self._counters.next} left={self.counters_left} "
            f"last_peer_ic={self.last_peer_counter} sc=0x{self.policy.to_byte():02x}>"
        )

    __str__ = __repr__

    # -- counters we send with

    def grant(self, counters: CounterRange) -> None:
        """Add invocation counters to send with. The range must not start before the next
        counter (monotonic: never reuse, never go back)."""
        nxt = self._counters.next
        if nxt is not None and counters.start < nxt:
            raise EncodeError(f"invocation counter range starts at {counters.start}, before {nxt}")
        self._counters.next = counters.start
        self._counters.stop = counters.stop

    @property
    def next_invocation_counter(self) -> int | None:
        """The counter the next protected APDU will use; None before the first grant."""
        return self._counters.next

    @property
    def counters_left(self) -> int:
        """Counters left in the granted range (ask the store for more when this is 0)."""
        nxt = self._counters.next
        return 0 if nxt is None else self._counters.stop - nxt

    def _take(self) -> int:
        nxt = self._counters.next
        if nxt is None or nxt >= self._counters.stop:
            if nxt is not None and nxt > MAX_INVOCATION_COUNTER:
                raise InvocationCounterExhaustedError("invocation counters exhausted: rekey")
            raise InvocationCounterExhaustedError("no invocation counter granted: reserve more")
        self._counters.next = nxt + 1
        return nxt

    # -- peer

    def learn_peer_system_title(self, title: bytes) -> None:
        """Record the peer's system title (AARE responding-AP-title / AARQ calling-AP-title).
        A different title from the one known resets the replay state (another device)."""
        title = bytes(title)
        if len(title) != SYSTEM_TITLE_LENGTH:
            raise DecodeError(f"peer system title of {len(title)} bytes", data=title)
        if self.peer_system_title is not None and self.peer_system_title != title:
            logger.info(
                "peer system title changed from %s to %s", self.peer_system_title.hex(), title.hex()
            )
            self.last_peer_counter = None
        self.peer_system_title = title

    def _accept_counter(self, received: int) -> None:
        last = self.last_peer_counter
        if last is not None and received <= last:
            raise ReplayError(
                f"invocation counter {received} not greater than {last}",
                received=received,
                last=last,
            )

    # -- APDUs

    def protect(self, apdu: bytes) -> bytes:
        """Cipher a plain xDLMS APDU, choosing the glo- tag from its first byte (general-glo-
        ciphering when it has none, or when ``general_glo``). Uses one invocation counter."""
        apdu = bytes(apdu)
        if not apdu:
            raise EncodeError("empty APDU")
        glo = None if self.general_glo else protected_tag_for(apdu[0])
        ic = self._take()
        body = encrypt(
            self.policy,
            self.system_title,
            ic,
            apdu,
            encryption_key=self.encryption_key,
            authentication_key=self.authentication_key,
        )
        logger.debug("protected APDU 0x%02x (%d bytes) with IC %d", apdu[0], len(apdu), ic)
        if glo is None:
            return GeneralGloCiphering(self.system_title, self.policy, ic, body).to_bytes()
        return GloCiphered(glo, self.policy, ic, body).to_bytes()

    def unprotect(self, ciphered: bytes) -> bytes:
        """Verify and decipher a glo- or general-glo-ciphering APDU; returns the plain APDU.
        Raises AuthenticationTagError (tag), ReplayError (counter), DecodeError (anything
        malformed or weaker than ``policy``)."""
        env = decode_ciphered(ciphered)
        if isinstance(env, GloCiphered):
            if env.dedicated:
                raise DecodeError("dedicated-key ciphering is not supported")
            title = self.peer_system_title
            if title is None:
                raise DecodeError("glo- APDU before the peer system title is known")
            expect: int | None = env.plain_tag
        else:
            if env.system_title and self.peer_system_title not in (None, env.system_title):
                raise DecodeError(
                    f"general-glo-ciphering from system title {env.system_title.hex()}, "
                    f"expected {self.peer_system_title.hex() if self.peer_system_title else ''}"
                )
            title = env.system_title or self.peer_system_title
            if title is None:
                raise DecodeError("general-glo-ciphering without system title, none known")
            expect = None
        sc = env.security_control
        _check_suite0(sc)
        if not sc.covers(self.policy):
            raise DecodeError(
                f"security control 0x{sc.to_byte():02x} weaker than required "
                f"0x{self.policy.to_byte():02x}"
            )
        self._accept_counter(env.invocation_counter)
        plain = decrypt(
            sc,
            title,
            env.invocation_counter,
            env.ciphered,
            encryption_key=self.encryption_key,
            authentication_key=self.authentication_key,
        )
        if expect is not None and (not plain or plain[0] != expect):
            # The outer tag is not covered by the GCM tag: a changed tag lands here.
            raise DecodeError(f"ciphered APDU holds 0x{plain[:1].hex()}, expected 0x{expect:02x}")
        if sc.authenticated:
            self.last_peer_counter = env.invocation_counter
        else:
            # Nothing vouches for this IC; it must not move the replay window.
            logger.debug("accepted unauthenticated APDU with IC %d", env.invocation_counter)
        if isinstance(env, GeneralGloCiphering) and self.peer_system_title is None:
            self.peer_system_title = title
        logger.debug(
            "unprotected APDU 0x%s (%d bytes) with IC %d",
            plain[:1].hex(),
            len(plain),
            env.invocation_counter,
        )
        return plain

    # -- HLS-GMAC

    def hls_response(self, peer_challenge: bytes) -> bytes:
        """Our f(peer_challenge) (client: f(StoC); server: f(CtoS)). Uses one counter."""
        ic = self._take()
        return hls_gmac_response(
            self.system_title,
            ic,
            peer_challenge,
            encryption_key=self.encryption_key,
            authentication_key=self.authentication_key,
        )

    def verify_hls_response(self, own_challenge: bytes, response: bytes) -> None:
        """Check the peer's f(own_challenge) with the peer's system title. The challenge is
        fresh, so no replay rule is applied to the IC inside. Raises AuthenticationTagError."""
        if self.peer_system_title is None:
            raise DecodeError("HLS-GMAC response before the peer system title is known")
        ic = verify_hls_gmac_response(
            self.peer_system_title,
            own_challenge,
            response,
            encryption_key=self.encryption_key,
            authentication_key=self.authentication_key,
        )
        logger.debug("HLS-GMAC response verified (peer IC %d)", ic)

    def association_fields(self, challenge: bytes) -> AssociationSecurityFields:
        """The AARQ/AARE fields for HLS-GMAC with our ``challenge``; the application context
        is LN-with-ciphering when the policy encrypts, plain LN otherwise."""
        ctx = _Acse.LOGICAL_NAME_CIPHERING if self.policy.encrypted else _Acse.LOGICAL_NAME
        return AssociationSecurityFields(
            int(ctx), HLS_GMAC_MECHANISM_ID, self.system_title, bytes(challenge)
        )


def _check_suite0_policy(policy: SecurityControl) -> None:
    try:
        _check_suite0(policy)
    except DecodeError as exc:
        raise EncodeError(f"unusable security policy: {exc}") from exc
