"""DLMS over TCP with the IEC 62056-47 wrapper: an asyncio :class:`ApduTransport`.

This module is the one boundary where socket errors (``OSError``) and asyncio timeouts become
ami-edge errors: a failed connect is :class:`MeterUnreachableError`, a wait past its timeout
:class:`MeterTimeoutError`, a dropped link :class:`TransportError`. Byte counts in
:attr:`stats` include the 8-byte wrapper header.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from edge_core.dlms.wrapper import WrapperDecoder, WrapperFrame
from edge_core.errors import MeterTimeoutError, MeterUnreachableError, TransportError
from edge_core.transport.base import WireStats

__all__ = ["TcpWrapperTransport"]

logger = logging.getLogger(__name__)

_READ_SIZE = 65536


class TcpWrapperTransport:
    """One TCP connection to one meter's wrapper port.

    ``client_wport``/``server_wport`` are the wrapper ports (the client and server SAPs:
    16 = public client, 1 = management logical device). Timeouts are in seconds.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_wport: int = 16,
        server_wport: int = 1,
        connect_timeout: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self.client_wport = client_wport
        self.server_wport = server_wport
        self.connect_timeout = connect_timeout
        self.stats = WireStats()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._decoder = WrapperDecoder()
        self._frames: deque[WrapperFrame] = deque()
        self._pushes: deque[bytes] = deque()

    @property
    def name(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    async def open(self) -> None:
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.connect_timeout
            )
        except TimeoutError as exc:
            raise MeterTimeoutError(
                f"connect timed out after {self.connect_timeout} s", meter=self.name
            ) from exc
        except OSError as exc:
            raise MeterUnreachableError(
                f"cannot connect: {exc.strerror or exc}", meter=self.name
            ) from exc

    async def request(self, apdu: bytes, timeout: float) -> bytes:
        await self._send(apdu)
        self.stats.round_trips += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self._next_frame(deadline - loop.time())
            if frame.payload[:1] == b"\x0f":  # a DataNotification push, not our answer
                self._pushes.append(frame.payload)
                continue
            return frame.payload

    async def receive(self, timeout: float) -> bytes:
        if self._pushes:
            return self._pushes.popleft()
        frame = await self._next_frame(timeout)
        return frame.payload

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is None:
            return
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 2.0)
        except (OSError, TimeoutError) as exc:
            logger.debug("%s: close: %s", self.name, exc)

    async def __aenter__(self) -> TcpWrapperTransport:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ internals

    async def _send(self, apdu: bytes) -> None:
        if self._writer is None:
            raise TransportError("not connected", meter=self.name)
        raw = WrapperFrame(self.client_wport, self.server_wport, apdu).to_bytes()
        try:
            self._writer.write(raw)
            await self._writer.drain()
        except OSError as exc:
            raise TransportError(f"send failed: {exc}", meter=self.name) from exc
        self.stats.bytes_tx += len(raw)
        self.stats.frames_tx += 1

    async def _next_frame(self, timeout: float) -> WrapperFrame:
        if self._reader is None:
            raise TransportError("not connected", meter=self.name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            while self._frames:
                frame = self._frames.popleft()
                if frame.source != self.server_wport or frame.destination != self.client_wport:
                    logger.info(
                        "%s: frame for wPorts %d->%d ignored",
                        self.name,
                        frame.source,
                        frame.destination,
                    )
                    continue
                return frame
            left = deadline - loop.time()
            if left <= 0:
                raise MeterTimeoutError(f"no answer within {timeout:.1f} s", meter=self.name)
            try:
                chunk = await asyncio.wait_for(self._reader.read(_READ_SIZE), left)
            except TimeoutError as exc:
                raise MeterTimeoutError(
                    f"no answer within {timeout:.1f} s", meter=self.name
                ) from exc
            except OSError as exc:
                raise TransportError(f"receive failed: {exc}", meter=self.name) from exc
            if not chunk:
                raise TransportError("connection closed by the meter", meter=self.name)
            self.stats.bytes_rx += len(chunk)
            frames = self._decoder.feed(chunk)
            self.stats.frames_rx += len(frames)
            self._frames.extend(frames)
