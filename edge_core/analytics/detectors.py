"""Deterministic detectors: rules an inspector can check by hand.

Every detector returns a list of :class:`Finding` (possibly empty): the kind, the meter, the time
window it concerns (UTC epoch s, end exclusive), the offending value, the threshold it crossed
and a one-line reason. None of them raises on odd data (NaN, empty series); they simply find
nothing to report.

Thresholds come from :class:`MeterConfig` (nameplate data of the meter) or from the standard:

* EN 50160 supply voltage (LV, 230 V nominal): 95 % of the 10-min mean r.m.s. values within
  Un +/- 10 % (207-253 V) and all of them within Un + 10 % / - 15 % (195.5-253 V).
* Physical maximum energy per interval: rated (max) current x nominal voltage x phases x
  interval length (Wh).
* Status flags (IDIS profile status byte): bit 7 power down, bit 5 clock adjusted explain a
  missing interval; bit 7 also explains zero consumption.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_core.analytics.features import INTERVAL_S, DayWindow
from edge_core.model import Reading

__all__ = [
    "STATUS_CLOCK_ADJUSTED",
    "STATUS_POWER_DOWN",
    "Finding",
    "MeterConfig",
    "detect_clock_drift",
    "detect_level_drop",
    "detect_level_rise",
    "detect_missing_intervals",
    "detect_register_backwards",
    "detect_reverse_flow",
    "detect_spikes",
    "detect_stuck",
    "detect_voltage_en50160",
    "detect_window",
]

STATUS_POWER_DOWN = 0x80
STATUS_CLOCK_ADJUSTED = 0x20


@dataclass(frozen=True, slots=True)
class Finding:
    """One explainable finding. ``start``/``end`` are UTC epoch s (end exclusive)."""

    kind: str
    meter: str
    start: int
    end: int
    value: float
    threshold: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        return cls(str(d["kind"]), str(d["meter"]), int(d["start"]), int(d["end"]),
                   float(d["value"]), float(d["threshold"]), str(d["reason"]))


@dataclass(frozen=True, slots=True)
class MeterConfig:
    """Nameplate and installation data of one meter.

    ``rated_current_a`` is the maximum current (Imax, A); ``nominal_voltage_v`` phase-to-neutral
    (V); ``register_digits`` the number of whole-kWh digits of the energy register (the register
    rolls over at 10**digits kWh); ``max_clock_drift_s`` the accepted clock deviation (s).
    """

    meter: str
    has_pv: bool = False
    rated_current_a: float = 60.0
    nominal_voltage_v: float = 230.0
    phases: int = 1
    register_digits: int = 8
    max_clock_drift_s: float = 30.0
    min_reverse_wh: float = 10.0

    def max_interval_wh(self, interval_s: int = INTERVAL_S) -> float:
        """Physical maximum energy in one interval (Wh)."""
        return self.rated_current_a * self.nominal_voltage_v * self.phases * interval_s / 3600.0

    @property
    def register_modulus_wh(self) -> float:
        return 10.0**self.register_digits * 1000.0


def _slot(w: DayWindow, i: int) -> tuple[int, int]:
    n = len(w.energy)
    span = (w.source_intervals * INTERVAL_S) // max(n, 1)
    return w.start + i * span, w.start + (i + 1) * span


def detect_reverse_flow(window: DayWindow, config: MeterConfig) -> list[Finding]:
    """Export energy on a meter configured without PV (or other generation)."""
    if config.has_pv:
        return []
    exported = float(np.nansum(window.export))
    if not exported > config.min_reverse_wh:
        return []
    nz = np.nonzero(np.nan_to_num(window.export) > 0)[0]
    start, _ = _slot(window, int(nz[0]))
    _, end = _slot(window, int(nz[-1]))
    return [Finding("reverse_flow", window.meter, start, end, round(exported, 3),
                    config.min_reverse_wh,
                    f"{exported:.0f} Wh exported on {window.day} but the meter has no PV")]


def detect_voltage_en50160(
    meter: str,
    times: Sequence[int] | npt.NDArray[np.int64],
    volts: Sequence[float] | npt.NDArray[np.float64],
    *,
    nominal_v: float = 230.0,
    share: float = 0.95,
) -> list[Finding]:
    """EN 50160 check of a voltage series at any resolution.

    Samples finer than 10 min are averaged into 10-min means (aligned to UTC multiples of 600 s);
    coarser samples (e.g. 15-min profile values) are used as given, each standing for its own
    period. Finds ``voltage_band`` when fewer than ``share`` of the means are within
    Un +/- 10 %, and ``voltage_limit`` when any mean is outside [Un - 15 %, Un + 10 %].
    """
    t = np.asarray(times, dtype=np.int64)
    v = np.asarray(volts, dtype=np.float64)
    ok = ~np.isnan(v)
    t, v = t[ok], v[ok]
    if len(v) == 0:
        return []
    step = int(np.median(np.diff(np.sort(t)))) if len(t) > 1 else 600
    if step < 600:
        bins = t // 600
        uniq, inv = np.unique(bins, return_inverse=True)
        means = np.bincount(inv, weights=v) / np.bincount(inv)
        mt = uniq * 600
    else:
        means, mt = v, t
    lo, hi = nominal_v * 0.90, nominal_v * 1.10
    hard_lo = nominal_v * 0.85
    start, end = int(mt.min()), int(mt.max()) + max(step, 600)
    out: list[Finding] = []
    within = float(((means >= lo) & (means <= hi)).mean())
    if within < share:
        out.append(Finding("voltage_band", meter, start, end, round(within, 4), share,
                           f"{within:.1%} of 10-min means within {lo:.1f}-{hi:.1f} V "
                           f"(EN 50160 needs {share:.0%})"))
    bad = (means < hard_lo) | (means > hi)
    if bad.any():
        worst = float(means[bad][np.argmax(np.abs(means[bad] - nominal_v))])
        limit = hard_lo if worst < nominal_v else hi
        out.append(Finding("voltage_limit", meter, int(mt[bad].min()),
                           int(mt[bad].max()) + max(step, 600), round(worst, 2), limit,
                           f"{int(bad.sum())} 10-min means outside {hard_lo:.1f}-{hi:.1f} V, "
                           f"worst {worst:.1f} V"))
    return out


def detect_stuck(
    window: DayWindow,
    voltage_present: bool | npt.NDArray[np.bool_],
    *,
    min_run: int = 16,
) -> list[Finding]:
    """Zero consumption for at least ``min_run`` intervals (default 4 h) while voltage is present.

    ``voltage_present`` is one flag for the day or a per-interval mask. Intervals flagged power
    down (status bit 7) do not count as stuck.
    """
    e = np.nan_to_num(window.energy, nan=np.inf)
    present = np.broadcast_to(np.asarray(voltage_present, dtype=bool), e.shape)
    zero = (e < 0.5) & present & ((window.status & STATUS_POWER_DOWN) == 0)
    out: list[Finding] = []
    run_start = None
    for i, z in enumerate(np.append(zero, False)):
        if z and run_start is None:
            run_start = i
        elif not z and run_start is not None:
            length = i - run_start
            if length >= min_run:
                s, _ = _slot(window, run_start)
                _, en = _slot(window, i - 1)
                out.append(Finding("stuck_zero", window.meter, s, en, float(length), float(min_run),
                                   f"{length} intervals of zero consumption with voltage present"))
            run_start = None
    return out


def detect_spikes(window: DayWindow, config: MeterConfig) -> list[Finding]:
    """Intervals whose energy exceeds what the meter can physically measure."""
    limit = config.max_interval_wh()
    e = np.nan_to_num(window.energy, nan=0.0)
    out = []
    for i in np.nonzero(e > limit)[0]:
        s, en = _slot(window, int(i))
        out.append(Finding("spike", window.meter, s, en, round(float(e[i]), 3), round(limit, 3),
                           f"{e[i]:.0f} Wh in one interval exceeds the physical maximum "
                           f"{limit:.0f} Wh ({config.rated_current_a:g} A x "
                           f"{config.nominal_voltage_v:g} V x {config.phases})"))
    return out


def detect_register_backwards(
    readings: Sequence[Reading], config: MeterConfig, *, near_max: float = 0.99
) -> list[Finding]:
    """A cumulative register that decreased: ``register_rollover`` when the previous value was
    within the top ``1 - near_max`` of the register's range (10**digits kWh), else
    ``register_reset``. Readings of several OBIS codes are checked per code."""
    out: list[Finding] = []
    modulus = config.register_modulus_wh
    by_obis: dict[str, list[Reading]] = {}
    for r in readings:
        by_obis.setdefault(r.obis, []).append(r)
    for rows in by_obis.values():
        rows.sort(key=lambda r: r.capture_time)
        for prev, cur in itertools.pairwise(rows):
            scale_p = 1000.0 if prev.unit == 32 else 1.0
            scale_c = 1000.0 if cur.unit == 32 else 1.0
            a, b = prev.scaled * scale_p, cur.scaled * scale_c
            if b >= a:
                continue
            if a >= near_max * modulus:
                out.append(Finding("register_rollover", cur.meter, prev.capture_time,
                                   cur.capture_time, b, near_max * modulus,
                                   f"{cur.obis} wrapped from {a:.0f} to {b:.0f} Wh near its "
                                   f"{config.register_digits}-digit maximum"))
            else:
                out.append(Finding("register_reset", cur.meter, prev.capture_time,
                                   cur.capture_time, b - a, 0.0,
                                   f"{cur.obis} went back from {a:.0f} to {b:.0f} Wh, far from "
                                   "its maximum: reset or tampering"))
    return out


def detect_clock_drift(
    meter: str, samples: Sequence[tuple[int, int]], config: MeterConfig
) -> list[Finding]:
    """``samples`` are (reference UTC s, meter clock as UTC s) pairs; a finding per sample whose
    deviation exceeds ``config.max_clock_drift_s``."""
    out = []
    for ref, met in samples:
        drift = met - ref
        if abs(drift) > config.max_clock_drift_s:
            out.append(Finding("clock_drift", meter, ref, ref, float(drift),
                               config.max_clock_drift_s,
                               f"meter clock {'ahead' if drift > 0 else 'behind'} "
                               f"by {abs(drift)} s"))
    return out


def detect_missing_intervals(
    meter: str,
    capture_times: Sequence[int],
    statuses: Sequence[int],
    start: int,
    end: int,
    *,
    interval_s: int = INTERVAL_S,
) -> list[Finding]:
    """Captures expected every ``interval_s`` in [start, end) that are absent and not explained
    by the status of the capture just after the gap (bit 7 power down, bit 5 clock adjusted).
    One finding per unexplained run."""
    present = dict(zip((int(t) for t in capture_times), (int(s) for s in statuses), strict=True))
    first = start + (-start) % interval_s
    expected = range(first, end, interval_s)
    out = []
    run: list[int] = []
    for t in [*expected, None]:
        if t is not None and t not in present:
            run.append(t)
            continue
        if run:
            after = present.get(run[-1] + interval_s, 0)
            before = present.get(run[0] - interval_s, 0)
            flags = STATUS_POWER_DOWN | STATUS_CLOCK_ADJUSTED
            if not ((after | before) & flags):
                out.append(Finding("missing_intervals", meter, run[0], run[-1] + interval_s,
                                   float(len(run)), 0.0,
                                   f"{len(run)} intervals missing without power-down or "
                                   "clock-adjusted status"))
            run = []
    return out


def _day_total_vs_level(
    window: DayWindow,
    baseline_14d_wh: float,
    baseline_weekday_wh: float,
    history_days: int,
    *,
    min_history: int,
    min_baseline_wh: float,
    max_missing: int,
) -> tuple[float, float, float] | None:
    """(day total Wh, ratio to the 14-day median, ratio to the same-weekday median or NaN), or
    None when the meter's level is not known well enough to judge the day. Missing intervals
    (at most ``max_missing``) are made up by scaling the others to the whole day."""
    n = len(window.energy)
    missing = window.missing
    if history_days < min_history or missing > max_missing or n == missing:
        return None
    if not baseline_14d_wh >= min_baseline_wh:  # also False for NaN
        return None
    total = float(np.nansum(window.energy)) * n / (n - missing)
    weekday = (
        total / baseline_weekday_wh
        if np.isfinite(baseline_weekday_wh) and baseline_weekday_wh > 0
        else float("nan")
    )
    return total, total / baseline_14d_wh, weekday


def _level_finding(
    kind: str, window: DayWindow, total: float, ratio: float, *, limit: float, base_wh: float
) -> Finding:
    end = window.start + window.source_intervals * INTERVAL_S
    return Finding(kind, window.meter, window.start, end, round(ratio, 4), limit,
                   f"{total / 1000:.2f} kWh imported on {window.day} is {ratio:.0%} of the "
                   f"meter's own level ({base_wh / 1000:.2f} kWh 14-day median)")


def detect_level_drop(
    window: DayWindow,
    baseline_14d_wh: float,
    baseline_weekday_wh: float,
    history_days: int,
    *,
    max_ratio: float = 0.6,
    min_history: int = 7,
    min_baseline_wh: float = 500.0,
    max_missing: int = 4,
) -> list[Finding]:
    """The day's import fell below ``max_ratio`` of the meter's own level: of the median daily
    total of its trailing 14 days (``baseline_14d_wh``) *and* of the median of its last same
    weekdays (``baseline_weekday_wh``; NaN = not known, then the 14-day median alone decides).

    The weekday condition keeps weekend-closed businesses quiet. Needs ``min_history`` trailing
    days, a baseline of at least ``min_baseline_wh`` (an empty flat is not a drop) and at most
    ``max_missing`` missing intervals (the total of the others is scaled up to the day).
    A uniform scale-down (bypass, halved CT ratio) changes no shape, only this level.
    """
    level = _day_total_vs_level(
        window, baseline_14d_wh, baseline_weekday_wh, history_days,
        min_history=min_history, min_baseline_wh=min_baseline_wh, max_missing=max_missing,
    )
    if level is None:
        return []
    total, ratio, weekday = level
    if not ratio < max_ratio or (np.isfinite(weekday) and not weekday < max_ratio):
        return []
    ratio = max(ratio, weekday) if np.isfinite(weekday) else ratio
    return [_level_finding(
        "level_drop", window, total, ratio, limit=max_ratio, base_wh=baseline_14d_wh
    )]


def detect_level_rise(
    window: DayWindow,
    baseline_14d_wh: float,
    baseline_weekday_wh: float,
    history_days: int,
    *,
    min_ratio: float = 1.8,
    min_history: int = 7,
    min_baseline_wh: float = 500.0,
    max_missing: int = 4,
) -> list[Finding]:
    """The mirror of :func:`detect_level_drop`: the day's import rose above ``min_ratio`` of
    both of the meter's own baselines. A doubled CT or PT ratio (a wrong multiplier programmed
    at installation or after a transformer change) scales every interval alike, keeping the
    shape a model looks at; a cold day or guests rarely double both medians at once."""
    level = _day_total_vs_level(
        window, baseline_14d_wh, baseline_weekday_wh, history_days,
        min_history=min_history, min_baseline_wh=min_baseline_wh, max_missing=max_missing,
    )
    if level is None:
        return []
    total, ratio, weekday = level
    if not ratio > min_ratio or (np.isfinite(weekday) and not weekday > min_ratio):
        return []
    ratio = min(ratio, weekday) if np.isfinite(weekday) else ratio
    return [_level_finding(
        "level_rise", window, total, ratio, limit=min_ratio, base_wh=baseline_14d_wh
    )]


def detect_window(
    window: DayWindow, config: MeterConfig, *, voltage_present: bool = True
) -> list[Finding]:
    """Run the window-level detectors (reverse flow, spikes, stuck) on one day."""
    return [
        *detect_reverse_flow(window, config),
        *detect_spikes(window, config),
        *detect_stuck(window, voltage_present),
    ]
