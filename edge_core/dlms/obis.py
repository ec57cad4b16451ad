"""OBIS codes (IEC 62056-6-1): six value groups A..F, each 0..255, six bytes on the wire."""

from __future__ import annotations

import re
from dataclasses import dataclass

from edge_core.errors import DecodeError, EncodeError

__all__ = ["Obis"]

# "1.0.1.8.0.255", "1-0:1.8.0*255", "1-0:1.8.0.255", "1.0.1.8.0" (F defaults to 255).
_SPLIT = re.compile(r"[.:*\-]")


@dataclass(frozen=True, slots=True, order=True)
class Obis:
    """An OBIS code. ``str()`` gives the dotted form ``"1.0.1.8.0.255"``."""

    a: int
    b: int
    c: int
    d: int
    e: int
    f: int = 255

    def __post_init__(self) -> None:
        for name in ("a", "b", "c", "d", "e", "f"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 255:
                raise EncodeError(f"OBIS group {name.upper()} must be 0..255, got {v!r}")

    @classmethod
    def parse(cls, text: str) -> Obis:
        """Parse ``"1.0.1.8.0.255"`` or ``"1-0:1.8.0*255"`` (F may be omitted: 255).

        Raises :class:`ValueError` for anything else (a user-input error, not a wire error).
        """
        parts = _SPLIT.split(text.strip())
        if len(parts) not in (5, 6) or not all(p.isdigit() for p in parts):
            raise ValueError(f"not an OBIS code: {text!r}")
        values = [int(p) for p in parts]
        if any(v > 255 for v in values):
            raise ValueError(f"OBIS value group out of range 0..255: {text!r}")
        return cls(*values)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Obis:
        if len(raw) != 6:
            raise DecodeError(f"OBIS code needs 6 bytes, got {len(raw)}", data=bytes(raw))
        return cls(*raw)

    def to_bytes(self) -> bytes:
        return bytes((self.a, self.b, self.c, self.d, self.e, self.f))

    def __str__(self) -> str:
        return f"{self.a}.{self.b}.{self.c}.{self.d}.{self.e}.{self.f}"

    @property
    def reduced(self) -> str:
        """The IEC short form ``"1-0:1.8.0*255"``."""
        return f"{self.a}-{self.b}:{self.c}.{self.d}.{self.e}*{self.f}"
