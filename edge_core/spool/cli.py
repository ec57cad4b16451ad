"""``ami-edge spool stats --path FILE [--json]``: counters and backlog of a spool file."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("spool", help="inspect the durable spool")
    sub = parser.add_subparsers(dest="spool_command", metavar="SPOOL_COMMAND", required=True)
    stats = sub.add_parser("stats", help="counters per class, backlog, evictions, file size")
    stats.add_argument("--path", required=True, help="spool file (SQLite)")
    stats.add_argument("--json", action="store_true", help="one JSON object")
    stats.set_defaults(func=_stats)


def _stats(args: argparse.Namespace) -> int:
    # imported here, not at module import: `ami-edge --help` must stay light
    from pathlib import Path

    from edge_core.errors import ConfigError
    from edge_core.spool.store import Spool

    if not Path(args.path).is_file():
        raise ConfigError(f"no spool file at {args.path}", path="--path")
    spool = Spool.open(args.path)
    try:
        stats = spool.stats()
        evictions = spool.evictions()
        report = spool.salvage_report
    finally:
        spool.close()
    out = stats.to_dict()
    out["evictions"] = [
        {"data_class": dc.name.lower(), "meter": m, "reason": why, "count": n}
        for dc, m, why, n in evictions
    ]
    if report is not None:
        out["salvaged_now"] = {
            "kept_at": report.kept_at,
            "problem": report.problem,
            "readings": report.readings,
            "messages": report.messages,
            "lost_estimate": report.lost_estimate,
        }
    if args.json:
        print(json.dumps(out, sort_keys=True))
        return 0
    for key in (
        "stored",
        "duplicates",
        "sealed",
        "acked",
        "evicted",
        "backlog_readings",
        "backlog_messages",
    ):
        cells = " ".join(f"{k}={v}" for k, v in out[key].items())
        print(f"{key:17} {cells}")
    for key in ("oldest_age_s", "file_bytes", "used_bytes", "quota_bytes", "salvages"):
        print(f"{key:17} {out[key]}")
    for e in out["evictions"]:
        print(
            f"evicted           {e['data_class']} meter={e['meter'] or '-'} "
            f"{e['reason']}: {e['count']}"
        )
    if report is not None:
        print(f"SALVAGED          damaged file kept at {report.kept_at}: {report.problem}")
    return 0
