"""Billing determinants as analytical SQL over the Parquet lake (DuckDB here, Athena in AWS).

Lake contract
-------------
The table ``intervals`` is the lake that ingest writes (:func:`cloud.storage.local.rows_to_table`,
``lake/intervals/year=YYYY/month=MM/day=DD/*.parquet``, hive partitions by UTC capture date);
:data:`LAKE_SCHEMA` restates its columns. Rows are unique per (meter, channel, capture_time)
(ingest dedupes) and ``value`` is primary (scaler and CT x PT by capture time applied).

Theory of operation
-------------------
Window functions over a month of a large fleet are the expensive part of this query (DuckDB on
2 cores sorts ~4 M rows/s), so energies are summed **without** per-row differences:

* *Telescoping*: the energy of a TOU period is the sum over its runs of
  ``register(run end) - register(run start)``. A calendar (computed in Python from the tariff,
  DST-aware, one row per capture time at which the period changes plus the cycle ends, each
  with a weight +1 or -1) is joined to the lake; ``SUM(value * weight)`` per meter, channel and
  period is the period's energy. Only the few boundary captures of each day survive the join.
* One window (``LAG``) over the import channel only gives the 15- and 30-minute demands and the
  statistics of the VEE screen (min/max/P99 interval, zero intervals).
* Telescoping is exact only for complete, clean data with one multiplier. The same query
  returns a **screen** per meter (capture counts, distinct multipliers, OR of status bits, the
  import statistics). A meter that could fail any VEE rule (a gap, a status bit other than DST,
  a ratio change, a negative, a possible spike or zero run) is *routed* to the pure-Python VEE
  path (:func:`cloud.billing.determinants.compute_determinants`) with its rows fetched by a
  second, selective query. The screen is conservative, so both paths give the same
  determinants; the fast path only serves meters for which Python VEE would change nothing.

Portability: standard SQL except where noted. ``arg_max(x, {'d': d, 'n': -t})`` is Athena
``max_by(x, ROW(d, -t))``; ``quantile_cont(d, q)`` is Athena ``approx_percentile(d, q)``
(approximate there: the screen then needs a margin); ``bit_or`` is Athena
``bitwise_or_agg``. Athena's hive partition columns are usually strings: cast them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cloud.billing.determinants import (
    Demand,
    Determinants,
    PeriodEnergy,
    compute_determinants,
    cycle_periods,
    dst_days,
)
from cloud.billing.tou import INTERVAL_S, BillingCycle, Tariff
from cloud.billing.vee import (
    CH_EXPORT,
    CH_IMPORT,
    CH_Q_EXPORT,
    CH_Q_IMPORT,
    CHANNELS,
    STATUS_DST,
    Capture,
    VeeConfig,
)
from cloud.storage.base import StorageError

__all__ = [
    "LAKE_SCHEMA_COLUMNS",
    "LakeSource",
    "MeterAggregate",
    "aggregate",
    "aggregate_sql",
    "calendar_weights",
    "determinants_for",
    "fetch_captures",
    "iter_pages",
    "lake_schema",
]

log = logging.getLogger(__name__)

LAKE_PREFIX = "lake/intervals"
# The hive partition date as YYYYMMDD (partition values are zero-padded text, hence the casts).
_PART_DAY = "(CAST(year AS INTEGER) * 10000 + CAST(month AS INTEGER) * 100 + CAST(day AS INTEGER))"
# The lake contract (name, Arrow type), the order ingest writes.
LAKE_SCHEMA_COLUMNS = (
    ("meter", "string"),
    ("channel", "string"),
    ("capture_time", "int64"),  # UTC epoch s
    ("value", "float64"),  # primary Wh / varh (cumulative register for energy channels)
    ("unit", "string"),
    ("status", "int32"),  # IDIS profile status byte
    ("raw", "int64"),
    ("scaler", "int32"),
    ("multiplier", "float64"),  # CT x PT applied to value
    ("data_class", "int32"),
    ("batch_id", "string"),
)


def lake_schema() -> Any:
    """The lake's pyarrow schema (the contract above)."""
    import pyarrow as pa

    return pa.schema([(n, getattr(pa, t)()) for n, t in LAKE_SCHEMA_COLUMNS])


