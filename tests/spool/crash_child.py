"""Child process of the crash test: puts, seals, reclaims, "publishes" and acks in a loop until
killed.

Usage: python -m tests.spool.crash_child SPOOL PUT_LOG CLOUD_LOG RUN SEED

After each put returns, the keys are appended to PUT_LOG and fsynced (the acknowledgement a
meter reader would rely on). A publish appends "batch_id payload" (hex) to CLOUD_LOG and fsyncs
it (the cloud's store) before the spool ack.
"""

from __future__ import annotations

import os
import random
import sys

from edge_core.model import DataClass, Reading
from edge_core.spool import Spool


def _append(fd: int, text: str) -> None:
    os.write(fd, text.encode())
    os.fsync(fd)


def main() -> int:
    path, put_log, cloud_log, run, seed = sys.argv[1:6]
    rng = random.Random(int(seed))
    spool = Spool.open(path)
    pfd = os.open(put_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    cfd = os.open(cloud_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    t = 0
    while True:
        rows = []
        for _ in range(rng.randint(1, 40)):
            t += 1
            rows.append(
                Reading(f"r{run}m{t % 7}", "1.0.1.8.0.255", t, t * 3, 0, 30, 0, DataClass.INTERVAL)
            )
        spool.put(rows)
        _append(pfd, "".join(f"{r.meter} {r.capture_time}\n" for r in rows))
        if rng.random() < 0.3:
            spool.seal(
                DataClass.INTERVAL,
                thing="dcu",
                topic="dt/ami/dcu/interval",
                max_values=rng.randint(10, 200),
            )
        if rng.random() < 0.1:
            spool.reclaim(rng.randint(1, 300))
        if rng.random() < 0.3:
            for item in spool.pending(limit=3):
                assert item.batch_id is not None
                _append(cfd, f"{item.batch_id.hex()} {item.payload.hex()}\n")
                spool.ack(item.id)


if __name__ == "__main__":
    raise SystemExit(main())
