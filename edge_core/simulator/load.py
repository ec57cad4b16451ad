"""Deterministic household consumption (and PV export) per 15-minute interval.

Everything derives from (seed, meter index, interval number) through a stateless hash, so a
meter gives the same values whichever interval is asked first and whatever process asks.
Energies are integer Wh / varh per interval; registers are their running sums, so they never
decrease.

Shape: a base load, a morning peak (07:30 on weekdays, 09:30 at weekends), a broad evening
peak (19:30), more daytime use at weekends, winter higher than summer, +-25 % noise per
interval. Every third meter has a PV system (3-6 kWp) producing between 06:00 and 20:00 with
a seasonal factor and a daily cloudiness; its surplus is exported (-A grows). About 2 % of
days contain a short outage (1-4 intervals of zero energy, flagged power-down in the status).
Times are UTC (the simulated meters run on UTC, deviation 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["INTERVAL_S", "IntervalEnergy", "MeterLoad", "unit_hash"]

INTERVAL_S = 900
INTERVALS_PER_DAY = 86400 // INTERVAL_S
_MASK = (1 << 64) - 1


def unit_hash(*keys: int) -> float:
    """A float in [0, 1) from integers (splitmix64 finaliser over the folded keys)."""
    x = 0x9E3779B97F4A7C15
    for k in keys:
        x = (x ^ (k & _MASK)) * 0xBF58476D1CE4E5B9 & _MASK
        x ^= x >> 31
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK
    x ^= x >> 31
    return (x >> 11) / float(1 << 53)


@dataclass(frozen=True, slots=True)
class IntervalEnergy:
    """Energy of one 15-minute interval: Wh (+A, -A), varh (+R, -R), the status byte and
    the mean active power in W (for instantaneous values)."""

    import_wh: int
    export_wh: int
    q_import_varh: int
    q_export_varh: int
    status: int
    power_w: float


def _bump(h: float, centre: float, width: float) -> float:
    return math.exp(-0.5 * ((h - centre) / width) ** 2)


class MeterLoad:
    """The consumption model of one meter. ``epoch_day`` counts days since 1970-01-01 (UTC)."""

    def __init__(self, seed: int, index: int) -> None:
        self.seed = seed
        self.index = index
        r = [unit_hash(seed, index, 0xA11CE, i) for i in range(8)]
        self.base_w = 120 + 250 * r[0]
        self.morning_w = 500 + 1200 * r[1]
        self.evening_w = 800 + 1800 * r[2]
        self.tan_phi = 0.15 + 0.3 * r[3]
        self.pv_kwp = 3.0 + 3.0 * r[4] if index % 3 == 1 else 0.0
        self.start_wh = int(1_000_000 + 9_000_000 * r[5])

    @property
    def has_pv(self) -> bool:
        return self.pv_kwp > 0

    def _outage(self, day: int) -> tuple[int, int]:
        """(first interval, count) of the day's outage, or (0, 0)."""
        if unit_hash(self.seed, self.index, 0x0FF, day) >= 0.02:
            return 0, 0
        first = int(unit_hash(self.seed, self.index, 0x0FF1, day) * (INTERVALS_PER_DAY - 4))
        return first, 1 + int(unit_hash(self.seed, self.index, 0x0FF2, day) * 4)

    def interval(self, n: int) -> IntervalEnergy:
        """Energy of interval ``n`` (counted from 1970-01-01T00:00Z, 900 s each)."""
        day, slot = divmod(n, INTERVALS_PER_DAY)
        first, count = self._outage(day)
        if count and first <= slot < first + count:
            return IntervalEnergy(0, 0, 0, 0, 0x80, 0.0)
        weekday = (day + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
        weekend = weekday >= 5
        h = (slot + 0.5) / 4.0
        doy = (day % 365.25) / 365.25
        winter = 1.0 + 0.25 * math.cos(2 * math.pi * doy)  # peaks around 1 January
        load = self.base_w
        load += self.morning_w * _bump(h, 9.5 if weekend else 7.5, 1.0)
        load += self.evening_w * _bump(h, 19.5, 1.6)
        load += (600.0 if weekend else 150.0) * _bump(h, 13.0, 2.5)
        load *= winter * (0.75 + 0.5 * unit_hash(self.seed, self.index, n))
        pv = 0.0
        if self.pv_kwp and 6.0 < h < 20.0:
            season = 0.35 + 0.65 * (0.5 - 0.5 * math.cos(2 * math.pi * doy))  # max in July
            cloud = 0.3 + 0.7 * unit_hash(self.seed, self.index, 0xC10D, day)
            pv = self.pv_kwp * 1000.0 * math.sin(math.pi * (h - 6.0) / 14.0) * season * cloud
        net = load - pv
        imp = max(net, 0.0) * 0.25
        exp = max(-net, 0.0) * 0.25
        return IntervalEnergy(
            import_wh=round(imp),
            export_wh=round(exp),
            q_import_varh=round(load * 0.25 * self.tan_phi),
            q_export_varh=round(load * 0.25 * 0.02),
            status=0,
            power_w=net,
        )