def calendar_weights(cycle: BillingCycle, tariff: Tariff) -> list[tuple[int, str, int]]:
    """(capture_time, period, weight) rows whose weighted register sum is each period's energy.

    At every capture where the period of the interval ending there differs from the period of
    the interval starting there: +1 for the ending period, -1 for the starting one; -1 at the
    cycle start and +1 at its end.
    """
    periods = cycle_periods(tariff, cycle.start, cycle.end)
    rows = [(cycle.start, periods[0], -1)]
    for i in range(1, len(periods)):
        if periods[i] != periods[i - 1]:
            t = cycle.start + i * INTERVAL_S
            rows.append((t, periods[i - 1], 1))
            rows.append((t, periods[i], -1))
    rows.append((cycle.end, periods[-1], 1))
    return rows


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _day_key(t: int) -> int:
    d = datetime.fromtimestamp(t, tz=timezone.utc)
    return d.year * 10000 + d.month * 100 + d.day


def aggregate_sql(
    cycle: BillingCycle,
    tariff: Tariff,
    meters: Sequence[str] | None = None,
    spike_quantile: float = 0.99,
) -> str:
    """The aggregate query of one cycle: one row per (meter, channel, period) energy, joined
    with the per-meter screen and demand statistics (see the module doc)."""
    cal = ", ".join(f"({t}, {_lit(p)}, {w})" for t, p, w in calendar_weights(cycle, tariff))
    chans = ", ".join(_lit(c) for c in CHANNELS)
    meter_filter = ""
    if meters is not None:
        meter_filter = "AND meter IN (" + ", ".join(_lit(m) for m in meters) + ")"
    return f"""
WITH cal (capture_time, period, w) AS (VALUES {cal}),
base AS (
    SELECT meter, channel, capture_time, value, status, multiplier
    FROM intervals
    WHERE capture_time BETWEEN {cycle.start} AND {cycle.end}
      AND {_PART_DAY} BETWEEN {_day_key(cycle.start)}
          AND {_day_key(cycle.end)}
      AND channel IN ({chans}) {meter_filter}
),
energy AS (
    SELECT b.meter, b.channel, c.period, SUM(b.value * c.w) AS wh
    FROM base b JOIN cal c ON b.capture_time = c.capture_time
    GROUP BY b.meter, b.channel, c.period
),
screen AS (
    SELECT meter,
           MIN(CASE WHEN channel = {_lit(CH_IMPORT)} THEN n ELSE NULL END) AS n_import,
           MIN(n) AS n_min, COUNT(*) AS n_channels, MAX(nm) AS nm, BIT_OR(st) AS st
    FROM (SELECT meter, channel, COUNT(*) AS n, COUNT(DISTINCT multiplier) AS nm,
                 BIT_OR(status) AS st
          FROM base GROUP BY meter, channel) s
    GROUP BY meter
),
diffs AS (
    SELECT meter, capture_time,
           value - LAG(value) OVER w AS d,
           value - LAG(value, 2) OVER w AS d30
    FROM base WHERE channel = {_lit(CH_IMPORT)}
    WINDOW w AS (PARTITION BY meter ORDER BY capture_time)
),
demand AS (
    SELECT meter,
           MIN(d) AS d_min, MAX(d) AS d_max,
           arg_max(capture_time, {{'d': d, 'n': -capture_time}}) AS t_max,
           MAX(d30) FILTER (WHERE capture_time % 1800 = 0
                            AND capture_time - 1800 >= {cycle.start}) AS d30_max,
           arg_max(capture_time, {{'d': d30, 'n': -capture_time}})
               FILTER (WHERE capture_time % 1800 = 0
                       AND capture_time - 1800 >= {cycle.start}) AS t30_max,
           quantile_cont(d, {float(spike_quantile)!r}) FILTER (WHERE d > 0) AS p_q,
           COUNT(*) FILTER (WHERE d > 0) AS n_pos,
           COUNT(*) FILTER (WHERE d = 0) AS n_zero
    FROM diffs WHERE d IS NOT NULL
    GROUP BY meter
)
SELECT e.meter, e.channel, e.period, e.wh,
       s.n_import, s.n_min, s.n_channels, s.nm, s.st,
       d.d_min, d.d_max, d.t_max, d.d30_max, d.t30_max, d.p_q, d.n_pos, d.n_zero
FROM energy e JOIN screen s ON e.meter = s.meter LEFT JOIN demand d ON e.meter = d.meter
ORDER BY e.meter, e.channel, e.period
"""


