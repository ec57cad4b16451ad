"""The seam between the DLMS application layer and a link.

A transport carries whole APDUs: the TCP wrapper adds its 8-byte header, HDLC segments an APDU
into I-frames (and reassembles the answer) under the LLC header. The sans-I/O framers live in
:mod:`edge_core.dlms`; transports only move their bytes. Every wait has a timeout and a timeout
raises :class:`~edge_core.errors.MeterTimeoutError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["ApduTransport", "WireStats"]


@dataclass
class WireStats:
    """What crossed the link, counted at the byte level (framing included)."""

    bytes_tx: int = 0
    bytes_rx: int = 0
    frames_tx: int = 0
    frames_rx: int = 0
    round_trips: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "bytes_tx": self.bytes_tx,
            "bytes_rx": self.bytes_rx,
            "frames_tx": self.frames_tx,
            "frames_rx": self.frames_rx,
            "round_trips": self.round_trips,
        }


class ApduTransport(Protocol):
    """One association's link to one meter."""

    stats: WireStats

    async def open(self) -> None:
        """Connect (and for HDLC, SNRM/UA with parameter negotiation)."""

    async def request(self, apdu: bytes, timeout: float) -> bytes:
        """Send one APDU and return the one complete APDU that answers it (timeout in s)."""

    async def receive(self, timeout: float) -> bytes:
        """Wait for an unsolicited APDU (DataNotification push); timeout in s."""

    async def close(self) -> None:
        """Disconnect (for HDLC, DISC/UA); idempotent."""
