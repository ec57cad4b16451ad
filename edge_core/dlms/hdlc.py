"""HDLC (IEC 62056-46, frame format type 3) for DLMS/COSEM, sans-I/O.

Bytes in, frames and events out; no sockets, serial ports or asyncio here.

Theory of operation
-------------------
*Framing.* A frame is ``7E | format(2) | dst | src | ctrl | [HCS(2) info] | FCS(2) | 7E``. The
format field holds type 0xA, the segmentation bit and an 11-bit length counting every byte
between the flags. DLMS meters do not byte-stuff, so a 0x7E may appear inside the information
field or in the FCS (dlms-cosem issues #95/#97): :class:`FrameParser` therefore finds the end of
a frame with the length field, never by scanning for the next flag. HCS and FCS are
CRC-16/X.25 (reflected 0x8408, init 0xFFFF, xorout 0xFFFF), sent low byte first.

*Resynchronisation.* The parser keeps one invariant: every byte fed is either part of a good
frame (``stats.frame_bytes``) or discarded under a named reason (``stats.discarded``), or still
buffered. A candidate frame that fails (bad length, address, HCS, closing flag, FCS, control)
gives up only its opening flag; the bytes after it are rescanned, so a good frame hidden inside
a broken one is still found. The HCS is checked as soon as the header is in, so a garbage
length field cannot hold the parser waiting for up to 2 KiB of bytes that never come.

*Connection.* :class:`HdlcClient` is the client's link state machine. Its transitions are the
literal table ``_TRANSITIONS``. ``send_apdu`` queues I-frames (segmented by the negotiated
maximum information length, up to ``window`` frames in flight, P on the last of a window);
``receive_data`` returns events and may queue acknowledgements (RR) in the outbox, which the
transport drains with ``data_to_send``. On a timeout the transport calls ``on_timeout``: the
client queues what to resend (SNRM, DISC, the unacknowledged I-frames, or an RR poll).
Sequence numbers are modulo 8; a duplicate or out-of-sequence I-frame is not delivered twice.

*LLC.* The client adds ``E6 E6 00`` to every APDU it sends and strips ``E6 E7 00`` from every
APDU it delivers, so the application layer sees bare APDUs, exactly as over the TCP wrapper.
"""

from __future__ import annotations

import enum
import logging
from collections import Counter
from dataclasses import dataclass, field

from edge_core.errors import ChecksumError, FrameError

__all__ = [
    "DEFAULT_PARAMETERS",
    "FLAG",
    "LLC_REQUEST",
    "LLC_RESPONSE",
    "ApduReceived",
    "ClientState",
    "Connected",
    "Control",
    "Disconnected",
    "FrameParser",
    "FrameRejectError",
    "FrameType",
    "HdlcAddress",
    "HdlcClient",
    "HdlcEvent",
    "HdlcFrame",
    "HdlcParameters",
    "ParserStats",
    "PeerError",
    "UnexpectedFrameError",
    "add_llc",
    "fcs16",
    "negotiate",
    "segment",
    "strip_llc",
]

logger = logging.getLogger(__name__)

FLAG = 0x7E
LLC_REQUEST = b"\xe6\xe6\x00"
LLC_RESPONSE = b"\xe6\xe7\x00"
_FORMAT_TYPE = 0xA0
_MAX_LENGTH = 0x7FF
_MIN_LENGTH = 7  # format 2 + dst 1 + src 1 + control 1 + FCS 2


class FrameRejectError(FrameError):
    """The peer answered with FRMR (or DM while connected): the link must be re-established."""


class UnexpectedFrameError(FrameError):
    """A well-formed frame that the link state does not allow (ignored; state unchanged)."""


# --------------------------------------------------------------------------- CRC-16/X.25


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _make_table()


