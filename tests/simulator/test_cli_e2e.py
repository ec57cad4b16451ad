"""End to end through the command line: ``ami-edge simulate`` and ``ami-edge read`` as
subprocesses on loopback ports."""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.slow


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "edge_core.cli", *args]


def _wait_ready(
    proc: subprocess.Popen[str], timeout: float = 20.0
) -> tuple[list[str], threading.Thread]:
    """Lines printed before "ready" (read in a thread: a pipe read has no timeout)."""
    lines: queue.Queue[str] = queue.Queue()
    stdout = proc.stdout
    assert stdout is not None

    def pump() -> None:
        for line in stdout:
            lines.put(line.strip())
        lines.put("")  # EOF

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if line == "ready":
            return got, thread
        if not line:
            break
        got.append(line)
    raise RuntimeError(f"simulator not ready: {got}")


@pytest.fixture(scope="module")
def simulator() -> Iterator[int]:
    start = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(5):
        port = free_port()
        proc = subprocess.Popen(
            _cli("simulate", "--meters", "2", "--port", str(port), "--seed", "4", "--start", start),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        try:
            lines, pump = _wait_ready(proc)
        except RuntimeError:
            proc.kill()
            proc.wait(timeout=10)
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
            continue  # port P+1 taken: try another P
        assert len(lines) == 2
        assert lines[0].endswith(f":{port}")
        assert lines[1].endswith(f":{port + 1}")
        yield port
        proc.terminate()
        proc.wait(timeout=15)
        pump.join(timeout=5)
        assert proc.stderr is not None
        err = proc.stderr.read()
        proc.stderr.close()
        assert proc.stdout is not None
        proc.stdout.close()
        assert proc.returncode == 0, err
        return
    raise RuntimeError("could not start the simulator on free ports")


def _read(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _cli("read", *args),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )


@pytest.mark.parametrize("meter", [0, 1])
def test_read_json_load_profile(simulator: int, meter: int) -> None:
    day = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    res = _read(
        "--url",
        f"tcp://127.0.0.1:{simulator + meter}",
        "--json",
        "--load-profile",
        "--from",
        f"{day}T00:00:00+00:00",
        "--to",
        f"{day}T23:59:59+00:00",
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert datetime.fromisoformat(doc["clock"]).utcoffset() is not None
    regs = {r["obis"]: r for r in doc["registers"]}
    assert {"1.0.1.8.0.255", "1.0.2.8.0.255"} <= set(regs)
    for r in doc["registers"]:
        assert r["value"] == pytest.approx(r["raw"] * 10 ** r["scaler"])
    lp = doc["load_profile"]
    assert lp["obis"] == "1.0.99.1.0.255"
    assert lp["capture_period_s"] == 900
    assert len(lp["rows"]) == 96
    cols = [c["obis"] for c in lp["columns"]]
    assert cols[0] == "0.0.1.0.0.255"
    times = [datetime.fromisoformat(row[0]) for row in lp["rows"]]
    assert times[0] == datetime.fromisoformat(f"{day}T00:00:00+00:00")
    assert all(b - a == timedelta(minutes=15) for a, b in itertools.pairwise(times))
    for obis in ("1.0.1.8.0.255", "1.0.2.8.0.255"):
        i = cols.index(obis)
        series = [row[i] for row in lp["rows"]]
        assert all(a <= b for a, b in itertools.pairwise(series)), obis
        assert series[-1] <= regs[obis]["value"]
    w = doc["wire"]
    assert w["bytes_tx"] > 0
    assert w["bytes_rx"] > w["bytes_tx"]
    assert w["round_trips"] >= 5


def test_read_default_range_and_text_output(simulator: int) -> None:
    res = _read("--url", f"tcp://127.0.0.1:{simulator}", "--json", "--load-profile")
    assert res.returncode == 0, res.stderr
    assert len(json.loads(res.stdout)["load_profile"]["rows"]) in (96, 97)
    res = _read(
        "--url", f"tcp://127.0.0.1:{simulator}", "--obis", "1.0.32.7.0.255", "1-0:1.8.0*255"
    )
    assert res.returncode == 0, res.stderr
    assert " V" in res.stdout
    assert "Wh" in res.stdout


def test_unknown_obis_and_dead_port_fail_with_one_line(simulator: int) -> None:
    res = _read("--url", f"tcp://127.0.0.1:{simulator}", "--obis", "1.0.1.8.9.255", "--json")
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "1.0.1.8.9.255" in lines[0]
    assert res.stdout == ""
    res = _read("--url", f"tcp://127.0.0.1:{free_port()}", "--json", "--timeout", "3")
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "connect" in lines[0]
    res = _read("--url", "http://nowhere", "--json")
    assert res.returncode != 0
    assert len(res.stderr.strip().splitlines()) == 1
