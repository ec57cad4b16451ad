"""The whole spine as a user runs it, every part its own process on loopback:

``ami-edge simulate`` (meters) -> ``ami-edge run`` (the concentrator over direct MQTT) -> a real
Mosquitto -> ``ami-edge cloud serve`` (rules, ingest, REST API); and ``ami-edge read`` as the
independent witness. The numbers the REST API serves must be the ones the meter gives.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import ROOT, Broker, free_port

pytestmark = [pytest.mark.broker, pytest.mark.slow]

API_KEY = "e2e-key"
METERS = 2


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "edge_core.cli", *args]


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
            return -9
    return int(proc.returncode)


def _get(url: str) -> tuple[int, object]:
    req = urllib.request.Request(url, headers={"x-api-key": API_KEY})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited early:\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"port {port} never opened:\n{log.read_text()[-3000:]}")


@pytest.fixture
def stack(broker: Broker, tmp_path: Path) -> Iterator[dict[str, object]]:
    sim_port = free_port()
    while any(_port_busy(sim_port + i) for i in range(METERS)):
        sim_port = free_port()
    http_port = free_port()
    start = (datetime.now(timezone.utc) - timedelta(days=2)).date().isoformat()
    procs = []
    sim_log, cloud_log, edge_log = (tmp_path / n for n in ("sim.log", "cloud.log", "edge.log"))
    procs.append(
        _spawn(
            _cli(
                "simulate",
                "--meters",
                str(METERS),
                "--port",
                str(sim_port),
                "--seed",
                "11",
                "--start",
                start,
            ),
            sim_log,
        )
    )
    _wait_port(sim_port + METERS - 1, procs[-1], sim_log)
    procs.append(
        _spawn(
            _cli(
                "cloud",
                "serve",
                "--broker",
                broker.url,
                "--data-dir",
                str(tmp_path / "cloud"),
                "--http-port",
                str(http_port),
                "--api-key",
                API_KEY,
            ),
            cloud_log,
        )
    )
    _wait_port(http_port, procs[-1], cloud_log)
    config = {
        "thing_name": "dcu-e2e-1",
        "meters": [
            {"id": f"E2E{i}", "url": f"tcp://127.0.0.1:{sim_port + i}"} for i in range(METERS)
        ],
        "schedule": {"profile_read_s": 900, "jitter_s": 0},
        "spool": {"path": str(tmp_path / "edge" / "spool.db")},
        "uplink": {"max_batch_age_s": 1},
        "mqtt": {"url": broker.url},
    }
    cfg = tmp_path / "edge.json"
    cfg.write_text(json.dumps(config))
    procs.append(_spawn(_cli("run", "--config", str(cfg)), edge_log))
    yield {
        "sim_port": sim_port,
        "api": f"http://127.0.0.1:{http_port}",
        "procs": procs,
        "logs": (sim_log, cloud_log, edge_log),
        "spool": tmp_path / "edge" / "spool.db",
    }
    codes = [_stop(p) for p in reversed(procs)]
    assert codes[0] == 0, f"edge runtime did not stop cleanly:\n{edge_log.read_text()[-3000:]}"


def _port_busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _read_cli(port: int, start: datetime, end: datetime) -> dict:
    out = subprocess.run(
        _cli(
            "read",
            "--url",
            f"tcp://127.0.0.1:{port}",
            "--json",
            "--load-profile",
            "--from",
            start.isoformat(),
            "--to",
            end.isoformat(),
        ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


def test_a_day_of_load_profile_travels_from_meter_to_rest_api(stack: dict) -> None:
    api = stack["api"]
    now = datetime.now(timezone.utc)
    start, end = now - timedelta(hours=23), now
    q = f"?from={quote(start.isoformat())}&to={quote(end.isoformat())}&channel=1.0.1.8.0.255"
    # The concentrator's first read backfills the last 24 h; wait until the cloud has it all.
    deadline = time.monotonic() + 60
    served: dict[str, dict[int, float]] = {}
    while time.monotonic() < deadline:
        served = {}
        for i in range(METERS):
            status, doc = _get(f"{api}/v1/meters/E2E{i}/intervals{q}")
            served[f"E2E{i}"] = (
                {r["epoch"]: r["value"] for r in doc["rows"]} if status == 200 else {}
            )
        if all(len(v) >= 92 for v in served.values()):
            break
        time.sleep(0.5)
    else:
        logs = "\n".join(p.read_text()[-2000:] for p in stack["logs"])
        raise AssertionError(
            f"cloud never had the day: { {k: len(v) for k, v in served.items()} }\n{logs}"
        )

    for i in range(METERS):
        witness = _read_cli(stack["sim_port"] + i, start, end)
        cols = [c["obis"] for c in witness["load_profile"]["columns"]]
        a_plus = cols.index("1.0.1.8.0.255")
        meter_says = {
            int(datetime.fromisoformat(row[0]).timestamp()): row[a_plus]
            for row in witness["load_profile"]["rows"]
        }
        got = served[f"E2E{i}"]
        common = sorted(set(got) & set(meter_says))
        assert len(common) >= 92
        assert all(got[t] == pytest.approx(meter_says[t]) for t in common), f"E2E{i} values differ"
        # Cumulative register captures never decrease, and the register now is at least the last.
        values = [got[t] for t in sorted(got)]
        assert values == sorted(values)
        register = next(r for r in witness["registers"] if r["obis"] == "1.0.1.8.0.255")
        assert register["value"] >= values[-1]

    # The latest-read endpoint agrees with the newest interval, and bad calls are typed 4xx.
    status, latest = _get(f"{api}/v1/meters/E2E0/latest")
    assert status == 200
    assert "1.0.1.8.0.255" in latest["channels"]
    assert _get(f"{api}/v1/meters/NOPE/latest")[0] == 404
    assert _get(f"{api}/v1/meters/E2E0/intervals?from=yesterday&to=now")[0] == 400
