"""Billing-day summaries: a derived Parquet dataset built from the lake once per day, so that the
determinants of a cycle are plain ``GROUP BY`` sums over ~100 rows per meter.

Layout and contents
-------------------
``<root>/derived/billing_days/tariff=<name>-<hash>/day=YYYY-MM-DD/part-0.parquet``: one file per
**local day** of the tariff's time zone (a billing cycle of a cycle group runs between local
midnights, so it is a whole number of these days). ``<hash>`` fingerprints the tariff (zone,
rules, holidays): a changed tariff gets a new dataset, never stale periods. One row per
(meter, TOU period of that day), sorted by meter then period (:data:`DERIVED_COLUMNS`):

* ``n``: intervals of the day in that period; ``ok``: those that are *clean* on all four energy
  channels: both captures present, no status bit but DST on either, the same multiplier on both
  and a non-negative register difference.
* ``ai, ae, ri, re``: the period's energy per channel (Wh / varh, primary): the sum of the
  register differences of the intervals that are clean on that channel.
* Import-channel statistics over its clean intervals: ``d_max`` with ``t_max`` (interval start,
  earliest on ties), ``d30_max`` with ``t30_max`` (fixed clock-aligned 30-minute blocks whose
  first interval is in the group, both intervals clean), ``n_pos`` / ``n_zero`` (positive /
  zero intervals) and ``kth_pos``, the :data:`KTH`-th largest positive interval (NULL if fewer).
* ``mult_min`` / ``mult_max`` over the captures of the group, ``reg0`` / ``reg1`` the import
  register at the day's first and closing capture.

Theory of operation
-------------------
* The build reads the lake (four channels, six columns, partition-pruned) for a few local days
  at a time and scatters the captures into a dense ``meter x channel x slot`` grid (no sort, no
  window function): interval energies are differences of neighbouring slots, and the per-group
  sums are one matrix product with a slot-to-group indicator. Cost is linear in rows.
* A meter is *clean* over a cycle when every interval of the cycle is ``ok`` and one multiplier
  covers it; its determinants are then exactly the Python VEE path's (nothing is estimated or
  flagged), up to the order of floating-point summation. The spike rule needs the cycle's
  quantile of positive intervals; the query bounds it from below without sorting: a group with
  ``kth_pos = v`` has at least KTH intervals >= v, so the j-th largest ``kth_pos`` over the
  cycle has at least ``j * KTH`` intervals above it, and the order statistic that the quantile
  interpolates from is >= the ``ceil(r / KTH)``-th largest ``kth_pos`` (``r`` = its rank from the
  top). A maximum below ``spike_k`` x that bound cannot be a spike; a meter that cannot be
  cleared this way goes to the Python path, which decides exactly.
* Freshness: each file records (in its Parquet key-value metadata) the tariff key and the size
  and mtime of every lake file it was built from; :meth:`BillingDays.refresh` rebuilds the days
  whose inputs changed (late data recompacted into the lake) or that are missing. A query uses
  the dataset only when every local day of the cycle is present; otherwise the caller falls back
  to the lake.
* Limits: days must start on a 30-minute UTC boundary (every zone but the :45 offsets), so that
  no 30-minute block straddles two days; otherwise :meth:`BillingDays.days_of` returns None.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloud.billing.tou import INTERVAL_S, BillingCycle, Tariff, cycle_days
from cloud.billing.vee import CHANNELS, STATUS_DST
from cloud.storage.base import StorageError

if TYPE_CHECKING:
    from cloud.billing.sql import LakeSource

__all__ = [
    "DERIVED_COLUMNS",
    "DERIVED_PREFIX",
    "KTH",
    "BillingDays",
    "BuildStats",
    "spike_rank",
    "tariff_key",
]

log = logging.getLogger(__name__)

DERIVED_PREFIX = "derived/billing_days"
KTH = 4  # kth_pos is the KTH-th largest positive import interval of a (day, period) group
_FORMAT = 1  # bumped when the columns or their meaning change
_META_KEY = b"ami.billing_days"
DERIVED_COLUMNS = (
    ("meter", "string"),
    ("day", "date32"),  # local day of the tariff zone
    ("period", "string"),
    ("n", "int32"),
    ("ok", "int32"),
    ("ai", "float64"),  # +A Wh
    ("ae", "float64"),  # -A Wh
    ("ri", "float64"),  # +R varh
    ("re", "float64"),  # -R varh
    ("n_pos", "int32"),
    ("n_zero", "int32"),
    ("d_max", "float64"),  # Wh per 15 min
    ("t_max", "int64"),  # UTC epoch s (interval start)
    ("d30_max", "float64"),  # Wh per 30 min
    ("t30_max", "int64"),  # UTC epoch s (block start)
    ("kth_pos", "float64"),
    ("mult_min", "float64"),
    ("mult_max", "float64"),
    ("reg0", "float64"),  # import register (Wh) at the day's first capture
    ("reg1", "float64"),  # ... and at its closing capture
)


@dataclass(frozen=True, slots=True)
class BuildStats:
    """What a build wrote: local days, rows, bytes on disk and wall time (s)."""

    days: int
    rows: int
    bytes: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"days": self.days, "rows": self.rows, "bytes": self.bytes, "seconds": self.seconds}


def tariff_key(tariff: Tariff) -> str:
    """``<name>-<10 hex>``: the tariff's name and a digest of its full definition."""
    text = json.dumps(tariff.to_dict(), sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in tariff.name)
    return f"{safe}-{digest}"


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema([(n, getattr(pa, t)()) for n, t in DERIVED_COLUMNS])


