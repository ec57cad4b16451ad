"""IEC 62056-47 wrapper framing (DLMS over TCP/UDP), sans-I/O.

Each APDU is preceded by an 8-byte header: version (2 bytes, always 1), source wPort (2),
destination wPort (2) and the APDU length (2, bytes). A TCP stream may deliver a frame in
pieces or several frames at once: :class:`WrapperDecoder` buffers what it is fed and returns
the complete frames.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from edge_core.errors import EncodeError, FrameError

__all__ = ["HEADER_SIZE", "WRAPPER_VERSION", "WrapperDecoder", "WrapperFrame"]

WRAPPER_VERSION = 1
HEADER_SIZE = 8
_HEADER = struct.Struct(">HHHH")


@dataclass(frozen=True, slots=True)
class WrapperFrame:
    """One wrapper frame: wPorts and the APDU it carries."""

    source: int
    destination: int
    payload: bytes

    def to_bytes(self) -> bytes:
        if len(self.payload) > 0xFFFF:
            raise EncodeError(f"APDU of {len(self.payload)} bytes exceeds the wrapper limit")
        try:
            head = _HEADER.pack(WRAPPER_VERSION, self.source, self.destination, len(self.payload))
        except struct.error as exc:
            raise EncodeError(f"wPort out of range: {self.source}, {self.destination}") from exc
        return head + self.payload


class WrapperDecoder:
    """Incremental parser: ``feed(bytes)`` returns every frame completed by those bytes.

    A header with a version other than 1 raises :class:`FrameError`; the stream cannot be
    resynchronised after that (the wrapper has no flag), so the caller should drop the link.
    """

    def __init__(self, max_payload: int = 0xFFFF) -> None:
        self._buf = bytearray()
        self._max = max_payload

    def feed(self, data: bytes) -> list[WrapperFrame]:
        self._buf += data
        frames: list[WrapperFrame] = []
        while len(self._buf) >= HEADER_SIZE:
            version, src, dst, length = _HEADER.unpack_from(self._buf, 0)
            if version != WRAPPER_VERSION:
                raise FrameError(
                    f"wrapper version {version}, expected 1", data=bytes(self._buf[:8])
                )
            if length > self._max:
                raise FrameError(f"wrapper frame of {length} bytes over the limit {self._max}")
            end = HEADER_SIZE + length
            if len(self._buf) < end:
                break
            frames.append(WrapperFrame(src, dst, bytes(self._buf[HEADER_SIZE:end])))
            del self._buf[:end]
        return frames

    @property
    def pending(self) -> int:
        """Bytes buffered towards an incomplete frame."""
        return len(self._buf)
