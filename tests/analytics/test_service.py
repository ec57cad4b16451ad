"""AnalyticsService in process: a simulated fleet fed as batches, day by day."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Iterable
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from edge_core.analytics.detectors import MeterConfig
from edge_core.analytics.events import schema_path
from edge_core.analytics.features import EXPORT_OBIS, IMPORT_OBIS
from edge_core.analytics.inference import ModelManager
from edge_core.analytics.service import AnalyticsService, BatchOutcome
from edge_core.batch import Batch, encode_batch, new_batch_id
from edge_core.errors import PublishError
from edge_core.model import DataClass, Reading
from edge_core.training.fleet import Fleet, simulate_fleet
from tests.analytics.conftest import THING, Feed

VALIDATOR = jsonschema.Draft202012Validator(json.loads(schema_path().read_text()))
SCALED_METER = 2
SCALED_DAY = 20  # 2025-01-26
FROZEN_METER = 0
FROZEN_DAY = 19  # 2025-01-25
EXPORT_DAY = 18  # 2025-01-24


def _fleet() -> Fleet:
    fleet = simulate_fleet(6, 23, seed=21, anomaly_rate=0.0)
    fleet.energy[SCALED_METER, SCALED_DAY:] *= 0.5  # a 50 % scale-down from day 20 on
    fleet.energy[FROZEN_METER, FROZEN_DAY, 40:] = 0.0  # register stops at 10:00
    non_pv = int(np.nonzero(~fleet.has_pv)[0][-1])
    assert non_pv not in (SCALED_METER, FROZEN_METER)
    fleet.export[non_pv, EXPORT_DAY, 40:56] = 150.0  # 2.4 kWh exported around noon
    return fleet


FLEET = _fleet()
NON_PV = int(np.nonzero(~FLEET.has_pv)[0][-1])


class Sink:
    def __init__(self) -> None:
        self.events: list[dict] = []
        self.fail = False

    async def __call__(self, payload: bytes) -> None:
        if self.fail:
            raise PublishError("nucleus away")
        assert len(payload) <= 4096
        doc = json.loads(payload)
        VALIDATOR.validate(doc)
        self.events.append(doc)


def make_service(state: Path, model_dir: Path | None, sink: Sink, **kw) -> AnalyticsService:
    manager = ModelManager()
    if model_dir is not None:
        manager.update(model_dir)
    settings = {  # businesses are three-phase; households with PV say so
        FLEET.meter_id(m): MeterConfig(FLEET.meter_id(m), has_pv=bool(FLEET.has_pv[m]),
                                       phases=3 if FLEET.business[m] else 1)
        for m in range(FLEET.n_meters)
    }
    return AnalyticsService(THING, kw.pop("tz", "UTC"), manager, state_path=state, publish=sink,
                            meter_settings=settings, clock=kw.pop("clock", lambda: 2e9), **kw)


def feed_days(svc: AnalyticsService, feed: Feed, days: Iterable[int]) -> list[BatchOutcome]:
    async def run() -> list[BatchOutcome]:
        return [await svc.consume(feed.payload(d)) for d in days]

    return asyncio.run(run())


def model_events(sink: Sink) -> list[dict]:
    return [e for e in sink.events if e["source"] == "model"]


def test_scale_down_and_reverse_flow_found_and_state_survives_restart(
    tiny_model: Path, tmp_path: Path
) -> None:
    feed = Feed(FLEET)
    sink = Sink()
    state = tmp_path / "state.db"
    svc = make_service(state, tiny_model, sink)
    out = feed_days(svc, feed, range(15))
    assert all(o.days == FLEET.n_meters for o in out)  # every day complete on arrival
    assert svc.counters["days_completed"] == 15 * FLEET.n_meters
    assert svc.counters["skipped_no_history"] > 0
    rows_before = {FLEET.meter_id(m): svc.history.rows(FLEET.meter_id(m)) for m in range(6)}
    asyncio.run(svc.close())

    # a new service on the same state file: baselines and day markers come back
    svc = make_service(state, tiny_model, sink)
    for meter, rows in rows_before.items():
        after = svc.history.rows(meter)
        assert [r[0] for r in after] == [r[0] for r in rows]
        np.testing.assert_allclose([r[1:] for r in after], [r[1:] for r in rows], rtol=1e-6)
    assert asyncio.run(svc.consume(feed.payload(3))).accepted == 0  # already judged: late
    assert svc.counters["late"] == 6 * 2 * 96
    out = feed_days(svc, feed, range(15, 23))
    asyncio.run(svc.close())
    assert svc.counters["skipped_no_history"] == 0  # the baselines survived the restart
    assert {o.model_version for o in out} == {"tiny-v1"}

    def named(meter: int, day: str) -> list[dict]:
        return [e for e in sink.events if e["meter"] == FLEET.meter_id(meter) and e["day"] == day]

    # the scale-down: the level rule names the meter on its first day (the learned model
    # alone rarely sees a uniform level change, see docs/anomaly.md)
    drop = [e for e in named(SCALED_METER, "2025-01-26") if e["kind"] == "level_drop"]
    assert len(drop) == 1, sink.events
    assert drop[0]["source"] == "rule"
    assert 0.4 < drop[0]["score"] < 0.6  # today / own baseline
    assert {(e["meter"], e["day"]) for e in sink.events if e["kind"] == "level_drop"} <= {
        (FLEET.meter_id(SCALED_METER), f"2025-01-{d}") for d in (26, 27, 28)
    } | {(FLEET.meter_id(FROZEN_METER), "2025-01-25")}
    # the frozen register: the model (the shape collapses) and the stuck rule
    frozen = named(FROZEN_METER, "2025-01-25")
    learned = [e for e in frozen if e["source"] == "model"]
    assert len(learned) == 1, sink.events
    assert learned[0]["model_version"] == "tiny-v1"
    assert learned[0]["score"] > learned[0]["threshold"]
    assert learned[0]["daily_total_wh"] < learned[0]["baseline_total_wh"]
    assert learned[0]["contributions"]
    assert "stuck_zero" in {e["kind"] for e in frozen}
    # the model is not crying wolf on the rest of the fleet (1 % FPR calibration)
    others = [e for e in model_events(sink)
              if (e["meter"], e["day"]) not in {(FLEET.meter_id(FROZEN_METER), "2025-01-25"),
                                                (FLEET.meter_id(SCALED_METER), "2025-01-26")}]
    assert len(others) <= 4, others

    reverse = [e for e in sink.events if e["kind"] == "reverse_flow"]
    assert [(e["meter"], e["day"]) for e in reverse] == [(FLEET.meter_id(NON_PV), "2025-01-24")]
    assert reverse[0]["model_version"] == "rules"
    assert reverse[0]["score"] == pytest.approx(16 * 150.0)


def test_bad_input_is_counted_not_fatal(tiny_model: Path, tmp_path: Path) -> None:
    feed = Feed(FLEET)
    sink = Sink()
    svc = make_service(tmp_path / "s.db", tiny_model, sink)
    m0 = FLEET.meter_id(0)
    s1 = feed.day_start(1)

    async def run() -> None:
        assert (await svc.consume(b"")).accepted == 0
        assert (await svc.consume(b"AMIB\x01garbage" * 3)).accepted == 0
        await svc.consume(feed.payload(0, [0]))
        day1 = [r for r in feed.readings(1, [0]) if not s1 + 10 * 900 < r.capture_time
                <= s1 + 30 * 900]  # 20 intervals missing: too many to impute
        odd = [
            Reading(m0, IMPORT_OBIS, s1 + 7, 5, 0, 30),  # off the 15-min grid
            Reading(m0, "1.0.32.7.0.255", s1 + 900, 2300, -1, 35),  # voltage: not used here
            Reading(m0, IMPORT_OBIS, 900 * 4_500_000, 5, 0, 30),  # far future
            Reading("NEG-1", EXPORT_OBIS, s1 + 1800, -5, 0, 30),  # negative register
            Reading("NEW-1", IMPORT_OBIS, s1 + 900, 10, 0, 30),  # a meter never seen
        ]
        payload = encode_batch(Batch(new_batch_id(), THING, DataClass.INTERVAL, 0,
                                     tuple(day1 + odd)))
        await svc.consume(payload)
        await svc.consume(feed.payload(2, [0]))
        daily = encode_batch(Batch(new_batch_id(), THING, DataClass.DAILY, 0, (
            Reading(m0, IMPORT_OBIS, s1, 5, 0, 30, 0, DataClass.DAILY),)))
        await svc.consume(daily)
        await svc.close()

    asyncio.run(run())
    c = svc.counters
    assert c["malformed_batch"] == 2
    assert c["off_grid"] == 1
    assert c["other_channel"] == 1
    assert c["future"] == 1
    assert c["bad_value"] == 1
    assert c["new_meters"] == 2
    assert c["skipped_gaps"] == 1  # day 1 of meter 0
    assert c["ignored_class"] == 1
    assert c["days_completed"] == 3
    assert not sink.events


def test_dst_day_is_resampled_and_partial_day_completes_when_next_day_starts(
    tiny_model: Path, tmp_path: Path
) -> None:
    fleet = simulate_fleet(2, 4, seed=5, anomaly_rate=0.0, start=dt.date(2025, 3, 29))
    feed = Feed(fleet, "Europe/Vienna")
    sink = Sink()
    svc = make_service(tmp_path / "s.db", tiny_model, sink, tz="Europe/Vienna")

    async def run() -> list[BatchOutcome]:
        out = [await svc.consume(feed.payload(0))]
        # day 1 is 2025-03-30 (23 h): a 96-interval feed runs one hour into day 2
        out.append(await svc.consume(feed.payload(1)))
        out.append(await svc.consume(feed.payload(2)))
        await svc.close()
        return out

    out = asyncio.run(run())
    assert [o.days for o in out] == [2, 2, 2]
    assert svc.counters["days_completed"] == 6
    assert not svc.counters["skipped_dst_day"]
    assert not sink.events  # normal days, no history: nothing to report


def test_failed_publish_is_retried_with_the_next_batch(tmp_path: Path) -> None:
    feed = Feed(FLEET)
    sink = Sink()
    svc = make_service(tmp_path / "s.db", None, sink)

    async def run() -> None:
        for d in range(EXPORT_DAY):
            await svc.consume(feed.payload(d, [NON_PV]))
        sink.fail = True
        await svc.consume(feed.payload(EXPORT_DAY, [NON_PV]))
        assert svc.snapshot()["retry_queue"] == 1
        sink.fail = False
        await svc.consume(feed.payload(EXPORT_DAY + 1, [NON_PV]))
        await svc.close()

    asyncio.run(run())
    assert [e["kind"] for e in sink.events] == ["reverse_flow"]
    assert svc.counters["publish_failed"] == 1
    assert svc.counters["unscored_no_model"] > 0  # no model: rules only, baselines still kept
    assert len(svc.history.rows(FLEET.meter_id(NON_PV))) == EXPORT_DAY + 2


def test_corrupt_state_file_is_moved_aside(tiny_model: Path, tmp_path: Path) -> None:
    state = tmp_path / "s.db"
    state.write_bytes(b"this is not sqlite" * 100)
    svc = make_service(state, tiny_model, Sink())
    assert svc.counters["state_reset"] == 1
    assert list(tmp_path.glob("s.db.corrupt-*"))
    asyncio.run(svc.close())


class FakeBus:
    """The part of the Bus the analytics app uses; publish_local can be held."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self.handlers: dict[str, object] = {}
        self.local: list[tuple[str, bytes]] = []
        self.cloud: list[tuple[str, bytes]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    def get_config(self) -> dict:
        return self.config

    async def subscribe_local(self, topic: str, handler):
        self.handlers[topic] = handler
        bus = self

        class Sub:
            async def close(self) -> None:
                bus.handlers.pop(topic, None)

        return Sub()

    async def publish_local(self, topic: str, payload: bytes) -> None:
        await asyncio.wait_for(self.gate.wait(), 10)
        self.local.append((topic, payload))

    async def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self.cloud.append((topic, payload))


def test_app_defers_updates_while_scoring_and_swaps_models_in_place(
    tiny_model: Path, tmp_path: Path
) -> None:
    from components.analytics.app import UPDATE_DEFER_S, AnalyticsApp
    from tests.analytics.conftest import copy_model

    v2 = copy_model(tiny_model, tmp_path / "v2", "tiny-v2")
    bad = copy_model(tiny_model, tmp_path / "bad", "tiny-bad")
    (bad / "model.onnx").write_bytes(b"truncated")
    fleet = simulate_fleet(1, 13, seed=41, anomaly_rate=0.0)
    fleet.energy[0, 12, 40:] = 0.0  # frozen register on the last day
    feed = Feed(fleet)
    payload = encode_batch(Batch(new_batch_id(), THING, DataClass.INTERVAL, 0, tuple(
        r for d in range(13) for r in feed.readings(d))))
    config = {"thing_name": THING, "model_dir": str(tiny_model),
              "state_path": str(tmp_path / "a" / "state.db")}

    async def run() -> AnalyticsApp:
        bus = FakeBus(config)
        app = AnalyticsApp()
        await app.start(bus)
        assert app.update_gate() == 0.0
        bus.gate.clear()  # events cannot be handed over: the batch stays in flight
        await bus.handlers["ami/local/readings"]("ami/local/readings", payload)
        for _ in range(500):
            if app.update_gate():
                break
            await asyncio.sleep(0.01)
        assert app.update_gate() == UPDATE_DEFER_S
        bus.gate.set()
        for _ in range(500):
            if bus.local and not app.update_gate():
                break
            await asyncio.sleep(0.01)
        assert app.update_gate() == 0.0
        events = [json.loads(p) for t, p in bus.local if t == "ami/local/anomaly"]
        assert {e["model_version"] for e in events if e["source"] == "model"} == {"tiny-v1"}

        app.apply_config({**config, "model_dir": str(v2)})
        await app._reconfiguring
        assert app.models.require().version == "tiny-v2"
        app.apply_config({**config, "model_dir": str(bad)})
        await app._reconfiguring
        assert app.models.require().version == "tiny-v2"  # kept
        assert "digest" in app.last_rejected["reason"]
        health = [json.loads(p)["event"] for _, p in bus.cloud]
        assert health == ["started", "model_swapped", "model_rejected"]
        await app.stop()
        return app

    app = asyncio.run(run())
    status = json.loads((tmp_path / "a" / "state.status.json").read_text())
    assert status["model_version"] == "tiny-v2"
    assert status["last_rejected"]["model_dir"] == str(bad)
    assert status["service"]["counters"]["events_model"] >= 1
    assert app.dropped == 0
