"""Meter-day windows and the feature vectors the learned detector scores.

Theory of operation
-------------------
A *window* is one local calendar day of one meter: 96 interval energies in Wh (15 min each),
import and export, plus the IDIS status byte of every interval. Interval energy is the
difference of consecutive cumulative register captures; a capture at time ``t`` closes the
interval ``[t - 900, t)``. Local-day boundaries come from :mod:`zoneinfo`; a DST day has 92 or
100 intervals and is either resampled onto 96 slots (the cumulative curve is interpolated, so the
daily total is preserved) or skipped with the reason ``"dst_day"``.

Features are computed for a batch of windows at once (numpy, float32). Level features compare the
day with the meter's own history (trailing same-weekday median and trailing 14-day median of daily
totals, and trailing medians of night share, peak and reverse share): a uniform 50 % scale-down
leaves the daily *shape* untouched and is only visible against the meter's own past. The history
is held as per-meter :class:`DailyStats` rows; :func:`baselines_from_matrix` computes the
baselines for a dense ``(meters, days)`` fleet in one vectorised pass, :class:`StatsHistory`
keeps the trailing rows of a live edge.

Windows that cannot be scored carry a reason instead of a feature row: ``"gaps"`` (more missing
intervals than can be imputed), ``"no_history"`` (fewer than :data:`MIN_HISTORY_DAYS` trailing
days), ``"empty"`` (no interval at all). Up to :data:`MAX_IMPUTED` missing intervals are filled
by linear interpolation and the row is flagged ``imputed``. Nothing here raises on bad data.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from edge_core.model import Reading

__all__ = [
    "EXPORT_OBIS",
    "FEATURE_NAMES",
    "FEATURE_SPEC_VERSION",
    "IMPORT_OBIS",
    "INTERVALS_PER_DAY",
    "INTERVAL_S",
    "MAX_IMPUTED",
    "MIN_HISTORY_DAYS",
    "N_FEATURES",
    "Baselines",
    "DailyStats",
    "DayWindow",
    "FeatureBatch",
    "SkippedDay",
    "StatsHistory",
    "WindowSet",
    "baselines_from_matrix",
    "build_features",
    "daily_stats",
    "windows_from_readings",
]

_log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]

#: Bumped whenever the meaning or order of a feature changes; a model card must match it.
FEATURE_SPEC_VERSION = 1
INTERVALS_PER_DAY = 96
INTERVAL_S = 900
IMPORT_OBIS = "1.0.1.8.0.255"
EXPORT_OBIS = "1.0.2.8.0.255"
#: At most this many missing intervals (1 h) are imputed; more and the window is skipped.
MAX_IMPUTED = 4
#: Trailing days (of the last 14) needed before a window is scored.
MIN_HISTORY_DAYS = 7
#: Night: 22:00-06:00 local (interval indices 88..95 and 0..23).
_NIGHT = np.zeros(INTERVALS_PER_DAY, dtype=bool)
_NIGHT[:24] = True
_NIGHT[88:] = True
_EPS = 1e-3  # Wh; guards every ratio against a zero denominator

_SCALAR_NAMES = (
    "log_total_kwh",  # log1p of the daily import in kWh
    "log_ratio_weekday",  # log of total / median of the last 4 same weekdays
    "log_ratio_14d",  # log of total / median of the trailing 14 days
    "night_share",  # share of import between 22:00 and 06:00
    "night_share_delta",  # night share minus its trailing 14-day median
    "load_factor",  # mean / max interval
    "zero_fraction",  # share of intervals with < 1 Wh import
    "max_step",  # largest interval-to-interval change / mean interval
    "reverse_share",  # export / (import + export)
    "reverse_share_delta",  # reverse share minus its trailing 14-day median
    "log_ratio_peak",  # log of the day's max interval / trailing 14-day median of daily maxima
    "baseline_fallback",  # 1 when the weekday baseline fell back to the 14-day median
)
FEATURE_NAMES: tuple[str, ...] = tuple(f"shape_{i:02d}" for i in range(INTERVALS_PER_DAY)) + (
    _SCALAR_NAMES
)
N_FEATURES = len(FEATURE_NAMES)


@dataclass(frozen=True, slots=True, eq=False)
class DayWindow:
    """One local day of one meter.

    ``energy`` and ``export`` are Wh per 15-min interval (float32, shape (96,), NaN = missing);
    ``status`` is the IDIS status byte of the capture closing each interval (uint8, 0 if none).
    ``start`` is the UTC epoch second of local midnight; ``day`` the local date (ISO).
    ``source_intervals`` is 92/96/100; ``resampled`` tells whether a DST day was mapped onto 96.
    """

    meter: str
    day: str
    start: int
    energy: FloatArray
    export: FloatArray
    status: npt.NDArray[np.uint8]
    source_intervals: int = INTERVALS_PER_DAY
    resampled: bool = False

    @property
    def weekday(self) -> int:
        return dt.date.fromisoformat(self.day).weekday()

    @property
    def missing(self) -> int:
        return int(np.isnan(self.energy).sum())


@dataclass(frozen=True, slots=True)
class SkippedDay:
    """A day that produced no window, with the reason (``"dst_day"``, ``"empty"``)."""

    meter: str
    day: str
    reason: str


@dataclass(frozen=True, slots=True)
class WindowSet:
    windows: tuple[DayWindow, ...]
    skipped: tuple[SkippedDay, ...]


def _register_series(
    readings: Iterable[Reading], obis: str
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.uint8]]:
    rows = sorted(
        ((r.capture_time, r.scaled, r.status, r.unit) for r in readings if r.obis == obis),
        key=lambda row: row[0],
    )
    times = np.array([r[0] for r in rows], dtype=np.int64)
    # kWh registers (unit 32) are brought to Wh; Wh (30) and unknown units stay as given.
    values = np.array([r[1] * (1000.0 if r[3] == 32 else 1.0) for r in rows], dtype=np.float64)
    status = np.array([r[2] & 0xFF for r in rows], dtype=np.uint8)
    if len(times) > 1:  # duplicates: keep the last capture of each time
        keep = np.append(times[1:] != times[:-1], True)
        times, values, status = times[keep], values[keep], status[keep]
    return times, values, status


def _interval_energy(
    times: npt.NDArray[np.int64], values: npt.NDArray[np.float64], status: npt.NDArray[np.uint8]
) -> dict[int, tuple[float, int]]:
    """Map interval *start* (UTC s) -> (Wh, status of the closing capture).

    Only consecutive captures exactly one period apart give an interval; a register that went
    backwards gives NaN (the detectors report rollover/reset on the raw captures).
    """
    out: dict[int, tuple[float, int]] = {}
    if len(times) < 2:
        return out
    dt_s = np.diff(times)
    dv = np.diff(values)
    ok = dt_s == INTERVAL_S
    for t0, d, st, good in zip(times[:-1], dv, status[1:], ok, strict=True):
        if good:
            out[int(t0)] = (float(d) if d >= 0 else float("nan"), int(st))
    return out


def _local_days(first: int, last: int, tz: ZoneInfo) -> list[tuple[dt.date, int, int]]:
    """Local days covering [first, last] as (date, start UTC s, end UTC s)."""
    d = dt.datetime.fromtimestamp(first, tz).date()
    end_d = dt.datetime.fromtimestamp(last, tz).date()
    out = []
    while d <= end_d:
        s = int(dt.datetime(d.year, d.month, d.day, tzinfo=tz).timestamp())
        n = d + dt.timedelta(days=1)
        e = int(dt.datetime(n.year, n.month, n.day, tzinfo=tz).timestamp())
        out.append((d, s, e))
        d = n
    return out


def _resample(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Map n interval energies onto 96 by interpolating the cumulative curve (total kept)."""
    n = len(values)
    filled = np.nan_to_num(values, nan=0.0)
    cum = np.concatenate(([0.0], np.cumsum(filled)))
    grid = np.linspace(0.0, n, INTERVALS_PER_DAY + 1)
    out = np.diff(np.interp(grid, np.arange(n + 1, dtype=np.float64), cum))
    # a target slot touching a missing source interval is missing too
    src = np.minimum((np.arange(INTERVALS_PER_DAY) * n) // INTERVALS_PER_DAY, n - 1)
    src_end = np.minimum(((np.arange(INTERVALS_PER_DAY) + 1) * n - 1) // INTERVALS_PER_DAY, n - 1)
    nan = np.isnan(values)
    out[nan[src] | nan[src_end]] = np.nan
    return out


def windows_from_readings(
    readings: Sequence[Reading],
    tz: str | ZoneInfo,
    *,
    import_obis: str = IMPORT_OBIS,
    export_obis: str = EXPORT_OBIS,
    dst: str = "resample",
) -> WindowSet:
    """Turn cumulative register captures of ONE meter into local-day windows.

    ``readings`` are captures of the import (and optionally export) energy register every 900 s.
    ``dst`` is ``"resample"`` (92/100-interval days mapped onto 96, total preserved) or
    ``"skip"`` (such days are skipped with reason ``"dst_day"``). Days with no interval at all
    are skipped with reason ``"empty"``. Missing intervals are NaN with status 0.
    """
    if dst not in ("resample", "skip"):
        raise ValueError(f"dst must be 'resample' or 'skip', not {dst!r}")
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    meters = {r.meter for r in readings}
    if len(meters) > 1:
        raise ValueError(f"readings of several meters given: {sorted(meters)[:3]}")
    if not meters:
        return WindowSet((), ())
    meter = meters.pop()
    imp = _interval_energy(*_register_series(readings, import_obis))
    exp = _interval_energy(*_register_series(readings, export_obis))
    if not imp:
        return WindowSet((), ())
    starts = sorted(imp)
    windows: list[DayWindow] = []
    skipped: list[SkippedDay] = []
    for day, s, e in _local_days(starts[0], starts[-1], zone):
        n = (e - s) // INTERVAL_S
        slots = range(s, e, INTERVAL_S)
        energy = np.array([imp.get(t, (np.nan, 0))[0] for t in slots], dtype=np.float64)
        status = np.array([imp.get(t, (0.0, 0))[1] for t in slots], dtype=np.uint8)
        export = (
            np.array([exp.get(t, (np.nan, 0))[0] for t in slots], dtype=np.float64)
            if exp
            else np.zeros(n, dtype=np.float64)
        )
        if np.isnan(energy).all():
            skipped.append(SkippedDay(meter, day.isoformat(), "empty"))
            continue
        resampled = False
        if n != INTERVALS_PER_DAY:
            if dst == "skip":
                skipped.append(SkippedDay(meter, day.isoformat(), "dst_day"))
                continue
            src_idx = np.minimum(np.arange(INTERVALS_PER_DAY) * n // INTERVALS_PER_DAY, n - 1)
            energy, export, status = _resample(energy), _resample(export), status[src_idx]
            resampled = True
        windows.append(
            DayWindow(
                meter=meter,
                day=day.isoformat(),
                start=s,
                energy=energy.astype(np.float32),
                export=np.nan_to_num(export, nan=0.0).astype(np.float32),
                status=status.astype(np.uint8),
                source_intervals=n,
                resampled=resampled,
            )
        )
    return WindowSet(tuple(windows), tuple(skipped))


# --------------------------------------------------------------------------- daily statistics


@dataclass(frozen=True, slots=True, eq=False)
class DailyStats:
    """Per-window day statistics used as history (arrays of shape (N,), float32).

    ``total`` Wh import, ``night`` night share, ``peak`` max interval Wh, ``reverse`` export share.
    """

    total: FloatArray
    night: FloatArray
    peak: FloatArray
    reverse: FloatArray


def _impute(energy: FloatArray) -> tuple[FloatArray, npt.NDArray[np.bool_], npt.NDArray[np.int_]]:
    """Linear interpolation of up to MAX_IMPUTED NaNs per row; returns (filled, imputed, n_nan)."""
    nan = np.isnan(energy)
    n_nan = nan.sum(axis=1)
    filled = energy.copy()
    rows = np.nonzero((n_nan > 0) & (n_nan <= MAX_IMPUTED))[0]
    idx = np.arange(energy.shape[1])
    for r in rows:  # few rows in practice; each is a tiny 1-d interpolation
        m = nan[r]
        filled[r, m] = np.interp(idx[m], idx[~m], energy[r, ~m])
    return filled, (n_nan > 0) & (n_nan <= MAX_IMPUTED), n_nan


def daily_stats(energy: FloatArray, export: FloatArray) -> DailyStats:
    """Statistics of (N, 96) windows; NaNs are ignored (a window of NaN gives NaN stats)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        e = np.asarray(energy, dtype=np.float32)
        x = np.nan_to_num(np.asarray(export, dtype=np.float32), nan=0.0)
        all_nan = np.isnan(e).all(axis=1)
        total = np.nansum(e, axis=1)
        night = np.nansum(e[:, _NIGHT], axis=1) / np.maximum(total, _EPS)
        peak = np.where(all_nan, np.nan, np.nanmax(np.where(np.isnan(e), -np.inf, e), axis=1))
        exp_total = x.sum(axis=1)
        reverse = exp_total / np.maximum(total + exp_total, _EPS)
        total = np.where(all_nan, np.nan, total)
        return DailyStats(
            total=total.astype(np.float32),
            night=np.where(all_nan, np.nan, night).astype(np.float32),
            peak=peak.astype(np.float32),
            reverse=np.where(all_nan, np.nan, reverse).astype(np.float32),
        )


@dataclass(frozen=True, slots=True, eq=False)
class Baselines:
    """The meter's own history for each window (arrays of shape (N,), NaN = not available).

    ``weekday_total`` median total of the last 4 same weekdays, ``total_14d`` median total of the
    trailing 14 days, ``night_14d`` / ``peak_14d`` / ``reverse_14d`` trailing medians,
    ``history_days`` number of trailing days (of 14) with data.
    """

    weekday_total: FloatArray
    total_14d: FloatArray
    night_14d: FloatArray
    peak_14d: FloatArray
    reverse_14d: FloatArray
    history_days: npt.NDArray[np.int32]

    @classmethod
    def empty(cls, n: int) -> Baselines:
        nan = np.full(n, np.nan, dtype=np.float32)
        return cls(nan, nan, nan, nan, nan, np.zeros(n, dtype=np.int32))


def _trailing_nanmedian(mat: FloatArray, width: int, step: int = 1) -> FloatArray:
    """For each (meter, day): nanmedian of the ``width`` previous values taken every ``step``
    days (not the day itself). mat has shape (M, D)."""
    m, d = mat.shape
    pad = np.full((m, width * step), np.nan, dtype=np.float32)
    padded = np.concatenate([pad, mat.astype(np.float32)], axis=1)
    off = width * step
    cols = [padded[:, off - k * step : off - k * step + d] for k in range(1, width + 1)]
    stack = np.stack(cols, axis=2)
    with np.errstate(all="ignore"):
        all_nan = np.isnan(stack).all(axis=2)
        safe = np.where(all_nan[..., None], 0.0, stack)
        med = np.nanmedian(safe, axis=2).astype(np.float32)
    med[all_nan] = np.nan
    return med


def baselines_from_matrix(stats: DailyStats, n_meters: int, n_days: int) -> Baselines:
    """Baselines for a dense fleet whose windows are laid out meter-major ``(M * D,)``, day ``d``
    being calendar day ``d`` (missing days as NaN stats). Vectorised over the whole fleet."""

    def mat(a: FloatArray) -> FloatArray:
        return a.reshape(n_meters, n_days)

    tot = mat(stats.total)
    counts = np.zeros((n_meters, n_days), dtype=np.int32)
    have = (~np.isnan(tot)).astype(np.int32)
    csum = np.concatenate([np.zeros((n_meters, 1), np.int32), np.cumsum(have, axis=1)], axis=1)
    days = np.arange(n_days)
    lo = np.maximum(days - 14, 0)
    counts = csum[:, days] - csum[:, lo]
    return Baselines(
        weekday_total=_trailing_nanmedian(tot, 4, 7).ravel(),
        total_14d=_trailing_nanmedian(tot, 14).ravel(),
        night_14d=_trailing_nanmedian(mat(stats.night), 14).ravel(),
        peak_14d=_trailing_nanmedian(mat(stats.peak), 14).ravel(),
        reverse_14d=_trailing_nanmedian(mat(stats.reverse), 14).ravel(),
        history_days=counts.ravel().astype(np.int32),
    )


@dataclass
class StatsHistory:
    """Trailing daily statistics per meter for a live edge (last 28 days kept).

    ``baselines_for(windows)`` uses only days strictly before each window's day; ``add(windows)``
    records windows after they were scored.
    """

    keep_days: int = 28
    _rows: dict[str, deque[tuple[dt.date, float, float, float, float]]] = field(
        default_factory=lambda: defaultdict(deque)
    )

    def add(self, windows: Sequence[DayWindow]) -> None:
        if not windows:
            return
        st = daily_stats(
            np.stack([w.energy for w in windows]), np.stack([w.export for w in windows])
        )
        for i, w in enumerate(windows):
            rows = self._rows[w.meter]
            day = dt.date.fromisoformat(w.day)
            row = (day, float(st.total[i]), float(st.night[i]), float(st.peak[i]),
                   float(st.reverse[i]))
            kept = [r for r in rows if r[0] != day] + [row]
            kept.sort(key=lambda r: r[0])
            rows.clear()
            rows.extend(kept[-self.keep_days :])

    def meters(self) -> list[str]:
        """Meters with at least one recorded day."""
        return [m for m, rows in self._rows.items() if rows]

    def rows(self, meter: str) -> list[tuple[dt.date, float, float, float, float]]:
        """The kept rows of ``meter`` (day, total Wh, night share, peak Wh, reverse share),
        oldest first; NaN where a statistic was not available."""
        return list(self._rows.get(meter, ()))

    def restore(self, meter: str, rows: Iterable[tuple[dt.date, float, float, float, float]]
                ) -> None:
        """Replace the rows of ``meter`` (e.g. from a state file); the newest ``keep_days``
        rows are kept, one per day."""
        by_day = {r[0]: r for r in rows}
        kept = sorted(by_day.values(), key=lambda r: r[0])[-self.keep_days :]
        self._rows[meter] = deque(kept)

    def forget(self, meter: str) -> None:
        self._rows.pop(meter, None)

    def baselines_for(self, windows: Sequence[DayWindow]) -> Baselines:
        n = len(windows)
        out = {k: np.full(n, np.nan, dtype=np.float32) for k in ("wd", "t", "n", "p", "r")}
        hist = np.zeros(n, dtype=np.int32)
        for i, w in enumerate(windows):
            day = dt.date.fromisoformat(w.day)
            rows = [r for r in self._rows.get(w.meter, ()) if r[0] < day]
            recent = [r for r in rows if (day - r[0]).days <= 14 and not np.isnan(r[1])]
            same = [r for r in rows if (day - r[0]).days in (7, 14, 21, 28) and not np.isnan(r[1])]
            hist[i] = len(recent)
            if recent:
                out["t"][i] = np.median([r[1] for r in recent])
                out["n"][i] = np.median([r[2] for r in recent])
                out["p"][i] = np.median([r[3] for r in recent])
                out["r"][i] = np.median([r[4] for r in recent])
            if same:
                out["wd"][i] = np.median([r[1] for r in same])
        return Baselines(out["wd"], out["t"], out["n"], out["p"], out["r"], hist)


# --------------------------------------------------------------------------- features


@dataclass(frozen=True, slots=True, eq=False)
class FeatureBatch:
    """Feature rows of a batch of windows.

    ``x`` has shape (N, N_FEATURES), float32; rows with ``reasons[i]`` set are not to be scored
    (their content is undefined). ``imputed[i]`` tells that missing intervals were filled.
    """

    x: FloatArray
    reasons: tuple[str | None, ...]
    imputed: npt.NDArray[np.bool_]
    stats: DailyStats

    @property
    def valid(self) -> npt.NDArray[np.bool_]:
        return np.array([r is None for r in self.reasons], dtype=bool)


def build_features(energy: FloatArray, export: FloatArray, baselines: Baselines) -> FeatureBatch:
    """Features of (N, 96) import/export windows (Wh per interval) given the meters' baselines.

    Vectorised over the batch; never raises on NaN, zeros or missing history.
    """
    e_raw = np.asarray(energy, dtype=np.float32).reshape(-1, INTERVALS_PER_DAY)
    x_raw = np.asarray(export, dtype=np.float32).reshape(-1, INTERVALS_PER_DAY)
    n = e_raw.shape[0]
    e, imputed, n_nan = _impute(e_raw)
    x_exp = np.nan_to_num(x_raw, nan=0.0)
    st = daily_stats(e, x_exp)
    reasons: list[str | None] = [None] * n
    for i in range(n):
        if n_nan[i] >= INTERVALS_PER_DAY:
            reasons[i] = "empty"
        elif n_nan[i] > MAX_IMPUTED:
            reasons[i] = "gaps"
        elif baselines.history_days[i] < MIN_HISTORY_DAYS or np.isnan(baselines.total_14d[i]):
            reasons[i] = "no_history"
    e = np.nan_to_num(e, nan=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = np.nan_to_num(st.total, nan=0.0)
        safe_total = np.maximum(total, _EPS)
        shape = e / safe_total[:, None]
        wd = baselines.weekday_total
        fallback = np.isnan(wd)
        wd = np.where(fallback, baselines.total_14d, wd)
        mean = total / INTERVALS_PER_DAY
        peak = np.nan_to_num(st.peak, nan=0.0)
        scal = np.stack(
            [
                np.log1p(total / 1000.0),
                np.log((total + 100.0) / (np.nan_to_num(wd, nan=0.0) + 100.0)),
                np.log((total + 100.0) / (np.nan_to_num(baselines.total_14d, nan=0.0) + 100.0)),
                np.nan_to_num(st.night, nan=0.0),
                np.nan_to_num(st.night - baselines.night_14d, nan=0.0),
                mean / np.maximum(peak, _EPS),
                (e < 1.0).mean(axis=1),
                np.abs(np.diff(e, axis=1)).max(axis=1) / np.maximum(mean, _EPS),
                np.nan_to_num(st.reverse, nan=0.0),
                np.nan_to_num(st.reverse - baselines.reverse_14d, nan=0.0),
                np.log((peak + 10.0) / (np.nan_to_num(baselines.peak_14d, nan=0.0) + 10.0)),
                fallback.astype(np.float32),
            ],
            axis=1,
        )
    x = np.concatenate([shape, scal], axis=1).astype(np.float32)
    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    return FeatureBatch(x=x, reasons=tuple(reasons), imputed=imputed, stats=st)
