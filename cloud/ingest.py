"""Ingest of data batches and alarms: plain functions, Lambda handlers in AWS, in-process locally.

Theory of operation
-------------------
Delivery from the edge is at-least-once (a batch may arrive twice, and batches may overlap when a
concentrator re-reads a range). Ingest is therefore idempotent at two levels:

1. **batch id**: a batch whose id is in the processed-batches table is acknowledged and skipped;
2. **reading key** (meter, channel, capture time): the interval store keeps the first value of a
   key and skips later copies, so overlapping batches add only their new rows.

The batch id is recorded *after* its rows are stored: a crash in between replays the batch on
redelivery, which step 2 makes harmless; the opposite order could lose a batch.

Each reading becomes ``raw * 10**scaler * multiplier`` where the multiplier comes from the CT/PT
ratios in force at its capture time (:mod:`cloud.registry`). The latest table keeps, per meter
and channel, the newest capture time seen.

A payload that does not decode goes to the dead-letter area of the bucket,
``dead-letter/<YYYY-MM-DD>/<id>.bin`` with a ``.json`` reason beside it, where ``id`` is the
SHA-256 prefix of the payload (so a redelivered bad payload overwrites, not duplicates). Nothing
else is touched and the handler returns normally: one bad batch never blocks the others.

Alarms (the edge's alarm message, docs/alarms.md) maintain the outage table. An outage is kept
per key: a meter id, or the concentrator's thing name for the concentrator itself.

* ``outage``/``power_down`` open one for ``meter``; ``transformer_outage`` for each of
  ``meters``; ``last_gasp`` for the concentrator and each meter it powered. An already open
  outage of the key is left as it is.
* ``restore`` closes the meter's outage (``meter`` null: the concentrator's, and every meter
  outage its last gasp opened); ``transformer_restore`` closes each of ``meters``. A restore with
  nothing open but a ``duration_s`` records the outage it reports as past.
* ``momentary`` records a closed outage of ``duration_s`` (the summed interruption) ending at
  ``event_time``.

Alarms are at-least-once too: an alarm whose ``id`` was seen is skipped (the ids share the
processed-batches table, prefixed ``alarm:``). Test alarms (``test: true``) never touch the
table. Every non-test alarm is also put on the alarm timeline (:func:`cloud.events.record_alarm`).

Each stored batch also tells the fleet table which concentrator (the batch's thing) reads each
of its meters and the newest capture time: on-demand reads find a meter's thing there.

Alarm types other than the power ones (phase, flapping, events) do not touch the outage table;
they reach the queues and the timeline.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from cloud.events import record_alarm
from cloud.registry import RatioLookup, channel_multiplier, parse_time, unit_name
from cloud.storage.base import FleetEntry, IntervalRow, LatestRead, Outage, Stores
from edge_core.errors import BatchFormatError, ConfigError

__all__ = [
    "ALARM_TYPES",
    "AlarmResult",
    "IngestResult",
    "Ingestor",
    "ScaledBatch",
]

log = logging.getLogger(__name__)

ALARM_TYPES = (
    "last_gasp",
    "power_down",
    "outage",
    "transformer_outage",
    "restore",
    "transformer_restore",
    "momentary",
)


@dataclass(frozen=True, slots=True)
class IngestResult:
    """Outcome of one data message. ``status``: "stored", "duplicate" or "dead_letter"."""

    status: str
    batch_id: str
    readings: int = 0
    stored: int = 0
    dead_letter_key: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "batch_id": self.batch_id,
            "readings": self.readings,
            "stored": self.stored,
            "dead_letter_key": self.dead_letter_key,
        }


@dataclass(frozen=True, slots=True)
class AlarmResult:
    """Outcome of one alarm. ``action``: "opened", "closed", "recorded", "duplicate" or
    "ignored"; ``keys`` are the outage keys it changed."""

    action: str
    keys: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "keys": list(self.keys)}


def _decode_default(payload: bytes) -> Any:
    from edge_core.batch import decode_batch

    return decode_batch(payload)


class _Pow10(dict[int, int]):
    """10**n for n >= 0 (scaler magnitudes, DLMS scalers are -128..127), memoised."""

    def __missing__(self, n: int) -> int:
        v = self[n] = int(10**n)
        return v


_POW10 = _Pow10()


@dataclass(frozen=True, slots=True)
class ScaledBatch:
    """The scaled readings of one batch as columns (same order as the readings).

    ``value`` = ``raw * multiplier / 10**-scaler`` for negative scalers (division keeps decimal
    data exact: 1021 * 8000 / 10 is 816800.0, 1021 * 0.1 * 8000 is not), else
    ``raw * multiplier * 10**scaler``.
    """

    batch_id: str
    meter: list[str]
    channel: list[str]
    capture_time: list[int]
    value: list[float]
    unit: list[str]
    status: list[int]
    raw: list[int]
    scaler: list[int]
    multiplier: list[float]
    data_class: list[int]

    def __len__(self) -> int:
        return len(self.meter)

    def rows(self) -> list[IntervalRow]:
        b = self.batch_id
        return [
            IntervalRow(m, ch, t, v, u, st, r, sc, f, dc, b)
            for m, ch, t, v, u, st, r, sc, f, dc in zip(
                self.meter,
                self.channel,
                self.capture_time,
                self.value,
                self.unit,
                self.status,
                self.raw,
                self.scaler,
                self.multiplier,
                self.data_class,
                strict=True,
            )
        ]

    def table(self) -> Any:
        """A pyarrow Table in the lake schema (see cloud.storage.local.rows_to_table)."""
        import pyarrow as pa

        n = len(self)
        return pa.table(
            {
                "meter": pa.array(self.meter, pa.string()),
                "channel": pa.array(self.channel, pa.string()),
                "capture_time": pa.array(self.capture_time, pa.int64()),
                "value": pa.array(self.value, pa.float64()),
                "unit": pa.array(self.unit, pa.string()),
                "status": pa.array(self.status, pa.int32()),
                "raw": pa.array(self.raw, pa.int64()),
                "scaler": pa.array(self.scaler, pa.int32()),
                "multiplier": pa.array(self.multiplier, pa.float64()),
                "data_class": pa.array(self.data_class, pa.int32()),
                "batch_id": pa.array([self.batch_id] * n, pa.string()),
            }
        )


class Ingestor:
    """The ingest and alarm handlers over a set of stores.

    ``decoder`` turns payload bytes into a batch (``edge_core.batch.decode_batch`` by default)
    and must raise BatchFormatError for bad input. ``clock`` gives epoch seconds.
    """

    def __init__(
        self,
        stores: Stores,
        *,
        decoder: Callable[[bytes], Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stores = stores
        self.decode = decoder or _decode_default
        self.clock = clock

    # -- data -------------------------------------------------------------------------------

    def handle_event(self, event: Mapping[str, Any]) -> IngestResult:
        """The Lambda entry: the ``ami_ingest`` rule's document (``data`` is base64)."""
        topic = str(event.get("topic", ""))
        try:
            payload = base64.b64decode(str(event.get("data", "")), validate=True)
        except (binascii.Error, ValueError) as exc:
            raw = json.dumps(dict(event), sort_keys=True, default=str).encode()
            return self._dead_letter(raw, topic, f"data is not base64: {exc}")
        return self.handle_data(topic, payload)

    def handle_data(self, topic: str, payload: bytes) -> IngestResult:
        """Decode, scale and store one batch (see the module doc for the guarantees)."""
        try:
            batch = self.decode(payload)
        except BatchFormatError as exc:
            return self._dead_letter(payload, topic, str(exc))
        batch_id = batch.batch_id.hex()
        if self.stores.batches.contains(batch_id):
            log.info("batch %s already processed; skipped", batch_id)
            return IngestResult("duplicate", batch_id, len(batch.readings))
        rows = self.scale(batch.readings, batch_id)
        stored = self.stores.intervals.put(rows)
        latest: dict[tuple[str, str], IntervalRow] = {}
        for r in rows:
            cur = latest.get((r.meter, r.channel))
            if cur is None or r.capture_time > cur.capture_time:
                latest[(r.meter, r.channel)] = r
        self.stores.latest.update(
            LatestRead(r.meter, r.channel, r.capture_time, r.value, r.unit) for r in latest.values()
        )
        if self.stores.fleet is not None and batch.thing:
            newest: dict[str, int] = {}
            for r in latest.values():
                newest[r.meter] = max(newest.get(r.meter, r.capture_time), r.capture_time)
            self.stores.fleet.touch(FleetEntry(m, batch.thing, t) for m, t in newest.items())
        self.stores.batches.add(
            batch_id,
            {
                "thing": batch.thing,
                "topic": topic,
                "readings": len(rows),
                "stored": stored,
                "processed": int(self.clock()),
            },
        )
        log.debug("batch %s: %d readings, %d new", batch_id, len(rows), stored)
        return IngestResult("stored", batch_id, len(rows), stored)

    def scale(self, readings: Sequence[Any], batch_id: str) -> list[IntervalRow]:
        """Readings -> interval rows with scaler and CT x PT (by capture time) applied."""
        return self.scale_columns(readings, batch_id).rows()

    def scale_columns(self, readings: Sequence[Any], batch_id: str) -> ScaledBatch:
        """The columnar form of :meth:`scale` (what the lake writes; no per-row objects)."""
        ratios = RatioLookup(self.stores.registry)
        meters = [r.meter for r in readings]
        channels = [r.obis for r in readings]
        times = [r.capture_time for r in readings]
        raws = [r.value for r in readings]
        scalers = [r.scaler for r in readings]
        # multiplier per (meter, channel), per validity period: readings of a batch come
        # grouped, so the periods are computed once per series, not per value.
        series: dict[tuple[str, str], list[tuple[int, int | None, float]]] = {}
        mults: list[float] = []
        for m, ch, t in zip(meters, channels, times, strict=True):
            periods = series.get((m, ch))
            if periods is None:
                periods = series[(m, ch)] = [
                    (
                        rec.valid_from,
                        rec.valid_to,
                        channel_multiplier(ch, rec.ct_ratio, rec.pt_ratio),
                    )
                    for rec in ratios.periods(m)
                ]
            mult = 1.0
            for lo, hi, f in periods:
                if lo <= t and (hi is None or t < hi):
                    mult = f
                    break
            mults.append(mult)
        values = [
            r * f / _POW10[-sc] if sc < 0 else r * f * _POW10[sc]
            for r, f, sc in zip(raws, mults, scalers, strict=True)
        ]
        unit_cache: dict[int, str] = {}
        units = []
        for r in readings:
            u = unit_cache.get(r.unit)
            if u is None:
                u = unit_cache[r.unit] = unit_name(r.unit)
            units.append(u)
        return ScaledBatch(
            batch_id=batch_id,
            meter=meters,
            channel=channels,
            capture_time=times,
            value=values,
            unit=units,
            status=[r.status for r in readings],
            raw=raws,
            scaler=scalers,
            multiplier=mults,
            data_class=[int(r.data_class) for r in readings],
        )

    def _dead_letter(self, payload: bytes, topic: str, reason: str) -> IngestResult:
        digest = hashlib.sha256(payload).hexdigest()[:32]
        day = datetime.fromtimestamp(self.clock(), tz=timezone.utc).strftime("%Y-%m-%d")
        key = f"dead-letter/{day}/{digest}"
        self.stores.objects.put(key + ".bin", payload)
        doc = {
            "topic": topic,
            "reason": reason,
            "bytes": len(payload),
            "received": int(self.clock()),
        }
        self.stores.objects.put(
            key + ".json", json.dumps(doc, sort_keys=True).encode(), "application/json"
        )
        log.warning("dead-lettered %d bytes from %s: %s", len(payload), topic, reason)
        return IngestResult("dead_letter", "", dead_letter_key=key + ".bin")

    # -- alarms -----------------------------------------------------------------------------

    def handle_alarm(self, event: Mapping[str, Any]) -> AlarmResult:
        """Update the outage table from one alarm document (the ``ami_alarms_oms`` rule).

        Fields used: ``type``, ``id``, ``test``, ``dcu`` (else ``thing``, the rule's topic(3)),
        ``meter``, ``meters``, ``event_time`` (ISO 8601; else ``time``, else ``received_ms``,
        else now), ``duration_s``, ``durations_s``.
        """
        kind = str(event.get("type", "")).lower()
        thing = str(event.get("dcu") or event.get("thing") or "")
        meter = event.get("meter")
        meters = [str(m) for m in (event.get("meters") or []) if m]
        alarm_id = str(event.get("id") or "")
        record_alarm(self.stores, event, clock=self.clock)  # the timeline has every type
        if kind not in ALARM_TYPES or event.get("test") is True:
            return AlarmResult("ignored", ())
        if alarm_id and self.stores.batches.contains(f"alarm:{alarm_id}"):
            return AlarmResult("duplicate", ())
        try:
            t = self._alarm_time(event)
            duration = event.get("duration_s")
            duration = None if duration is None else int(duration)
            durations = [int(d) for d in event.get("durations_s") or []]
        except (ConfigError, TypeError, ValueError) as exc:
            log.warning("alarm with a bad time or duration ignored: %s", exc)
            return AlarmResult("ignored", ())
        store = self.stores.outages
        touched: list[str] = []
        action = "ignored"

        def open_(key: str) -> None:
            if key and store.open_outage(key) is None:
                store.save(Outage(key, thing, t, None, kind))
                touched.append(key)

        def close(key: str, reported: int | None) -> bool:
            cur = store.open_outage(key)
            if cur is not None:
                store.save(Outage(cur.key, cur.thing, cur.start, max(t, cur.start), cur.kind))
            elif reported is not None:
                store.save(Outage(key, thing, t - max(reported, 0), t, kind))
            else:
                return False
            touched.append(key)
            return True

        if kind in ("outage", "power_down"):
            for key in [str(meter)] if meter else meters or [thing]:
                open_(key)
            action = "opened"
        elif kind == "transformer_outage":
            for key in meters:
                open_(key)
            action = "opened"
        elif kind == "last_gasp":
            for key in [thing, *meters]:
                open_(key)
            action = "opened"
        elif kind == "restore":
            if meter:
                close(str(meter), duration)
            else:
                close(thing, duration)
                for o in store.list("current"):
                    if o.thing == thing and o.kind == "last_gasp" and o.key != thing:
                        close(o.key, None)
            action = "closed"
        elif kind == "transformer_restore":
            for i, key in enumerate(meters):
                close(key, durations[i] if i < len(durations) else duration)
            action = "closed"
        else:  # momentary
            key = str(meter) if meter else thing
            store.save(Outage(key, thing, t - max(duration or 0, 0), t, kind))
            touched.append(key)
            action = "recorded"
        if alarm_id:
            self.stores.batches.add(f"alarm:{alarm_id}", {"type": kind, "dcu": thing})
        return AlarmResult(action if touched else "ignored", tuple(touched))

    def _alarm_time(self, event: Mapping[str, Any]) -> int:
        for name in ("event_time", "time"):
            if event.get(name) is not None:
                return parse_time(event[name], path=name)
        if event.get("received_ms") is not None:
            return int(event["received_ms"]) // 1000
        return int(self.clock())
