"""The server (secondary station) side of HDLC, sans-I/O, for the meter simulator.

Theory of operation: the server is in NDM (disconnected) until SNRM, which it answers with UA
carrying its parameters, resetting both sequence numbers; the link then uses the minimum of
the client's proposal and its own limits (``negotiate`` from the client's point of view,
flipped). I-frames are reassembled (RR answers a poll on a segment); a complete request goes to
``handler`` (APDU without LLC in, APDU without LLC out, or None for no answer). The answer is
segmented by the negotiated maximum information length and sent ``window`` frames at a time,
F on the last frame of each window; the client's RR N(R) acknowledges them and releases the next
window. Go-back-N recovery: an RR (or duplicate I-frame) that acknowledges less than was sent
makes the server resend every unacknowledged frame. DISC -> UA (connected) or DM (not).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from edge_core.dlms.hdlc import (
    LLC_REQUEST,
    Control,
    FrameParser,
    FrameType,
    HdlcAddress,
    HdlcFrame,
    HdlcParameters,
    add_llc,
    negotiate,
    segment,
)

__all__ = ["HdlcServer"]

logger = logging.getLogger(__name__)

Handler = Callable[[bytes], "bytes | None"]


class HdlcServer:
    """One server address's HDLC link.

    ``limits`` are the server's own limits (its view: tx = server to client).
    """

    def __init__(
        self,
        handler: Handler,
        address: HdlcAddress,
        limits: HdlcParameters | None = None,
    ) -> None:
        self.handler = handler
        self.address = address
        self.limits = limits or HdlcParameters(1024, 1024, 7, 7)
        self.parameters = HdlcParameters()  # the server's view, once connected
        self.connected = False
        self.client: HdlcAddress | None = None
        self.parser = FrameParser()
        self.requests = 0
        self._out = bytearray()
        self._reset()

    def _reset(self) -> None:
        self._vs = 0
        self._vr = 0
        self._rx_parts: list[bytes] = []
        self._to_send: list[bytes] = []
        self._unacked: list[HdlcFrame] = []

    def data_to_send(self) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        return data

    def _emit(self, control: Control, info: bytes = b"", segmented: bool = False) -> HdlcFrame:
        assert self.client is not None
        frame = HdlcFrame(self.client, self.address, control, info, segmented)
        self._out += frame.encode()
        return frame

    def receive_data(self, data: bytes) -> None:
        for frame in self.parser.feed(data):
            self.receive_frame(frame)

    def receive_frame(self, frame: HdlcFrame) -> None:
        if frame.destination != self.address:
            logger.debug("frame for another server address ignored: %r", frame.destination)
            return
        kind = frame.kind
        if kind is FrameType.SNRM:
            self._on_snrm(frame)
            return
        if not self.connected:
            self.client = frame.source
            if kind is not FrameType.UI:
                self._emit(Control(FrameType.DM))
            return
        if frame.source != self.client:
            logger.debug("frame from another client ignored: %r", frame.source)
            return
        if kind is FrameType.DISC:
            self.connected = False
            self._reset()
            self._emit(Control(FrameType.UA))
        elif kind is FrameType.I:
            self._on_i(frame)
        elif kind is FrameType.RR:
            self._on_rr(frame)
        elif kind is not FrameType.UI:
            self._emit(Control(FrameType.FRMR), bytes([frame.control.encode()]))

    def _on_snrm(self, frame: HdlcFrame) -> None:
        self.client = frame.source
        try:
            proposal = HdlcParameters.decode(frame.information)
        except Exception:
            self._emit(Control(FrameType.FRMR), b"\x93")
            return
        client_view = negotiate(proposal, self.limits) if frame.information else HdlcParameters()
        self.parameters = client_view.flipped()
        self.connected = True
        self._reset()
        self._emit(Control(FrameType.UA), self.parameters.encode())

    def _ack(self, nr: int) -> None:
        seqs = [f.control.ssn for f in self._unacked]
        if nr == self._vs:
            self._unacked.clear()
        elif nr in seqs:
            del self._unacked[: seqs.index(nr)]

    def _resend_or_next(self, poll: bool) -> None:
        if self._unacked:
            for f in self._unacked:
                self._out += f.encode()
        elif self._to_send:
            self._send_window()
        elif poll:
            self._emit(Control(FrameType.RR, True, 0, self._vr))

    def _on_rr(self, frame: HdlcFrame) -> None:
        self._ack(frame.control.rsn)
        if frame.control.poll_final:
            self._resend_or_next(True)

    def _on_i(self, frame: HdlcFrame) -> None:
        ctrl = frame.control
        self._ack(ctrl.rsn)
        if ctrl.ssn != self._vr:
            # A retransmission of what we already have (our answer was lost), or a gap.
            if ctrl.poll_final:
                self._resend_or_next(True)
            return
        self._vr = (self._vr + 1) % 8
        self._rx_parts.append(frame.information)
        if frame.segmented:
            if ctrl.poll_final:
                self._emit(Control(FrameType.RR, True, 0, self._vr))
            return
        info = b"".join(self._rx_parts)
        self._rx_parts = []
        apdu = info[3:] if info.startswith(LLC_REQUEST) else info
        self.requests += 1
        answer = self.handler(apdu)
        if answer is None:
            if ctrl.poll_final:
                self._emit(Control(FrameType.RR, True, 0, self._vr))
            return
        self._to_send = segment(add_llc(answer, response=True), self.parameters.max_info_tx)
        self._unacked = []
        self._send_window()

    def _send_window(self) -> None:
        window = self.parameters.window_tx
        while self._to_send and len(self._unacked) < window:
            info = self._to_send.pop(0)
            more = bool(self._to_send)
            final = not more or len(self._unacked) + 1 == window
            frame = self._emit(Control(FrameType.I, final, self._vs, self._vr), info, more)
            self._vs = (self._vs + 1) % 8
            self._unacked.append(frame)