def fcs16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/X.25 of ``data`` (the value, not yet byte-swapped for the wire)."""
    crc = 0xFFFF
    table = _CRC_TABLE
    for b in data:
        crc = (crc >> 8) ^ table[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFF


def _crc_bytes(data: bytes | bytearray | memoryview) -> bytes:
    return fcs16(data).to_bytes(2, "little")


# --------------------------------------------------------------------------- addresses


@dataclass(frozen=True, slots=True)
class HdlcAddress:
    """An HDLC address of 1, 2 or 4 bytes (extended addressing, low bit 1 ends it).

    ``logical`` is the upper HDLC address (client SAP, or server logical device), ``physical``
    the lower one (server physical device; ``None`` in the 1-byte form). One- and two-byte
    forms carry 7-bit values, the four-byte form 14-bit values.
    """

    logical: int
    physical: int | None = None
    length: int = 1

    def __post_init__(self) -> None:
        if self.length == 1:
            ok = self.physical is None and 0 <= self.logical < 0x80
        elif self.length in (2, 4):
            limit = 0x80 if self.length == 2 else 0x4000
            ok = (
                self.physical is not None
                and 0 <= self.logical < limit
                and 0 <= self.physical < limit
            )
        else:
            ok = False
        if not ok:
            raise FrameError(f"invalid HDLC address {self!r}")

    @classmethod
    def client(cls, sap: int) -> HdlcAddress:
        """A client address (one byte): 16 public client, 1 management, ..."""
        return cls(sap, None, 1)

    @classmethod
    def server(cls, logical: int, physical: int | None = None) -> HdlcAddress:
        """A server address in the shortest form that holds it."""
        if physical is None:
            return cls(logical, None, 1)
        if logical < 0x80 and physical < 0x80:
            return cls(logical, physical, 2)
        return cls(logical, physical, 4)

    def encode(self) -> bytes:
        if self.physical is None:
            return bytes([(self.logical << 1) | 1])
        if self.length == 2:
            return bytes([self.logical << 1, (self.physical << 1) | 1])
        return bytes(
            [
                (self.logical >> 7) << 1,
                (self.logical & 0x7F) << 1,
                (self.physical >> 7) << 1,
                ((self.physical & 0x7F) << 1) | 1,
            ]
        )

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> HdlcAddress:
        raw = bytes(data)
        if len(raw) not in (1, 2, 4) or not raw[-1] & 1 or any(b & 1 for b in raw[:-1]):
            raise FrameError(
                "HDLC address must be 1, 2 or 4 bytes ending in a set low bit", data=raw
            )
        v = [b >> 1 for b in raw]
        if len(raw) == 1:
            return cls(v[0], None, 1)
        if len(raw) == 2:
            return cls(v[0], v[1], 2)
        return cls((v[0] << 7) | v[1], (v[2] << 7) | v[3], 4)


def _address_end(buf: bytes | bytearray, start: int, end: int) -> int:
    """Index after the address starting at ``start``; -1 if incomplete; raises if too long."""
    for i in range(start, min(end, start + 4)):
        if buf[i] & 1:
            n = i - start + 1
            if n == 3:
                raise FrameError("3-byte HDLC address", data=bytes(buf[start : i + 1]))
            return i + 1
    if end - start >= 4:
        raise FrameError("HDLC address longer than 4 bytes", data=bytes(buf[start : start + 4]))
    return -1


# --------------------------------------------------------------------------- control field


class FrameType(enum.Enum):
    """HDLC frame types used by DLMS (IEC 62056-46)."""

    I = "I"  # noqa: E741 - the standard's name
    RR = "RR"
    RNR = "RNR"
    SNRM = "SNRM"
    DISC = "DISC"
    UA = "UA"
    DM = "DM"
    FRMR = "FRMR"
    UI = "UI"


_U_CODES = {
    FrameType.SNRM: 0x83,
    FrameType.DISC: 0x43,
    FrameType.UA: 0x63,
    FrameType.DM: 0x0F,
    FrameType.FRMR: 0x87,
    FrameType.UI: 0x03,
}
_U_BY_CODE = {v: k for k, v in _U_CODES.items()}


@dataclass(frozen=True, slots=True)
class Control:
    """The control byte: frame type, poll/final bit, N(S) and N(R) (modulo 8)."""

    kind: FrameType
    poll_final: bool = True
    ssn: int = 0  # N(S), I-frames only
    rsn: int = 0  # N(R), I and S frames

    def __post_init__(self) -> None:
        if not (0 <= self.ssn < 8 and 0 <= self.rsn < 8):
            raise FrameError(f"sequence number out of range in {self!r}")
        if self.kind is not FrameType.I and self.ssn:
            raise FrameError(f"N(S) on a non-I frame {self!r}")
        if self.kind in _U_CODES and self.rsn:
            raise FrameError(f"N(R) on an unnumbered frame {self!r}")

    def encode(self) -> int:
        pf = 0x10 if self.poll_final else 0
        if self.kind is FrameType.I:
            return (self.rsn << 5) | pf | (self.ssn << 1)
        if self.kind is FrameType.RR:
            return (self.rsn << 5) | pf | 0x01
        if self.kind is FrameType.RNR:
            return (self.rsn << 5) | pf | 0x05
        return _U_CODES[self.kind] | pf

    @classmethod
    def decode(cls, byte: int) -> Control:
        pf = bool(byte & 0x10)
        if not byte & 1:
            return cls(FrameType.I, pf, (byte >> 1) & 7, byte >> 5)
        if byte & 0x0F == 0x01:
            return cls(FrameType.RR, pf, 0, byte >> 5)
        if byte & 0x0F == 0x05:
            return cls(FrameType.RNR, pf, 0, byte >> 5)
        kind = _U_BY_CODE.get(byte & 0xEF)
        if kind is None:
            raise FrameError(f"unknown HDLC control field 0x{byte:02x}", data=bytes([byte]))
        return cls(kind, pf)


# --------------------------------------------------------------------------- frames


@dataclass(frozen=True, slots=True)
class HdlcFrame:
    """One HDLC frame. ``encode`` gives the bytes with both flags; ``decode`` takes them."""

    destination: HdlcAddress
    source: HdlcAddress
    control: Control
    information: bytes = b""
    segmented: bool = False

    @property
    def kind(self) -> FrameType:
        return self.control.kind

    def encode(self) -> bytes:
        dst = self.destination.encode()
        src = self.source.encode()
        info = self.information
        length = 2 + len(dst) + len(src) + 1 + 2 + (2 + len(info) if info else 0)
        if length > _MAX_LENGTH:
            raise FrameError(f"HDLC frame of {length} bytes exceeds the 11-bit length field")
        fmt = (_FORMAT_TYPE | (0x08 if self.segmented else 0) | (length >> 8)) << 8 | (
            length & 0xFF
        )
        header = fmt.to_bytes(2, "big") + dst + src + bytes([self.control.encode()])
        body = header + _crc_bytes(header) + info if info else header
        return b"\x7e" + body + _crc_bytes(body) + b"\x7e"

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> HdlcFrame:
        """Decode exactly one frame, flags included. Raises FrameError / ChecksumError."""
        raw = bytes(data)
        if len(raw) < _MIN_LENGTH + 2 or raw[0] != FLAG or raw[-1] != FLAG:
            raise FrameError("not a flag-delimited HDLC frame", data=raw)
        length = ((raw[1] & 0x07) << 8) | raw[2]
        if length != len(raw) - 2:
            raise FrameError(f"length field {length} but {len(raw) - 2} bytes", data=raw)
        return _decode_body(raw, 1, length)


def _decode_body(buf: bytes | bytearray, start: int, length: int) -> HdlcFrame:
    """Decode the ``length`` bytes between the flags starting at ``buf[start]``."""
    end = start + length
    fmt = buf[start]
    if fmt & 0xF0 != _FORMAT_TYPE:
        raise FrameError(
            f"frame format type 0x{fmt >> 4:x}, expected 0xA", data=bytes(buf[start:end])
        )
    dst_end = _address_end(buf, start + 2, end)
    src_end = _address_end(buf, dst_end, end) if dst_end > 0 else -1
    if src_end < 0 or src_end + 3 > end:
        raise FrameError("HDLC frame too short for its header", data=bytes(buf[start:end]))
    ctrl = Control.decode(buf[src_end])
    if fcs16(memoryview(buf)[start : end - 2]) != int.from_bytes(buf[end - 2 : end], "little"):
        raise ChecksumError("HDLC FCS mismatch", data=bytes(buf[start:end]))
    hdr_end = src_end + 1
    info = b""
    if end - 2 > hdr_end:
        if end - 2 < hdr_end + 2:
            raise FrameError("HDLC frame with a truncated HCS", data=bytes(buf[start:end]))
        if fcs16(memoryview(buf)[start:hdr_end]) != int.from_bytes(
            buf[hdr_end : hdr_end + 2], "little"
        ):
            raise ChecksumError("HDLC HCS mismatch", data=bytes(buf[start:end]))
        info = bytes(buf[hdr_end + 2 : end - 2])
    return HdlcFrame(
        HdlcAddress.decode(buf[start + 2 : dst_end]),
        HdlcAddress.decode(buf[dst_end:src_end]),
        ctrl,
        info,
        bool(fmt & 0x08),
    )


# --------------------------------------------------------------------------- stream parser


@dataclass
class ParserStats:
    """Counters of a :class:`FrameParser` (bytes and events)."""

    bytes_in: int = 0
    frames: int = 0
    frame_bytes: int = 0  # flags included (a shared flag counts once)
    discarded: Counter[str] = field(default_factory=Counter)  # bytes by reason
    rejected: Counter[str] = field(default_factory=Counter)  # candidate frames by reason

    @property
    def discarded_bytes(self) -> int:
        return sum(self.discarded.values())


class FrameParser:
    """Finds HDLC frames in a byte stream (see the module's theory of operation).

    ``feed(data)`` returns the frames completed by ``data``, in order. Errors never escape:
    they are counted in ``stats.rejected`` and the bytes in ``stats.discarded``.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._after_flag = False  # buf[pos] follows a 0x7E (consumed)
        self._pending_flag = False  # that 0x7E is not yet attributed to a frame
        self.stats = ParserStats()

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame (a pending opening flag included)."""
        return len(self._buf) - self._pos + (1 if self._pending_flag else 0)

    def feed(self, data: bytes | bytearray | memoryview) -> list[HdlcFrame]:
        self._buf += data
        self.stats.bytes_in += len(data)
        out: list[HdlcFrame] = []
        while True:
            frame = self._next()
            if frame is None:
                break
            out.append(frame)
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        return out

    def discard_partial(self, reason: str = "timeout") -> int:
        """Drop whatever is buffered (the transport calls this after a timeout); bytes dropped."""
        n = self.buffered
        if n:
            self.stats.discarded[reason] += n
        self._buf.clear()
        self._pos = 0
        self._after_flag = self._pending_flag = False
        return n

    def _drop_flag(self, reason: str) -> None:
        if self._pending_flag:
            self.stats.discarded[reason] += 1
        self._pending_flag = False

    def _reject(self, reason: str, exc: Exception | None = None) -> None:
        self.stats.rejected[reason] += 1
        logger.debug("HDLC candidate frame rejected: %s (%s)", reason, exc)
        self._drop_flag(reason)
        self._after_flag = False

    def _next(self) -> HdlcFrame | None:
        buf = self._buf
        while True:
            pos = self._pos
            avail = len(buf) - pos
            if not self._after_flag:
                i = buf.find(FLAG, pos)
                if i < 0:
                    if avail:
                        self.stats.discarded["garbage"] += avail
                    self._pos = len(buf)
                    return None
                if i > pos:
                    self.stats.discarded["garbage"] += i - pos
                self._pos = i + 1
                self._after_flag = self._pending_flag = True
                continue
            if avail < 1:
                return None
            first = buf[pos]
            if first == FLAG:  # idle flag, or closing flag followed by an opening one
                self._drop_flag("idle_flag")
                self._pos = pos + 1
                self._pending_flag = True
                continue
            if first & 0xF0 != _FORMAT_TYPE:
                self._reject("format")
                continue
            if avail < 2:
                return None
            length = ((first & 0x07) << 8) | buf[pos + 1]
            if length < _MIN_LENGTH:
                self._reject("length")
                continue
            end = pos + length  # index of the closing flag
            # Early header check: addresses and HCS, so a bogus length cannot stall us.
            try:
                dst_end = _address_end(buf, pos + 2, min(len(buf), end))
                src_end = _address_end(buf, dst_end, min(len(buf), end)) if dst_end > 0 else -1
            except FrameError as exc:
                self._reject("address", exc)
                continue
            if src_end > 0:
                hdr_end = src_end + 1
                if hdr_end + 2 > end:
                    self._reject("length")
                    continue
                if end - 2 > hdr_end and len(buf) >= hdr_end + 2:
                    hcs = int.from_bytes(buf[hdr_end : hdr_end + 2], "little")
                    if fcs16(memoryview(buf)[pos:hdr_end]) != hcs:
                        self._reject("hcs")
                        continue
            if len(buf) < end + 1:
                return None
            if buf[end] != FLAG:
                self._reject("closing_flag")
                continue
            try:
                frame = _decode_body(buf, pos, length)
            except ChecksumError as exc:
                self._reject("fcs", exc)
                continue
            except FrameError as exc:
                self._reject("control", exc)
                continue
            self.stats.frames += 1
            self.stats.frame_bytes += length + 1 + (1 if self._pending_flag else 0)
            self._pos = end + 1
            self._pending_flag = False
            self._after_flag = True
            return frame


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True, slots=True)
class HdlcParameters:
    """HDLC link parameters, from the sender's point of view.

    ``max_info_tx``/``max_info_rx`` are the maximum information field lengths in bytes that
    the sender transmits/receives, ``window_tx``/``window_rx`` the window sizes in frames.
    """

    max_info_tx: int = 128
    max_info_rx: int = 128
    window_tx: int = 1
    window_rx: int = 1

    def __post_init__(self) -> None:
        if not (
            1 <= self.max_info_tx <= 2030
            and 1 <= self.max_info_rx <= 2030
            and 1 <= self.window_tx <= 7
            and 1 <= self.window_rx <= 7
        ):
            raise FrameError(f"HDLC parameters out of range: {self!r}")

    def encode(self) -> bytes:
        """The information field of SNRM/UA: format 0x81, group 0x80, parameters 5-8."""
        body = b""
        for pid, value, fixed in (
            (5, self.max_info_tx, 0),
            (6, self.max_info_rx, 0),
            (7, self.window_tx, 4),
            (8, self.window_rx, 4),
        ):
            n = fixed or (1 if value < 0x100 else 2)
            body += bytes([pid, n]) + value.to_bytes(n, "big")
        return bytes([0x81, 0x80, len(body)]) + body

    @classmethod
    def decode(cls, info: bytes) -> HdlcParameters:
        """Parse a SNRM/UA information field; absent values take the standard's defaults."""
        if not info:
            return cls()
        if len(info) < 3 or info[0] != 0x81 or info[1] != 0x80 or info[2] != len(info) - 3:
            raise FrameError("bad HDLC parameter field", data=info)
        values = {5: 128, 6: 128, 7: 1, 8: 1}
        i = 3
        while i < len(info):
            if i + 2 > len(info):
                raise FrameError("truncated HDLC parameter", data=info)
            pid, n = info[i], info[i + 1]
            if n < 1 or n > 4 or i + 2 + n > len(info):
                raise FrameError("bad HDLC parameter length", data=info)
            if pid in values:
                values[pid] = int.from_bytes(info[i + 2 : i + 2 + n], "big")
            i += 2 + n
        try:
            return cls(values[5], values[6], values[7], values[8])
        except FrameError as exc:
            raise FrameError(str(exc), data=info) from exc

    def flipped(self) -> HdlcParameters:
        """The same link seen from the other end (tx and rx swapped)."""
        return HdlcParameters(self.max_info_rx, self.max_info_tx, self.window_rx, self.window_tx)


DEFAULT_PARAMETERS = HdlcParameters()


def negotiate(proposal: HdlcParameters, answer: HdlcParameters) -> HdlcParameters:
    """The parameters a client uses: the minimum of its proposal and the server's UA values.

    ``answer`` is from the server's point of view (its tx is the client's rx).
    """
    return HdlcParameters(
        min(proposal.max_info_tx, answer.max_info_rx),
        min(proposal.max_info_rx, answer.max_info_tx),
        min(proposal.window_tx, answer.window_rx),
        min(proposal.window_rx, answer.window_tx),
    )


def segment(data: bytes, max_info: int) -> list[bytes]:
    """Split ``data`` into information fields of at most ``max_info`` bytes (at least one)."""
    if not data:
        return [b""]
    return [data[i : i + max_info] for i in range(0, len(data), max_info)]


def add_llc(apdu: bytes, *, response: bool = False) -> bytes:
    return (LLC_RESPONSE if response else LLC_REQUEST) + apdu


def strip_llc(info: bytes, *, response: bool = True) -> bytes:
    """Remove the LLC header (``E6 E7 00`` for responses, ``E6 E6 00`` for requests)."""
    llc = LLC_RESPONSE if response else LLC_REQUEST
    if not info.startswith(llc):
        raise FrameError(f"missing LLC header {llc.hex()}", data=info[:8])
    return info[3:]


# --------------------------------------------------------------------------- client


class ClientState(enum.Enum):
    DISCONNECTED = "DISCONNECTED"
    CONNECTING = "CONNECTING"  # SNRM sent
    CONNECTED = "CONNECTED"
    DISCONNECTING = "DISCONNECTING"  # DISC sent


@dataclass(frozen=True, slots=True)
class Connected:
    """UA received: the link is up with ``parameters`` (the client's view)."""

    parameters: HdlcParameters


@dataclass(frozen=True, slots=True)
class ApduReceived:
    """A complete APDU (LLC header removed). ``unsolicited``: it came in UI frames (push)."""

    apdu: bytes
    unsolicited: bool = False


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The link is down: ``by_peer`` when the meter sent DM/FRMR rather than UA to our DISC."""

    by_peer: bool = False


@dataclass(frozen=True, slots=True)
class PeerError:
    """Something the link could not accept; ``error`` is typed. The state stays usable."""

    error: FrameError


HdlcEvent = Connected | ApduReceived | Disconnected | PeerError

# The literal transition table: (state, frame type received) -> new state. Pairs not listed
# leave the state unchanged and yield PeerError(UnexpectedFrameError).
_TRANSITIONS: dict[tuple[ClientState, FrameType], ClientState] = {
    (ClientState.CONNECTING, FrameType.UA): ClientState.CONNECTED,
    (ClientState.CONNECTING, FrameType.DM): ClientState.DISCONNECTED,
    (ClientState.CONNECTED, FrameType.I): ClientState.CONNECTED,
    (ClientState.CONNECTED, FrameType.RR): ClientState.CONNECTED,
    (ClientState.CONNECTED, FrameType.RNR): ClientState.CONNECTED,
    (ClientState.CONNECTED, FrameType.UI): ClientState.CONNECTED,
    (ClientState.CONNECTED, FrameType.FRMR): ClientState.DISCONNECTED,
    (ClientState.CONNECTED, FrameType.DM): ClientState.DISCONNECTED,
    (ClientState.DISCONNECTING, FrameType.UA): ClientState.DISCONNECTED,
    (ClientState.DISCONNECTING, FrameType.DM): ClientState.DISCONNECTED,
    (ClientState.DISCONNECTING, FrameType.I): ClientState.DISCONNECTING,
    (ClientState.DISCONNECTING, FrameType.RR): ClientState.DISCONNECTING,
    (ClientState.DISCONNECTED, FrameType.UI): ClientState.DISCONNECTED,
    (ClientState.DISCONNECTED, FrameType.DM): ClientState.DISCONNECTED,
}
# What the client itself may start: (state, action) -> new state.
_ACTIONS: dict[tuple[ClientState, str], ClientState] = {
    (ClientState.DISCONNECTED, "connect"): ClientState.CONNECTING,
    (ClientState.CONNECTING, "connect"): ClientState.CONNECTING,
    (ClientState.CONNECTED, "send"): ClientState.CONNECTED,
    (ClientState.CONNECTED, "disconnect"): ClientState.DISCONNECTING,
    (ClientState.CONNECTING, "disconnect"): ClientState.DISCONNECTING,
    (ClientState.DISCONNECTING, "disconnect"): ClientState.DISCONNECTING,
}


class HdlcClient:
    """The client (primary station) side of one HDLC link, sans-I/O.

    ``proposal`` is what SNRM proposes (the client's view: tx = client to meter).
    """

    def __init__(
        self,
        client_address: HdlcAddress,
        server_address: HdlcAddress,
        proposal: HdlcParameters | None = None,
        *,
        send_parameters: bool = True,
    ) -> None:
        self.client_address = client_address
        self.server_address = server_address
        self.proposal = proposal or HdlcParameters(1024, 1024, 7, 7)
        self.send_parameters = send_parameters
        self.parameters = DEFAULT_PARAMETERS
        self.state = ClientState.DISCONNECTED
        self.parser = FrameParser()
        self._out = bytearray()
        self._frames_out = 0
        self._reset_link()

    # -- plumbing

    def _reset_link(self) -> None:
        self._vs = 0  # next N(S) to send
        self._vr = 0  # next N(S) expected
        self._unacked: list[HdlcFrame] = []  # sent, not yet acknowledged (oldest first)
        self._to_send: list[bytes] = []  # information fields still to send
        self._rx_parts: list[bytes] = []
        self._ui_parts: list[bytes] = []
        self._awaiting_response = False

    def _act(self, action: str) -> None:
        new = _ACTIONS.get((self.state, action))
        if new is None:
            raise UnexpectedFrameError(f"cannot {action} in state {self.state.value}")
        self.state = new

    def _frame(self, control: Control, info: bytes = b"", segmented: bool = False) -> HdlcFrame:
        return HdlcFrame(self.server_address, self.client_address, control, info, segmented)

    def _emit(self, frame: HdlcFrame) -> None:
        self._out += frame.encode()
        self._frames_out += 1

    def data_to_send(self) -> bytes:
        """Drain the outbox (bytes to write to the link)."""
        data = bytes(self._out)
        self._out.clear()
        return data

    def data_to_send_pending(self) -> bool:
        """True when the outbox holds bytes."""
        return bool(self._out)

    def frames_sent(self) -> int:
        """Frames put into the outbox so far."""
        return self._frames_out

    @property
    def busy(self) -> bool:
        """A request is in flight (frames unacknowledged, to send, or a response awaited)."""
        return bool(self._unacked or self._to_send or self._awaiting_response)

    # -- actions

    def connect(self) -> None:
        """Queue SNRM (with the parameter proposal unless ``send_parameters`` is False)."""
        self._act("connect")
        self._reset_link()
        info = self.proposal.encode() if self.send_parameters else b""
        self._emit(self._frame(Control(FrameType.SNRM), info))

    def disconnect(self) -> None:
        """Queue DISC."""
        self._act("disconnect")
        self._emit(self._frame(Control(FrameType.DISC)))

    def send_apdu(self, apdu: bytes) -> None:
        """Queue one APDU (the LLC header is added here) as I-frames."""
        if self.busy:
            raise UnexpectedFrameError("a request is already in flight")
        self._act("send")
        self._to_send = segment(add_llc(apdu), self.parameters.max_info_tx)
        self._awaiting_response = True
        self._send_window()

    def _send_window(self) -> None:
        window = self.parameters.window_tx
        while self._to_send and len(self._unacked) < window:
            info = self._to_send.pop(0)
            more = bool(self._to_send)
            last_of_window = not more or len(self._unacked) + 1 == window
            frame = self._frame(
                Control(FrameType.I, last_of_window, self._vs, self._vr), info, more
            )
            self._vs = (self._vs + 1) % 8
            self._unacked.append(frame)
            self._emit(frame)

    def reset(self) -> None:
        """Back to DISCONNECTED locally (no frame sent), e.g. before a new SNRM."""
        self.state = ClientState.DISCONNECTED
        self.parameters = DEFAULT_PARAMETERS
        self._reset_link()
        self.parser.discard_partial("reset")

    def abandon(self) -> None:
        """Forget the request in flight (after the transport gave up); a late answer to it is
        then reported as PeerError rather than delivered. Sequence numbers are kept."""
        self._unacked.clear()
        self._to_send = []
        self._rx_parts = []
        self._awaiting_response = False
        self.parser.discard_partial("abandoned")

    def on_timeout(self) -> None:
        """No answer in time: queue what to resend (the transport counts retries)."""
        if self.state is ClientState.CONNECTING:
            info = self.proposal.encode() if self.send_parameters else b""
            self._emit(self._frame(Control(FrameType.SNRM), info))
        elif self.state is ClientState.DISCONNECTING:
            self._emit(self._frame(Control(FrameType.DISC)))
        elif self._unacked:
            for frame in self._unacked:
                self._emit(frame)
        elif self._awaiting_response:
            self._emit(self._frame(Control(FrameType.RR, True, 0, self._vr)))
        self.parser.discard_partial()

    # -- input

    def _ack(self, nr: int) -> bool:
        """Drop unacknowledged frames below ``nr``; False if ``nr`` acknowledges nothing valid."""
        outstanding = [f.control.ssn for f in self._unacked]
        if nr == self._vs:
            self._unacked.clear()
            return True
        if nr in outstanding:
            del self._unacked[: outstanding.index(nr)]
            return True
        return False

    def receive_data(self, data: bytes) -> list[HdlcEvent]:
        """Feed received bytes; returns the events they complete (in order)."""
        events: list[HdlcEvent] = []
        for frame in self.parser.feed(data):
            events.extend(self.receive_frame(frame))
        return events

    def receive_frame(self, frame: HdlcFrame) -> list[HdlcEvent]:
        kind = frame.kind
        if frame.destination.logical != self.client_address.logical:
            return [PeerError(UnexpectedFrameError(f"frame for another client {frame!r}"))]
        new = _TRANSITIONS.get((self.state, kind))
        if new is None:
            return [
                PeerError(
                    UnexpectedFrameError(
                        f"{kind.value} frame in state {self.state.value}", data=frame.encode()
                    )
                )
            ]
        old, self.state = self.state, new
        if kind is FrameType.UI:
            return self._on_ui(frame)
        if old is ClientState.CONNECTING and kind is FrameType.UA:
            try:
                answer = HdlcParameters.decode(frame.information)
            except FrameError as exc:
                self.state = old
                return [PeerError(exc)]
            self.parameters = (
                negotiate(self.proposal, answer)
                if self.send_parameters
                else (negotiate(DEFAULT_PARAMETERS, answer))
            )
            self._reset_link()
            return [Connected(self.parameters)]
        if kind is FrameType.FRMR:
            self._reset_link()
            return [
                PeerError(
                    FrameRejectError("meter rejected a frame (FRMR)", data=frame.information)
                ),
                Disconnected(True),
            ]
        if new is ClientState.DISCONNECTED:
            self._reset_link()
            return [Disconnected(kind is FrameType.DM and old is not ClientState.DISCONNECTING)]
        if kind is FrameType.I:
            return self._on_i(frame)
        if kind in (FrameType.RR, FrameType.RNR):
            if not self._ack(frame.control.rsn):
                return [
                    PeerError(
                        UnexpectedFrameError(
                            f"N(R)={frame.control.rsn} acknowledges nothing sent",
                            data=frame.encode(),
                        )
                    )
                ]
            if kind is FrameType.RR:
                self._send_window()
            return []
        return []

    def _on_i(self, frame: HdlcFrame) -> list[HdlcEvent]:
        ctrl = frame.control
        if not self._ack(ctrl.rsn):
            return [
                PeerError(
                    UnexpectedFrameError(
                        f"N(R)={ctrl.rsn} acknowledges nothing sent", data=frame.encode()
                    )
                )
            ]
        if self._to_send:
            # The peer answers before it got all our segments: it violates the protocol.
            return [PeerError(UnexpectedFrameError("I-frame before our request was complete"))]
        if ctrl.ssn != self._vr:
            # Duplicate or out of sequence: not delivered; ask for what we expect.
            if ctrl.poll_final:
                self._emit(self._frame(Control(FrameType.RR, True, 0, self._vr)))
            return [
                PeerError(
                    UnexpectedFrameError(
                        f"N(S)={ctrl.ssn}, expected {self._vr}", data=frame.encode()
                    )
                )
            ]
        self._vr = (self._vr + 1) % 8
        self._rx_parts.append(frame.information)
        if frame.segmented:
            if ctrl.poll_final:
                self._emit(self._frame(Control(FrameType.RR, True, 0, self._vr)))
            return []
        info = b"".join(self._rx_parts)
        self._rx_parts = []
        self._awaiting_response = False
        try:
            apdu = strip_llc(info)
        except FrameError as exc:
            return [PeerError(exc)]
        return [ApduReceived(apdu)]

    def _on_ui(self, frame: HdlcFrame) -> list[HdlcEvent]:
        self._ui_parts.append(frame.information)
        if frame.segmented:
            return []
        info = b"".join(self._ui_parts)
        self._ui_parts = []
        try:
            apdu = strip_llc(info)
        except FrameError as exc:
            return [PeerError(exc)]
        return [ApduReceived(apdu, unsolicited=True)]
