"""Uplink size benchmark: compact batches against JSON-per-read, measured in the same run.

``python -m bench.uplink [--meters 500] [--days 1] [--seed 1]`` prints one JSON object.

Load: ``--meters`` meters x 96 intervals/day x 4 cumulative registers (+A 1.0.1.8.0.255,
-A 1.0.2.8.0.255, +R 1.0.3.8.0.255, -R 1.0.4.8.0.255 in Wh/varh, scaler 0), captured every
900 s as an IDIS load profile stores them, which is what the runtime spools. Consumption follows
the BDEW standard load profiles from demandlib (H0 households, G0-G6 commercial, L0-L2 farms)
when it is installed, otherwise a built-in household/commercial generator; each meter gets its own
scale, multiplicative noise and appliance spikes (a standard profile is an average over many
homes; one home is far noisier), a quarter of households get rooftop PV with passing clouds
(export on -A), reactive energy follows a per-meter power factor, and a few meters have a power
outage (missing rows, then a row with the power-down status bit) so that irregular timestamps are
exercised.

Figures: bytes/value, messages and IoT Core 5 KB units for the batches (format version 2, as
the edge sends them) and for one JSON message per reading (the baseline), their ratios, format
version 1 on the same readings (``format_versions``), zstd levels compared, encode and decode
time, messages/month extrapolated to 1 M meters (500 meters per DCU), and the order-0 entropy of
the value differences per channel (``entropy_bound``: the floor of a memoryless coder of one
channel's deltas, first values and directory not included; version 2 goes below it by adapting
its code every few readings and predicting reactive from active energy).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import math
import random
import time
from collections.abc import Sequence

from edge_core.batch import (
    DEFAULT_LEVEL,
    decode_batch,
    encode_batch,
    encode_split,
    iot_core_units,
)
from edge_core.model import DataClass, Reading, Topics

__all__ = ["CHANNELS", "generate_readings", "json_per_read", "main", "run"]

CHANNELS = (
    ("1.0.1.8.0.255", 30),  # +A active import, Wh
    ("1.0.2.8.0.255", 30),  # -A active export, Wh
    ("1.0.3.8.0.255", 32),  # +R reactive import, varh
    ("1.0.4.8.0.255", 32),  # -R reactive export, varh
)
PERIOD_S = 900
PER_DAY = 86400 // PERIOD_S
STATUS_POWER_DOWN = 0x80
DEFAULT_START = dt.datetime(2024, 6, 3, tzinfo=dt.timezone.utc)  # a Monday in June (PV active)


def _bdew_shapes(start: dt.datetime, days: int) -> dict[str, list[float]] | None:
    """Per-profile kWh per 15 min for an annual 1 kWh, or None without demandlib."""
    try:
        from demandlib import bdew
    except ImportError:
        return None
    slp = bdew.ElecSlp(start.year)
    names = ["h0", "g0", "g1", "g2", "g3", "g4", "g5", "g6", "l0", "l1", "l2"]
    frame = slp.get_scaled_profiles(dict.fromkeys(names, 1.0))
    first = start.replace(tzinfo=None)
    rows = frame.loc[first : first + dt.timedelta(days=days) - dt.timedelta(minutes=15)]
    return {n: [float(x) for x in rows[n].to_numpy()] for n in names}


def _fallback_shape(kind: str, n: int, start: dt.datetime) -> list[float]:
    """A plain household or commercial daily shape (relative power), for when demandlib is
    absent."""
    out = []
    for i in range(n):
        t = start + dt.timedelta(seconds=i * PERIOD_S)
        h = t.hour + t.minute / 60
        weekend = t.weekday() >= 5
        if kind == "h0":
            p = (
                0.35
                + 0.5 * math.exp(-((h - 7.5) ** 2) / 2)
                + 1.0 * math.exp(-((h - 19.5) ** 2) / 4)
            )
            p += 0.3 * math.exp(-((h - 12.5) ** 2) / 3) if weekend else 0.0
        else:
            p = 0.25 + (0.0 if weekend else 1.0) * (1 / (1 + math.exp(-(h - 7.5) * 3))) * (
                1 / (1 + math.exp((h - 18) * 3))
            )
        out.append(p)
    total = sum(out) * 365 / max(1, n / PER_DAY)
    return [p / total for p in out]


def generate_readings(
    meters: int = 500,
    days: int = 1,
    *,
    seed: int = 1,
    start: dt.datetime = DEFAULT_START,
    data_class: DataClass = DataClass.INTERVAL,
) -> list[Reading]:
    """Realistic cumulative-register captures: meters x 96*days x 4 (see module docstring)."""
    rng = random.Random(seed)
    n = PER_DAY * days
    t0 = int(start.timestamp())
    shapes = _bdew_shapes(start, days)
    out: list[Reading] = []
    for m in range(meters):
        meter = f"KFM{1_000_000_000_000 + 7919 * m:013d}"[:16]
        roll = rng.random()
        # sigma: interval-to-interval noise around the standard profile; one home switches a
        # few appliances (noisy), a shop or farm aggregates many loads (smoother)
        if roll < 0.75:
            kind, annual_kwh, sigma = "h0", rng.uniform(1500, 6500), 0.35
        elif roll < 0.95:
            kind = rng.choice(["g0", "g1", "g2", "g3", "g4", "g5", "g6"])
            annual_kwh, sigma = rng.uniform(8000, 90000), 0.12
        else:
            kind, annual_kwh, sigma = rng.choice(["l0", "l1", "l2"]), rng.uniform(5000, 30000), 0.2
        shape = shapes[kind] if shapes else _fallback_shape(kind[:1] + "0", n, start)
        pv_kwp = rng.uniform(3, 10) if kind == "h0" and rng.random() < 0.25 else 0.0
        tan_phi = rng.uniform(0.05, 0.45)
        cap_share = rng.uniform(0.0, 0.3) if rng.random() < 0.3 else 0.0
        regs = [rng.randint(100_000, 40_000_000) for _ in CHANNELS]
        cloud = 1.0
        outage = rng.randrange(n) if rng.random() < 0.02 else -1
        outage_len = rng.randint(1, 8)
        for i in range(n):
            ts = t0 + (i + 1) * PERIOD_S  # end of the interval, as profiles capture
            load_wh = shape[i] * annual_kwh * 1000 * rng.lognormvariate(0, sigma)
            if rng.random() < 0.04:
                load_wh += rng.uniform(200, 900)  # kettle, oven, washing machine
            pv_wh = 0.0
            if pv_kwp:
                h = ((ts - PERIOD_S / 2) % 86400) / 3600
                sun = max(0.0, math.sin(math.pi * (h - 5.0) / 16.0)) ** 1.5
                cloud = min(1.0, max(0.15, cloud + rng.gauss(0, 0.12)))
                pv_wh = pv_kwp * 1000 * 0.25 * 0.8 * sun * cloud
            imp = max(0.0, load_wh - pv_wh)
            exp = max(0.0, pv_wh - load_wh)
            q = load_wh * tan_phi * rng.uniform(0.8, 1.2)
            qi, qe = q * (1 - cap_share), q * cap_share
            for c, inc in enumerate((imp, exp, qi, qe)):
                regs[c] += round(inc)
            if outage <= i < outage + outage_len:
                continue  # no rows captured while the meter had no power
            status = STATUS_POWER_DOWN if i == outage + outage_len and outage >= 0 else 0
            for c, (obis, unit) in enumerate(CHANNELS):
                out.append(Reading(meter, obis, ts, regs[c], 0, unit, status, data_class))
    return out


def json_per_read(r: Reading) -> bytes:
    """The baseline: one compact JSON object per reading (ISO time, as most gateways send)."""
    return json.dumps(
        {
            "meter": r.meter,
            "obis": r.obis,
            "time": dt.datetime.fromtimestamp(r.capture_time, dt.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "value": r.value,
            "scaler": r.scaler,
            "unit": r.unit,
            "status": r.status,
        },
        separators=(",", ":"),
    ).encode()


def _h0_bits(xs: list[int]) -> float:
    """Order-0 (empirical) entropy of ``xs`` in bits per symbol."""
    if not xs:
        return 0.0
    counts: dict[int, int] = {}
    for x in xs:
        counts[x] = counts.get(x, 0) + 1
    n = len(xs)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def entropy_bound(readings: Sequence[Reading]) -> dict[str, object]:
    """Order-0 entropy of the value differences per channel (pooled over meters), first and
    second order: what a memoryless coder of each channel's deltas cannot beat (the first value
    of each series and the directory come on top)."""
    series: dict[tuple[str, str], list[int]] = {}
    for r in readings:
        series.setdefault((r.meter, r.obis), []).append(r.value)
    per: dict[str, dict[str, float]] = {}
    d1_bits = best_bits = 0.0
    n = 0
    for obis, _unit in CHANNELS:
        d1: list[int] = []
        d2: list[int] = []
        for (_m, o), vs in series.items():
            if o != obis:
                continue
            d = [b - a for a, b in itertools.pairwise(vs)]
            d1 += d
            d2 += [b - a for a, b in itertools.pairwise(d)]
        h1, h2 = _h0_bits(d1), _h0_bits(d2)
        per[obis] = {"h0_delta_bits": round(h1, 3), "h0_second_delta_bits": round(h2, 3)}
        d1_bits += h1 * len(d1)
        best_bits += min(h1, h2) * len(d1)
        n += len(d1)
    return {
        "per_channel": per,
        "bytes_per_value_h0_delta": round(d1_bits / max(1, n) / 8, 4),
        "bytes_per_value_h0_best_order_per_channel": round(best_bits / max(1, n) / 8, 4),
    }


def run(meters: int, days: int, seed: int, levels: Sequence[int]) -> dict[str, object]:
    t_gen = time.perf_counter()
    readings = generate_readings(meters, days, seed=seed)
    gen_s = time.perf_counter() - t_gen
    thing = "dcu-bench-0001"
    topic = Topics(thing).interval
    n = len(readings)

    t = time.perf_counter()
    pairs = encode_split(readings, thing=thing, data_class=DataClass.INTERVAL, created=0)
    encode_s = time.perf_counter() - t
    batch_bytes = sum(len(p) for _, p in pairs)
    batch_units = sum(iot_core_units(topic, p) for _, p in pairs)

    t = time.perf_counter()
    json_bytes = json_units = 0
    for r in readings:
        payload = json_per_read(r)
        json_bytes += len(payload)
        json_units += iot_core_units(topic, payload)
    json_s = time.perf_counter() - t

    level_figures = {}
    for level in levels:
        t = time.perf_counter()
        lp = encode_split(
            readings, thing=thing, data_class=DataClass.INTERVAL, created=0, level=level
        )
        level_figures[str(level)] = {
            "bytes_per_value": round(sum(len(p) for _, p in lp) / n, 4),
            "encode_s": round(time.perf_counter() - t, 3),
        }
    raw = encode_batch(pairs[0][0], level=0)
    t = time.perf_counter()
    for _b, p in pairs:
        decode_batch(p)
    decode_s = time.perf_counter() - t
    version_figures = {}
    for version in (1, 2):
        t = time.perf_counter()
        vp = encode_split(
            readings, thing=thing, data_class=DataClass.INTERVAL, created=0, version=version
        )
        enc = time.perf_counter() - t
        t = time.perf_counter()
        for _b, p in vp:
            decode_batch(p)
        version_figures[str(version)] = {
            "bytes_per_value": round(sum(len(p) for _, p in vp) / n, 4),
            "messages": len(vp),
            "encode_s": round(enc, 3),
            "decode_s": round(time.perf_counter() - t, 3),
        }

    meters_per_dcu = meters
    dcus_1m = 1_000_000 / meters_per_dcu
    msgs_per_dcu_day = len(pairs) / days
    return {
        "bench": "uplink",
        "meters": meters,
        "days": days,
        "values": n,
        "profiles": "bdew-demandlib" if _bdew_shapes(DEFAULT_START, 1) is not None else "builtin",
        "generate_s": round(gen_s, 3),
        "batch": {
            "format_versions_sent": sorted({p[4] for _, p in pairs}),
            "level": DEFAULT_LEVEL,
            "bytes": batch_bytes,
            "bytes_per_value": round(batch_bytes / n, 4),
            "messages": len(pairs),
            "iot_units": batch_units,
            "encode_s": round(encode_s, 3),
            "decode_s": round(decode_s, 3),
            "uncompressed_first_batch_bytes_per_value": round(
                len(raw) / len(pairs[0][0].readings), 4
            ),
        },
        "json_per_read": {
            "bytes": json_bytes,
            "bytes_per_value": round(json_bytes / n, 2),
            "messages": n,
            "iot_units": json_units,
            "encode_s": round(json_s, 3),
        },
        "ratios": {
            "bytes_json_over_batch": round(json_bytes / batch_bytes, 1),
            "messages_json_over_batch": round(n / len(pairs), 1),
            "units_json_over_batch": round(json_units / batch_units, 1),
        },
        "targets": {
            "bytes_per_value_le_0_6": batch_bytes / n <= 0.6,
            "json_ratio_ge_150": json_bytes / batch_bytes >= 150,
        },
        "per_month_1m_meters": {
            "dcus": round(dcus_1m),
            "batch_messages": round(msgs_per_dcu_day * dcus_1m * 30),
            "json_messages": round(1_000_000 * PER_DAY * len(CHANNELS) * 30),
            "batch_iot_units": round(batch_units / days * dcus_1m * 30),
            "json_iot_units": round(json_units / days * dcus_1m * 30),
            "target_messages_le_6m": msgs_per_dcu_day * dcus_1m * 30 <= 6_000_000,
        },
        "zstd_levels": level_figures,
        "format_versions": version_figures,
        "version_2_over_version_1_bytes": round(
            version_figures["2"]["bytes_per_value"] / version_figures["1"]["bytes_per_value"], 3
        ),
        "entropy_bound": entropy_bound(readings),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.uplink", description=__doc__)
    parser.add_argument("--meters", type=int, default=500)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--levels", default="1,3,6,9,19", help="zstd levels to compare (comma separated)"
    )
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",") if x]
    print(json.dumps(run(args.meters, args.days, args.seed, levels), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
