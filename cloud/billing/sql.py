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
* One window (``LAG``) per (meter, channel) gives the negative check on every channel and, on the
  import channel, the 15- and 30-minute demands and the statistics of the VEE screen (max
  interval, the exact spike quantile from its top-k positive intervals, zero intervals).
* With a billing-day dataset (:mod:`cloud.billing.derived`) the same answer comes from ~100
  summary rows per meter (:func:`derived_sql`), no window at query time.
* Telescoping is exact only for complete, clean data with one multiplier. The same query
  returns a **screen** per meter (capture counts, distinct multipliers, OR of status bits, the
  import statistics). A meter that could fail any VEE rule (a gap, a status bit other than DST,
  a ratio change, a negative, a possible spike or zero run) is *routed* to the pure-Python VEE
  path (:func:`cloud.billing.determinants.compute_determinants`) with its rows fetched by a
  second, selective query. The screen is conservative, so both paths give the same
  determinants; the fast path only serves meters for which Python VEE would change nothing.

Portability: standard SQL except where noted. ``arg_max(x, {'d': d, 'n': -t})`` is Athena
``max_by(x, ROW(d, -t))``; ``max(d, k)`` (top-k list) is Athena ``max(d, k)`` too;
``bit_or`` is Athena ``bitwise_or_agg``. Athena's hive partition columns are usually strings:
cast them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cloud.billing.derived import KTH, BillingDays, spike_rank, tariff_key
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
    "aggregate_derived",
    "aggregate_sql",
    "calendar_weights",
    "derived_sql",
    "determinants_for",
    "fetch_captures",
    "iter_pages",
    "lake_schema",
    "part_day_filter",
    "quantile_from_top",
    "spike_top_k",
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


def part_day_filter(start: int, end: int) -> str:
    """SQL predicate on the hive partitions (year/month/day) of the UTC days of
    ``[start, end]`` (epoch s): lets DuckDB skip every other day's files."""
    return f"{_PART_DAY} BETWEEN {_day_key(start)} AND {_day_key(end)}"


def spike_top_k(intervals: int, q: float) -> int:
    """How many of the largest positive intervals give the exact q-quantile of up to
    ``intervals`` values (see :func:`cloud.billing.vee.quantile`)."""
    return spike_rank(max(1, intervals), q) + 1


