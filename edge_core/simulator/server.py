"""The meter simulator's network side: N simulated meters on ports P..P+N-1.

Each TCP connection gets its own :class:`~edge_core.dlms.server.ServerConnection` (one
association) over the meter's shared :class:`SimulatedMeter` object model. Framing is the
IEC 62056-47 wrapper (client wPort 16, server wPort 1 by default) or HDLC (server address 1)
using the HDLC server of :mod:`edge_core.dlms.hdlc_server`.

Pseudo-terminals: with ``serial=True`` (HDLC only) each meter is served on the master side of
a pty (``os.openpty``) instead of a TCP port; ``handle.serial_paths[i]`` is the slave device a
client opens with pyserial, and ``handle.url(i)`` is ``serial://<path>``.

Scripted behaviour (see :mod:`edge_core.simulator.script`): while a meter is in an outage it
answers nothing (requests are read and dropped); each answer first takes the next injected
link fault, if any (drop, corrupt one byte, delay). Pushes: a background task checks every
``push_poll_s`` seconds for due pushes (last gasp, tamper) and delivers each as a wrapper frame
(source wPort 1, destination wPort 16): to ``push_destination`` (host, port), a DCU-side
listener the meter connects to for that push (IDIS push setup 0.4.25.9.0.255, send
destination), or else to the wrapper clients connected to that meter.

Robustness rule: a connection handler catches everything its client can cause (bad framing,
resets, model failures), logs it and closes that connection only; the listening sockets keep
serving. Every read waits at most ``idle_timeout`` seconds, so a silent client cannot hold a
connection forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tty
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
from edge_core.simulator.security import MeterSecurity

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
    push_destination: tuple[str, int] | None = None
    serial_paths: list[str] = field(default_factory=list)
    pushes_sent: int = 0
    _fds: list[int] = field(default_factory=list, repr=False)
    _pusher: asyncio.Task[None] | None = field(default=None, repr=False)

    def url(self, i: int) -> str:
        """``tcp://host:port`` of meter ``i``, or ``serial://<pty path>`` when on a pty."""
        if self.serial_paths:
            return f"serial://{self.serial_paths[i]}"
        return f"tcp://{self.host}:{self.ports[i]}"

    async def send_push(self, i: int, notification: DataNotification) -> int:
        """Deliver one push of meter ``i`` (see the module docstring); how many went out."""
        frame = WrapperFrame(1, 16, notification.to_bytes()).to_bytes()
        if self.push_destination is None:
            return await self._to_clients(i, frame)
        host, port = self.push_destination
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2.0)
        except (OSError, TimeoutError) as exc:
            logger.info(
                "%s: push destination %s:%d unreachable: %s", self.meter_ids[i], host, port, exc
            )
            return 0
        try:
            writer.write(frame)
            await asyncio.wait_for(writer.drain(), 2.0)
        except (OSError, TimeoutError) as exc:
            logger.info("%s: push not delivered: %s", self.meter_ids[i], exc)
            return 0
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
        self.pushes_sent += 1
        return 1

    async def _to_clients(self, i: int, frame: bytes) -> int:
        sent = 0
        for writer in list(self._writers.get(i, ())):
            try:
                writer.write(frame)
                await asyncio.wait_for(writer.drain(), 2.0)
                sent += 1
            except (OSError, TimeoutError) as exc:
                logger.info("%s: push not delivered: %s", self.meter_ids[i], exc)
        self.pushes_sent += sent
        return sent

    async def _push_loop(self, poll_s: float) -> None:
        while True:
            for i, meter in enumerate(self.meters):
                for due in meter.due_pushes():
                    await self.send_push(i, meter.notification(due.alarm_bits, due.time_s))
            await asyncio.sleep(poll_s)

    async def push(self, i: int, body: Data, *, date_time: datetime | None = None) -> int:
        """Send a DataNotification from meter ``i`` to every client connected to it (wrapper
        framing only) and return how many connections it went to."""
        if self.transport != "wrapper":
            raise ConfigError("pushes are simulated over the wrapper transport only")
        self._push_id = (self._push_id + 1) % 2**24
        stamp = CosemDateTime.from_datetime(date_time) if date_time is not None else None
        apdu = DataNotification(body, self._push_id, stamp).to_bytes()
        frame = WrapperFrame(1, 16, apdu).to_bytes()
        return await self._to_clients(i, frame)

    async def close(self) -> None:
        if self._pusher is not None:
            self._pusher.cancel()
            await asyncio.gather(self._pusher, return_exceptions=True)
            self._pusher = None
        loop = asyncio.get_running_loop()
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
        for fd in self._fds:
            with contextlib.suppress(OSError, ValueError):
                loop.remove_reader(fd)
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()

    async def __aenter__(self) -> SimulatorHandle:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _hdlc_server_factory() -> Callable[[Callable[[bytes], bytes | None]], object]:
    try:
        from edge_core.dlms.hdlc import HdlcAddress
        from edge_core.dlms.hdlc_server import HdlcServer
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
    serial: bool = False,
    push_destination: tuple[str, int] | None = None,
    push_poll_s: float = 0.2,
    null_clocks: bool | None = None,
    security: MeterSecurity | None = None,
) -> SimulatorHandle:
    """Start ``meters`` simulated meters on ``port``..``port+meters-1`` (port 0: any free
    ports), or on pseudo-terminals with ``serial=True`` (HDLC only). Returns once every port
    listens. ``push_destination`` (host, port) receives the scripted pushes; ``null_clocks``
    forces (True/False) the profile clock compression of every meter (None: odd meters);
    ``security`` is a :class:`edge_core.simulator.security.MeterSecurity` (HLS-GMAC) or None."""
    if meters < 1:
        raise ConfigError("at least one meter", path="meters")
    if transport not in ("wrapper", "hdlc"):
        raise ConfigError(f"unknown transport {transport!r}", path="transport")
    if serial and transport != "hdlc":
        raise ConfigError("a serial (pty) meter speaks HDLC: use transport hdlc", path="transport")
    hdlc_factory = _hdlc_server_factory() if transport == "hdlc" else None
    models = [
        SimulatedMeter(i, seed=seed, start=start, clock=clock, null_clocks=null_clocks)
        for i in range(meters)
    ]
    handle = SimulatorHandle(host, [], [m.meter_id for m in models], models, transport)
    handle.push_destination = push_destination

    if security is not None and password is not None:
        raise ConfigError("use either a password (low) or HLS-GMAC", path="auth")

    def connection(model: SimulatedMeter) -> ServerConnection:
        return _connection(model, max_pdu_size, password, security, models.index(model))

    try:
        if serial:
            assert hdlc_factory is not None
            for model in models:
                _serve_pty(handle, model, hdlc_factory, connection(model))
        for i, model in enumerate(models if not serial else ()):

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
                        conn=connection(model),
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
        handle._pusher = asyncio.create_task(handle._push_loop(push_poll_s))
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
    conn: ServerConnection,
    idle_timeout: float,
) -> None:
    peer = writer.get_extra_info("peername")
    try:
        if hdlc_factory is not None:
            await _serve_hdlc(reader, writer, conn, hdlc_factory, idle_timeout, model=model)
        else:
            await _serve_wrapper(reader, writer, conn, idle_timeout, model)
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
    model: SimulatedMeter,
) -> None:
    decoder = WrapperDecoder()
    while True:
        chunk = await asyncio.wait_for(reader.read(65536), idle_timeout)
        if not chunk:
            return
        for frame in decoder.feed(chunk):
            if model.is_down():
                continue  # no supply: the request is lost
            answer = conn.receive_apdu(frame.payload)
            if answer is not None:
                out = await _faulted(
                    model, WrapperFrame(frame.destination, frame.source, answer).to_bytes()
                )
                if out:
                    writer.write(out)
        await writer.drain()


