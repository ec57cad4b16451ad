"""Messages a small fleet sends, for the dashboard and schemathesis tests.

The golden batches (fixed dates), two meters with two days of recent 15-minute +A captures on
``dcu-dash-1``, an outage and a restore, a tamper event, two anomalies and a few health
snapshots of a draining spool, all as (topic, payload) pairs published like the edge does.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path

from edge_core.alarms.messages import AlarmMessage, AlarmType, alarm_id
from edge_core.batch import Batch, encode_batch, new_batch_id
from edge_core.model import DataClass, Reading, Topics

__all__ = ["RECENT_METERS", "THING", "fleet_messages"]

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
THING = "dcu-dash-1"
RECENT_METERS = ("MTR-A", "MTR-B")
ENERGY = "1.0.1.8.0.255"


def _alarm(kind: AlarmType, meter: str, t: int, seq: int, **kw: object) -> AlarmMessage:
    when = datetime.fromtimestamp(t, timezone.utc)
    return AlarmMessage(
        type=kind,
        dcu=THING,
        event_time=when,
        detected_time=when,
        id=alarm_id(THING, kind, [meter], when, kw.get("code")),  # type: ignore[arg-type]
        seq=seq,
        priority=1,
        meter=meter,
        meters=(meter,),
        **kw,  # type: ignore[arg-type]
    )


def fleet_messages(now: int) -> list[tuple[str, bytes]]:
    """Every message of the fleet, oldest first; ``now`` is UTC epoch s."""
    topics = Topics(THING)
    out: list[tuple[str, bytes]] = []
    for spec_path in sorted(GOLDEN.glob("batch-*.json")):
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
        out.append((f"dt/ami/{spec['thing']}/interval", spec_path.with_suffix(".bin").read_bytes()))
    end = now - now % 900
    start = end - 2 * 86400
    readings = []
    for k, meter in enumerate(RECENT_METERS):
        register = 1_000_000 * (k + 1)
        for t in range(start, end + 1, 900):
            hour = (t % 86400) / 3600
            # a daily shape: a morning and an evening peak, Wh per 15 minutes
            register += int(60 + 140 * (k + 1) * (1 + math.sin((hour - 6) / 24 * 2 * math.pi)) / 2)
            readings.append(Reading(meter, ENERGY, t, register, 0, 30, 0, DataClass.INTERVAL))
    batch = Batch(new_batch_id(), THING, DataClass.INTERVAL, end, tuple(readings))
    out.append((topics.interval, encode_batch(batch)))
    outage = _alarm(AlarmType.OUTAGE, "MTR-B", now - 7200, 1)
    restore = _alarm(AlarmType.RESTORE, "MTR-B", now - 5400, 2, duration_s=1800)
    still_out = _alarm(AlarmType.OUTAGE, "MTR-A", now - 1200, 3)
    tamper = _alarm(AlarmType.TAMPER, "MTR-A", now - 3600, 4, code=40)
    for msg in (outage, restore, tamper, still_out):
        out.append((msg.topic(topics), msg.to_json()))
    for meter, score, kind in (("MTR-A", 0.91, "learned"), ("MTR-B", 0.62, "reverse_flow")):
        doc = {
            "v": 1,
            "meter": meter,
            "day": datetime.fromtimestamp(now - 86400, timezone.utc).strftime("%Y-%m-%d"),
            "window_start": now - 86400,
            "window_end": now - 3600,
            "source": "model" if kind == "learned" else "rule",
            "kind": kind,
            "score": score,
            "threshold": 0.5,
            "model_version": "1.0" if kind == "learned" else "rules",
            "reason": "consumption far above its own baseline" if kind == "learned" else "",
        }
        out.append((topics.anomaly, json.dumps(doc).encode()))
    for i, backlog in enumerate((1800, 1200, 400, 0)):
        snap = {
            "thing": THING,
            "time": now - 3600 + i * 900,
            "uptime_s": 3600 + i * 900,
            "connected": True,
            "published_messages": 40 + 10 * i,
            "published_bytes": 40_000 + 10_000 * i,
            "alarms_published": 4,
            "publish_errors": 0,
            "spool_errors": 0,
            "in_flight": 0,
            "stored": 5000,
            "evicted": 0,
            "backlog_readings": backlog,
            "backlog_messages": backlog // 96,
            "backlog_age_s": 900.0 if backlog else None,
            "latency": {
                "bulk": {"count": 40, "p50_ms": 12.0, "p99_ms": 85.0, "max_ms": 120.0},
                "alarm": {"count": 4, "p50_ms": 6.0, "p99_ms": 9.0, "max_ms": 9.0},
            },
            "spool": {},
        }
        out.append((topics.health, json.dumps(snap).encode()))
    return out
