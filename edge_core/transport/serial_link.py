"""A pyserial port (device path or URL: socket://, rfc2217://, loop://) as an asyncio byte link.

Theory of operation: one reader thread owns ``serial.read``; it hands received bytes to the
event loop with ``loop.call_soon_threadsafe`` only. The handover is bounded: the thread stops
reading while ``max_buffered`` bytes wait unread on the loop side (the UART / socket buffers
the rest), and resumes when the reader drains them. Writes run in a worker thread with a
write timeout. pyserial's exceptions are mapped to ours here, and only here.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import serial  # pyserial: its exceptions are mapped at this boundary

from edge_core.errors import MeterTimeoutError, MeterUnreachableError, TransportError

__all__ = ["SerialLink"]

logger = logging.getLogger(__name__)


class SerialLink:
    """Byte link over pyserial. ``open`` must be awaited inside the loop that uses it."""

    def __init__(
        self,
        url: str,
        baudrate: int = 9600,
        *,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: float = 1,
        max_buffered: int = 65536,
        write_timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.baudrate = baudrate
        self._settings = {"bytesize": bytesize, "parity": parity, "stopbits": stopbits}
        self.max_buffered = max_buffered
        self.write_timeout = write_timeout
        self._serial: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._room = threading.Condition()
        self._pending = 0  # bytes handed over, not yet read (guarded by _room)
        self._buf = bytearray()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._data = asyncio.Event()
        self._error: Exception | None = None

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            self._serial = await asyncio.to_thread(
                serial.serial_for_url,
                self.url,
                baudrate=self.baudrate,
                timeout=0.05,
                write_timeout=self.write_timeout,
                **self._settings,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise MeterUnreachableError(f"cannot open {self.url}: {exc}", meter=self.url) from exc
        self._thread = threading.Thread(target=self._reader, name=f"serial {self.url}", daemon=True)
        self._thread.start()

    def _reader(self) -> None:
        loop = self._loop
        assert loop is not None
        while not self._stop.is_set():
            with self._room:
                while self._pending >= self.max_buffered and not self._stop.is_set():
                    self._room.wait(0.1)
            try:
                data = self._serial.read(max(1, self._serial.in_waiting or 1))
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                if not self._stop.is_set():
                    err = TransportError(f"serial read failed: {exc}", meter=self.url)
                    err.__cause__ = exc
                    loop.call_soon_threadsafe(self._fail, err)
                return
            if data:
                with self._room:
                    self._pending += len(data)
                try:
                    loop.call_soon_threadsafe(self._deliver, bytes(data))
                except RuntimeError:  # loop closed under us
                    return

    def _deliver(self, data: bytes) -> None:
        self._buf += data
        self._data.set()

    def _fail(self, exc: Exception) -> None:
        self._error = exc
        self._data.set()

    async def write(self, data: bytes) -> None:
        if self._serial is None:
            raise TransportError("serial link not open", meter=self.url)
        try:
            await asyncio.to_thread(self._serial.write, data)
        except serial.SerialTimeoutException as exc:
            raise MeterTimeoutError(f"serial write timed out: {exc}", meter=self.url) from exc
        except (serial.SerialException, OSError) as exc:
            raise TransportError(f"serial write failed: {exc}", meter=self.url) from exc

    async def read(self, max_bytes: int = 4096, timeout: float = 1.0) -> bytes:
        """At least one byte; MeterTimeoutError after ``timeout`` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._buf:
            if self._error is not None:
                raise self._error
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise MeterTimeoutError("no byte from the serial port in time", meter=self.url)
            self._data.clear()
            try:
                await asyncio.wait_for(self._data.wait(), remaining)
            except asyncio.TimeoutError:
                continue
        data = bytes(self._buf[:max_bytes])
        del self._buf[:max_bytes]
        with self._room:
            self._pending -= len(data)
            self._room.notify()
        return data

    async def close(self) -> None:
        self._stop.set()
        with self._room:
            self._room.notify()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 2.0)
            self._thread = None
        if self._serial is not None:
            ser, self._serial = self._serial, None
            try:
                ser.close()
            except Exception as exc:
                logger.debug("closing %s: %s", self.url, exc)
