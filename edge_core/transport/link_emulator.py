"""An in-process serial line: bytes are delivered at a baud rate, both directions.

Theory of operation: each direction is a queue of written chunks stamped with the time their
first byte starts on the wire, ``start = max(now, end of the previous byte)``. Byte ``i`` of a
chunk is delivered at ``start + (i + 1) * bits_per_byte / baud`` (its serialisation finished),
so a reader sees bytes trickle in exactly as from a UART, and an exchange through the emulator
takes real wire time. Writes never block (a UART's transmit buffer is assumed big enough);
reads wait, with a timeout, for the next byte's delivery time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from edge_core.errors import MeterTimeoutError, TransportError

__all__ = ["EmulatedEndpoint", "LinkEmulator", "wire_time"]


def wire_time(nbytes: int, baud: int = 9600, bits_per_byte: int = 10) -> float:
    """Ideal time in s to serialise ``nbytes`` at ``baud`` (start + 8 data + stop = 10 bits)."""
    return nbytes * bits_per_byte / baud


class _Direction:
    def __init__(self, byte_time: float) -> None:
        self.byte_time = byte_time
        self.chunks: deque[tuple[float, bytes]] = deque()  # (start time, data)
        self.offset = 0  # bytes of chunks[0] already read
        self.busy_until = 0.0
        self.changed = asyncio.Event()
        self.closed = False
        self.bytes = 0

    def write(self, data: bytes, now: float) -> None:
        if not data:
            return
        start = max(now, self.busy_until)
        self.chunks.append((start, bytes(data)))
        self.busy_until = start + len(data) * self.byte_time
        self.bytes += len(data)
        self.changed.set()

    def take(self, now: float, limit: int) -> tuple[bytes, float | None]:
        """Bytes delivered by ``now`` (at most ``limit``), and when the next one arrives."""
        out = bytearray()
        while self.chunks and len(out) < limit:
            start, data = self.chunks[0]
            done = min(len(data), int((now - start) / self.byte_time + 1e-9))
            if done <= self.offset:
                return bytes(out), start + (self.offset + 1) * self.byte_time
            n = min(done - self.offset, limit - len(out))
            out += data[self.offset : self.offset + n]
            self.offset += n
            if self.offset == len(data):
                self.chunks.popleft()
                self.offset = 0
        nxt = None
        if self.chunks:
            start, _ = self.chunks[0]
            nxt = start + (self.offset + 1) * self.byte_time
        return bytes(out), nxt


class EmulatedEndpoint:
    """One end of a :class:`LinkEmulator`; implements the transports' byte-link seam."""

    def __init__(self, tx: _Direction, rx: _Direction) -> None:
        self._tx = tx
        self._rx = rx

    @property
    def bytes_written(self) -> int:
        return self._tx.bytes

    async def write(self, data: bytes) -> None:
        if self._tx.closed:
            raise TransportError("emulated link closed")
        self._tx.write(data, asyncio.get_running_loop().time())

    async def read(self, max_bytes: int = 4096, timeout: float = 1.0) -> bytes:
        """At least one byte, as soon as it is delivered; MeterTimeoutError after ``timeout`` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            now = loop.time()
            data, nxt = self._rx.take(now, max_bytes)
            if data:
                return data
            if self._rx.closed and nxt is None:
                raise TransportError("emulated link closed by peer")
            if now >= deadline:
                raise MeterTimeoutError("no byte on the emulated link in time")
            wait = deadline - now if nxt is None else min(deadline, nxt) - now
            self._rx.changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._rx.changed.wait(), max(wait, 0.0))

    async def close(self) -> None:
        self._tx.closed = True
        self._tx.changed.set()


class LinkEmulator:
    """A full-duplex line at ``baud`` with ``bits_per_byte`` bits per byte.

    ``a`` and ``b`` are the two endpoints (client and meter). Create it inside a running loop.
    """

    def __init__(self, baud: int = 9600, bits_per_byte: int = 10) -> None:
        self.baud = baud
        self.bits_per_byte = bits_per_byte
        byte_time = bits_per_byte / baud
        ab, ba = _Direction(byte_time), _Direction(byte_time)
        self.a = EmulatedEndpoint(ab, ba)
        self.b = EmulatedEndpoint(ba, ab)
        self._dirs = (ab, ba)

    @property
    def bytes_total(self) -> int:
        """Bytes written in both directions so far."""
        return sum(d.bytes for d in self._dirs)

    def ideal_time(self) -> float:
        """Serialisation time in s of every byte written so far, both directions back to back."""
        return wire_time(self.bytes_total, self.baud, self.bits_per_byte)
