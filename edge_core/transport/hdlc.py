"""HDLC client transports: over TCP, over a serial port (pyserial URL), over any byte link.

They implement :class:`~edge_core.transport.base.ApduTransport` on top of the sans-I/O
:class:`~edge_core.dlms.hdlc.HdlcClient`. ``request`` takes and returns bare APDUs: the LLC
header (``E6 E6 00`` out, ``E6 E7 00`` in) is added and stripped below, so the application
layer sees the same bytes as over the TCP wrapper.

Timing rule: every wait is bounded by the per-request timeout. When it expires the client
queues what to resend (the unacknowledged I-frames, or an RR poll for the next segment, or SNRM
/ DISC), up to ``retries`` times; then MeterTimeoutError. ``stats`` counts every byte read and
written (flags included), frames both ways, and round trips (one per write that expects an
answer).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from edge_core.dlms.hdlc import (
    ApduReceived,
    ClientState,
    Connected,
    Disconnected,
    HdlcAddress,
    HdlcClient,
    HdlcEvent,
    HdlcParameters,
    PeerError,
)
from edge_core.errors import (
    FrameError,
    MeterTimeoutError,
    MeterUnreachableError,
    TransportError,
)
from edge_core.transport.base import WireStats
from edge_core.transport.serial_link import SerialLink

__all__ = [
    "ByteLink",
    "HdlcSerialTransport",
    "HdlcTcpTransport",
    "HdlcTransport",
    "TcpLink",
]

logger = logging.getLogger(__name__)


class ByteLink(Protocol):
    """A bidirectional byte pipe (TCP socket, serial port, link emulator endpoint)."""

    async def write(self, data: bytes) -> None: ...

    async def read(self, max_bytes: int = 4096, timeout: float = 1.0) -> bytes:
        """At least one byte, or MeterTimeoutError after ``timeout`` s."""
        ...

    async def close(self) -> None: ...


class TcpLink:
    """asyncio streams as a :class:`ByteLink` (OSError mapped here)."""

    def __init__(self, host: str, port: int, connect_timeout: float = 10.0) -> None:
        self.host, self.port, self.connect_timeout = host, port, connect_timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    async def open(self) -> None:
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.connect_timeout
            )
        except (OSError, asyncio.TimeoutError) as exc:
            raise MeterUnreachableError(f"cannot connect: {exc!r}", meter=self.name) from exc

    async def write(self, data: bytes) -> None:
        if self._writer is None:
            raise TransportError("not connected", meter=self.name)
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as exc:
            raise TransportError(f"write failed: {exc}", meter=self.name) from exc

    async def read(self, max_bytes: int = 4096, timeout: float = 1.0) -> bytes:
        if self._reader is None:
            raise TransportError("not connected", meter=self.name)
        try:
            data = await asyncio.wait_for(self._reader.read(max_bytes), timeout)
        except asyncio.TimeoutError as exc:
            raise MeterTimeoutError("no byte in time", meter=self.name) from exc
        except OSError as exc:
            raise TransportError(f"read failed: {exc}", meter=self.name) from exc
        if not data:
            raise TransportError("connection closed by peer", meter=self.name)
        return data

    async def close(self) -> None:
        if self._writer is not None:
            writer, self._writer, self._reader = self._writer, None, None
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 2.0)
            except (OSError, asyncio.TimeoutError) as exc:
                logger.debug("closing %s: %s", self.name, exc)


class HdlcTransport:
    """HDLC over a :class:`ByteLink` (use the subclasses for TCP and serial)."""

    def __init__(
        self,
        link: ByteLink,
        client_address: int = 16,
        server_address: tuple[int, int | None] = (1, None),
        *,
        proposal: HdlcParameters | None = None,
        send_parameters: bool = True,
        retries: int = 3,
        open_timeout: float = 5.0,
        name: str = "",
    ) -> None:
        self.link = link
        self.retries = retries
        self.open_timeout = open_timeout
        self.name = name
        self.client = HdlcClient(
            HdlcAddress.client(client_address),
            HdlcAddress.server(*server_address),
            proposal,
            send_parameters=send_parameters,
        )
        self.stats = WireStats()
        self._pushed: list[bytes] = []
        self._opened = False
        self._frames_counted = 0

    @property
    def parameters(self) -> HdlcParameters:
        """The negotiated parameters (client's view)."""
        return self.client.parameters

    @classmethod
    def from_link(cls, link: ByteLink, **kwargs: object) -> HdlcTransport:
        """An HDLC transport over an already open link (e.g. a LinkEmulator endpoint)."""
        return cls(link, **kwargs)  # type: ignore[arg-type]

    async def _open_link(self) -> None:
        """Subclasses open their link here."""

    async def _flush(self) -> None:
        data = self._take_outbox()
        if data:
            self.stats.round_trips += 1
            await self.link.write(data)

    def _take_outbox(self) -> bytes:
        data = self.client.data_to_send()
        self.stats.bytes_tx += len(data)
        sent = self.client.frames_sent()
        self.stats.frames_tx += sent - self._frames_counted
        self._frames_counted = sent
        return data

    async def _exchange(self, timeout: float, done: type) -> HdlcEvent:
        """Write the outbox, read until an event of type ``done`` or an error, with retries."""
        await self._flush()
        tries = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise MeterTimeoutError("HDLC answer timed out", meter=self.name)
                data = await self.link.read(4096, remaining)
            except MeterTimeoutError:
                tries += 1
                if tries > self.retries:
                    self.client.abandon()
                    raise MeterTimeoutError(
                        f"no HDLC answer after {self.retries} retries", meter=self.name
                    ) from None
                logger.info("HDLC timeout on %s, retry %d", self.name, tries)
                self.client.on_timeout()
                await self._flush()
                deadline = loop.time() + timeout
                continue
            self.stats.bytes_rx += len(data)
            before = self.client.parser.stats.frames
            events = self.client.receive_data(data)
            self.stats.frames_rx += self.client.parser.stats.frames - before
            result: HdlcEvent | None = None
            for ev in events:
                if isinstance(ev, ApduReceived) and ev.unsolicited:
                    self._pushed.append(ev.apdu)
                elif isinstance(ev, PeerError):
                    logger.warning("HDLC on %s: %s", self.name, ev.error)
                    if self.client.state is ClientState.DISCONNECTED and done is not Disconnected:
                        raise ev.error
                elif isinstance(ev, done):
                    result = ev
                elif isinstance(ev, Disconnected) and done is not Disconnected:
                    raise TransportError("meter dropped the HDLC link", meter=self.name)
            if result is not None:
                await self._flush_silent()
                return result
            if self.client.data_to_send_pending():
                await self._flush()
                deadline = loop.time() + timeout

    async def _flush_silent(self) -> None:
        """Write what is queued without counting a round trip (nothing is awaited)."""
        data = self._take_outbox()
        if data:
            await self.link.write(data)

    async def open(self) -> None:
        await self._open_link()
        self._opened = True
        self.client.connect()
        ev = await self._exchange(self.open_timeout, Connected)
        if self.client.state is not ClientState.CONNECTED:
            raise MeterUnreachableError("meter refused SNRM (DM)", meter=self.name)
        logger.info("HDLC link %s up: %r", self.name, getattr(ev, "parameters", None))

    async def reconnect(self) -> None:
        """SNRM/UA again over the open link (after FRMR, DM or a request that timed out)."""
        self.client.reset()
        self.client.connect()
        await self._exchange(self.open_timeout, Connected)
        if self.client.state is not ClientState.CONNECTED:
            raise MeterUnreachableError("meter refused SNRM (DM)", meter=self.name)

    async def request(self, apdu: bytes, timeout: float) -> bytes:
        if self.client.state is not ClientState.CONNECTED:
            raise TransportError("HDLC link is not connected", meter=self.name)
        self.client.send_apdu(apdu)
        ev = await self._exchange(timeout, ApduReceived)
        assert isinstance(ev, ApduReceived)
        return ev.apdu

    async def receive(self, timeout: float) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._pushed:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise MeterTimeoutError("no unsolicited APDU in time", meter=self.name)
            data = await self.link.read(4096, remaining)
            self.stats.bytes_rx += len(data)
            before = self.client.parser.stats.frames
            for ev in self.client.receive_data(data):
                if isinstance(ev, ApduReceived):
                    self._pushed.append(ev.apdu)
            self.stats.frames_rx += self.client.parser.stats.frames - before
        return self._pushed.pop(0)

    async def close(self) -> None:
        if not self._opened:
            return
        self._opened = False
        try:
            if self.client.state in (ClientState.CONNECTED, ClientState.CONNECTING):
                self.client.disconnect()
                await self._exchange(self.open_timeout, Disconnected)
        except (TransportError, FrameError) as exc:
            logger.info("HDLC DISC on %s: %s", self.name, exc)
        finally:
            await self.link.close()


class HdlcTcpTransport(HdlcTransport):
    """HDLC frames over a TCP connection (meters behind a TCP/serial gateway)."""

    def __init__(
        self,
        host: str,
        port: int,
        client_address: int = 16,
        server_address: tuple[int, int | None] = (1, None),
        **kwargs: object,
    ) -> None:
        self._tcp = TcpLink(host, port)
        super().__init__(
            self._tcp,
            client_address,
            server_address,
            name=f"{host}:{port}",
            **kwargs,  # type: ignore[arg-type]
        )

    async def _open_link(self) -> None:
        await self._tcp.open()


class HdlcSerialTransport(HdlcTransport):
    """HDLC over a serial port: a device path or a pyserial URL (socket://, rfc2217://)."""

    def __init__(
        self,
        url: str,
        baudrate: int = 9600,
        client_address: int = 16,
        server_address: tuple[int, int | None] = (1, None),
        **kwargs: object,
    ) -> None:
        self._serial = SerialLink(url, baudrate)
        super().__init__(
            self._serial,
            client_address,
            server_address,
            name=url,
            **kwargs,  # type: ignore[arg-type]
        )

    async def _open_link(self) -> None:
        await self._serial.open()
