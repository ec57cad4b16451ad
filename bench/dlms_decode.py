"""DLMS decoding throughput, compared with a reference implementation in the same run.

Section "hdlc": HDLC frames/s found and decoded by our stream parser (FrameParser, fed in
64-byte reads, as from a socket) vs dlms-cosem 21.3.2's InformationFrame.from_bytes on the same
frames already cut out for it (an easier task: no stream search).

Section "profile_rows": load-profile rows/s decoded from the same bytes: one GET-response
(normal) carrying a ``--days`` x 96 x 6 profile buffer exactly as our simulator's meter side
encodes it, decoded into values by ours (decode_apdu: A-XDR with the table fast path), by
dlms-cosem 21.3.2 (APDU factory + A-XDR data parser) and by gurux-dlms (GXDLMSClient.getData,
PDU interface). Every decoder's rows are checked against the meter's before timing.
``ratio_vs_faster_peer`` is our rows/s over the faster peer's (target >= 1.5).

Prints one JSON object.

    python -m bench.dlms_decode [--frames 2000] [--info 128] [--days 1] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

from edge_core.dlms.hdlc import Control, FrameParser, FrameType, HdlcAddress, HdlcFrame

__all__ = ["SECTIONS", "bench_hdlc", "bench_profile_rows", "main"]


def _best(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    best, n = float("inf"), 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = fn()
        best = min(best, time.perf_counter() - t0)
    return best, n


def bench_hdlc(args: argparse.Namespace) -> dict[str, object]:
    client, server = HdlcAddress.client(16), HdlcAddress.server(1, 17)
    frames = [
        HdlcFrame(
            client,
            server,
            Control(FrameType.I, True, i % 8, (i + 1) % 8),
            os.urandom(args.info),
            segmented=bool(i % 4),
        )
        for i in range(args.frames)
    ]
    encoded = [f.encode() for f in frames]
    stream = b"".join(encoded)

    def ours() -> int:
        parser = FrameParser()
        n = 0
        for i in range(0, len(stream), 64):
            n += len(parser.feed(stream[i : i + 64]))
        return n

    t_ours, n_ours = _best(ours, args.repeat)
    assert n_ours == len(frames)
    result: dict[str, object] = {
        "frames": len(frames),
        "info_bytes": args.info,
        "stream_bytes": len(stream),
        "ours_frames_per_s": round(n_ours / t_ours),
    }
    try:
        from dlms_cosem.hdlc.frames import InformationFrame
    except ImportError:
        result["dlms_cosem"] = "not installed"
        return result

    def theirs() -> int:
        return sum(1 for raw in encoded if InformationFrame.from_bytes(raw) is not None)

    t_theirs, n_theirs = _best(theirs, args.repeat)
    result["dlms_cosem_frames_per_s"] = round(n_theirs / t_theirs)
    result["ratio_ours_vs_dlms_cosem"] = round(t_theirs / t_ours, 2)
    return result


def _profile_apdu(days: int) -> tuple[bytes, list[list[object]]]:
    """The GET-response our simulator sends for ``days`` of the load profile (one APDU, no
    blocks), and the rows as plain Python values (for checking every decoder)."""
    from datetime import UTC, datetime, timedelta

    from edge_core.dlms.apdu import (
        AARQ,
        AttributeDescriptor,
        Conformance,
        GetRequestNormal,
        InitiateRequest,
        RangeDescriptor,
    )
    from edge_core.dlms.cosem import CaptureObject, CosemDateTime
    from edge_core.dlms.server import ServerConnection
    from edge_core.simulator.model import CLOCK, LOAD_PROFILE, SimulatedMeter

    now = datetime(2026, 11, 26, tzinfo=UTC)
    meter = SimulatedMeter(
        0, seed=1, start=(now - timedelta(days=days + 1)).date(), clock=lambda: now
    )
    server = ServerConnection(meter, max_pdu_size=0xFFFF)
    server.receive_apdu(AARQ(InitiateRequest(Conformance(0x1E1D), 0xFFFF)).to_bytes())
    rng = RangeDescriptor(
        CaptureObject(8, CLOCK, 2, 0),
        CosemDateTime.from_datetime(now - timedelta(days=days)),
        CosemDateTime.from_datetime(now - timedelta(seconds=1)),
    )
    descriptor = AttributeDescriptor(7, LOAD_PROFILE, 2)
    answer = server.receive_apdu(GetRequestNormal(descriptor, rng.to_access()).to_bytes())
    if answer is None or answer[:2] != b"\xc4\x01":
        raise RuntimeError("the simulator did not answer with one GET-response-normal")
    rows = meter.get(descriptor, rng.to_access()).to_python()
    return answer, rows


def bench_profile_rows(args: argparse.Namespace) -> dict[str, object]:
    from edge_core.dlms.apdu import GetResponseNormal, decode_apdu
    from edge_core.dlms.axdr import Data

    apdu, expected = _profile_apdu(args.days)
    nrows = len(expected)
    repeat = max(args.repeat, 3)
    inner = max(1, args.decode_loops)

    def ours() -> int:
        n = 0
        for _ in range(inner):
            resp = decode_apdu(apdu)
            assert isinstance(resp, GetResponseNormal)
            assert isinstance(resp.result, Data)
            n += len(resp.result.value)
        return n

    decoded = decode_apdu(apdu)
    assert isinstance(decoded, GetResponseNormal)
    assert isinstance(decoded.result, Data)
    assert decoded.result.to_python() == expected, "our decoder disagrees with the meter"
    t_ours, n = _best(ours, repeat)
    result: dict[str, object] = {
        "rows": nrows,
        "columns": len(expected[0]) if expected else 0,
        "apdu_bytes": len(apdu),
        "ours_rows_per_s": round(n / t_ours),
        "ours_ms_per_buffer": round(t_ours / inner * 1e3, 3),
    }
    peers: dict[str, float] = {}
    try:
        from dlms_cosem.connection import XDlmsApduFactory
        from dlms_cosem.utils import parse_as_dlms_data
    except ImportError:
        result["dlms_cosem"] = "not installed"
    else:

        def dlms_cosem() -> int:
            n = 0
            for _ in range(inner):
                resp = XDlmsApduFactory.apdu_from_bytes(apdu)
                n += len(parse_as_dlms_data(resp.data))
            return n

        got = parse_as_dlms_data(XDlmsApduFactory.apdu_from_bytes(apdu).data)
        assert [list(row[1:]) for row in got] == [row[1:] for row in expected]
        t, n = _best(dlms_cosem, repeat)
        peers["dlms_cosem"] = n / t
        result["dlms_cosem_rows_per_s"] = round(n / t)
        result["dlms_cosem_ms_per_buffer"] = round(t / inner * 1e3, 3)
    try:
        from bench.dlms_peer_gurux import decode_get_response
    except ImportError:
        result["gurux"] = "not installed"
    else:
        try:
            got = decode_get_response(apdu)
        except ImportError:
            result["gurux"] = "not installed"
        else:
            assert [list(row[1:]) for row in got] == [row[1:] for row in expected]

            def gurux() -> int:
                return sum(len(decode_get_response(apdu)) for _ in range(inner))

            t, n = _best(gurux, repeat)
            peers["gurux"] = n / t
            result["gurux_rows_per_s"] = round(n / t)
            result["gurux_ms_per_buffer"] = round(t / inner * 1e3, 3)
    if peers:
        faster = max(peers, key=lambda k: peers[k])
        result["faster_peer"] = faster
        result["ratio_vs_faster_peer"] = round(nrows * inner / t_ours / peers[faster], 2)
        result["target_ratio"] = 1.5
    return result


SECTIONS: dict[str, Callable[[argparse.Namespace], dict[str, object]]] = {
    "hdlc": bench_hdlc,
    "profile_rows": bench_profile_rows,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=2000, help="HDLC frames in the stream")
    ap.add_argument("--info", type=int, default=128, help="information field bytes per frame")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (best kept)")
    ap.add_argument("--days", type=int, default=1, help="profile days (96 rows each)")
    ap.add_argument(
        "--decode-loops", type=int, default=50, help="buffers decoded per profile_rows run"
    )
    ap.add_argument(
        "--section", action="append", choices=sorted(SECTIONS), help="sections to run (default all)"
    )
    args = ap.parse_args(argv)
    out = {name: SECTIONS[name](args) for name in (args.section or sorted(SECTIONS))}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
