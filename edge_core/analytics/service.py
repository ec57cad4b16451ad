"""The stateful analytics service: batches of stored readings in, anomaly events out.

Theory of operation
-------------------
Input is what the concentrator stored, offered once (fire and forget) as batch-format payloads
on ``ami/local/readings``. Only load-profile captures (data class INTERVAL) of the cumulative
import (+A, ``1.0.1.8.0.255``) and export (-A, ``1.0.2.8.0.255``) registers are used; every
other reading is ignored, every unusable one is dropped and counted with its reason.

*Pending days.* Per meter the service buffers the captures of the local day that is not yet
complete. A capture at ``t`` closes the interval ``[t - 900, t)``, so local day ``[s, e)`` needs
the captures ``s, s + 900, ..., e``. The day is *complete* when all of them are there (96
intervals; 92/100 on DST days) or when a capture after ``e`` arrived (the next day started:
what is missing stays missing and the window carries NaN). The capture at ``e`` is kept: it
opens the next day's first interval. A capture at or before the last completed day's end ``e``
(other than ``e`` itself) is *late* and dropped; the concentrator reads by range, so late data
only come from a backfill of a day already judged. Captures off the 15-min grid, non-finite
values, and captures more than :data:`FUTURE_S` ahead of the clock are dropped too.

*Detection* runs on every completed day: the deterministic rules first (reverse flow, spikes,
stuck at zero while neither register moves, register backwards on the day's captures, and a
drop of the daily level below 60 % of the meter's own baselines), then the model in *rounds*:
round ``k`` holds the ``k``-th completed day of each meter, so a meter's baseline always
includes its previous day even when a backfill completes several days at once; a round is
scored in calls of at most ``max_batch_windows`` windows. The history
(:class:`~edge_core.analytics.features.StatsHistory`) is updated after each round whether or
not a model is loaded (baselines keep building).

*Durability.* ``state_path`` is a small SQLite file: per meter the history rows (``keep_days``
days), the pending captures and the end of the last completed day. Everything a consumed batch
changed is written in one transaction, so a restart (or a crash between batches) keeps the
baselines and the day in progress. An unreadable state file is moved aside and the service
starts afresh.

*Output.* Every finding and every model score above the threshold becomes one
:class:`~edge_core.analytics.events.AnomalyEvent` (at most ``max_events_per_meter_day`` rule
events per meter-day, the rest counted as suppressed), handed to ``publish``. An event whose
publish fails waits in a bounded retry queue (:data:`MAX_RETRY`) and is retried with the next
batch.

*Memory* is bounded by ``max_meters`` (readings of further meters are dropped), one pending day
per meter, ``keep_days`` history rows per meter and the retry queue.

Batches are processed one at a time (an asyncio lock); the CPU part runs in a worker thread so
the event loop (IPC pings, configuration updates) stays responsive, and :attr:`busy` tells the
component's update gate that a batch is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import os
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from edge_core.analytics.detectors import (
    MeterConfig,
    detect_level_drop,
    detect_level_rise,
    detect_register_backwards,
    detect_reverse_flow,
    detect_spikes,
    detect_stuck,
)
from edge_core.analytics.events import AnomalyEvent, event_from_finding, score_windows
from edge_core.analytics.features import (
    EXPORT_OBIS,
    IMPORT_OBIS,
    INTERVAL_S,
    DayWindow,
    StatsHistory,
    windows_from_readings,
)
from edge_core.analytics.inference import ModelManager
from edge_core.batch import decode_batch
from edge_core.errors import AmiError, BatchFormatError, ConfigError, ModelError
from edge_core.model import DataClass, Reading, Topics

__all__ = [
    "FUTURE_S",
    "MAX_EVENT_BYTES",
    "MAX_RETRY",
    "AnalyticsService",
    "BatchOutcome",
]

_log = logging.getLogger(__name__)

#: Captures further ahead of the service's clock than this (s) are refused as ``future``.
FUTURE_S = 2 * 86400
#: The concentrator refuses anomaly events larger than this (bytes).
MAX_EVENT_BYTES = 4096
#: Events waiting for a failed publish to be retried.
MAX_RETRY = 256
_CHANNELS = (IMPORT_OBIS, EXPORT_OBIS)
_EXPECTED = frozenset({"other_channel", "other_class"})
_SCHEMA_VERSION = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meters (meter TEXT PRIMARY KEY, done INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS history (
    meter TEXT NOT NULL, day TEXT NOT NULL,
    total REAL, night REAL, peak REAL, reverse REAL,
    PRIMARY KEY (meter, day)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending (
    meter TEXT NOT NULL, obis TEXT NOT NULL, t INTEGER NOT NULL,
    value INTEGER NOT NULL, scaler INTEGER NOT NULL, unit INTEGER NOT NULL,
    status INTEGER NOT NULL,
    PRIMARY KEY (meter, obis, t)
) WITHOUT ROWID;
"""

