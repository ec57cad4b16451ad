"""Billing determinants of one meter over one billing cycle (pure Python path).

Decided conventions (docs/billing.md):

* Energies come from VEE'd interval energy (:mod:`cloud.billing.vee`): CT x PT is applied per
  interval before summing, so a ratio change mid-cycle is respected. Estimated intervals count
  towards energy and demand; missing ones count as 0 and are reported.
* TOU period of an interval: the tariff period at its local start time.
* Maximum demand: **fixed, clock-aligned** blocks of 15 and of 30 minutes (30-minute blocks
  start at :00 and :30 UTC, which is local :00/:30 in every zone with a whole or half-hour
  offset). A 30-minute block needs both of its intervals. kW = Wh x (3600 / block s) / 1000.
  The time reported is the block's start; ties go to the earliest block.
* Power factor: import side, ``kWh / sqrt(kWh^2 + kvarh^2)`` with +A and +R; None when both 0.
* Quality counts (actual / estimated / missing) are those of the import channel (the billing
  channel); ``flags`` counts VEE reasons over all four channels' intervals.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

from cloud.billing.tou import INTERVAL_S, BillingCycle, Tariff
from cloud.billing.vee import (
    ACTUAL,
    CH_EXPORT,
    CH_IMPORT,
    CH_Q_EXPORT,
    CH_Q_IMPORT,
    CHANNELS,
    ESTIMATED,
    MISSING,
    Capture,
    ChannelVee,
    VeeConfig,
    vee_channel,
)

__all__ = [
    "Demand",
    "Determinants",
    "PeriodEnergy",
    "compute_determinants",
    "cycle_periods",
    "determinants_from_vee",
    "dst_days",
]


@dataclass(frozen=True, slots=True)
class PeriodEnergy:
    """Active energy of one TOU period (kWh, primary)."""

    period: str
    import_kwh: float
    export_kwh: float

    def to_dict(self) -> dict[str, Any]:
        return {"period": self.period, "import_kwh": self.import_kwh, "export_kwh": self.export_kwh}


@dataclass(frozen=True, slots=True)
class Demand:
    """Maximum demand (kW) of a block starting at ``start`` (UTC epoch s; ``local`` ISO)."""

    kw: float
    start: int
    local: str

    def to_dict(self) -> dict[str, Any]:
        return {"kw": self.kw, "start": self.start, "local": self.local}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Demand | None:
        return None if d is None else cls(float(d["kw"]), int(d["start"]), str(d["local"]))


@dataclass(frozen=True, slots=True)
class Determinants:
    """Billing determinants of one meter and cycle. Energies in kWh / kvarh (primary)."""

    meter: str
    tariff: str
    cycle_start: int
    cycle_end: int
    cycle_label: str
    periods: tuple[PeriodEnergy, ...]
    import_kwh: float
    export_kwh: float
    kvarh_import: float
    kvarh_export: float
    power_factor: float | None
    max_demand_15: Demand | None
    max_demand_30: Demand | None
    intervals_expected: int
    intervals_actual: int
    intervals_estimated: int
    intervals_missing: int
    register_delta_kwh: float | None
    register_check: str  # "ok", "mismatch" or "unknown"
    flags: tuple[tuple[str, int], ...] = ()
    dst_days: tuple[tuple[str, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "meter": self.meter,
            "tariff": self.tariff,
            "cycle": {"start": self.cycle_start, "end": self.cycle_end, "label": self.cycle_label},
            "periods": [p.to_dict() for p in self.periods],
            "import_kwh": self.import_kwh,
            "export_kwh": self.export_kwh,
            "kvarh_import": self.kvarh_import,
            "kvarh_export": self.kvarh_export,
            "power_factor": self.power_factor,
            "max_demand_15": None if self.max_demand_15 is None else self.max_demand_15.to_dict(),
            "max_demand_30": None if self.max_demand_30 is None else self.max_demand_30.to_dict(),
            "intervals": {
                "expected": self.intervals_expected,
                "actual": self.intervals_actual,
                "estimated": self.intervals_estimated,
                "missing": self.intervals_missing,
            },
            "register_delta_kwh": self.register_delta_kwh,
            "register_check": self.register_check,
            "flags": dict(self.flags),
            "dst_days": dict(self.dst_days),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Determinants:
        iv = d["intervals"]
        return cls(
            meter=str(d["meter"]),
            tariff=str(d["tariff"]),
            cycle_start=int(d["cycle"]["start"]),
            cycle_end=int(d["cycle"]["end"]),
            cycle_label=str(d["cycle"]["label"]),
            periods=tuple(
                PeriodEnergy(str(p["period"]), float(p["import_kwh"]), float(p["export_kwh"]))
                for p in d["periods"]
            ),
            import_kwh=float(d["import_kwh"]),
            export_kwh=float(d["export_kwh"]),
            kvarh_import=float(d["kvarh_import"]),
            kvarh_export=float(d["kvarh_export"]),
            power_factor=None if d["power_factor"] is None else float(d["power_factor"]),
            max_demand_15=Demand.from_dict(d["max_demand_15"]),
            max_demand_30=Demand.from_dict(d["max_demand_30"]),
            intervals_expected=int(iv["expected"]),
            intervals_actual=int(iv["actual"]),
            intervals_estimated=int(iv["estimated"]),
            intervals_missing=int(iv["missing"]),
            register_delta_kwh=(
                None if d["register_delta_kwh"] is None else float(d["register_delta_kwh"])
            ),
            register_check=str(d["register_check"]),
            flags=tuple(sorted((str(k), int(v)) for k, v in d["flags"].items())),
            dst_days=tuple(sorted((str(k), int(v)) for k, v in d["dst_days"].items())),
        )

    @classmethod
    def from_json(cls, text: str) -> Determinants:
        return cls.from_dict(json.loads(text))


@lru_cache(maxsize=32)
def cycle_periods(tariff: Tariff, start: int, end: int) -> tuple[str, ...]:
    """TOU period of every interval of ``[start, end)`` (cached: shared by all meters)."""
    return tuple(tariff.periods(start, end))


@lru_cache(maxsize=32)
def dst_days(tariff: Tariff, start: int, end: int) -> tuple[tuple[str, int], ...]:
    """Local days of the cycle whose length is not 96 intervals: ((ISO date, intervals), ...)."""
    counts: dict[str, int] = {}
    zone = tariff.zone
    for t in range(start, end, INTERVAL_S):
        day = datetime.fromtimestamp(t, tz=zone).date().isoformat()
        counts[day] = counts.get(day, 0) + 1
    out = []
    for day in counts:
        d = date.fromisoformat(day)
        length = tariff.local_midnight(d + timedelta(days=1)) - tariff.local_midnight(d)
        if length != 86400:
            out.append((day, length // INTERVAL_S))
    return tuple(out)


def _demand(
    energy: Sequence[float | None], start: int, block: int, tariff: Tariff
) -> Demand | None:
    """Max demand over fixed clock-aligned blocks of ``block`` intervals (earliest on ties)."""
    best: tuple[float, int] | None = None
    n = len(energy)
    i = 0
    while i < n:
        t = start + i * INTERVAL_S
        if t % (block * INTERVAL_S):
            i += 1
            continue
        if i + block > n:
            break
        chunk = energy[i : i + block]
        if all(e is not None for e in chunk):
            wh = math.fsum(e for e in chunk if e is not None)
            if best is None or wh > best[0]:
                best = (wh, t)
        i += block
    if best is None:
        return None
    kw = best[0] * 3600.0 / (block * INTERVAL_S) / 1000.0
    return Demand(kw, best[1], tariff.local_iso(best[1]))


def _by_period(
    energy: Sequence[float | None], periods: Sequence[str], names: Sequence[str]
) -> dict[str, float]:
    acc: dict[str, list[float]] = {p: [] for p in names}
    for e, p in zip(energy, periods, strict=True):
        if e is not None:
            acc.setdefault(p, []).append(e)
    return {p: math.fsum(v) for p, v in acc.items()}


def compute_determinants(
    meter: str,
    channels: Mapping[str, Iterable[Capture]],
    cycle: BillingCycle,
    tariff: Tariff,
    config: VeeConfig | None = None,
) -> Determinants:
    """Determinants of ``meter`` for ``cycle`` from its cumulative captures per channel
    (primary Wh/varh, see :class:`~cloud.billing.vee.Capture`); captures may reach back
    ``config.history_s`` before the cycle for like-day estimation."""
    cfg = config or VeeConfig()
    zone = tariff.zone
    vees: dict[str, ChannelVee] = {}
    for ch in CHANNELS:
        caps = list(channels.get(ch, ()))
        if not caps and ch != CH_IMPORT:
            # A channel the meter does not record (no export, no reactive): zero, not gaps.
            n = cycle.intervals
            vees[ch] = ChannelVee(cycle.start, (None,) * n, (MISSING,) * n, ("",) * n)
            continue
        vees[ch] = vee_channel(
            caps,
            cycle.start,
            cycle.end,
            zone=zone,
            config=cfg,
            consumption_rules=ch == CH_IMPORT,
        )
    return determinants_from_vee(meter, vees, cycle, tariff, cfg)


def determinants_from_vee(
    meter: str,
    vees: Mapping[str, ChannelVee],
    cycle: BillingCycle,
    tariff: Tariff,
    config: VeeConfig,
) -> Determinants:
    """Aggregate VEE'd channels into determinants (see the module doc for conventions)."""
    periods = cycle_periods(tariff, cycle.start, cycle.end)
    names = tariff.period_names
    imp, exp = vees[CH_IMPORT], vees[CH_EXPORT]
    imp_p = _by_period(imp.energy, periods, names)
    exp_p = _by_period(exp.energy, periods, names)
    rows = tuple(
        PeriodEnergy(p, imp_p.get(p, 0.0) / 1000.0, exp_p.get(p, 0.0) / 1000.0)
        for p in sorted(set(imp_p) | set(exp_p))
    )
    kwh_i = imp.total() / 1000.0
    kwh_e = exp.total() / 1000.0
    kvarh_i = vees[CH_Q_IMPORT].total() / 1000.0
    kvarh_e = vees[CH_Q_EXPORT].total() / 1000.0
    pf = None if kwh_i == 0 and kvarh_i == 0 else kwh_i / math.hypot(kwh_i, kvarh_i)
    flags: dict[str, int] = {}
    checks = []
    for ch in CHANNELS:
        for reasons in vees[ch].flags.values():
            for r in reasons:
                flags[r] = flags.get(r, 0) + 1
        checks.append(vees[ch].register_ok(config))
    if any(c is False for c in checks):
        flags["register_mismatch"] = sum(1 for c in checks if c is False)
        check = "mismatch"
    elif imp.register_delta is None:
        check = "unknown"
    else:
        check = "ok"
    return Determinants(
        meter=meter,
        tariff=tariff.name,
        cycle_start=cycle.start,
        cycle_end=cycle.end,
        cycle_label=cycle.label,
        periods=rows,
        import_kwh=kwh_i,
        export_kwh=kwh_e,
        kvarh_import=kvarh_i,
        kvarh_export=kvarh_e,
        power_factor=pf,
        max_demand_15=_demand(imp.energy, cycle.start, 1, tariff),
        max_demand_30=_demand(imp.energy, cycle.start, 2, tariff),
        intervals_expected=cycle.intervals,
        intervals_actual=imp.quality.count(ACTUAL),
        intervals_estimated=imp.quality.count(ESTIMATED),
        intervals_missing=imp.quality.count(MISSING),
        register_delta_kwh=None if imp.register_delta is None else imp.register_delta / 1000.0,
        register_check=check,
        flags=tuple(sorted(flags.items())),
        dst_days=dst_days(tariff, cycle.start, cycle.end),
    )
