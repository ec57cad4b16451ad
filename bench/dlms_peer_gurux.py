"""gurux-dlms (GPL-2, test and benchmark peer only) as an independent DLMS client.

Gurux's ``GXDLMSClient`` generates every request (SNRM, AARQ, GET, GET-next, RR, DISC) and
parses every answer; this module only moves its bytes over a blocking byte stream (a TCP
socket to our simulator, or the 9600-baud link emulator) and counts them. Nothing here is
imported by edge_core. Used by tests/simulator/test_peer_gurux.py and bench.dlms_wire /
bench.dlms_decode. ``python -m bench.dlms_peer_gurux HOST PORT [wrapper|hdlc]`` reads the
clock and +A of a meter and prints them as one JSON object.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["GuruxSession", "GuruxStats", "available", "decode_get_response"]


def available() -> bool:
    """True when gurux-dlms is installed."""
    try:
        import gurux_dlms  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class GuruxStats:
    """Bytes each way and request/answer exchanges (one request frame each)."""

    bytes_tx: int = 0
    bytes_rx: int = 0
    round_trips: int = 0


class GuruxSession:
    """One gurux client association over ``send``/``recv`` callables (blocking, with their
    own timeouts). ``transport`` is "wrapper" or "hdlc"; client 16, server 1, LN referencing,
    no authentication, as our simulator's meters."""

    def __init__(
        self,
        send: Callable[[bytes], None],
        recv: Callable[[], bytes],
        transport: str = "wrapper",
        *,
        max_info: int | None = None,
        window: int | None = None,
    ) -> None:
        from gurux_dlms import GXDLMSClient
        from gurux_dlms.enums import Authentication, InterfaceType

        kind = InterfaceType.WRAPPER if transport == "wrapper" else InterfaceType.HDLC
        self.client = GXDLMSClient(True, 16, 1, Authentication.NONE, None, kind)
        if transport == "hdlc":
            if max_info is not None:
                self.client.hdlcSettings.maxInfoTX = max_info
                self.client.hdlcSettings.maxInfoRX = max_info
            if window is not None:
                self.client.hdlcSettings.windowSizeTX = window
                self.client.hdlcSettings.windowSizeRX = window
        self.transport = transport
        self._send = send
        self._recv = recv
        self.stats = GuruxStats()

    # -- plumbing

    def _exchange(self, request: bytes | None, reply: Any) -> None:
        """Send one request frame (None: only wait) and feed answers to gurux until it has a
        complete frame."""
        from gurux_dlms import GXByteBuffer

        if request:
            raw = bytes(request)
            self._send(raw)
            self.stats.bytes_tx += len(raw)
            self.stats.round_trips += 1
        buf = GXByteBuffer()
        while True:
            chunk = self._recv()
            if not chunk:
                raise ConnectionError("the meter closed the connection")
            self.stats.bytes_rx += len(chunk)
            buf.set(chunk)
            if self.client.getData(buf, reply, None):
                return

    def _data_block(self, requests: Any, reply: Any) -> None:
        """Send gurux's request(s) and follow its GET-next / RR until the answer is whole."""
        from gurux_dlms.enums import RequestTypes

        frames = requests if isinstance(requests, list) else [requests]
        for frame in frames:
            reply.clear()
            self._exchange(frame, reply)
            while reply.isMoreData():
                if reply.moreData == RequestTypes.NONE:
                    break
                self._exchange(self.client.receiverReady(reply), reply)

    # -- services

    def associate(self) -> None:
        from gurux_dlms import GXReplyData

        reply = GXReplyData()
        snrm = self.client.snrmRequest()
        if snrm:
            self._exchange(snrm, reply)
            self.client.parseUAResponse(reply.data)
        reply = GXReplyData()
        self._data_block(self.client.aarqRequest(), reply)
        self.client.parseAareResponse(reply.data)

    def read(self, obj: Any, attribute: int) -> Any:
        """One attribute of a gurux COSEM object, decoded and stored by gurux."""
        from gurux_dlms import GXReplyData

        reply = GXReplyData()
        self._data_block(self.client.read(obj, attribute), reply)
        return self.client.updateValue(obj, attribute, reply.value)

    def read_rows_by_range(self, profile: Any, start: datetime, end: datetime) -> list[Any]:
        """Profile rows captured in [start, end] (gurux's readRowsByRange)."""
        from gurux_dlms import GXDateTime, GXReplyData

        reply = GXReplyData()
        self._data_block(
            self.client.readRowsByRange(profile, GXDateTime(start), GXDateTime(end)), reply
        )
        self.client.updateValue(profile, 2, reply.value)
        return list(profile.buffer)

    def release(self) -> None:
        from gurux_dlms import GXReplyData

        reply = GXReplyData()
        try:
            self._data_block(self.client.releaseRequest(), reply)
        except Exception:
            return
        disc = self.client.disconnectRequest()
        if disc and self.transport == "hdlc":
            self._exchange(disc, GXReplyData())


def socket_session(
    host: str, port: int, transport: str = "wrapper", timeout: float = 10.0
) -> tuple[GuruxSession, socket.socket]:
    """A GuruxSession over a new TCP connection (the caller closes the socket)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(timeout)
    return GuruxSession(sock.sendall, lambda: sock.recv(65536), transport), sock


def decode_get_response(apdu: bytes) -> Any:
    """Gurux's decoding of one GET-response APDU (PDU interface, no framing): the value as
    gurux returns it (for a profile buffer, a list of rows of Python values)."""
    from gurux_dlms import GXByteBuffer, GXDLMSClient, GXReplyData
    from gurux_dlms.enums import Authentication, InterfaceType

    client = GXDLMSClient(True, 16, 1, Authentication.NONE, None, InterfaceType.PDU)
    reply = GXReplyData()
    client.getData(GXByteBuffer(apdu), reply, None)
    return reply.value


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    host, port = args[0], int(args[1])
    transport = args[2] if len(args) > 2 else "wrapper"
    from gurux_dlms.objects import GXDLMSClock, GXDLMSRegister

    session, sock = socket_session(host, port, transport)
    started = time.perf_counter()
    try:
        session.associate()
        clock = GXDLMSClock("0.0.1.0.0.255")
        session.read(clock, 2)
        energy = GXDLMSRegister("1.0.1.8.0.255")
        session.read(energy, 3)
        session.read(energy, 2)
        session.release()
    finally:
        sock.close()
    print(
        json.dumps(
            {
                "clock": str(clock.time),
                "register": energy.value,
                "scaler": energy.scaler,
                "unit": int(energy.unit),
                "bytes_tx": session.stats.bytes_tx,
                "bytes_rx": session.stats.bytes_rx,
                "seconds": round(time.perf_counter() - started, 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
