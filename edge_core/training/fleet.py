"""Simulated meter fleets with injected, labelled anomalies (numpy only).

No labelled meter-anomaly or theft data set exists in any package, so the model is trained on a
simulation. A fleet is a dense cube ``(meters, days, 96)`` of interval energies in Wh (import and
export), built from:

* households (morning and evening peaks, later and flatter weekends) and small businesses
  (08:00-18:00 plateau on weekdays, low weekends), each with its own level and shape jitter;
* seasonality (winter higher), a day-level random factor, per-interval multiplicative noise and
  random appliance bursts;
* rooftop PV on some households (bell curve around noon, seasonal, cloudiness per day): net load
  below zero becomes export.

Anomaly episodes start after :data:`WARMUP_DAYS` (so the meter has history) and last 1-7 days;
every day of an episode carries the label of its kind (:data:`KINDS`; 0 = normal).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["KINDS", "WARMUP_DAYS", "Fleet", "simulate_fleet"]

#: Label codes: index in this tuple (0 is normal).
KINDS = (
    "normal",
    "theft_scale",  # uniform scale-down to 50 %
    "night_bypass",  # import bypassed between 22:00 and 06:00 (10 % left)
    "zeroing",  # consumption recorded as zero
    "ct_ratio_half",  # CT/PT ratio error x0.5
    "ct_ratio_double",  # CT/PT ratio error x2
    "ratio_step",  # wrong ratio from some interval of the day on (x0.25 or x3)
    "reverse_flow",  # import recorded on the export register (non-PV meter)
    "frozen_register",  # register stops advancing part-way through the day
    "spikes",  # 1-3 intervals far above normal
)
WARMUP_DAYS = 28
_H = np.arange(96, dtype=np.float64) / 4.0  # hour of each interval start


def _bump(center: float, width: float) -> npt.NDArray[np.float64]:
    return np.exp(-0.5 * ((_H - center) / width) ** 2)


@dataclass(frozen=True, slots=True, eq=False)
class Fleet:
    """A simulated fleet. ``energy``/``export`` (M, D, 96) float32 Wh; ``labels`` (M, D) int8
    (index in :data:`KINDS`); ``has_pv``/``business`` (M,) bool; ``start`` the first local date."""

    energy: npt.NDArray[np.float32]
    export: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int8]
    has_pv: npt.NDArray[np.bool_]
    business: npt.NDArray[np.bool_]
    start: dt.date
    seed: int

    @property
    def n_meters(self) -> int:
        return int(self.energy.shape[0])

    @property
    def n_days(self) -> int:
        return int(self.energy.shape[1])

    def meter_id(self, m: int) -> str:
        return f"SIM{self.seed:04d}-{m:05d}"

    def describe(self) -> dict[str, object]:
        counts = {k: int((self.labels == i).sum()) for i, k in enumerate(KINDS)}
        return {
            "generator": "edge_core.training.fleet.simulate_fleet",
            "meters": self.n_meters,
            "days": self.n_days,
            "start": self.start.isoformat(),
            "seed": self.seed,
            "households": int((~self.business).sum()),
            "businesses": int(self.business.sum()),
            "pv_meters": int(self.has_pv.sum()),
            "windows_per_kind": counts,
        }


def _profiles(rng: np.random.Generator, m: int, business: npt.NDArray[np.bool_]) -> tuple[
    npt.NDArray[np.float64], npt.NDArray[np.float64]
]:
    """Per-meter weekday and weekend shapes (M, 96), each summing to 1."""
    wk = np.empty((m, 96))
    we = np.empty((m, 96))
    for i in range(m):
        j = rng.normal(0.0, 0.5, 4)
        if business[i]:
            open_h, close_h = 8.0 + j[0] * 0.5, 18.0 + j[1] * 0.5
            plateau = 1.0 / (1 + np.exp(-(_H - open_h) * 3)) / (1 + np.exp((_H - close_h) * 3))
            wk[i] = 0.15 + plateau * (1.0 + 0.2 * _bump(12.5, 1.0))
            we[i] = 0.15 + 0.2 * plateau * rng.uniform(0, 1)
        else:
            base = 0.25 + 0.05 * j[2]
            wk[i] = (base + 0.8 * _bump(7.2 + j[0] * 0.4, 0.8) + 1.3 * _bump(19.0 + j[1] * 0.5, 1.6)
                     + 0.3 * _bump(13.0, 2.0))
            we[i] = (base + 0.6 * _bump(9.5 + j[0] * 0.4, 1.2) + 0.7 * _bump(13.0, 1.8)
                     + 1.2 * _bump(19.0 + j[1] * 0.5, 1.8))
    wk /= wk.sum(axis=1, keepdims=True)
    we /= we.sum(axis=1, keepdims=True)
    return wk, we


def simulate_fleet(
    n_meters: int,
    n_days: int,
    seed: int,
    *,
    anomaly_rate: float = 0.35,
    pv_rate: float = 0.2,
    business_rate: float = 0.2,
    start: dt.date | None = None,
) -> Fleet:
    """Simulate ``n_meters`` over ``n_days``; ``anomaly_rate`` of meters get one episode.

    Deterministic for a given seed. ``n_days`` must exceed :data:`WARMUP_DAYS` + 7 for episodes to
    be injected (shorter fleets are all normal).
    """
    rng = np.random.default_rng(seed)
    start = start or dt.date(2025, 1, 6)
    m, d = n_meters, n_days
    business = rng.random(m) < business_rate
    has_pv = (~business) & (rng.random(m) < pv_rate)
    wk, we = _profiles(rng, m, business)
    dates = [start + dt.timedelta(days=k) for k in range(d)]
    weekend = np.array([x.weekday() >= 5 for x in dates])
    doy = np.array([x.timetuple().tm_yday for x in dates], dtype=np.float64)
    season = 1.0 + 0.25 * np.cos(2 * np.pi * (doy - 15) / 365.25)  # winter peak
    level = np.where(business, rng.lognormal(np.log(40_000), 0.5, m),
                     rng.lognormal(np.log(9_000), 0.35, m))  # Wh per day
    day_factor = rng.lognormal(0.0, 0.12, (m, d)) * season[None, :]
    shape = np.where(weekend[None, :, None], we[:, None, :], wk[:, None, :])
    cons = level[:, None, None] * day_factor[:, :, None] * shape
    cons *= rng.lognormal(0.0, 0.25, (m, d, 96))
    # appliance bursts: a few intervals per day at 2-4x
    bursts = rng.random((m, d, 96)) < 0.03
    cons *= np.where(bursts, rng.uniform(2.0, 4.0, (m, d, 96)), 1.0)
    pv_gen = np.zeros_like(cons)
    if has_pv.any():
        cap = rng.uniform(0.6, 1.6, m) * level / 4.0  # Wh per day scale at peak sun
        sun_season = 1.0 + 0.55 * np.cos(2 * np.pi * (doy - 172) / 365.25)  # June peak
        sun = np.clip(np.cos((_H - 12.5) / 7.0 * np.pi), 0.0, None) ** 1.5
        cloud = rng.uniform(0.2, 1.0, (m, d))
        pv_gen = (cap[:, None, None] * (sun_season / sun_season.max())[None, :, None]
                  * cloud[:, :, None] * sun[None, None, :] / sun.sum() * 3.0)
        pv_gen[~has_pv] = 0.0
    net = cons - pv_gen
    energy = np.maximum(net, 0.0)
    export = np.maximum(-net, 0.0)
    labels = np.zeros((m, d), dtype=np.int8)

    if d > WARMUP_DAYS + 7:
        for i in np.nonzero(rng.random(m) < anomaly_rate)[0]:
            kind = int(rng.integers(1, len(KINDS)))
            if kind == KINDS.index("reverse_flow") and has_pv[i]:
                kind = KINDS.index("theft_scale")
            length = 1 if kind in (KINDS.index("spikes"), KINDS.index("ratio_step")) else int(
                rng.integers(2, 8))
            s = int(rng.integers(WARMUP_DAYS, d - length + 1))
            sl = slice(s, s + length)
            labels[i, sl] = kind
            _inject(rng, kind, energy[i, sl], export[i, sl])
    return Fleet(
        energy=energy.astype(np.float32),
        export=export.astype(np.float32),
        labels=labels,
        has_pv=has_pv,
        business=business,
        start=start,
        seed=seed,
    )


def _inject(
    rng: np.random.Generator,
    kind: int,
    e: npt.NDArray[np.float64],
    x: npt.NDArray[np.float64],
) -> None:
    """Apply anomaly ``kind`` in place to the (days, 96) import/export slices."""
    name = KINDS[kind]
    if name in {"theft_scale", "ct_ratio_half"}:
        e *= 0.5
        x *= 0.5
    elif name == "ct_ratio_double":
        e *= 2.0
        x *= 2.0
    elif name == "night_bypass":
        night = (_H < 6.0) | (_H >= 22.0)
        e[:, night] *= 0.1
    elif name == "zeroing":
        e[:] = 0.0
    elif name == "ratio_step":
        k = int(rng.integers(24, 72))
        e[:, k:] *= 0.25 if rng.random() < 0.5 else 3.0
    elif name == "reverse_flow":
        x[:] = e
        e[:] = 0.0
    elif name == "frozen_register":
        k = int(rng.integers(0, 48))
        e[:, k:] = 0.0
    elif name == "spikes":
        typical = float(np.median(e)) + 1.0
        for _ in range(int(rng.integers(1, 4))):
            e[0, int(rng.integers(0, 96))] += typical * rng.uniform(25.0, 60.0)
