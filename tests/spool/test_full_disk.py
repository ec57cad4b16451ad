"""The spool on a filesystem that really fills up (ENOSPC / SQLITE_FULL), not on its quota.

A child process gets a private mount namespace (``unshare --user --map-root-user --mount``)
with a 4 MiB tmpfs, opens the spool there as the runtime does, and puts readings until the
disk is full. A filler file takes part of the space so that, once the put failed, deleting it
frees room for more. The child prints one JSON line; the test checks: the typed error
(SpoolFullError), every put acknowledged before it still readable after a reopen with a full
integrity check, and puts stored again once space is free.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

_CHILD = r"""
import json, os, subprocess, sys
mnt = sys.argv[1]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt], check=True)
from edge_core.errors import SpoolError, SpoolFullError
from edge_core.model import DataClass, Reading
from edge_core.spool import Spool

filler = os.path.join(mnt, "filler")
with open(filler, "wb") as f:
    f.write(b"\0" * (1 << 20))
path = os.path.join(mnt, "spool.db")
spool = Spool.open(path)

def chunk(k):
    return [Reading(f"m{k:06d}", "1.0.1.8.0.255", 900 * i, k * 100 + i, -1, 30, 0,
                    DataClass.INTERVAL) for i in range(200)]

acked, k, error = 0, 0, None
while k < 100000:
    try:
        acked += spool.put(chunk(k)).stored
    except SpoolError as exc:
        error = type(exc).__name__
        break
    k += 1
os.remove(filler)
after = 0
for j in range(3):
    after += spool.put(chunk(k + 1 + j)).stored
stored = spool.stats().stored[DataClass.INTERVAL]
spool.close()
check = Spool.open(path, integrity_check="full", on_corrupt="raise")
readable = check.stats().backlog_readings[DataClass.INTERVAL]
salvages = check.stats().salvages
check.close()
print(json.dumps({"acked": acked, "error": error, "after": after, "stored": stored,
                  "readable": readable, "salvages": salvages}))
"""


def _unshare() -> str:
    exe = shutil.which("unshare")
    if exe is None:
        pytest.skip("util-linux unshare is not installed")
    probe = subprocess.run(
        [exe, "--user", "--map-root-user", "--mount", "true"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here: {probe.stderr.decode().strip()}")
    return exe


def test_filesystem_full_raises_typed_error_keeps_acked_rows_and_recovers(tmp_path: Path) -> None:
    exe = _unshare()
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(
        [exe, "--user", "--map-root-user", "--mount", sys.executable, "-c", _CHILD, str(mnt)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    if proc.returncode != 0 and "mount" in proc.stderr and "permission" in proc.stderr.lower():
        pytest.skip(f"tmpfs mount refused: {proc.stderr.strip()[-200:]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["error"] == "SpoolFullError"
    assert out["acked"] > 0
    assert out["after"] == 600  # stores again once the filler is gone
    assert out["stored"] == out["acked"] + out["after"]
    assert out["readable"] == out["stored"]  # nothing acknowledged lost, file sound
    assert out["salvages"] == 0