@dataclass(frozen=True, slots=True)
class MeterAggregate:
    """The SQL answer for one meter: energies (Wh) per (channel, period) and its screen."""

    meter: str
    wh: Mapping[tuple[str, str], float]
    n_import: int
    n_min: int
    n_channels: int
    multipliers: int
    status_or: int
    d_min: float | None
    d_max: float | None
    t_max: int | None
    d30_max: float | None
    t30_max: int | None
    p_quantile: float | None
    n_pos: int
    n_zero: int

    def clean(self, cycle: BillingCycle, config: VeeConfig) -> bool:
        """True when Python VEE would neither estimate nor flag anything (conservative)."""
        if self.n_channels != len(CHANNELS) or self.n_min != cycle.intervals + 1:
            return False
        if self.multipliers != 1 or self.status_or & ~STATUS_DST:
            return False
        if self.d_min is None or self.d_max is None or self.d_min < 0:
            return False
        limit = float("inf")
        if self.n_pos >= config.spike_min_samples and self.p_quantile is not None:
            limit = config.spike_k * self.p_quantile
        if config.physical_max_wh is not None:
            limit = min(limit, config.physical_max_wh)
        if self.d_max > limit:
            return False
        return self.n_zero < config.zero_run_min


class LakeSource:
    """A DuckDB connection with the view ``intervals`` over the lake under ``root``
    (``<root>/lake/intervals/year=/month=/day=/*.parquet``), or over ``glob``."""

    def __init__(self, root: Path | str | None = None, *, glob: str | None = None) -> None:
        import duckdb

        if glob is None:
            if root is None:
                raise StorageError("a lake root or glob is required")
            glob = (Path(root) / LAKE_PREFIX / "**" / "*.parquet").as_posix()
        self.glob = glob
        self._duckdb = duckdb
        self.con = duckdb.connect()
        try:
            self.con.execute("SET preserve_insertion_order = false")
            self.con.execute(
                "CREATE VIEW intervals AS SELECT * FROM "
                f"read_parquet({_lit(glob)}, hive_partitioning = true)"
            )
        except duckdb.Error as exc:
            self.con.close()
            raise StorageError(f"cannot open the lake {glob}: {exc}") from exc

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        try:
            return [tuple(r) for r in self.con.execute(sql).fetchall()]
        except self._duckdb.Error as exc:
            raise StorageError(f"lake query failed: {exc}") from exc

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> LakeSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def aggregate(
    source: LakeSource,
    cycle: BillingCycle,
    tariff: Tariff,
    meters: Sequence[str] | None = None,
    config: VeeConfig | None = None,
) -> dict[str, MeterAggregate]:
    """Run :func:`aggregate_sql` and group its rows per meter."""
    cfg = config or VeeConfig()
    sql = aggregate_sql(cycle, tariff, meters, cfg.spike_quantile)
    out: dict[str, MeterAggregate] = {}
    wh: dict[str, dict[tuple[str, str], float]] = {}
    for row in source.query(sql):
        meter, channel, period, value, *screen = row
        wh.setdefault(meter, {})[(channel, period)] = float(value)
        if meter not in out:
            out[meter] = MeterAggregate(
                meter,
                wh[meter],
                int(screen[0] or 0),
                int(screen[1]),
                int(screen[2]),
                int(screen[3]),
                int(screen[4]),
                None if screen[5] is None else float(screen[5]),
                None if screen[6] is None else float(screen[6]),
                None if screen[7] is None else int(screen[7]),
                None if screen[8] is None else float(screen[8]),
                None if screen[9] is None else int(screen[9]),
                None if screen[10] is None else float(screen[10]),
                int(screen[11] or 0),
                int(screen[12] or 0),
            )
    return out


