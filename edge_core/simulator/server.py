"""The meter simulator's network side: N simulated meters on ports P..P+N-1.

Each TCP connection gets its own :class:`~edge_core.dlms.server.ServerConnection` (one
association) over the meter's shared :class:`SimulatedMeter` object model. Framing is the
IEC 62056-47 wrapper (client wPort 16, server wPort 1 by default) or HDLC (server address 1)
using the HDLC server of :mod:`edge_core.dlms.hdlc_server`.

Robustness rule: a connection handler catches everything its client can cause (bad framing,
resets, model failures), logs it and closes that connection only; the listening sockets keep
serving. Every read waits at most ``idle_timeout`` seconds, so a silent client cannot hold a
connection forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

from edge_core.dlms.apdu import DataNotification
from edge_core.dlms.axdr import Data
from edge_core.dlms.cosem import CosemDateTime
from edge_core.dlms.server import ServerConnection
from edge_core.dlms.wrapper import WrapperDecoder, WrapperFrame
from edge_core.errors import ConfigError, MeterUnreachableError, ProtocolError
from edge_core.simulator.model import SimulatedMeter

__all__ = ["SimulatorHandle", "serve_meters"]

logger = logging.getLogger(__name__)

IDLE_TIMEOUT_S = 120.0


@dataclass
class SimulatorHandle:
    """Running simulator: ``ports[i]`` serves ``meter_ids[i]``; ``close()`` stops it."""

    host: str
    ports: list[int]
    meter_ids: list[str]
    meters: list[SimulatedMeter]
    transport: str
    _servers: list[asyncio.Server] = field(default_factory=list, repr=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, repr=False)
    _writers: dict[int, set[asyncio.StreamWriter]] = field(default_factory=dict, repr=False)
    _push_id: int = field(default=0, repr=False)

    def url(self, i: int) -> str:
        return f"tcp://{self.host}:{self.ports[i]}"

    async def push(self, i: int, body: Data, *, date_time: datetime | None = None) -> int:
        """Send a DataNotification from meter ``i`` to every client connected to it (wrapper
        framing only) and return how many connections it went to."""
        if self.transport != "wrapper":
            raise ConfigError("pushes are simulated over the wrapper transport only")
        self._push_id = (self._push_id + 1) % 2**24
        stamp = CosemDateTime.from_datetime(date_time) if date_time is not None else None
        apdu = DataNotification(body, self._push_id, stamp).to_bytes()
        frame = WrapperFrame(1, 16, apdu).to_bytes()
        sent = 0
        for writer in list(self._writers.get(i, ())):
            try:
                writer.write(frame)
                await asyncio.wait_for(writer.drain(), 2.0)
                sent += 1
            except (OSError, TimeoutError) as exc:
                logger.info("%s: push not delivered: %s", self.meter_ids[i], exc)
        return sent

    async def close(self) -> None:
        for s in self._servers:
            s.close()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for s in self._servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(s.wait_closed(), 2.0)
        self._servers.clear()

    async def __aenter__(self) -> SimulatorHandle:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _hdlc_server_factory() -> Callable[[Callable[[bytes], bytes | None]], object]:
    try:
        from edge_core.dlms.hdlc import HdlcAddress  # noqa: PLC0415 - optional HDLC part
        from edge_core.dlms.hdlc_server import HdlcServer  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigError("HDLC server framing is not available in this build") from exc

    def make(handler: Callable[[bytes], bytes | None]) -> object:
        return HdlcServer(handler, HdlcAddress.server(1, None))

    return make


async def serve_meters(  # noqa: PLR0917 - positional signature is the demo's contract
    meters: int,
    host: str,
    port: int,
    seed: int,
    start: date,
    clock: Callable[[], datetime] | None = None,
    *,
    transport: str = "wrapper",
    max_pdu_size: int = 1024,
    password: bytes | None = None,
    idle_timeout: float = IDLE_TIMEOUT_S,
) -> SimulatorHandle:
    """Start ``meters`` simulated meters on ``port``..``port+meters-1`` (port 0: any free
    ports). Returns once every port listens."""
    if meters < 1:
        raise ConfigError("at least one meter", path="meters")
    if transport not in ("wrapper", "hdlc"):
        raise ConfigError(f"unknown transport {transport!r}", path="transport")
    hdlc_factory = _hdlc_server_factory() if transport == "hdlc" else None
    models = [SimulatedMeter(i, seed=seed, start=start, clock=clock) for i in range(meters)]
    handle = SimulatorHandle(host, [], [m.meter_id for m in models], models, transport)
    try:
        for i, model in enumerate(models):

            async def on_client(
                reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter,
                model: SimulatedMeter = model,
                index: int = i,
            ) -> None:
                task = asyncio.current_task()
                if task is not None:
                    handle._tasks.add(task)
                clients = handle._writers.setdefault(index, set())
                clients.add(writer)
                try:
                    await _serve_connection(
                        reader,
                        writer,
                        model=model,
                        hdlc_factory=hdlc_factory,
                        max_pdu_size=max_pdu_size,
                        password=password,
                        idle_timeout=idle_timeout,
                    )
                finally:
                    clients.discard(writer)
                    if task is not None:
                        handle._tasks.discard(task)

            want = 0 if port == 0 else port + i
            try:
                server = await asyncio.start_server(on_client, host, want)
            except OSError as exc:
                raise MeterUnreachableError(
                    f"cannot listen on {host}:{want}: {exc.strerror or exc}"
                ) from exc
            handle._servers.append(server)
            handle.ports.append(server.sockets[0].getsockname()[1])
    except BaseException:
        await handle.close()
        raise
    logger.info("simulating %d meters on %s ports %s (%s)", meters, host, handle.ports, transport)
    return handle


async def _serve_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    model: SimulatedMeter,
    hdlc_factory: Callable[[Callable[[bytes], bytes | None]], object] | None,
    max_pdu_size: int,
    password: bytes | None,
    idle_timeout: float,
) -> None:
    peer = writer.get_extra_info("peername")
    conn = ServerConnection(model, max_pdu_size=max_pdu_size, password=password, name=model.serial)
    try:
        if hdlc_factory is not None:
            await _serve_hdlc(reader, writer, conn, hdlc_factory, idle_timeout)
        else:
            await _serve_wrapper(reader, writer, conn, idle_timeout)
    except asyncio.CancelledError:
        raise
    except (OSError, TimeoutError, ProtocolError) as exc:
        logger.info("%s: client %s dropped: %s", model.serial, peer, exc)
    except Exception:
        logger.exception("%s: connection handler failed for %s", model.serial, peer)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


async def _serve_wrapper(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    conn: ServerConnection,
    idle_timeout: float,
) -> None:
    decoder = WrapperDecoder()
    while True:
        chunk = await asyncio.wait_for(reader.read(65536), idle_timeout)
        if not chunk:
            return
        for frame in decoder.feed(chunk):
            answer = conn.receive_apdu(frame.payload)
            if answer is not None:
                writer.write(WrapperFrame(frame.destination, frame.source, answer).to_bytes())
        await writer.drain()


async def _serve_hdlc(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    conn: ServerConnection,
    factory: Callable[[Callable[[bytes], bytes | None]], object],
    idle_timeout: float,
) -> None:
    link = factory(conn.receive_apdu)
    while True:
        chunk = await asyncio.wait_for(reader.read(4096), idle_timeout)
        if not chunk:
            return
        link.receive_data(chunk)  # type: ignore[attr-defined]
        out = link.data_to_send()  # type: ignore[attr-defined]
        if out:
            writer.write(out)
            await writer.drain()
