"""Regenerate the golden batch files shared by the edge and cloud test suites.

``python scripts/make_golden.py`` writes ``tests/golden/batch-*.bin`` and a JSON sidecar per
file (``batch-*.json``: the decoded batch, values as raw integers): every case in format
version 1 (``batch-NAME``, kept byte for byte since the cloud must go on reading them) and in
version 2 (``batch-v2-NAME``). The inputs are fixed here
(seeded), so the outputs only change when the format or the encoder changes; commit them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.uplink import generate_readings  # noqa: E402
from edge_core.batch import Batch, canonical_order, decode_batch, encode_batch  # noqa: E402
from edge_core.model import DataClass, Reading  # noqa: E402

OUT = ROOT / "tests" / "golden"
T0 = 1717372800  # 2024-06-03T00:00:00Z


def _batch(n: int, data_class: DataClass, readings: list[Reading]) -> Batch:
    return Batch(bytes([n]) * 16, "dcu-golden-01", data_class, T0 + 86400, tuple(readings))


def cases() -> dict[str, tuple[Batch, int, int]]:
    ic = DataClass.INTERVAL
    tiny = [
        Reading("m1", "1.0.1.8.0.255", T0 + 900, 1000, 0, 30, 0, ic),
        Reading("m1", "1.0.1.8.0.255", T0 + 1800, 1012, 0, 30, 0, ic),
        Reading("m1", "1.0.1.8.0.255", T0 + 2700, 1030, 0, 30, 0x80, ic),
        Reading("m1", "1.0.2.8.0.255", T0 + 900, 5, 0, 30, 0, ic),
        Reading("m1", "1.0.2.8.0.255", T0 + 4500, 3, 0, 30, 0, ic),
    ]
    daily = [
        Reading(
            f"MTR{m:05d}", obis, T0 + 86400, 10_000_000 + m * 1234 + k, 0, 30, 0, DataClass.DAILY
        )
        for m in range(20)
        for k, obis in enumerate(("1.0.1.8.1.255", "1.0.1.8.2.255", "1.0.2.8.0.255"))
    ]
    edge = [
        Reading("zähler-ü", "0.0.96.1.0.255", 0, -(1 << 63), -3, 255, 255, DataClass.DIAGNOSTIC),
        Reading("zähler-ü", "0.0.96.1.0.255", 7, (1 << 63) - 1, -3, 255, 1, DataClass.DIAGNOSTIC),
        Reading("zähler-ü", "0.0.96.1.0.255", 8, 0, 2, 255, 2, DataClass.DIAGNOSTIC),
        Reading("zähler-ü", "1.0.32.7.0.255", T0, 2301, -1, 35, 0, DataClass.DIAGNOSTIC),
    ]
    profile = generate_readings(5, 1, seed=7)
    base = {
        "tiny-raw": (_batch(1, ic, tiny), 0),
        "tiny-zstd": (_batch(1, ic, tiny), 3),
        "daily": (_batch(2, DataClass.DAILY, daily), 3),
        "edge-values": (_batch(3, DataClass.DIAGNOSTIC, edge), 3),
        "profile-5-meters": (_batch(4, ic, profile), 3),
    }
    out = {f"batch-{name}": (batch, level, 1) for name, (batch, level) in base.items()}
    out |= {f"batch-v2-{name}": (batch, level, 2) for name, (batch, level) in base.items()}
    return out


def as_json(batch: Batch) -> dict[str, object]:
    return {
        "batch_id": batch.batch_id.hex(),
        "thing": batch.thing,
        "data_class": int(batch.data_class),
        "created": batch.created,
        "readings": [
            [r.meter, r.obis, r.capture_time, r.value, r.scaler, r.unit, r.status]
            for r in batch.readings
        ],
    }


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (batch, level, version) in cases().items():
        payload = encode_batch(batch, level=level, version=version)
        decoded = decode_batch(payload)
        assert decoded.readings == canonical_order(batch.readings), name
        (OUT / f"{name}.bin").write_bytes(payload)
        doc = as_json(decoded)
        rows = ",\n  ".join(json.dumps(r, ensure_ascii=False) for r in doc.pop("readings"))
        head = json.dumps(doc, ensure_ascii=False)[:-1]
        (OUT / f"{name}.json").write_text(f'{head}, "readings": [\n  {rows}\n]}}\n', "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
