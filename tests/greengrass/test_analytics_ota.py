"""Concentrator and Analytics as two component processes on one nucleus stand-in.

Both run as Greengrass would start them (real awsiotsdk IPC client, each under its own recipe's
accessControl); the stand-ins of the two components share local pub/sub. The concentrator reads
a simulated meter whose clock runs 300 times faster than real time (a new 15-min interval every
3 s), so "keeps reading and spooling" is visible within seconds. Then the model is replaced over
the air by configuration: a valid model is swapped in without restarting anything, an invalid
one is refused and the previous one stays, and a SIGKILL of analytics leaves the concentrator
reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_core.batch import Batch, encode_batch, new_batch_id
from edge_core.build import ROOT
from edge_core.model import DataClass
from edge_core.simulator.server import serve_meters
from edge_core.training.card import CARD_FILE, MODEL_FILE, ModelCard
from edge_core.training.fleet import simulate_fleet
from tests.analytics.conftest import Feed, copy_model
from tests.greengrass.nucleus import NucleusStandIn, substitute
from tests.greengrass.test_lifecycle import THING, recipe

pytestmark = pytest.mark.slow

SPEED = 300.0  # simulated seconds per real second


class SimulatedMeterThread:
    """One simulated meter served from a background event loop; its clock is accelerated and
    counts how often the meter was asked for the time (every read asks)."""

    def __init__(self) -> None:
        self.calls = 0
        self._t0 = time.monotonic()
        self._sim0 = time.time() - 6 * 3600  # six hours behind: there is data to catch up
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        start = (dt.datetime.fromtimestamp(self._sim0, dt.UTC) - dt.timedelta(days=3)).date()
        self.handle = asyncio.run_coroutine_threadsafe(
            serve_meters(1, "127.0.0.1", 0, 7, start, self.clock), self.loop
        ).result(20)

    def clock(self) -> dt.datetime:
        self.calls += 1
        now = self._sim0 + (time.monotonic() - self._t0) * SPEED
        return dt.datetime.fromtimestamp(now, dt.UTC)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.handle.close(), self.loop).result(20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class Proc:
    """A component process under its own stand-in (not started until :meth:`start`)."""

    def __init__(self, name: str, module: str, workdir: Path, socket: str,
                 configure: Callable[[dict[str, Any]], None]) -> None:
        r = recipe(name)
        conf = r["ComponentConfiguration"]
        config = copy.deepcopy(conf["DefaultConfiguration"])
        configure(config)
        self.module = module
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.nucleus = NucleusStandIn(
            socket, component=name, configuration=config,
            policy=substitute(conf["accessControl"], {"iot:thingName": THING}),
        ).start()
        self.log = workdir / "component.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> Proc:
        full = {**os.environ, **self.nucleus.environment(), **env,
                "AWS_IOT_THING_NAME": THING, "PYTHONPATH": str(ROOT)}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", self.module], cwd=self.workdir,
                                         env=full, stdout=out, stderr=subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait(self, pred: Callable[[], bool], what: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if not self.alive():
                pytest.fail(f"{self.module} exited before {what}:\n{self.text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}:\n{self.text()}")
            time.sleep(0.05)

    def reconfigure(self, change: Callable[[dict[str, Any]], None]) -> None:
        new = copy.deepcopy(self.nucleus.configuration)
        change(new)
        assert self.nucleus.request_validation(new)["status"] == "ACCEPTED"
        self.nucleus.update_configuration(new)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.nucleus.stop()


class Site:
    """The simulated meter, the concentrator and analytics, wired to one nucleus."""

    def __init__(self, tmp: Path, socket_dir: Path, model: Path) -> None:
        self.meter = SimulatedMeterThread()
        url = self.meter.handle.url(0)

        def conc_config(c: dict[str, Any]) -> None:
            c["meters"] = [{"id": "M1", "url": url}]
            c["schedule"]["profile_read_s"] = "1"
            c["schedule"]["jitter_s"] = "0"
            c["uplink"]["max_batch_age_s"] = "1"

        def ana_config(c: dict[str, Any]) -> None:
            c["meters"] = [{"id": "M1", "pv": "false"}]

        self.analytics = Proc("com.amiedge.Analytics", "components.analytics", tmp / "analytics",
                              str(socket_dir / "a.sock"), ana_config)
        self.conc = Proc("com.amiedge.Concentrator", "components.concentrator", tmp / "conc",
                         str(socket_dir / "c.sock"), conc_config)
        self.conc.nucleus.bridge_local(self.analytics.nucleus)
        self.model = model

    def start(self) -> None:
        # analytics first: the concentrator's offers are fire and forget
        self.analytics.start({"AMI_MODEL_DIR": str(self.model)})
        self.analytics.wait(lambda: "RUNNING" in self.analytics.nucleus.states, "RUNNING")
        self.conc.start({})
        self.conc.wait(lambda: "RUNNING" in self.conc.nucleus.states, "RUNNING")

    def status(self) -> dict[str, Any]:
        path = self.analytics.workdir / "analytics-state.status.json"
        try:
            return dict(json.loads(path.read_text()))
        except (OSError, ValueError):
            return {}

    def counter(self, name: str) -> int:
        return int(((self.status().get("service") or {}).get("counters") or {}).get(name, 0))

    def stored(self) -> int:
        """Readings the concentrator's spool has stored so far (its own counter)."""
        uri = f"file:{self.conc.workdir / 'spool.db'}?mode=ro"
        try:
            with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as db:
                row = db.execute("SELECT sum(value) FROM counters WHERE name = 'stored'").fetchone()
        except sqlite3.Error:
            return 0
        return int(row[0] or 0)

    def uploaded_anomalies(self) -> list[dict[str, Any]]:
        """Anomaly events the concentrator spooled and then published to IoT Core."""
        with self.conc.nucleus._lock:
            rows = list(self.conc.nucleus.published)
        return [json.loads(p) for t, p, _ in rows if t == f"dt/ami/{THING}/anomaly"]

    def health(self) -> list[dict[str, Any]]:
        with self.analytics.nucleus._lock:
            rows = list(self.analytics.nucleus.published)
        return [json.loads(p) for t, p, _ in rows if t == f"dt/ami/{THING}/health"]

    def close(self) -> None:
        for p in (self.conc, self.analytics):
            p.close()
        self.meter.close()