def quantile_from_top(top: Sequence[float], n: int, q: float) -> float | None:
    """The q-quantile of ``n`` values from their largest ones (descending), computed exactly
    like :func:`cloud.billing.vee.quantile`; None if ``top`` is too short."""
    if n <= 0:
        return None
    pos = (n - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    i_lo, i_hi = n - 1 - lo, n - 1 - hi  # positions in the descending list
    if i_lo >= len(top):
        return None
    x_lo, x_hi = top[i_lo], top[i_hi]
    return x_lo + (x_hi - x_lo) * (pos - lo)


def aggregate_sql(
    cycle: BillingCycle,
    tariff: Tariff,
    meters: Sequence[str] | None = None,
    spike_quantile: float = 0.99,
) -> str:
    """The lake aggregate of one cycle: one row per (meter, channel, period) energy, joined
    with the per-meter screen and demand statistics (see the module doc)."""
    cal = ", ".join(f"({t}, {_lit(p)}, {w})" for t, p, w in calendar_weights(cycle, tariff))
    chans = ", ".join(_lit(c) for c in CHANNELS)
    imp = _lit(CH_IMPORT)
    top_k = spike_top_k(cycle.intervals, spike_quantile)
    return f"""
WITH cal (capture_time, period, w) AS (VALUES {cal}),
base AS (
    SELECT meter, channel, capture_time, value, status, multiplier
    FROM intervals
    WHERE capture_time BETWEEN {cycle.start} AND {cycle.end}
      AND {part_day_filter(cycle.start, cycle.end)}
      AND channel IN ({chans}) {_meter_filter(meters)}
),
energy AS (
    SELECT b.meter, b.channel, c.period, SUM(b.value * c.w) AS wh
    FROM base b JOIN cal c ON b.capture_time = c.capture_time
    GROUP BY b.meter, b.channel, c.period
),
screen AS (
    SELECT meter, MIN(n) AS n_min, COUNT(*) AS n_channels, MAX(nm) AS nm, BIT_OR(st) AS st
    FROM (SELECT meter, channel, COUNT(*) AS n, COUNT(DISTINCT multiplier) AS nm,
                 BIT_OR(status) AS st
          FROM base GROUP BY meter, channel) s
    GROUP BY meter
),
diffs AS (
    SELECT meter, channel, capture_time,
           value - LAG(value) OVER w AS d,
           CASE WHEN channel = {imp} THEN value - LAG(value, 2) OVER w END AS d30
    FROM base
    WINDOW w AS (PARTITION BY meter, channel ORDER BY capture_time)
),
demand AS (
    SELECT meter,
           MIN(d) AS d_min,
           MAX(d) FILTER (WHERE channel = {imp}) AS d_max,
           arg_max(capture_time, {{'d': d, 'n': -capture_time}})
               FILTER (WHERE channel = {imp}) AS t_max,
           MAX(d30) FILTER (WHERE channel = {imp} AND capture_time % 1800 = 0
                            AND capture_time - 1800 >= {cycle.start}) AS d30_max,
           arg_max(capture_time, {{'d': d30, 'n': -capture_time}})
               FILTER (WHERE channel = {imp} AND capture_time % 1800 = 0
                       AND capture_time - 1800 >= {cycle.start}) AS t30_max,
           max(d, {top_k}) FILTER (WHERE channel = {imp} AND d > 0) AS top,
           COUNT(*) FILTER (WHERE channel = {imp} AND d > 0) AS n_pos,
           COUNT(*) FILTER (WHERE channel = {imp} AND d = 0) AS n_zero
    FROM diffs WHERE d IS NOT NULL
    GROUP BY meter
),
reg AS (
    SELECT meter,
           MAX(value) FILTER (WHERE capture_time = {cycle.start}) AS r0,
           MAX(value) FILTER (WHERE capture_time = {cycle.end}) AS r1
    FROM base WHERE channel = {imp} AND capture_time IN ({cycle.start}, {cycle.end})
    GROUP BY meter
)
SELECT e.meter, e.channel, e.period, e.wh,
       s.n_min = {cycle.intervals + 1} AND s.n_channels = {len(CHANNELS)} AND s.nm = 1
           AND (s.st | {STATUS_DST}) = {STATUS_DST} AND d.d_min >= 0 AS complete,
       d.d_max, d.t_max - {INTERVAL_S}, d.d30_max, d.t30_max - {2 * INTERVAL_S},
       d.top, d.n_pos, d.n_zero, r.r1 - r.r0
FROM energy e JOIN screen s ON e.meter = s.meter
     LEFT JOIN demand d ON e.meter = d.meter
     LEFT JOIN reg r ON e.meter = r.meter
ORDER BY e.meter, e.channel, e.period
"""


def derived_sql(
    files: Sequence[Path],
    cycle: BillingCycle,
    tariff: Tariff,
    meters: Sequence[str] | None = None,
    spike_quantile: float = 0.99,
) -> str:
    """The billing-days aggregate of one cycle (:mod:`cloud.billing.derived`): **one row per
    meter** from ~100 rows each, energies pivoted into columns ``wh_<channel>_<period>`` (by
    index in :data:`CHANNELS` and ``tariff.period_names``), the screen, and ``top``: the
    largest ``kth_pos`` values (a lower bound of the spike quantile is picked in Python)."""
    file_list = ", ".join(_lit(p.as_posix()) for p in files)
    top_j = math.ceil(spike_rank(max(1, cycle.intervals), spike_quantile) / KTH)
    pivot = ",\n           ".join(
        f"SUM({col}) FILTER (WHERE period = {_lit(p)}) AS wh_{ci}_{pi}"
        for ci, col in enumerate(("ai", "ae", "ri", "re"))
        for pi, p in enumerate(tariff.period_names)
    )
    return f"""
WITH d AS (
    SELECT * FROM read_parquet([{file_list}]) WHERE TRUE {_meter_filter(meters)}
),
m AS (
    SELECT meter,
           SUM(ok) = {cycle.intervals} AND MIN(mult_min) = MAX(mult_max) AS complete,
           MAX(d_max) AS d_max, MAX(d30_max) AS d30_max,
           list_sort(list(kth_pos) FILTER (WHERE kth_pos IS NOT NULL), 'DESC')[:{top_j}] AS top,
           SUM(n_pos) AS n_pos, SUM(n_zero) AS n_zero,
           arg_max(reg1, day) - arg_min(reg0, day) AS reg,
           {pivot}
    FROM d GROUP BY meter
),
t AS (  -- earliest block reaching the maximum (ties go to the earliest, as in Python)
    SELECT d.meter, MIN(d.t_max) FILTER (WHERE d.d_max = m.d_max) AS t_max,
           MIN(d.t30_max) FILTER (WHERE d.d30_max = m.d30_max) AS t30_max
    FROM d JOIN m ON d.meter = m.meter
    GROUP BY d.meter
)
SELECT * FROM m JOIN t USING (meter)
"""


def _meter_filter(meters: Sequence[str] | None) -> str:
    if meters is None:
        return ""
    if not meters:
        return "AND FALSE"
    return "AND meter IN (" + ", ".join(_lit(m) for m in meters) + ")"


@dataclass(frozen=True, slots=True)
class MeterAggregate:
    """The SQL answer for one meter: energies (Wh) per (channel, period) and its screen.

    ``complete``: every interval of the cycle present on all four channels, no status bit but
    DST, one multiplier, no register running backwards. Demand times are block starts.
    ``spike_floor`` is the spike quantile of the positive import intervals (exact from the
    lake) or a lower bound of it (billing days); None when unknown.
    """

    meter: str
    wh: Mapping[tuple[str, str], float]
    complete: bool
    d_max: float | None
    t_max: int | None
    d30_max: float | None
    t30_max: int | None
    spike_floor: float | None
    n_pos: int
    n_zero: int
    register_wh: float | None

    def clean(self, cycle: BillingCycle, config: VeeConfig) -> bool:
        """True when Python VEE would neither estimate nor flag anything (conservative)."""
        if not self.complete or self.d_max is None or self.register_wh is None:
            return False
        limit = math.inf
        if self.n_pos >= config.spike_min_samples:
            if self.spike_floor is None:
                return False
            limit = config.spike_k * self.spike_floor
        if config.physical_max_wh is not None:
            limit = min(limit, config.physical_max_wh)
        if self.d_max > limit:
            return False
        # Every interval is actual: a zero run needs zero_run_min zeros and a zero share below
        # zero_share_max (the Python rule's own condition, same expression).
        return (
            self.n_zero < config.zero_run_min
            or self.n_zero / cycle.intervals >= config.zero_share_max
        )


class LakeSource:
    """A DuckDB connection with the view ``intervals`` over the lake under ``root``
    (``<root>/lake/intervals/year=/month=/day=/*.parquet``), or over ``glob``.
    ``threads`` caps DuckDB's worker threads (None: DuckDB's default, one per core)."""

    def __init__(
        self, root: Path | str | None = None, *, glob: str | None = None, threads: int | None = None
    ) -> None:
        import duckdb

        if glob is None:
            if root is None:
                raise StorageError("a lake root or glob is required")
            glob = (Path(root) / LAKE_PREFIX / "**" / "*.parquet").as_posix()
        self.root = None if root is None else Path(root)
        self.glob = glob
        self._duckdb = duckdb
        self.con = duckdb.connect()
        try:
            self.con.execute("SET preserve_insertion_order = false")
            if threads is not None:
                self.con.execute(f"SET threads = {int(threads)}")
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

    def arrow(self, sql: str) -> Any:
        """The result as a pyarrow Table."""
        try:
            return self.con.sql(sql).to_arrow_table()
        except self._duckdb.Error as exc:
            raise StorageError(f"lake query failed: {exc}") from exc

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> LakeSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rows_to_aggregates(
    rows: Iterable[tuple[Any, ...]], floor_of: Callable[[Sequence[float], int], float | None]
) -> dict[str, MeterAggregate]:
    out: dict[str, MeterAggregate] = {}
    wh: dict[str, dict[tuple[str, str], float]] = {}
    for row in rows:
        meter, channel, period, value, complete, d_max, t_max, d30, t30, top, n_pos, n_zero, reg = (
            row
        )
        wh.setdefault(meter, {})[(channel, period)] = float(value)
        if meter in out:
            continue
        n_pos = int(n_pos or 0)
        out[meter] = MeterAggregate(
            meter,
            wh[meter],
            bool(complete),
            None if d_max is None else float(d_max),
            None if t_max is None else int(t_max),
            None if d30 is None else float(d30),
            None if t30 is None else int(t30),
            None if top is None else floor_of(top, n_pos),
            n_pos,
            int(n_zero or 0),
            None if reg is None else float(reg),
        )
    return out


def aggregate(
    source: LakeSource,
    cycle: BillingCycle,
    tariff: Tariff,
    meters: Sequence[str] | None = None,
    config: VeeConfig | None = None,
) -> dict[str, MeterAggregate]:
    """Run :func:`aggregate_sql` over the lake and group its rows per meter."""
    cfg = config or VeeConfig()
    sql = aggregate_sql(cycle, tariff, meters, cfg.spike_quantile)

    def floor_of(top: Sequence[float], n: int) -> float | None:
        return quantile_from_top(top, n, cfg.spike_quantile)

    return _rows_to_aggregates(source.query(sql), floor_of)


def aggregate_derived(
    source: LakeSource,
    files: Sequence[Path],
    cycle: BillingCycle,
    tariff: Tariff,
    *,
    meters: Sequence[str] | None = None,
    config: VeeConfig | None = None,
) -> dict[str, MeterAggregate]:
    """Run :func:`derived_sql` over billing-day files; one aggregate per meter."""
    cfg = config or VeeConfig()
    names = tariff.period_names
    tab = source.arrow(derived_sql(files, cycle, tariff, meters, cfg.spike_quantile))
    col = {n: tab.column(n).to_pylist() for n in tab.column_names}
    out: dict[str, MeterAggregate] = {}
    for i, meter in enumerate(col["meter"]):
        n_pos = int(col["n_pos"][i] or 0)
        top = col["top"][i]
        floor = None
        if top is not None:
            j = math.ceil(spike_rank(max(1, n_pos), cfg.spike_quantile) / KTH)
            floor = float(top[j - 1]) if len(top) >= j else None
        wh = {
            (ch, p): v
            for ci, ch in enumerate(CHANNELS)
            for pi, p in enumerate(names)
            if (v := col[f"wh_{ci}_{pi}"][i]) is not None
        }
        d_max, t_max, d30, t30 = (col[k][i] for k in ("d_max", "t_max", "d30_max", "t30_max"))
        out[meter] = MeterAggregate(
            meter,
            wh,
            bool(col["complete"][i]),
            d_max,
            t_max,
            d30,
            t30,
            floor,
            n_pos,
            int(col["n_zero"][i] or 0),
            col["reg"][i],
        )
    return out


def _from_aggregate(agg: MeterAggregate, cycle: BillingCycle, tariff: Tariff) -> Determinants:
    names = tariff.period_names

    def total(ch: str) -> float:
        return math.fsum(v for (c, _), v in agg.wh.items() if c == ch) / 1000.0

    periods = tuple(
        PeriodEnergy(
            p,
            agg.wh.get((CH_IMPORT, p), 0.0) / 1000.0,
            agg.wh.get((CH_EXPORT, p), 0.0) / 1000.0,
        )
        for p in sorted(names)
    )
    kwh_i, kvarh_i = total(CH_IMPORT), total(CH_Q_IMPORT)
    pf = None if kwh_i == 0 and kvarh_i == 0 else kwh_i / math.hypot(kwh_i, kvarh_i)

    def demand(wh: float | None, start: int | None, block: int) -> Demand | None:
        if wh is None or start is None:
            return None
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
        register_delta_kwh=None if agg.register_wh is None else agg.register_wh / 1000.0,
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
            f"AND {part_day_filter(start, end)} "
            f"AND channel IN ({', '.join(_lit(c) for c in CHANNELS)}) "
            f"{_meter_filter(chunk)} "
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
    derived: BillingDays | None = None,
) -> list[Determinants]:
    """Determinants of ``meters`` (None: every meter with data in the cycle), sorted by meter.

    Clean meters come from the SQL aggregate: over the billing-day dataset ``derived`` when it
    has every day of the cycle (built for ``tariff``), else over the lake. The others (and all
    with ``force_python``) go through Python VEE on rows fetched from the lake, with
    ``config.history_s`` of history. A requested meter without any data in the cycle gets
    all-missing determinants.
    """
    cfg = config or VeeConfig()
    files = None
    if derived is not None:
        if derived.key != tariff_key(tariff):
            raise StorageError(f"billing days {derived.key} were built for another tariff")
        files = derived.files_for(cycle)
        if files is None:
            log.info("billing days incomplete for %s: aggregating the lake", cycle.label)
    if files is not None:
        aggs = aggregate_derived(source, files, cycle, tariff, meters=meters, config=cfg)
    else:
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
