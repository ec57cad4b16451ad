"""Billing export: CSV files of determinants for a billing-cycle group, into an SFTP outbox.

Naming: ``billing_<utility>_<cyclegroup>_<YYYYMMDD>_<seq>.csv`` where ``YYYYMMDD`` is the local
read date (the cycle's last day + 1, i.e. the local date of the cycle end) and ``seq`` is a
3-digit page number from 001. Each page holds at most ``page_size`` meters (all their period
rows). Content: UTF-8, ``\\n`` line ends, a header row (:data:`HEADER`), one row per meter and
TOU period plus one ``TOTAL`` row per meter, ISO 8601 dates, decimals with ``.`` and 3 places
(kWh, kvarh, kW), power factor with 4. Files are written to a temporary name in the outbox and
renamed into place, so the SFTP server never exposes a partial file.
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from cloud.billing.determinants import Determinants
from cloud.billing.tou import BillingCycle, Tariff
from cloud.storage.base import StorageError
from edge_core.errors import ConfigError

__all__ = ["HEADER", "export_name", "render_csv", "write_billing_export"]

HEADER = (
    "meter",
    "cycle_start",
    "cycle_end",
    "tariff",
    "period",
    "import_kwh",
    "export_kwh",
    "kvarh_import",
    "kvarh_export",
    "power_factor",
    "max_demand_15_kw",
    "max_demand_15_time",
    "max_demand_30_kw",
    "max_demand_30_time",
    "intervals_actual",
    "intervals_estimated",
    "intervals_missing",
    "register_check",
    "flags",
)
_NAME = re.compile(r"^[A-Za-z0-9-]{1,32}$")


def export_name(utility: str, group: str, cycle: BillingCycle, tariff: Tariff, seq: int) -> str:
    """``billing_<utility>_<group>_<YYYYMMDD>_<seq>.csv`` (local date of the cycle end)."""
    for what, v in (("utility", utility), ("cycle group", group)):
        if not _NAME.match(v):
            raise ConfigError(f"{what} must be 1-32 letters, digits or '-': {v!r}")
    day = datetime.fromtimestamp(cycle.end, tz=tariff.zone).strftime("%Y%m%d")
    return f"billing_{utility}_{group}_{day}_{seq:03d}.csv"


def _num(v: float | None, places: int = 3) -> str:
    return "" if v is None else f"{v:.{places}f}"


def render_csv(dets: Sequence[Determinants], tariff: Tariff) -> str:
    """The CSV text of one page."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER)
    for d in dets:
        start = datetime.fromtimestamp(d.cycle_start, tz=tariff.zone).isoformat()
        end = datetime.fromtimestamp(d.cycle_end, tz=tariff.zone).isoformat()
        flags = ";".join(f"{k}={v}" for k, v in d.flags)
        for p in d.periods:
            w.writerow(
                [d.meter, start, end, d.tariff, p.period, _num(p.import_kwh), _num(p.export_kwh)]
                + [""] * (len(HEADER) - 7)
            )
        m15, m30 = d.max_demand_15, d.max_demand_30
        w.writerow(
            [
                d.meter,
                start,
                end,
                d.tariff,
                "TOTAL",
                _num(d.import_kwh),
                _num(d.export_kwh),
                _num(d.kvarh_import),
                _num(d.kvarh_export),
                _num(d.power_factor, 4),
                _num(None if m15 is None else m15.kw),
                "" if m15 is None else m15.local,
                _num(None if m30 is None else m30.kw),
                "" if m30 is None else m30.local,
                d.intervals_actual,
                d.intervals_estimated,
                d.intervals_missing,
                d.register_check,
                flags,
            ]
        )
    return buf.getvalue()


def write_billing_export(
    dets: Sequence[Determinants],
    outbox: Path | str,
    *,
    utility: str,
    group: str,
    cycle: BillingCycle,
    tariff: Tariff,
    page_size: int = 1000,
) -> list[Path]:
    """Write ``dets`` (sorted by meter) in pages of ``page_size`` meters; returns the paths.

    An existing file of the same name is replaced (a rerun of the same cycle is idempotent).
    """
    if page_size < 1:
        raise ConfigError("page_size must be at least 1")
    out = Path(outbox)
    ordered = sorted(dets, key=lambda d: d.meter)
    paths = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for seq, i in enumerate(range(0, max(len(ordered), 1), page_size), start=1):
            text = render_csv(ordered[i : i + page_size], tariff)
            path = out / export_name(utility, group, cycle, tariff, seq)
            fd, tmp = tempfile.mkstemp(dir=out, prefix=".tmp-", suffix=".csv")
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            paths.append(path)
    except OSError as exc:
        raise StorageError(f"cannot write the billing export to {out}: {exc}") from exc
    return paths
