"""Spool ingest benchmark: values/s through Spool.put, each put acknowledged only after the
commit (fsync) that contains it, against plain SQLite inserts of the same rows with the same
pragmas (WAL, synchronous=FULL) measured in the same run.

``python -m bench.spool_ingest [--values 200000] [--batch 100] [--put-size 384]
[--concurrency 32]`` prints one JSON object.

Figures:

* ``sequential``: one caller, ``--batch`` readings per put (one transaction each), against plain
  SQLite at ``--batch`` rows per transaction (the ARCHITECTURE.md anchor);
* ``group_commit``: the runtime's path - ``--concurrency`` acquisition tasks each handing over a
  profile read of ``--put-size`` values (96 intervals x 4 channels) through the
  :class:`~edge_core.uplink.SpoolWorker` (``await worker.call(spool.put, rows)``), which
  coalesces queued puts into one transaction; each task returns only once its rows are
  committed. Also the same with plain threads calling ``Spool.put`` (the spool's own group
  commit). Baselines: plain SQLite at ``--batch`` rows per transaction, and plain SQLite with
  the same transaction size as the group commits achieved (same fsync count: what is left is the
  spool's per-row cost: dedupe index, high-water marks, counters, quota accounting).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sqlite3
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_core.model import DataClass, Reading
from edge_core.spool import Spool

__all__ = ["main", "run"]

_MAX_TXN: list[float] = []  # longest write transaction of each concurrent phase (s)


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


def _puts(rows: list[Reading], put_size: int) -> list[list[Reading]]:
    """Profile reads: ``put_size`` consecutive values of one meter (meter-major)."""
    by_meter: dict[str, list[Reading]] = {}
    for r in rows:
        by_meter.setdefault(r.meter, []).append(r)
    out = []
    for rs in by_meter.values():
        out.extend(rs[k : k + put_size] for k in range(0, len(rs), put_size))
    return out


def _spool_worker(
    path: Path, puts: list[list[Reading]], concurrency: int
) -> tuple[float, int, int]:
    """Concurrent acquisition tasks through the SpoolWorker; returns (s, stored, commits)."""
    from edge_core.uplink import SpoolWorker

    spool = Spool.open(path)
    worker = SpoolWorker()
    commits = 0
    put_many = spool.put_many

    def counting(batches: Sequence[Sequence[Reading]]) -> list[Any]:
        nonlocal commits
        commits += 1
        return put_many(batches)

    spool.put_many = counting  # type: ignore[method-assign]

    async def main() -> int:
        it = iter(puts)
        stored = 0

        async def meter_task() -> None:
            nonlocal stored
            for chunk in it:
                n = (await worker.call(spool.put, chunk)).stored
                stored += n

        await asyncio.gather(*(meter_task() for _ in range(concurrency)))
        return stored

    t = time.perf_counter()
    stored = asyncio.run(main())
    elapsed = time.perf_counter() - t
    worker.close()
    _MAX_TXN.append(spool.stats().max_write_txn_s)
    spool.close()
    return elapsed, stored, commits


def _spool_threads(path: Path, puts: list[list[Reading]], concurrency: int) -> tuple[float, int]:
    spool = Spool.open(path)
    lock = threading.Lock()
    it = iter(puts)
    stored = 0

    def run() -> None:
        nonlocal stored
        while True:
            with lock:
                chunk = next(it, None)
            if chunk is None:
                return
            n = spool.put(chunk).stored
            with lock:
                stored += n

    threads = [threading.Thread(target=run) for _ in range(concurrency)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t
    _MAX_TXN.append(spool.stats().max_write_txn_s)
    spool.close()
    return elapsed, stored


def run(values: int, batch: int, put_size: int = 384, concurrency: int = 32) -> dict[str, object]:
    rows = _readings(values)
    puts = _puts(rows, put_size)
    with tempfile.TemporaryDirectory() as d:
        plain_s = _plain(Path(d) / "plain.db", rows, batch)
        spool_s, stored = _spool(Path(d) / "spool.db", rows, batch)
        spool_bytes = sum(p.stat().st_size for p in Path(d).glob("spool.db*"))
        gc_s, gc_stored, commits = _spool_worker(Path(d) / "gc.db", puts, concurrency)
        th_s, th_stored = _spool_threads(Path(d) / "th.db", puts, concurrency)
        per_txn = max(1, values // max(1, commits))
        plain_same_s = _plain(Path(d) / "plain2.db", rows, per_txn)
    rate = {
        "spool_sequential": values / spool_s,
        "plain_sqlite": values / plain_s,
        "spool_group_commit_worker": values / gc_s,
        "spool_group_commit_threads": values / th_s,
        "plain_sqlite_same_txn_size": values / plain_same_s,
    }
    return {
        "bench": "spool_ingest",
        "values": values,
        "readings_per_transaction": batch,
        "put_size": put_size,
        "concurrency": concurrency,
        "values_per_s": {k: round(v) for k, v in rate.items()},
        "spool_values_per_s": round(rate["spool_group_commit_worker"]),
        "plain_sqlite_values_per_s": round(rate["plain_sqlite"]),
        "ratio_group_commit_over_plain_100": round(
            rate["spool_group_commit_worker"] / rate["plain_sqlite"], 3
        ),
        "ratio_sequential_over_plain_100": round(
            rate["spool_sequential"] / rate["plain_sqlite"], 3
        ),
        "ratio_group_commit_over_plain_same_txn": round(
            rate["spool_group_commit_worker"] / rate["plain_sqlite_same_txn_size"], 3
        ),
        "group_commits": commits,
        "mean_values_per_group_commit": per_txn,
        "stored": {"sequential": stored, "worker": gc_stored, "threads": th_stored},
        "spool_file_bytes": spool_bytes,
        "spool_bytes_per_value": round(spool_bytes / values, 1),
        "target_ge_100k_per_s": rate["spool_group_commit_worker"] >= 100_000,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "max_write_txn_ms_group_commit": round(max(_MAX_TXN, default=0.0) * 1000, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spool_ingest", description=__doc__)
    parser.add_argument("--values", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--put-size", type=int, default=384)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.values, args.batch, args.put_size, args.concurrency), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