def _from_aggregate(agg: MeterAggregate, cycle: BillingCycle, tariff: Tariff) -> Determinants:
    names = tariff.period_names

    def total(ch: str) -> float:
        return sum(v for (c, _), v in agg.wh.items() if c == ch) / 1000.0

    periods = tuple(
        PeriodEnergy(
            p,
            agg.wh.get((CH_IMPORT, p), 0.0) / 1000.0,
            agg.wh.get((CH_EXPORT, p), 0.0) / 1000.0,
        )
        for p in sorted(names)
    )
    kwh_i, kvarh_i = total(CH_IMPORT), total(CH_Q_IMPORT)
    pf = None if kwh_i == 0 and kvarh_i == 0 else kwh_i / (kwh_i**2 + kvarh_i**2) ** 0.5

    def demand(wh: float | None, t_end: int | None, block: int) -> Demand | None:
        if wh is None or t_end is None:
            return None
        start = t_end - block
        return Demand(wh * 3600.0 / block / 1000.0, start, tariff.local_iso(start))

    return Determinants(
        meter=agg.meter,
        tariff=tariff.name,
        cycle_start=cycle.start,
        cycle_end=cycle.end,
        cycle_label=cycle.label,
        periods=periods,
        import_kwh=kwh_i,
        export_kwh=total(CH_EXPORT),
        kvarh_import=kvarh_i,
        kvarh_export=total(CH_Q_EXPORT),
        power_factor=pf,
        max_demand_15=demand(agg.d_max, agg.t_max, INTERVAL_S),
        max_demand_30=demand(agg.d30_max, agg.t30_max, 2 * INTERVAL_S),
        intervals_expected=cycle.intervals,
        intervals_actual=cycle.intervals,
        intervals_estimated=0,
        intervals_missing=0,
        register_delta_kwh=kwh_i,
        register_check="ok",
        flags=(),
        dst_days=dst_days(tariff, cycle.start, cycle.end),
    )


def fetch_captures(
    source: LakeSource, meters: Sequence[str], start: int, end: int
) -> dict[str, dict[str, list[Capture]]]:
    """Captures of ``meters`` with ``start <= capture_time <= end`` per meter and channel."""
    out: dict[str, dict[str, list[Capture]]] = {m: {} for m in meters}
    for chunk in _chunks(meters, 500):
        sql = (
            "SELECT meter, channel, capture_time, value, status, multiplier FROM intervals "
            f"WHERE capture_time BETWEEN {start} AND {end} "
            f"AND {_PART_DAY} BETWEEN {_day_key(start)} "
            f"AND {_day_key(end)} "
            f"AND channel IN ({', '.join(_lit(c) for c in CHANNELS)}) "
            f"AND meter IN ({', '.join(_lit(m) for m in chunk)}) "
            "ORDER BY meter, channel, capture_time"
        )
        for m, ch, t, v, st, mult in source.query(sql):
            out[m].setdefault(ch, []).append(Capture(int(t), float(v), int(st), float(mult)))
    return out


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def determinants_for(
    meters: Sequence[str] | None,
    cycle: BillingCycle,
    tariff: Tariff,
    source: LakeSource,
    config: VeeConfig | None = None,
    *,
    force_python: bool = False,
) -> list[Determinants]:
    """Determinants of ``meters`` (None: every meter with data in the cycle), sorted by meter.

    Clean meters come from the SQL aggregate; the others (and all with ``force_python``) go
    through Python VEE on rows fetched from the lake, with ``config.history_s`` of history.
    A requested meter without any data in the cycle gets all-missing determinants.
    """
    cfg = config or VeeConfig()
    aggs = aggregate(source, cycle, tariff, meters, cfg)
    wanted = sorted(set(meters) if meters is not None else set(aggs))
    fast = {} if force_python else {m: a for m, a in aggs.items() if a.clean(cycle, cfg)}
    slow = [m for m in wanted if m not in fast]
    log.debug("determinants: %d meters by SQL, %d by Python VEE", len(fast), len(slow))
    caps = fetch_captures(source, slow, cycle.start - cfg.history_s, cycle.end) if slow else {}
    out = []
    for m in wanted:
        if m in fast:
            out.append(_from_aggregate(fast[m], cycle, tariff))
        else:
            out.append(compute_determinants(m, caps.get(m, {}), cycle, tariff, cfg))
    return out


def iter_pages(items: Iterable[str], size: int) -> Iterator[list[str]]:
    """Sorted meter ids in pages of ``size`` (how the API and the export page a fleet)."""
    page: list[str] = []
    for m in sorted(items):
        page.append(m)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page
