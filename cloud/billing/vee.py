"""VEE: validation, estimation and editing of one channel's 15-minute interval data.

Theory of operation
-------------------
* **Input** is the channel's *cumulative register captures* (load-profile rows), each with its
  IDIS status byte and the CT x PT multiplier that ingest applied (``value`` is primary Wh or
  varh). The interval ``[t, t+900)`` exists when captures at ``t`` and ``t+900`` exist; its
  energy is the *secondary* difference times the multiplier of the capture at ``t``
  (``(v_e/m_e - v_s/m_s) * m_s``), so a CT/PT change takes effect with the first interval that
  *starts* at or after its ``valid_from``. Interval-energy input is turned into synthetic
  captures by :func:`captures_from_energies`.
* Captures are on the UTC 15-minute grid, so a local DST day simply has 92 or 100 intervals;
  nothing on such a day is a gap.
* A capture whose status has a bit of ``invalid_mask`` (default bit 2, *data not valid*) is
  dropped: its value anchors nothing. Intervals whose end capture was dropped carry
  ``status_invalid``; other intervals without both captures carry ``gap``; an interval whose
  register ran backwards carries ``negative`` and is replaced.
* Every run of non-actual intervals is a *span* between two consecutive valid captures (or the
  window's edges). When both captures exist, have the same multiplier and do not run backwards,
  the span's **total is known** and estimation preserves it exactly (the cumulative register
  is the truth); otherwise the span is *unanchored*.
* Estimation: a span of at most ``short_gap_max`` intervals is linearly interpolated -- on the
  cumulative register when anchored (an equal split of the total), else between the
  neighbouring actual interval energies. A longer span is estimated *like-day*: the mean of the
  same local wall-clock interval on up to ``like_days`` previous same weekdays with actual data,
  scaled so the span's total matches when it is known (``prorated``, an equal split, when some
  interval has no like-day data or the like-day sum is 0). What cannot be estimated stays
  ``missing`` (energy None).
* Editing: the quality of every interval is ``actual``, ``estimated`` (with its method) or
  ``missing``; an estimated value is never reported as actual.
* Flags only (the value stays actual): status bits power down / clock adjusted / clock invalid /
  critical error, ``spike`` (import channel: above ``spike_k`` x the cycle's P99 of positive
  actual intervals, or above ``physical_max_wh``), ``zero_run`` (import channel: at least
  ``zero_run_min`` consecutive actual zeros, no power-down among them, on a meter whose share of
  zero intervals in the cycle is below ``zero_share_max``).
* ``register_delta``: the register's own difference over the cycle, from the valid captures at
  both cycle ends (piecewise per multiplier when the ratio changed), compared with the sum of the
  cycle's intervals after estimation.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from cloud.billing.tou import INTERVAL_S
from cloud.registry import channel_multiplier
from cloud.storage.base import MeterRecord
from edge_core.errors import ConfigError

__all__ = [
    "ACTUAL",
    "CHANNELS",
    "CH_EXPORT",
    "CH_IMPORT",
    "CH_Q_EXPORT",
    "CH_Q_IMPORT",
    "ESTIMATED",
    "MISSING",
    "STATUS_CLOCK_ADJUSTED",
    "STATUS_CLOCK_INVALID",
    "STATUS_CRITICAL",
    "STATUS_DST",
    "STATUS_NOT_VALID",
    "STATUS_POWER_DOWN",
    "Capture",
    "ChannelVee",
    "VeeConfig",
    "apply_multipliers",
    "captures_from_energies",
    "quantile",
    "vee_channel",
]

CH_IMPORT = "1.0.1.8.0.255"  # +A active energy import (Wh)
CH_EXPORT = "1.0.2.8.0.255"  # -A active energy export (Wh)
CH_Q_IMPORT = "1.0.3.8.0.255"  # +R reactive energy import (varh)
CH_Q_EXPORT = "1.0.4.8.0.255"  # -R reactive energy export (varh)
CHANNELS = (CH_IMPORT, CH_EXPORT, CH_Q_IMPORT, CH_Q_EXPORT)

STATUS_POWER_DOWN = 0x80
STATUS_CLOCK_ADJUSTED = 0x20
STATUS_DST = 0x08
STATUS_NOT_VALID = 0x04
STATUS_CLOCK_INVALID = 0x02
STATUS_CRITICAL = 0x01

_STATUS_REASONS = (
    (STATUS_POWER_DOWN, "power_down"),
    (STATUS_CLOCK_ADJUSTED, "clock_adjusted"),
    (STATUS_CLOCK_INVALID, "clock_invalid"),
    (STATUS_CRITICAL, "critical_error"),
)

ACTUAL = "actual"
ESTIMATED = "estimated"
MISSING = "missing"


@dataclass(frozen=True, slots=True)
class Capture:
    """One cumulative register capture: ``value`` in primary Wh/varh (``multiplier`` applied),
    at ``time`` (UTC epoch s), with the IDIS ``status`` byte."""

    time: int
    value: float
    status: int = 0
    multiplier: float = 1.0


@dataclass(frozen=True, slots=True)
class VeeConfig:
    """Thresholds of the VEE rules (intervals are 15 min; energies in Wh)."""

    short_gap_max: int = 4  # longest span (intervals) interpolated; longer ones go like-day
    like_days: int = 4  # previous same weekdays averaged by like-day estimation
    spike_k: float = 5.0  # spike: interval > spike_k x P(spike_quantile) of the cycle
    spike_quantile: float = 0.99
    spike_min_samples: int = 96  # fewer positive actual intervals: no relative spike test
    physical_max_wh: float | None = None  # hard limit per interval (primary Wh), if known
    zero_run_min: int = 12  # zero run: at least this many consecutive actual zeros (3 h)
    zero_share_max: float = 0.2  # ... on a meter with at most this share of zero intervals
    invalid_mask: int = STATUS_NOT_VALID  # status bits that void a capture
    register_tol_wh: float = 1.0  # interval sum vs register delta: absolute tolerance
    register_tol_rel: float = 1e-6  # ... and relative tolerance

    def __post_init__(self) -> None:
        if self.short_gap_max < 0 or self.like_days < 0 or self.zero_run_min < 1:
            raise ConfigError("VEE gap/run lengths must be non-negative")
        if not 0 < self.spike_quantile <= 1 or self.spike_k <= 0:
            raise ConfigError("spike_k must be positive and spike_quantile in (0, 1]")

    @property
    def history_s(self) -> int:
        """How far before the cycle like-day estimation looks (s)."""
        return self.like_days * 7 * 86400

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VeeConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown VEE settings: {sorted(unknown)}")
        return cls(**dict(d))


@dataclass(frozen=True, slots=True)
class ChannelVee:
    """VEE outcome of one channel over ``[start, start + 900 * len(energy))``.

    ``energy`` in primary Wh/varh per interval (None: missing); ``quality`` per interval;
    ``method`` ("" for actual/missing, else interpolated / like_day / prorated); ``flags``
    maps interval index to its reasons. ``register_delta`` is None when an end is unknown.
    """

    start: int
    energy: tuple[float | None, ...]
    quality: tuple[str, ...]
    method: tuple[str, ...]
    flags: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    register_delta: float | None = None

    def total(self) -> float:
        return math.fsum(e for e in self.energy if e is not None)

    def register_ok(self, config: VeeConfig) -> bool | None:
        """Interval sum vs register delta within tolerance; None when the delta is unknown."""
        if self.register_delta is None:
            return None
        tol = max(config.register_tol_wh, config.register_tol_rel * abs(self.register_delta))
        return abs(self.total() - self.register_delta) <= tol


def apply_multipliers(
    raw: Iterable[tuple[int, float, int]],
    history: Sequence[MeterRecord],
    channel: str = CH_IMPORT,
) -> list[Capture]:
    """Secondary captures ``(time, value, status)`` -> primary captures, with the CT x PT of
    the registry period covering each capture time (1 outside every period)."""
    out = []
    for t, v, st in raw:
        mult = 1.0
        for rec in history:
            if rec.covers(t):
                mult = channel_multiplier(channel, rec.ct_ratio, rec.pt_ratio)
                break
        out.append(Capture(int(t), float(v) * mult, int(st), mult))
    return out


def captures_from_energies(
    start: int,
    energies: Sequence[float | None],
    statuses: Sequence[int] | None = None,
    base: float = 0.0,
) -> list[Capture]:
    """Interval-energy input (primary Wh per interval from ``start``) as cumulative captures.

    The input must be gap-free (a None raises ConfigError): in interval form the end of a
    missing interval is the start of the next one, so a gap cannot be expressed as captures.
    """
    out = [Capture(start, base)]
    acc = base
    for i, e in enumerate(energies):
        if e is None:
            raise ConfigError(f"interval {i} has no energy: interval input must be gap-free")
        acc += e
        st = statuses[i] if statuses is not None else 0
        out.append(Capture(start + (i + 1) * INTERVAL_S, acc, st))
    return out


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile with linear interpolation between order statistics (numpy's default,
    DuckDB ``quantile_cont``)."""
    xs = sorted(values)
    if not xs:
        return 0.0
    pos = (len(xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _secondary_delta(a: Capture, b: Capture) -> float:
    if a.multiplier == b.multiplier:
        return b.value - a.value  # exactly what the SQL path computes
    return (b.value / b.multiplier - a.value / a.multiplier) * a.multiplier


def vee_channel(
    captures: Iterable[Capture],
    start: int,
    end: int,
    *,
    zone: ZoneInfo,
    config: VeeConfig | None = None,
    consumption_rules: bool = False,
) -> ChannelVee:
    """Validate and estimate one channel for the cycle ``[start, end)``.

    ``captures`` may reach back ``config.history_s`` before ``start`` for like-day estimation.
    ``consumption_rules`` turns on the spike and zero-run rules (the import channel).
    Returns the cycle's intervals only.
    """
    cfg = config or VeeConfig()
    if start % INTERVAL_S or end % INTERVAL_S or end <= start:
        raise ConfigError("cycle bounds must be on the 15-minute grid, end after start")
    w0 = start - cfg.history_s  # window start (history included)
    n = (end - w0) // INTERVAL_S
    first = (start - w0) // INTERVAL_S  # index of the cycle's first interval

    valid: dict[int, Capture] = {}
    voided: set[int] = set()
    status_at: dict[int, int] = {}
    for c in captures:
        if c.time < w0 or c.time > end or c.time % INTERVAL_S:
            continue
        if c.status & cfg.invalid_mask:
            voided.add(c.time)
        else:
            valid.setdefault(c.time, c)
        status_at.setdefault(c.time, c.status)

    energy: list[float | None] = [None] * n
    quality = [MISSING] * n
    method = [""] * n
    flags: dict[int, list[str]] = {}
    spans: list[tuple[int, int, float | None]] = []  # [i0, i1) and the known total

    def flag(i: int, reason: str) -> None:
        flags.setdefault(i, []).append(reason)

    times = sorted(valid)
    if not times:
        spans.append((0, n, None))
    else:
        i_first = (times[0] - w0) // INTERVAL_S
        if i_first > 0:
            spans.append((0, min(i_first, n), None))
        for ta, tb in itertools.pairwise(times):
            a, b = valid[ta], valid[tb]
            i0 = (ta - w0) // INTERVAL_S
            i1 = (tb - w0) // INTERVAL_S
            d = _secondary_delta(a, b)
            if i1 - i0 == 1:
                if d < 0:
                    flag(i0, "negative")
                    spans.append((i0, i1, None))
                else:
                    energy[i0] = d
                    quality[i0] = ACTUAL
            else:
                anchored = a.multiplier == b.multiplier and d >= 0
                spans.append((i0, i1, d if anchored else None))
        i_last = (times[-1] - w0) // INTERVAL_S
        if i_last < n:
            spans.append((i_last, n, None))

    for i0, i1, _ in spans:
        for i in range(i0, i1):
            if flags.get(i) == ["negative"]:
                continue
            t_end = w0 + (i + 1) * INTERVAL_S
            flag(i, "status_invalid" if t_end in voided else "gap")
    for i in range(n):
        st = status_at.get(w0 + (i + 1) * INTERVAL_S, 0)
        for bit, reason in _STATUS_REASONS:
            if st & bit:
                flag(i, reason)

    work = _Work(list(energy), energy, quality, method, w0, zone, cfg)
    for i0, i1, total in spans:
        work.estimate(i0, i1, total)

    if consumption_rules:
        _consumption_rules(energy[first:], quality[first:], flags, first, cfg)

    register_delta = _register_delta(valid, start, end)
    cyc_flags = {i - first: tuple(r) for i, r in flags.items() if i >= first}
    return ChannelVee(
        start=start,
        energy=tuple(energy[first:]),
        quality=tuple(quality[first:]),
        method=tuple(method[first:]),
        flags=cyc_flags,
        register_delta=register_delta,
    )


@dataclass(slots=True)
class _Work:
    """Estimation state of one channel window. ``actual`` holds actual values only (the
    like-day source, never estimates); the other lists are edited in place."""

    actual: list[float | None]
    energy: list[float | None]
    quality: list[str]
    method: list[str]
    w0: int
    zone: ZoneInfo
    cfg: VeeConfig

    def estimate(self, i0: int, i1: int, total: float | None) -> None:
        length = i1 - i0
        if length <= 0:
            return
        if length <= self.cfg.short_gap_max:
            if total is not None:
                self.put(i0, [total / length] * length, "interpolated")
                return
            prev = self.actual[i0 - 1] if i0 > 0 else None
            nxt = self.actual[i1] if i1 < len(self.actual) else None
            if prev is not None or nxt is not None:
                p = prev if prev is not None else nxt
                q = nxt if nxt is not None else prev
                assert p is not None
                assert q is not None
                values = [p + (q - p) * (j + 1) / (length + 1) for j in range(length)]
                self.put(i0, values, "interpolated")
                return
        like = [self.like_day(i) for i in range(i0, i1)]
        if total is not None:
            known = [v for v in like if v is not None]
            s = math.fsum(known)
            if len(known) == length and s > 0:
                self.put(i0, [v * (total / s) for v in known], "like_day")
            else:
                self.put(i0, [total / length] * length, "prorated")
            return
        self.put(i0, like, "like_day")

    def put(self, i0: int, values: Sequence[float | None], how: str) -> None:
        for j, v in enumerate(values):
            if v is None:
                continue
            self.energy[i0 + j] = v
            self.quality[i0 + j] = ESTIMATED
            self.method[i0 + j] = how

    def like_day(self, i: int) -> float | None:
        """Mean of the same local wall-clock interval on previous same weekdays (actual only)."""
        local = datetime.fromtimestamp(self.w0 + i * INTERVAL_S, tz=self.zone).replace(tzinfo=None)
        found = []
        for w in range(1, self.cfg.like_days + 1):
            t = int((local - timedelta(days=7 * w)).replace(tzinfo=self.zone).timestamp())
            if t % INTERVAL_S:
                continue
            j = (t - self.w0) // INTERVAL_S
            v = self.actual[j] if 0 <= j < len(self.actual) else None
            if v is not None:
                found.append(v)
        if not found:
            return None
        return math.fsum(found) / len(found)


def _consumption_rules(
    energy: Sequence[float | None],
    quality: Sequence[str],
    flags: dict[int, list[str]],
    offset: int,
    cfg: VeeConfig,
) -> None:
    acts = [(i, e) for i, (e, q) in enumerate(zip(energy, quality, strict=True)) if q == ACTUAL]
    positive = [e for _, e in acts if e is not None and e > 0]
    limit = math.inf
    if len(positive) >= cfg.spike_min_samples:
        limit = cfg.spike_k * quantile(positive, cfg.spike_quantile)
    if cfg.physical_max_wh is not None:
        limit = min(limit, cfg.physical_max_wh)
    for i, e in acts:
        if e is not None and e > limit:
            flags.setdefault(i + offset, []).append("spike")
    zeros = sum(1 for _, e in acts if e == 0)
    if not acts or zeros / len(acts) >= cfg.zero_share_max:
        return
    run: list[int] = []
    for i in [*range(len(energy)), len(energy)]:
        is_zero = (
            i < len(energy)
            and quality[i] == ACTUAL
            and energy[i] == 0
            and "power_down" not in flags.get(i + offset, [])
        )
        if is_zero:
            run.append(i)
            continue
        if len(run) >= cfg.zero_run_min:
            for j in run:
                flags.setdefault(j + offset, []).append("zero_run")
        run = []


def _register_delta(valid: Mapping[int, Capture], start: int, end: int) -> float | None:
    a, b = valid.get(start), valid.get(end)
    if a is None or b is None:
        return None
    if a.multiplier == b.multiplier:
        return _secondary_delta(a, b)
    # The ratio changed: sum the register piecewise over the valid captures in between.
    caps = [valid[t] for t in sorted(valid) if start <= t <= end]
    return math.fsum(_secondary_delta(x, y) for x, y in itertools.pairwise(caps))
