"""Test helpers: a fake meter (HdlcServer) served over a byte link or a TCP socket."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from edge_core.dlms.hdlc import HdlcAddress, HdlcParameters
from edge_core.dlms.hdlc_server import HdlcServer
from edge_core.errors import MeterTimeoutError, TransportError
from edge_core.transport.hdlc import ByteLink


def echo_handler(size: int = 0):
    """Answers every request with ``C4 01 <request bytes repeated to size>``."""

    def handle(apdu: bytes) -> bytes:
        if not size:
            return b"\xc4\x01" + apdu
        body = (apdu * (size // max(1, len(apdu)) + 1))[:size]
        return b"\xc4\x01" + body

    return handle


def make_server(handler=None, limits: HdlcParameters | None = None) -> HdlcServer:
    return HdlcServer(handler or echo_handler(), HdlcAddress.server(1, 17), limits)


async def serve_link(link: ByteLink, server: HdlcServer, *, drop_first_answers: int = 0) -> None:
    """Runs until the link closes or the task is cancelled. ``drop_first_answers`` loses
    that many of the server's writes (to exercise retransmission)."""
    dropped = 0
    while True:
        try:
            data = await link.read(4096, 30.0)
        except (MeterTimeoutError, TransportError):
            return
        server.receive_data(data)
        out = server.data_to_send()
        if out:
            if dropped < drop_first_answers:
                dropped += 1
                continue
            await link.write(out)


@contextlib.asynccontextmanager
async def tcp_meter(server: HdlcServer) -> AsyncIterator[int]:
    """A TCP listener on 127.0.0.1 speaking HDLC through ``server``; yields the port."""
    conns: list[asyncio.StreamWriter] = []

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(writer)
        try:
            while data := await reader.read(4096):
                server.receive_data(data)
                out = server.data_to_send()
                if out:
                    writer.write(out)
                    await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        srv.close()
        for w in conns:
            w.close()
        await srv.wait_closed()
