"""Kill -9 at random points: nothing acknowledged is lost, nothing is duplicated.

AMI_CRASH_KILLS (default 30) sets the number of kills.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from edge_core.batch import decode_batch
from edge_core.errors import BatchFormatError
from edge_core.spool import Spool

ROOT = Path(__file__).resolve().parents[2]
KILLS = int(os.environ.get("AMI_CRASH_KILLS", "30"))


def _lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    text = path.read_text()
    return text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]


@pytest.mark.slow
def test_no_acknowledged_reading_lost_none_duplicated(tmp_path: Path) -> None:
    spool_path, put_log, cloud_log = tmp_path / "s.db", tmp_path / "put.log", tmp_path / "cloud.log"
    rng = random.Random(42)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for run in range(KILLS):
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.spool.crash_child",
                str(spool_path),
                str(put_log),
                str(cloud_log),
                str(run),
                str(run),
            ],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
        )
        time.sleep(rng.uniform(0.25, 0.9))
        assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        if child.stderr:
            child.stderr.close()
    acknowledged = {tuple(line.split()) for line in _lines(put_log)}
    assert len(acknowledged) > KILLS * 10

    seen: Counter[tuple[str, str]] = Counter()
    batches: dict[str, list[tuple[str, str]]] = {}
    for line in _lines(cloud_log):
        bid, payload = line.split()
        try:
            b = decode_batch(bytes.fromhex(payload))
        except BatchFormatError:
            continue
        batches[bid] = [(r.meter, str(r.capture_time)) for r in b.readings]
    with Spool.open(spool_path) as s:
        assert s.salvage_report is None
        for item in s.pending(limit=1_000_000):
            assert item.batch_id is not None
            batches.setdefault(
                item.batch_id.hex(),
                [(r.meter, str(r.capture_time)) for r in decode_batch(item.payload).readings],
            )
    assert batches, "the child never sealed and published a batch"
    for keys in batches.values():
        seen.update(keys)
    conn = sqlite3.connect(spool_path)
    # unsealed readings only: those at or below their class's seal mark are in a batch
    seen.update(
        (m, str(t))
        for m, t in conn.execute(
            "SELECT m.name, capture_time FROM readings r JOIN seal_marks k "
            "ON k.data_class = r.data_class JOIN meters m ON m.id = r.meter_id "
            "WHERE r.id > k.through_id"
        )
    )
    conn.close()
    lost = acknowledged - set(seen)
    assert not lost, f"{len(lost)} acknowledged readings lost, e.g. {sorted(lost)[:5]}"
    dups = [k for k, n in seen.items() if n > 1]
    assert not dups, f"{len(dups)} readings duplicated, e.g. {dups[:5]}"