class BillingDays:
    """The billing-day dataset of one tariff under ``root`` (see the module doc)."""

    def __init__(self, root: Path | str, tariff: Tariff) -> None:
        self.root = Path(root)
        self.tariff = tariff
        self.key = tariff_key(tariff)
        self.dir = self.root / DERIVED_PREFIX / f"tariff={self.key}"

    # -- layout ----------------------------------------------------------------------------

    def day_path(self, day: date) -> Path:
        return self.dir / f"day={day.isoformat()}" / "part-0.parquet"

    def day_bounds(self, day: date) -> tuple[int, int]:
        """[start, end) of a local day in UTC epoch s."""
        return (
            self.tariff.local_midnight(day),
            self.tariff.local_midnight(day + timedelta(days=1)),
        )

    def days_of(self, cycle: BillingCycle) -> list[date] | None:
        """The local days that make up ``cycle``; None if the cycle does not start and end on
        local midnights or a day does not start on a 30-minute boundary."""
        days = list(cycle_days(cycle, self.tariff))
        if self.tariff.local_midnight(days[0]) != cycle.start:
            return None
        if self.tariff.local_midnight(days[-1] + timedelta(days=1)) != cycle.end:
            return None
        for d in days:
            if self.tariff.local_midnight(d) % (2 * INTERVAL_S):
                return None
        return days

    def files_for(self, cycle: BillingCycle) -> list[Path] | None:
        """The files of the cycle's days, or None when a day is missing (or not aligned)."""
        days = self.days_of(cycle)
        if days is None:
            return None
        paths = [self.day_path(d) for d in days]
        if not all(p.is_file() for p in paths):
            return None
        return paths

    # -- build -----------------------------------------------------------------------------

    def _sources(self, day: date) -> list[dict[str, Any]]:
        """Fingerprint of the lake files a day is built from (UTC days it touches)."""
        start, end = self.day_bounds(day)
        first = datetime.fromtimestamp(start, tz=timezone.utc).date()
        last = datetime.fromtimestamp(end, tz=timezone.utc).date()
        out = []
        lake = self.root / "lake" / "intervals"
        d = first
        while d <= last:
            part = lake / f"year={d.year:04d}" / f"month={d.month:02d}" / f"day={d.day:02d}"
            if part.is_dir():
                for f in sorted(part.glob("*.parquet")):
                    st = f.stat()
                    out.append(
                        {
                            "f": f.relative_to(self.root).as_posix(),
                            "s": st.st_size,
                            "m": st.st_mtime_ns,
                        }
                    )
            d += timedelta(days=1)
        return out

    def stored_sources(self, day: date) -> list[dict[str, Any]] | None:
        """The source fingerprint recorded in a day's file (None: no file or foreign)."""
        import pyarrow.parquet as pq

        path = self.day_path(day)
        if not path.is_file():
            return None
        try:
            meta = pq.read_schema(path).metadata or {}
            doc = json.loads(meta.get(_META_KEY, b"{}"))
        except (OSError, ValueError) as exc:
            log.warning("unreadable billing-day file %s: %s", path, exc)
            return None
        if doc.get("format") != _FORMAT or doc.get("tariff") != self.key:
            return None
        sources = doc.get("sources")
        return sources if isinstance(sources, list) else None

    def stale(self, days: Iterable[date]) -> list[date]:
        """The days whose file is missing or was built from different lake files."""
        return [d for d in days if self.stored_sources(d) != self._sources(d)]

    def refresh(self, source: LakeSource, days: Iterable[date]) -> BuildStats:
        """Build the stale days among ``days`` (the daily compaction step)."""
        return self.build(source, self.stale(days))

    def build(self, source: LakeSource, days: Iterable[date], chunk_days: int = 4) -> BuildStats:
        """(Re)build the files of ``days`` from the lake of ``source`` (which must be the lake
        under this dataset's root for the freshness fingerprint to mean anything)."""
        t0 = time.perf_counter()
        todo = sorted(set(days))
        rows = size = 0
        chunk: list[date] = []
        for d in todo:
            if chunk and (d - chunk[-1] != timedelta(days=1) or len(chunk) >= chunk_days):
                r, s = self._build_chunk(source, chunk)
                rows, size = rows + r, size + s
                chunk = []
            chunk.append(d)
        if chunk:
            r, s = self._build_chunk(source, chunk)
            rows, size = rows + r, size + s
        stats = BuildStats(len(todo), rows, size, time.perf_counter() - t0)
        log.info(
            "billing days %s: built %d days, %d rows, %d bytes in %.2f s",
            self.key,
            stats.days,
            stats.rows,
            stats.bytes,
            stats.seconds,
        )
        return stats

    def _build_chunk(self, source: LakeSource, days: Sequence[date]) -> tuple[int, int]:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        from cloud.billing.determinants import cycle_periods
        from cloud.billing.sql import part_day_filter

        bounds = [self.day_bounds(d) for d in days]
        w0, w1 = bounds[0][0], bounds[-1][1]
        for s, _ in bounds:
            if s % (2 * INTERVAL_S):
                raise StorageError("billing days need local midnights on 30-minute boundaries")
        sources = {d: self._sources(d) for d in days}
        chans = ", ".join("'" + c + "'" for c in CHANNELS)
        tab = source.arrow(
            "SELECT meter, channel, capture_time, value, status, multiplier FROM intervals "
            f"WHERE capture_time BETWEEN {w0} AND {w1} AND capture_time % {INTERVAL_S} = 0 "
            f"AND {part_day_filter(w0, w1)} AND channel IN ({chans})"
        )
        n_slots = (w1 - w0) // INTERVAL_S  # intervals; captures are n_slots + 1
        meters = pc.unique(tab.column("meter"))
        meters = meters.take(pc.sort_indices(meters))
        n_m, n_c, n_t = len(meters), len(CHANNELS), n_slots + 1
        mi = pc.index_in(tab.column("meter"), value_set=meters).to_numpy(zero_copy_only=False)
        ci = pc.index_in(tab.column("channel"), value_set=pa.array(CHANNELS)).to_numpy(
            zero_copy_only=False
        )
        si = (tab.column("capture_time").to_numpy() - w0) // INTERVAL_S
        flat = (mi.astype(np.int64) * n_c + ci) * n_t + si
        value = np.full(n_m * n_c * n_t, np.nan)
        value[flat] = tab.column("value").to_numpy()
        mult = np.full(n_m * n_c * n_t, np.nan)
        mult[flat] = tab.column("multiplier").to_numpy()
        good = np.zeros(n_m * n_c * n_t, bool)  # present and no status bit but DST
        good[flat] = (tab.column("status").to_numpy() & ~STATUS_DST) == 0
        present_m = np.zeros(n_m * n_t, bool)
        present_m[mi.astype(np.int64) * n_t + si] = True
        del tab, mi, ci, si, flat
        value3: Any = value.reshape(n_m, n_c, n_t)
        mult3: Any = mult.reshape(n_m, n_c, n_t)
        good3: Any = good.reshape(n_m, n_c, n_t)
        present: Any = present_m.reshape(n_m, n_t)

        with np.errstate(invalid="ignore"):
            diff = value3[:, :, 1:] - value3[:, :, :-1]
            ok_ch = good3[:, :, 1:] & good3[:, :, :-1] & (mult3[:, :, 1:] == mult3[:, :, :-1])
            ok_ch &= diff >= 0
        ok_all = ok_ch.all(axis=1)
        energy = np.where(ok_ch, diff, 0.0)
        imp = diff[:, 0, :]
        imp_ok = ok_ch[:, 0, :]

        # Groups: (local day, period) in slot order; an indicator matrix sums them at once.
        names = self.tariff.period_names
        per_slot = cycle_periods(self.tariff, w0, w1)
        pid = np.array([names.index(p) for p in per_slot], np.int64)
        day_of_slot = np.zeros(n_slots, np.int64)
        for k, (s, e) in enumerate(bounds):
            day_of_slot[(s - w0) // INTERVAL_S : (e - w0) // INTERVAL_S] = k
        gid = day_of_slot * len(names) + pid
        n_groups = len(days) * len(names)
        ind = np.zeros((n_slots, n_groups))
        ind[np.arange(n_slots), gid] = 1.0
        sums = (energy.reshape(n_m * n_c, n_slots) @ ind).reshape(n_m, n_c, n_groups)
        n_ok = ok_all.astype(np.float64) @ ind
        n_pos = (imp_ok & (imp > 0)).astype(np.float64) @ ind
        n_zero = (imp_ok & (imp == 0)).astype(np.float64) @ ind
        per_group = np.bincount(gid, minlength=n_groups)

        times = w0 + np.arange(n_slots, dtype=np.int64) * INTERVAL_S
        imp_v = np.where(imp_ok, imp, -np.inf)
        pair = np.full((n_m, n_slots), -np.inf)
        aligned = (times % (2 * INTERVAL_S) == 0) & (np.arange(n_slots) + 1 < n_slots)
        starts = np.flatnonzero(aligned)
        pair[:, starts] = imp_v[:, starts] + imp_v[:, starts + 1]
        pos_v = np.where(imp_ok & (imp > 0), imp, -np.inf)
        rows_m = np.arange(n_m)

        written = size = 0
        for k, day in enumerate(days):
            lo_t = (bounds[k][0] - w0) // INTERVAL_S
            hi_t = (bounds[k][1] - w0) // INTERVAL_S
            has = present[:, lo_t : hi_t + 1].any(axis=1)
            reg0 = value3[:, 0, lo_t]
            reg1 = value3[:, 0, hi_t]
            parts = []
            for p, pname in enumerate(names):
                g = k * len(names) + p
                if per_group[g] == 0:
                    continue
                slots = np.flatnonzero(gid == g)
                sel = imp_v[:, slots]
                arg = sel.argmax(axis=1)  # first maximum: the earliest interval
                d_max = sel[rows_m, arg]
                t_max = times[slots][arg]
                pr = pair[:, slots]
                arg30 = pr.argmax(axis=1)
                d30 = pr[rows_m, arg30]
                t30 = times[slots][arg30]
                if len(slots) >= KTH:
                    kth = np.partition(pos_v[:, slots], len(slots) - KTH, axis=1)[
                        :, len(slots) - KTH
                    ]
                else:
                    kth = np.full(n_m, -np.inf)
                cap = np.union1d(slots, slots + 1)
                m_sel = mult3[:, :, cap].reshape(n_m, -1)
                with np.errstate(invalid="ignore"):
                    m_min = np.fmin.reduce(m_sel, axis=1)
                    m_max = np.fmax.reduce(m_sel, axis=1)
                parts.append(
                    {
                        "period": pname,
                        "n": np.full(n_m, per_group[g], np.int32),
                        "ok": n_ok[:, g].astype(np.int32),
                        "ai": sums[:, 0, g],
                        "ae": sums[:, 1, g],
                        "ri": sums[:, 2, g],
                        "re": sums[:, 3, g],
                        "n_pos": n_pos[:, g].astype(np.int32),
                        "n_zero": n_zero[:, g].astype(np.int32),
                        "d_max": d_max,
                        "t_max": t_max,
                        "d30_max": d30,
                        "t30_max": t30,
                        "kth_pos": kth,
                        "mult_min": m_min,
                        "mult_max": m_max,
                    }
                )
            if not parts:
                continue
            # Rows ordered by meter, then period (in the tariff's order).
            keep = np.flatnonzero(has)
            order_m = np.repeat(keep, len(parts))
            order_p = np.tile(np.arange(len(parts)), len(keep))
            table = self._table(
                meters, day=day, parts=parts, order_m=order_m, order_p=order_p, reg0=reg0, reg1=reg1
            )
            written += table.num_rows
            size += self._write(day, table, sources[day])
        return written, size

    def _table(
        self,
        meters: Any,
        *,
        day: date,
        parts: list[dict[str, Any]],
        order_m: Any,
        order_p: Any,
        reg0: Any,
        reg1: Any,
    ) -> Any:
        import numpy as np
        import pyarrow as pa

        def col(name: str, dtype: Any) -> Any:
            stacked = np.stack([p[name] for p in parts])  # (periods, meters)
            return stacked[order_p, order_m].astype(dtype)

        def nullable(arr: Any) -> Any:
            return pa.array(arr, pa.float64(), mask=~np.isfinite(arr))

        n = len(order_m)
        d_max = col("d_max", np.float64)
        d30 = col("d30_max", np.float64)
        data = {
            "meter": meters.take(pa.array(order_m)),
            "day": pa.array(np.full(n, (day - date(1970, 1, 1)).days, np.int32), pa.date32()),
            "period": pa.array([parts[i]["period"] for i in order_p], pa.string()),
            "n": pa.array(col("n", np.int32)),
            "ok": pa.array(col("ok", np.int32)),
            "ai": pa.array(col("ai", np.float64)),
            "ae": pa.array(col("ae", np.float64)),
            "ri": pa.array(col("ri", np.float64)),
            "re": pa.array(col("re", np.float64)),
            "n_pos": pa.array(col("n_pos", np.int32)),
            "n_zero": pa.array(col("n_zero", np.int32)),
            "d_max": nullable(d_max),
            "t_max": pa.array(col("t_max", np.int64), pa.int64(), mask=~np.isfinite(d_max)),
            "d30_max": nullable(d30),
            "t30_max": pa.array(col("t30_max", np.int64), pa.int64(), mask=~np.isfinite(d30)),
            "kth_pos": nullable(col("kth_pos", np.float64)),
            "mult_min": nullable(col("mult_min", np.float64)),
            "mult_max": nullable(col("mult_max", np.float64)),
            "reg0": nullable(reg0[order_m]),
            "reg1": nullable(reg1[order_m]),
        }
        return pa.table(data, schema=_schema())

    def _write(self, day: date, table: Any, sources: list[dict[str, Any]]) -> int:
        import pyarrow as pa
        import pyarrow.parquet as pq

        doc = {"format": _FORMAT, "tariff": self.key, "day": day.isoformat(), "sources": sources}
        table = table.replace_schema_metadata({_META_KEY: json.dumps(doc, sort_keys=True)})
        path = self.day_path(day)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(".tmp-" + path.name)
        try:
            pq.write_table(table, tmp, compression="zstd")
            os.replace(tmp, path)
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(f"cannot write {path}: {exc}") from exc
        return path.stat().st_size


def spike_rank(n_pos: int, q: float) -> int:
    """Rank from the top (1 = largest) of the lower order statistic that the q-quantile of
    ``n_pos`` values interpolates from (see :func:`cloud.billing.vee.quantile`)."""
    return n_pos - math.floor((n_pos - 1) * q)
