"""A DCU-side listener for meter pushes (DataNotification over the TCP wrapper).

Theory of operation: meters configured with an IDIS push setup (0.4.25.9.0.255) whose send
destination is this listener open a TCP connection, send one or more wrapper frames carrying
a data-notification, and usually close. Each frame is decoded into a :class:`PushReceived`
and put on a bounded queue; when the queue is full the newest push is dropped and counted
(``dropped``) — a listener must never block a meter's connection. Consumers iterate with
``async for push in listener`` or call ``get(timeout)``.

Which meter: the logical device name found in the push content (IDIS convention: 3-letter
manufacturer flag id + serial; ``meter`` is the part after the flag id) or, when the content
has none, ``"wport:<source wPort>"``. ``resolve`` replaces that rule.

A connection that sends bytes that are not wrapper frames, or APDUs that are not
data-notifications, is logged and closed; nothing a meter sends stops the listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge_core.dlms.apdu import DataNotification
from edge_core.dlms.axdr import Data, DataType
from edge_core.dlms.cosem import CosemDateTime
from edge_core.dlms.wrapper import WrapperDecoder
from edge_core.errors import DecodeError, MeterTimeoutError, MeterUnreachableError, ProtocolError

__all__ = ["PushListener", "PushReceived", "default_resolve"]

logger = logging.getLogger(__name__)

_LDN_MIN = 4  # flag id (3) + at least one character


@dataclass(frozen=True, slots=True)
class PushReceived:
    """One push: ``meter`` (see the module docstring), its time (the notification's
    date-time, or None), the decoded values (the body's elements, as Python values; bytes for
    octet strings), the wrapper source wPort and the logical device name if present."""

    meter: str
    time: datetime | None
    values: tuple[Any, ...]
    wport: int
    logical_device_name: bytes | None = None


def _find_ldn(body: Data) -> bytes | None:
    items = body.value if body.type in (DataType.STRUCTURE, DataType.ARRAY) else (body,)
    for item in items:
        v = item.value
        if (
            item.type == DataType.OCTET_STRING
            and len(v) >= _LDN_MIN
            and len(v) != 6  # a logical name (OBIS), not a device name
            and all(0x20 < b < 0x7F for b in v)
        ):
            return bytes(v)
    return None


def default_resolve(ldn: bytes | None, wport: int) -> str:
    """The meter id of a push: the serial after the 3-letter flag id, else the wPort."""
    if ldn is not None:
        return ldn[3:].decode("ascii")
    return f"wport:{wport}"


def decode_push(
    apdu: bytes, wport: int, resolve: Callable[[bytes | None, int], str] = default_resolve
) -> PushReceived:
    """A :class:`PushReceived` from one data-notification APDU (DecodeError otherwise)."""
    if not apdu or apdu[0] != DataNotification.TAG:
        raise DecodeError(f"not a data-notification: tag 0x{apdu[:1].hex()}", data=apdu)
    note = DataNotification.from_bytes(apdu)
    ldn = _find_ldn(note.body)
    when = note.date_time.to_datetime() if isinstance(note.date_time, CosemDateTime) else None
    body = note.body
    values = (
        tuple(d.to_python() for d in body.value)
        if body.type in (DataType.STRUCTURE, DataType.ARRAY)
        else (body.to_python(),)
    )
    return PushReceived(resolve(ldn, wport), when, values, wport, ldn)


class PushListener:
    """An asyncio TCP server for pushes; ``port`` 0 picks a free port (see ``.port``)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_queue: int = 1000,
        resolve: Callable[[bytes | None, int], str] = default_resolve,
        idle_timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self.resolve = resolve
        self.idle_timeout = idle_timeout
        self.received = 0
        self.dropped = 0
        self.rejected = 0
        self._queue: asyncio.Queue[PushReceived] = asyncio.Queue(max_queue)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._on_client, self.host, self.port)
        except OSError as exc:
            raise MeterUnreachableError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("push listener on %s:%d", self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def __aenter__(self) -> PushListener:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def get(self, timeout: float) -> PushReceived:
        """The next push; MeterTimeoutError after ``timeout`` s."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError as exc:
            raise MeterTimeoutError(f"no push within {timeout} s") from exc

    def __aiter__(self) -> AsyncIterator[PushReceived]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[PushReceived]:
        while True:
            yield await self._queue.get()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        decoder = WrapperDecoder()
        try:
            while True:
                chunk = await asyncio.wait_for(reader.read(65536), self.idle_timeout)
                if not chunk:
                    return
                for frame in decoder.feed(chunk):
                    self._accept(frame.payload, frame.source, peer)
        except (ProtocolError, OSError, TimeoutError) as exc:
            logger.info("push connection from %s closed: %s", peer, exc)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            if task is not None:
                self._tasks.discard(task)

    def _accept(self, apdu: bytes, wport: int, peer: object) -> None:
        try:
            push = decode_push(apdu, wport, self.resolve)
        except ProtocolError as exc:
            self.rejected += 1
            logger.info("push from %s (wPort %d) refused: %s", peer, wport, exc)
            return
        self.received += 1
        try:
            self._queue.put_nowait(push)
        except asyncio.QueueFull:
            self.dropped += 1
            logger.warning("push queue full: push of %s dropped", push.meter)