@pytest.fixture
def site(tmp_path: Path, socket_dir: Path, trained_model: Path) -> Iterator[Site]:
    s = Site(tmp_path, socket_dir, trained_model)
    try:
        yield s
    finally:
        s.close()


def suspicious_meter_payload(meter_seed: int, frozen_day: int) -> bytes:
    """``frozen_day + 1`` days of one meter (id SIM<seed>-00000): normal history, then a day
    whose register stops at 10:00 (the learned model flags it)."""
    fleet = simulate_fleet(1, frozen_day + 1, seed=meter_seed, anomaly_rate=0.0)
    fleet.energy[0, frozen_day, 40:] = 0.0
    feed = Feed(fleet)
    readings = [r for d in range(frozen_day + 1) for r in feed.readings(d)]
    return encode_batch(Batch(new_batch_id(), THING, DataClass.INTERVAL, 0, tuple(readings)))


def test_model_swap_over_the_air_never_restarts_acquisition(
    site: Site, tmp_path: Path, trained_model: Path
) -> None:
    v2 = copy_model(trained_model, tmp_path / "models" / "v2", "tiny-v2")
    v3 = copy_model(trained_model, tmp_path / "models" / "v3", "tiny-v3")
    (v3 / MODEL_FILE).write_bytes((v3 / MODEL_FILE).read_bytes()[:-100])  # a truncated download
    v4 = copy_model(trained_model, tmp_path / "models" / "v4", "tiny-v4")
    card = ModelCard.read(v4 / CARD_FILE)
    dataclasses.replace(card, feature_spec_version=card.feature_spec_version + 1).write(
        v4 / CARD_FILE)

    site.start()
    conc_pid, ana_pid = site.conc.pid, site.analytics.pid
    # (a) readings flow: the concentrator stores, offers them, analytics takes them
    site.analytics.wait(lambda: site.counter("readings") > 0, "analytics to take readings")
    assert site.status()["model_version"] == "tiny-v1"
    assert any(t == "ami/local/readings" for t, _ in site.conc.nucleus.local_published)

    # (b) a valid new model by configuration: swapped in place, no process restarts
    before = site.stored()
    reads_before = site.meter.calls
    site.analytics.reconfigure(lambda c: c.update(model_dir=str(v2)))
    site.analytics.wait(lambda: site.status().get("model_version") == "tiny-v2", "the swap")
    assert "swapped without restart: tiny-v1 -> tiny-v2" in site.analytics.text()
    site.analytics.wait(lambda: len(site.health()) == 2, "health after the swap")
    assert [h["event"] for h in site.health()] == ["started", "model_swapped"]
    # its next anomaly event carries the new version, end to end through the spool
    assert site.analytics.nucleus.push_local_message(
        "ami/local/readings", suspicious_meter_payload(41, 12)) == 1
    site.conc.wait(lambda: any(e["source"] == "model" for e in site.uploaded_anomalies()),
                   "a model event uploaded by the concentrator")
    learned = [e for e in site.uploaded_anomalies() if e["source"] == "model"]
    assert {e["model_version"] for e in learned} == {"tiny-v2"}
    assert {e["meter"] for e in learned} == {"SIM0041-00000"}
    site.conc.wait(lambda: site.stored() > before, "the concentrator to keep spooling")
    assert site.meter.calls > reads_before

    # (c) invalid models: refused, v2 stays, reported; the concentrator is untouched
    for bad, why in ((v3, "digest"), (v4, "feature spec")):
        site.analytics.reconfigure(lambda c, p=bad: c.update(model_dir=str(p)))
        site.analytics.wait(
            lambda p=bad: (site.status().get("last_rejected") or {}).get("model_dir") == str(p),
            f"{bad.name} to be refused")
        status = site.status()
        assert status["model_version"] == "tiny-v2"
        assert why in status["last_rejected"]["reason"]
    site.analytics.wait(lambda: len(site.health()) == 4, "health after the refusals")
    assert [h["event"] for h in site.health()][-2:] == ["model_rejected", "model_rejected"]
    assert "refused" in site.analytics.text()
    site.analytics.nucleus.push_local_message("ami/local/readings",
                                              suspicious_meter_payload(42, 12))

    def learned_42() -> list[dict[str, Any]]:
        return [e for e in site.uploaded_anomalies()
                if e["source"] == "model" and e["meter"] == "SIM0042-00000"]

    site.conc.wait(lambda: bool(learned_42()), "the next model event")
    assert {e["model_version"] for e in learned_42()} == {"tiny-v2"}

    # nothing restarted: same processes, each reported RUNNING exactly once
    assert (site.conc.pid, site.analytics.pid) == (conc_pid, ana_pid)
    assert site.conc.alive()
    assert site.analytics.alive()
    assert site.status()["pid"] == ana_pid
    assert site.conc.nucleus.states == ["RUNNING"]
    assert site.analytics.nucleus.states == ["RUNNING"]


def test_killing_analytics_does_not_stop_acquisition(site: Site) -> None:
    site.start()
    site.analytics.wait(lambda: site.counter("readings") > 0, "analytics to take readings")
    assert site.analytics.proc is not None
    site.analytics.proc.send_signal(signal.SIGKILL)
    assert site.analytics.proc.wait(10) == -signal.SIGKILL
    stored, reads = site.stored(), site.meter.calls
    offers = len(site.conc.nucleus.local_published)
    site.conc.wait(lambda: site.stored() > stored, "the concentrator to keep spooling")
    site.conc.wait(lambda: len(site.conc.nucleus.local_published) > offers,
                   "offers to go on with nobody listening")
    assert site.meter.calls > reads
    assert site.conc.alive()
    assert site.conc.nucleus.states == ["RUNNING"]
    assert "Traceback" not in site.conc.text()
