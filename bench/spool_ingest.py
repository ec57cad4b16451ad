"""Spool ingest benchmark: values/s through Spool.put (100 readings per transaction, each
acknowledged after its commit) against plain SQLite inserts of the same rows with the same
pragmas (WAL, synchronous=FULL, 100 rows per transaction) measured in the same run.

``python -m bench.spool_ingest [--values 200000] [--batch 100]`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from edge_core.model import DataClass, Reading
from edge_core.spool import Spool

__all__ = ["main", "run"]


def _readings(n: int) -> list[Reading]:
    meters = max(1, n // (96 * 4))
    obis = ("1.0.1.8.0.255", "1.0.2.8.0.255", "1.0.3.8.0.255", "1.0.4.8.0.255")
    out = []
    t0 = 1_717_372_800
    i = 0
    while len(out) < n:
        # capture order of a DCU: one interval of every meter, then the next interval
        for m in range(meters):
            for o in obis:
                out.append(
                    Reading(
                        f"KFM{m:013d}", o, t0 + 900 * i, 1000 * i + m, 0, 30, 0, DataClass.INTERVAL
                    )
                )
        i += 1
    return out[:n]


def _plain(path: Path, rows: list[Reading], batch: int) -> float:
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE r (meter TEXT, obis TEXT, t INTEGER, v INTEGER, scaler INTEGER, "
        "unit INTEGER, status INTEGER, dc INTEGER, stored_at REAL)"
    )
    t = time.perf_counter()
    for k in range(0, len(rows), batch):
        chunk = rows[k : k + batch]
        now = time.time()
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO r VALUES (?,?,?,?,?,?,?,?,?)",
            [
                (
                    r.meter,
                    r.obis,
                    r.capture_time,
                    r.value,
                    r.scaler,
                    r.unit,
                    r.status,
                    int(r.data_class),
                    now,
                )
                for r in chunk
            ],
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t
    conn.close()
    return elapsed


def _spool(path: Path, rows: list[Reading], batch: int) -> tuple[float, int]:
    spool = Spool.open(path)
    stored = 0
    t = time.perf_counter()
    for k in range(0, len(rows), batch):
        stored += spool.put(rows[k : k + batch]).stored
    elapsed = time.perf_counter() - t
    spool.close()
    return elapsed, stored


def run(values: int, batch: int) -> dict[str, object]:
    rows = _readings(values)
    with tempfile.TemporaryDirectory() as d:
        plain_s = _plain(Path(d) / "plain.db", rows, batch)
        spool_s, stored = _spool(Path(d) / "spool.db", rows, batch)
        spool_bytes = sum(p.stat().st_size for p in Path(d).glob("spool.db*"))
    spool_rate = values / spool_s
    plain_rate = values / plain_s
    return {
        "bench": "spool_ingest",
        "values": values,
        "readings_per_transaction": batch,
        "spool_values_per_s": round(spool_rate),
        "plain_sqlite_values_per_s": round(plain_rate),
        "ratio_spool_over_plain": round(spool_rate / plain_rate, 3),
        "stored": stored,
        "spool_file_bytes": spool_bytes,
        "spool_bytes_per_value": round(spool_bytes / values, 1),
        "target_ge_100k_per_s": spool_rate >= 100_000,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spool_ingest", description=__doc__)
    parser.add_argument("--values", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.values, args.batch), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
