"""DLMS decoding throughput, compared with a reference implementation in the same run.

Section "hdlc": HDLC frames/s found and decoded by our stream parser (FrameParser, fed in
64-byte reads, as from a socket) vs dlms-cosem 21.3.2's InformationFrame.from_bytes on the same
frames already cut out for it (an easier task: no stream search). Other sections may be added
to SECTIONS. Prints one JSON object.

    python -m bench.dlms_decode [--frames 2000] [--info 128] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

from edge_core.dlms.hdlc import Control, FrameParser, FrameType, HdlcAddress, HdlcFrame

__all__ = ["SECTIONS", "bench_hdlc", "main"]


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


SECTIONS: dict[str, Callable[[argparse.Namespace], dict[str, object]]] = {"hdlc": bench_hdlc}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=2000, help="HDLC frames in the stream")
    ap.add_argument("--info", type=int, default=128, help="information field bytes per frame")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (best kept)")
    ap.add_argument(
        "--section", action="append", choices=sorted(SECTIONS), help="sections to run (default all)"
    )
    args = ap.parse_args(argv)
    out = {name: SECTIONS[name](args) for name in (args.section or sorted(SECTIONS))}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