async def _faulted(model: SimulatedMeter, data: bytes) -> bytes:
    """``data`` after the next injected link fault (b"" when dropped; waits on a delay)."""
    fault = model.script.take_fault()
    if fault is None:
        return data
    logger.info("%s: link fault %s injected", model.serial, fault.kind)
    if fault.kind == "drop":
        return b""
    if fault.kind == "delay":
        await asyncio.sleep(fault.delay_s)
        return data
    return _corrupt(data)


def _corrupt(data: bytes) -> bytes:
    """Flip every bit of the byte in the middle of the payload part (past any header)."""
    i = max(len(data) // 2, min(len(data) - 1, 9))
    return data[:i] + bytes((data[i] ^ 0xFF,)) + data[i + 1 :]


def _connection(
    model: SimulatedMeter,
    max_pdu_size: int,
    password: bytes | None,
    security: MeterSecurity | None,
    index: int,
) -> ServerConnection:
    return ServerConnection(
        model,
        max_pdu_size=max_pdu_size,
        password=password,
        name=model.serial,
        security=security.context_factory(index) if security is not None else None,
    )


def _serve_pty(
    handle: SimulatorHandle,
    model: SimulatedMeter,
    factory: Callable[[Callable[[bytes], bytes | None]], object],
    conn: ServerConnection,
) -> None:
    """Serve one meter's HDLC on a new pty; the slave stays open here so the master never
    sees EIO between clients."""
    master, slave = os.openpty()
    handle._fds += [master, slave]
    tty.setraw(slave)
    os.set_blocking(master, False)
    handle.serial_paths.append(os.ttyname(slave))
    link = factory(conn.receive_apdu)
    loop = asyncio.get_running_loop()
    tasks = handle._tasks

    def write_all(data: bytes) -> None:
        try:
            n = os.write(master, data)
        except BlockingIOError:
            n = 0
        except OSError as exc:
            logger.info("%s: pty write failed: %s", model.serial, exc)
            return
        if n < len(data):
            loop.call_later(0.005, write_all, data[n:])

    async def answer(out: bytes) -> None:
        out = await _faulted(model, out)
        if out:
            write_all(out)

    def on_readable() -> None:
        try:
            data = os.read(master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            logger.info("%s: pty read failed: %s", model.serial, exc)
            return
        if not data or model.is_down():
            return
        link.receive_data(data)  # type: ignore[attr-defined]
        out = link.data_to_send()  # type: ignore[attr-defined]
        if out:
            if not model.script.faults:
                write_all(out)
                return
            task = loop.create_task(answer(out))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    loop.add_reader(master, on_readable)


async def _serve_hdlc(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    conn: ServerConnection,
    factory: Callable[[Callable[[bytes], bytes | None]], object],
    idle_timeout: float,
    *,
    model: SimulatedMeter,
) -> None:
    link = factory(conn.receive_apdu)
    while True:
        chunk = await asyncio.wait_for(reader.read(4096), idle_timeout)
        if not chunk:
            return
        if model.is_down():
            continue
        link.receive_data(chunk)  # type: ignore[attr-defined]
        out = link.data_to_send()  # type: ignore[attr-defined]
        if out:
            out = await _faulted(model, out)
        if out:
            writer.write(out)
            await writer.drain()
