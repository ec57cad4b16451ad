"""Decode cost of a load-profile buffer and of a whole in-memory profile read.

Prints one JSON object. Baselines, measured in the same run: the standard library's C JSON
decoder reading the same rows as JSON text (``ratio_vs_json``: how many times slower our
pure-Python A-XDR path is), and, where the test-only peer is installed, dlms-cosem 21.3.2's
data parser on the same bytes (``ratio_vs_dlms_cosem`` below 1 means we are faster).

    python -m bench.dlms_profile [--days 1] [--repeat 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

from edge_core.dlms.apdu import AttributeDescriptor, RangeDescriptor
from edge_core.dlms.axdr import decode_data, encode_data
from edge_core.dlms.cosem import CaptureObject, CosemDateTime
from edge_core.dlms.server import ServerConnection
from edge_core.meter.reader import MeterReader
from edge_core.simulator.model import CLOCK, LOAD_PROFILE, SimulatedMeter
from edge_core.transport.base import WireStats

NOW = datetime(2026, 11, 26, tzinfo=UTC)


class _Loopback:
    def __init__(self, server: ServerConnection) -> None:
        self.server = server
        self.stats = WireStats()

    async def open(self) -> None:
        return None

    async def request(self, apdu: bytes, timeout: float) -> bytes:
        self.stats.round_trips += 1
        self.stats.bytes_tx += len(apdu)
        answer = self.server.receive_apdu(apdu) or b""
        self.stats.bytes_rx += len(answer)
        return answer

    async def receive(self, timeout: float) -> bytes:
        raise NotImplementedError

    async def close(self) -> None:
        return None


def _per_call(fn: object, repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()  # type: ignore[operator]
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    meter = SimulatedMeter(
        0, seed=1, start=(NOW - timedelta(days=args.days + 1)).date(), clock=lambda: NOW
    )
    rng = RangeDescriptor(
        CaptureObject(8, CLOCK, 2, 0),
        CosemDateTime.from_datetime(NOW - timedelta(days=args.days)),
        CosemDateTime.from_datetime(NOW - timedelta(seconds=1)),
    )
    buffer = meter.get(AttributeDescriptor(7, LOAD_PROFILE, 2), rng.to_access())
    raw = encode_data(buffer)
    as_json = json.dumps(buffer.to_python(), default=lambda b: b.hex())
    rows = len(buffer.value)

    decode_s = _per_call(lambda: decode_data(raw), args.repeat)
    json_s = _per_call(lambda: json.loads(as_json), args.repeat)

    async def session() -> None:
        reader = MeterReader(_Loopback(ServerConnection(meter, max_pdu_size=512)))
        await reader.associate()
        await reader.read_profile(
            LOAD_PROFILE, NOW - timedelta(days=args.days), NOW - timedelta(seconds=1)
        )

    peer: dict[str, float] = {}
    try:
        from dlms_cosem.dlms_data import DlmsDataParser
    except ImportError:
        pass
    else:
        peer_s = _per_call(lambda: DlmsDataParser().parse(raw, limit=1), args.repeat)
        peer = {
            "dlms_cosem_21_3_2_ms": round(peer_s * 1e3, 3),
            "ratio_vs_dlms_cosem": round(decode_s / peer_s, 2),
        }

    session_repeat = max(1, args.repeat // 10)
    session_s = _per_call(lambda: asyncio.run(session()), session_repeat)
    print(
        json.dumps(
            {
                "rows": rows,
                "columns": len(buffer.value[0].value) if rows else 0,
                "buffer_bytes": len(raw),
                "decode_ms": round(decode_s * 1e3, 3),
                "json_baseline_ms": round(json_s * 1e3, 3),
                "ratio_vs_json": round(decode_s / json_s, 2),
                **peer,
                "profile_read_in_memory_ms": round(session_s * 1e3, 3),
                "ratio_read_vs_decode": round(session_s / decode_s, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