Publish = Callable[[bytes], Awaitable[None]]
_HistRow = tuple[dt.date, float, float, float, float]


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one consumed payload gave: readings accepted, days completed, events published
    (including retried ones) and the model version that scored (None: no model / no round)."""

    accepted: int = 0
    days: int = 0
    events: tuple[AnomalyEvent, ...] = ()
    published: int = 0
    model_version: str | None = None


@dataclass
class _Pending:
    """Captures of one meter's open day: channel -> capture time -> reading."""

    done: int = 0  # UTC s: end of the last completed local day (0: none yet)
    captures: dict[str, dict[int, Reading]] = field(
        default_factory=lambda: {IMPORT_OBIS: {}, EXPORT_OBIS: {}}
    )


@dataclass
class _Work:
    """What one batch changed (applied to SQLite in one transaction)."""

    new_pending: list[Reading] = field(default_factory=list)
    completed: list[tuple[str, int]] = field(default_factory=list)  # (meter, day end)
    history_meters: set[str] = field(default_factory=set)
    events: list[AnomalyEvent] = field(default_factory=list)
    days: int = 0
    model_version: str | None = None


class AnalyticsService:
    """Readings in, anomaly events out (see module doc).

    ``thing`` names the concentrator (checked like a topic segment); ``tz`` is the meters' local
    time zone (IANA name); ``meter_settings`` maps meter id -> nameplate data for the rules
    (meters not listed use :class:`MeterConfig` defaults: no PV). ``threshold`` overrides the
    model card's threshold. ``clock`` returns UTC epoch seconds.
    """

    def __init__(
        self,
        thing: str,
        tz: str | ZoneInfo,
        model_manager: ModelManager,
        *,
        state_path: str | Path,
        publish: Publish,
        meter_settings: Mapping[str, MeterConfig] | None = None,
        threshold: float | None = None,
        max_batch_windows: int = 4096,
        keep_days: int = 28,
        max_meters: int = 10_000,
        max_events_per_meter_day: int = 8,
        dst: str = "resample",
        clock: Callable[[], float] = time.time,
    ) -> None:
        try:
            Topics(thing)
        except ValueError as exc:
            raise ConfigError(str(exc), path="thing_name") from exc
        try:
            self.tz = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
        except (ValueError, KeyError) as exc:  # ZoneInfoNotFoundError is a KeyError
            raise ConfigError(f"unknown time zone {tz!r}", path="timezone") from exc
        if dst not in ("resample", "skip"):
            raise ConfigError("must be resample or skip", path="dst")
        if max_batch_windows < 1 or keep_days < 7 or max_meters < 1:
            raise ConfigError("max_batch_windows, keep_days (>= 7) and max_meters must be positive")
        self.thing = thing
        self.models = model_manager
        self.state_path = Path(state_path)
        self._publish = publish
        self.meter_settings: dict[str, MeterConfig] = dict(meter_settings or {})
        self.threshold = threshold
        self.max_batch_windows = max_batch_windows
        self.max_meters = max_meters
        self.max_events_per_meter_day = max_events_per_meter_day
        self.dst = dst
        self._clock = clock
        self.counters: Counter[str] = Counter()
        self.history = StatsHistory(keep_days=keep_days)
        self._pending: dict[str, _Pending] = {}
        self._retry: deque[bytes] = deque()
        self._lock = asyncio.Lock()
        self._db_lock = threading.Lock()
        self._busy = False
        self.last_model_version: str | None = None
        self._db = self._open_state()

    # -- state file ----------------------------------------------------------------------

    def _open_state(self) -> sqlite3.Connection:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = self._connect()
            self._load(db)
            return db
        except sqlite3.DatabaseError as exc:
            aside = self.state_path.with_name(f"{self.state_path.name}.corrupt-{int(time.time())}")
            _log.error("analytics state %s unreadable (%s); moved to %s, starting afresh",
                       self.state_path, exc, aside)
            with contextlib.suppress(OSError):
                os.replace(self.state_path, aside)
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(OSError):
                    os.unlink(f"{self.state_path}{suffix}")
            self.counters["state_reset"] += 1
            self.history = StatsHistory(keep_days=self.history.keep_days)
            self._pending.clear()
            db = self._connect()
            self._load(db)
            return db

    def _connect(self) -> sqlite3.Connection:
        # check_same_thread=False: batches run in worker threads, one at a time (self._lock
        # and self._db_lock), never concurrently.
        db = sqlite3.connect(self.state_path, check_same_thread=False, isolation_level=None,
                             timeout=5.0)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (_SCHEMA_VERSION,))
            elif row[0] != _SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"state schema {row[0]}, expected {_SCHEMA_VERSION}")
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _load(self, db: sqlite3.Connection) -> None:
        rows: dict[str, list[_HistRow]] = {}
        for meter, day, total, night, peak, rev in db.execute(
            "SELECT meter, day, total, night, peak, reverse FROM history ORDER BY meter, day"
        ):
            rows.setdefault(meter, []).append(
                (dt.date.fromisoformat(day), _f(total), _f(night), _f(peak), _f(rev))
            )
        for meter, hist in rows.items():
            self.history.restore(meter, hist)
        for meter, done in db.execute("SELECT meter, done FROM meters"):
            self._pending.setdefault(meter, _Pending()).done = int(done)
        n = 0
        for meter, obis, t, value, scaler, unit, status in db.execute(
            "SELECT meter, obis, t, value, scaler, unit, status FROM pending"
        ):
            p = self._pending.setdefault(meter, _Pending())
            p.captures[obis][int(t)] = Reading(meter, obis, int(t), int(value), int(scaler),
                                                int(unit), int(status), DataClass.INTERVAL)
            n += 1
        if rows or n:
            _log.info("analytics state restored: %d meters with history, %d pending captures",
                      len(rows), n)

    def _persist(self, work: _Work) -> None:
        db = self._db
        with self._db_lock:
            db.execute("BEGIN")
            try:
                db.executemany(
                    "INSERT OR REPLACE INTO pending VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(r.meter, r.obis, r.capture_time, r.value, r.scaler, r.unit, r.status)
                     for r in work.new_pending],
                )
                for meter, end in work.completed:
                    db.execute("DELETE FROM pending WHERE meter = ? AND t < ?", (meter, end))
                    db.execute("INSERT OR REPLACE INTO meters VALUES (?, ?)", (meter, end))
                for meter in work.history_meters:
                    db.execute("DELETE FROM history WHERE meter = ?", (meter,))
                    db.executemany(
                        "INSERT INTO history VALUES (?, ?, ?, ?, ?, ?)",
                        [(meter, r[0].isoformat(), _n(r[1]), _n(r[2]), _n(r[3]), _n(r[4]))
                         for r in self.history.rows(meter)],
                    )
                db.execute("COMMIT")
            except sqlite3.Error:
                db.execute("ROLLBACK")
                raise

    async def close(self) -> None:
        """Wait for the batch in flight, then close the state file (idempotent)."""
        async with self._lock:
            with self._db_lock:
                self._db.close()

    # -- status --------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while a batch is being processed (features, scoring, state write)."""
        return self._busy

    def snapshot(self) -> dict[str, Any]:
        model = self.models.model
        return {
            "model_version": model.version if model else None,
            "meters": len(self._pending),
            "retry_queue": len(self._retry),
            "counters": dict(sorted(self.counters.items())),
        }

    # -- input ---------------------------------------------------------------------------

    async def consume(self, payload: bytes) -> BatchOutcome:
        """Process one batch-format payload. Never raises on bad input: a malformed batch or
        unusable readings are counted (``counters``) and logged with the reason."""
        async with self._lock:
            self._busy = True
            try:
                published = await self._flush_retry()
                try:
                    batch = decode_batch(payload)
                except BatchFormatError as exc:
                    self.counters["malformed_batch"] += 1
                    _log.warning("readings batch refused (%d bytes): %s", len(payload), exc)
                    return BatchOutcome(published=published)
                self.counters["batches"] += 1
                if batch.data_class is not DataClass.INTERVAL:
                    self.counters["ignored_class"] += len(batch.readings)
                    return BatchOutcome(published=published)
                try:
                    work = await asyncio.to_thread(self._process, batch.readings)
                except (sqlite3.Error, AmiError) as exc:
                    self.counters["processing_failed"] += 1
                    _log.error("readings batch not processed: %s", exc)
                    return BatchOutcome(published=published)
                for event in work.events:
                    published += await self._send(event)
                if work.model_version:
                    self.last_model_version = work.model_version
                return BatchOutcome(
                    accepted=len(work.new_pending), days=work.days, events=tuple(work.events),
                    published=published, model_version=work.model_version,
                )
            finally:
                self._busy = False

    def _process(self, readings: Sequence[Reading]) -> _Work:
        """Ingest, complete days, detect, persist (worker thread, one batch at a time)."""
        work = _Work()
        drops: Counter[str] = Counter()
        touched: list[str] = []
        horizon = self._clock() + FUTURE_S
        for r in readings:
            reason = self._refuse(r, horizon)
            if reason:
                drops[reason] += 1
                continue
            p = self._pending.get(r.meter)
            if p is None:
                if len(self._pending) >= self.max_meters:
                    drops["too_many_meters"] += 1
                    continue
                p = self._pending[r.meter] = _Pending()
                self.counters["new_meters"] += 1
            if r.capture_time < p.done:
                drops["late"] += 1
                continue
            p.captures[r.obis][r.capture_time] = r
            work.new_pending.append(r)
            if not touched or touched[-1] != r.meter:
                touched.append(r.meter)
        if drops:
            self.counters.update(drops)
            # other channels and classes are expected (a profile has more columns than
            # +A/-A): counted, not worth a warning
            bad = {why: n for why, n in drops.items() if why not in _EXPECTED}
            if bad:
                _log.warning("readings dropped: %s",
                             ", ".join(f"{n} {why}" for why, n in sorted(bad.items())))
        self.counters["readings"] += len(work.new_pending)
        days: dict[str, list[tuple[DayWindow | None, str, list[Reading]]]] = {}
        for meter in dict.fromkeys(touched):
            for day, rows in self._complete(meter, work):
                days.setdefault(meter, []).append((None, day, rows))
        windows = self._windows(days, work)
        self._detect(windows, work)
        self._persist(work)
        return work

    @staticmethod
    def _refuse(r: Reading, horizon: float) -> str:
        if r.obis not in _CHANNELS:
            return "other_channel"
        if r.data_class is not DataClass.INTERVAL:
            return "other_class"
        if r.capture_time % INTERVAL_S or r.capture_time <= 0:
            return "off_grid"
        if r.capture_time > horizon:
            return "future"
        if not math.isfinite(r.scaled) or r.scaled < 0:
            return "bad_value"
        return ""

    def _bounds(self, t: int) -> tuple[str, int, int]:
        """Local day of the interval closed by a capture at ``t``: (ISO date, start, end)."""
        d = dt.datetime.fromtimestamp(t - INTERVAL_S, self.tz).date()
        n = d + dt.timedelta(days=1)
        s = int(dt.datetime(d.year, d.month, d.day, tzinfo=self.tz).timestamp())
        e = int(dt.datetime(n.year, n.month, n.day, tzinfo=self.tz).timestamp())
        return d.isoformat(), s, e

    def _complete(self, meter: str, work: _Work) -> list[tuple[str, list[Reading]]]:
        """Complete every day of ``meter`` that can be (see module doc); returns (day, rows)."""
        p = self._pending[meter]
        imp = p.captures[IMPORT_OBIS]
        out: list[tuple[str, list[Reading]]] = []
        while True:
            open_times = [t for t in imp if t > p.done]
            if not open_times:
                break
            first, last = min(open_times), max(open_times)
            day, s, e = self._bounds(first)
            full = all(t in imp for t in range(s, e + 1, INTERVAL_S))
            if not (full or last > e):
                break
            rows = [r for ch in _CHANNELS for t, r in p.captures[ch].items() if s <= t <= e]
            for ch in _CHANNELS:
                caps = p.captures[ch]
                for t in [t for t in caps if t < e]:
                    del caps[t]
            p.done = e
            work.completed.append((meter, e))
            # a day whose only capture is its end (the first capture ever seen of a meter)
            # has no interval: it is passed over, not reported
            if any(r.capture_time < e for r in rows if r.obis == IMPORT_OBIS):
                out.append((day, rows))
        # export captures with no import beside them cannot complete a day; keep them bounded
        exp = p.captures[EXPORT_OBIS]
        for t in [t for t in exp if t < p.done]:
            del exp[t]
        return out

    def _windows(
        self, days: Mapping[str, list[tuple[DayWindow | None, str, list[Reading]]]], work: _Work
    ) -> dict[str, list[tuple[DayWindow, list[Reading]]]]:
        out: dict[str, list[tuple[DayWindow, list[Reading]]]] = {}
        for meter, items in days.items():
            for _, day, rows in items:
                work.days += 1
                self.counters["days_completed"] += 1
                ws = windows_from_readings(rows, self.tz, dst=self.dst)
                for sk in ws.skipped:
                    self.counters[f"skipped_{sk.reason}"] += 1
                    _log.info("meter %s day %s not analysed: %s", sk.meter, sk.day, sk.reason)
                # the rows span exactly one local day, so at most one window comes back
                for w in ws.windows:
                    if w.day == day:
                        out.setdefault(meter, []).append((w, rows))
                if not ws.windows and not ws.skipped:
                    self.counters["skipped_empty"] += 1
        return out

    def _detect(self, windows: Mapping[str, list[tuple[DayWindow, list[Reading]]]],
                work: _Work) -> None:
        # rules: every window, capped per meter-day
        for meter, items in windows.items():
            cfg = self.meter_settings.get(meter) or MeterConfig(meter)
            for w, rows in items:
                # An interval with export measured is not "stuck" at zero import: the meter
                # is counting, on the other register (a PV surplus).
                measuring = np.nan_to_num(w.export) <= 0.0
                findings = [
                    *detect_reverse_flow(w, cfg),
                    *detect_spikes(w, cfg),
                    *detect_stuck(w, measuring),
                    *detect_register_backwards(rows, cfg),
                ]
                kept = findings[: self.max_events_per_meter_day]
                if len(findings) > len(kept):
                    self.counters["suppressed"] += len(findings) - len(kept)
                for f in kept:
                    work.events.append(event_from_finding(f, w.day))
                self.counters["events_rule"] += len(kept)
        # model: round k = the k-th completed day of every meter
        rounds = max((len(v) for v in windows.values()), default=0)
        for k in range(rounds):
            batch = [items[k][0] for items in windows.values() if len(items) > k]
            self._level_rule(batch, work)
            for i in range(0, len(batch), self.max_batch_windows):
                self._score(batch[i : i + self.max_batch_windows], work)
            work.history_meters.update(w.meter for w in batch)

    def _level_rule(self, windows: list[DayWindow], work: _Work) -> None:
        """The level rules need the baselines before the day: run them per round."""
        base = self.history.baselines_for(windows)
        for i, w in enumerate(windows):
            args = (
                float(base.total_14d[i]),
                float(base.weekday_total[i]),
                int(base.history_days[i]),
            )
            for f in (*detect_level_drop(w, *args), *detect_level_rise(w, *args)):
                work.events.append(event_from_finding(f, w.day))
                self.counters["events_rule"] += 1

    def _score(self, windows: list[DayWindow], work: _Work) -> None:
        model = self.models.model  # one reference for the whole call: a swap lands next call
        if model is None:
            self.counters["unscored_no_model"] += len(windows)
            self.history.add(windows)
            return
        try:
            report = score_windows(model, windows, self.history, threshold=self.threshold)
        except ModelError as exc:
            self.counters["scoring_failed"] += len(windows)
            _log.error("model %s failed on %d windows: %s", model.version, len(windows), exc)
            self.history.add(windows)
            return
        for _meter, _day, reason in report.skipped:
            self.counters[f"skipped_{reason}"] += 1
        self.counters["windows_scored"] += len(windows) - len(report.skipped)
        self.counters["events_model"] += len(report.events)
        work.events.extend(report.events)
        work.model_version = model.version

    # -- output --------------------------------------------------------------------------

    @staticmethod
    def encode_event(event: AnomalyEvent) -> bytes:
        """The event's JSON, shrunk under :data:`MAX_EVENT_BYTES` if needed."""
        data = event.to_json()
        if len(data) <= MAX_EVENT_BYTES:
            return data
        d = event.to_dict()
        d.pop("contributions", None)
        d["reason"] = str(d.get("reason", ""))[:256]
        return AnomalyEvent.from_dict(d).to_json()

    async def _send(self, event: AnomalyEvent) -> int:
        data = self.encode_event(event)
        try:
            await self._publish(data)
        except AmiError as exc:
            self.counters["publish_failed"] += 1
            _log.warning("anomaly event for %s %s not handed over (%s); will retry",
                         event.meter, event.day, exc)
            self._queue_retry([data])
            return 0
        self.counters["events_published"] += 1
        return 1

    def _queue_retry(self, items: Iterable[bytes]) -> None:
        for data in items:
            if len(self._retry) >= MAX_RETRY:
                self._retry.popleft()
                self.counters["events_dropped"] += 1
            self._retry.append(data)

    async def _flush_retry(self) -> int:
        sent = 0
        while self._retry:
            data = self._retry[0]
            try:
                await self._publish(data)
            except AmiError:
                return sent
            self._retry.popleft()
            self.counters["events_published"] += 1
            sent += 1
        return sent


def _f(v: float | None) -> float:
    return float("nan") if v is None else float(v)


def _n(v: float) -> float | None:
    return None if math.isnan(v) else float(v)
