"""``ami-edge read``: read one meter (clock, registers, optionally a load-profile range).

Errors travel up to :func:`edge_core.cli.main`, which prints one line and exits non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from edge_core.errors import ConfigError

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "read",
        help="read a meter",
        description="Associate with one meter, read its clock, registers and load profile.",
    )
    p.add_argument(
        "--url", required=True, help="tcp://HOST:PORT, serial:///dev/ttyX, socket://, rfc2217://"
    )
    p.add_argument("--baud", type=int, default=9600, help="serial line speed (default 9600)")
    p.add_argument("--transport", choices=("wrapper", "hdlc"), default="wrapper")
    p.add_argument("--client", type=int, default=16, help="client SAP / wPort (default 16)")
    p.add_argument("--server", type=int, default=1, help="server SAP / wPort (default 1)")
    p.add_argument("--obis", nargs="+", help="registers to read (default: the energy registers)")
    p.add_argument("--load-profile", action="store_true", help="also read 1.0.99.1.0.255")
    p.add_argument(
        "--daily", action="store_true", help="also read the daily profile 1.0.99.2.0.255"
    )
    p.add_argument("--events", action="store_true", help="also read the four IDIS event logs")
    p.add_argument(
        "--auth", choices=("none", "low", "hls-gmac"), default="none", help="authentication level"
    )
    p.add_argument("--password", help="LLS password (--auth low)")
    p.add_argument("--auth-key", help="HLS-GMAC authentication key AK, 32 hex digits")
    p.add_argument("--cipher-key", help="HLS-GMAC global unicast encryption key EK, 32 hex digits")
    p.add_argument("--system-title", help="HLS-GMAC client system title, 16 hex digits")
    p.add_argument(
        "--counter-dir",
        default=os.path.join("~", ".ami-edge", "counters"),
        help="where HLS-GMAC invocation counters persist (default ~/.ami-edge/counters)",
    )
    p.add_argument("--meter-id", help="meter id for counters and messages (default: the URL)")
    p.add_argument(
        "--set-clock",
        action="store_true",
        help="set the meter clock to this host's time if it drifts over --max-drift",
    )
    p.add_argument("--max-drift", type=float, default=10.0, help="allowed clock drift in s")
    p.add_argument("--from", dest="start", help="profile range start, ISO-8601 (default now-24h)")
    p.add_argument("--to", dest="end", help="profile range end, ISO-8601 (default now)")
    p.add_argument("--timeout", type=float, default=10.0, help="per-request timeout in s")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_read)


def _when(text: str, name: str) -> datetime:
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"not an ISO-8601 date-time: {text!r}", path=name) from exc
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _read(args: argparse.Namespace) -> int:
    from edge_core.dlms.obis import Obis
    from edge_core.meter.reader import read_meter

    obis = None
    if args.obis:
        try:
            obis = [Obis.parse(o) for o in args.obis]
        except ValueError as exc:
            raise ConfigError(str(exc), path="obis") from exc
    span = None
    wanted = args.load_profile or args.daily or args.events
    end = _when(args.end, "to") if args.end else datetime.now(UTC)
    start = _when(args.start, "from") if args.start else end - timedelta(hours=24)
    if wanted:
        if start > end:
            raise ConfigError("--from is after --to", path="from")
        span = (start, end)
    elif args.start or args.end:
        raise ConfigError("--from/--to need --load-profile, --daily or --events", path="from")
    password = None
    if args.auth == "low":
        if not args.password:
            raise ConfigError("--auth low needs --password", path="password")
        password = args.password.encode()
    security = None
    if args.auth == "hls-gmac":
        from edge_core.meter.security import ReaderSecurity

        if not (args.auth_key and args.cipher_key and args.system_title):
            raise ConfigError(
                "--auth hls-gmac needs --auth-key, --cipher-key and --system-title", path="auth"
            )
        security = ReaderSecurity.from_hex(
            system_title=args.system_title,
            auth_key=args.auth_key,
            cipher_key=args.cipher_key,
            counter_dir=os.path.expanduser(args.counter_dir),
        )
    elif args.auth_key or args.cipher_key or args.system_title:
        raise ConfigError("--auth-key/--cipher-key/--system-title need --auth hls-gmac")
    result = asyncio.run(
        read_meter(
            args.url,
            client=args.client,
            server=args.server,
            obis=obis,
            load_profile=span if args.load_profile else None,
            daily=span if args.daily else None,
            events=span if args.events else None,
            transport=args.transport,
            timeout=args.timeout,
            password=password,
            set_clock=args.set_clock,
            max_drift_s=args.max_drift,
            baud=args.baud,
            security=security,
            meter_id=args.meter_id,
        )
    )
    doc = result.to_json()
    if args.json:
        sys.stdout.write(json.dumps(doc) + "\n")
        return 0
    out = [f"clock  {doc['clock']}"]
    for r in doc["registers"]:
        out.append(f"{r['obis']:<16} {r['value']:>16} {r['unit']}")
    if "load_profile" in doc:
        lp = doc["load_profile"]
        out.append(f"{lp['obis']}  period {lp['capture_period_s']} s  {len(lp['rows'])} rows")
        out.append("  ".join(c["obis"] for c in lp["columns"]))
        out.extend("  ".join(str(v) for v in row) for row in lp["rows"])
    if "daily_profile" in doc:
        dp = doc["daily_profile"]
        out.append(f"{dp['obis']}  period {dp['capture_period_s']} s  {len(dp['rows'])} rows")
        out.extend("  ".join(str(v) for v in row) for row in dp["rows"])
    for e in doc.get("events", ()):
        extra = f"  {e['duration_s']} s" if e["duration_s"] is not None else ""
        out.append(f"event {e['log']}  {e['time']}  code {e['code']}{extra}")
    w = doc["wire"]
    out.append(f"wire: {w['bytes_tx']} B tx, {w['bytes_rx']} B rx, {w['round_trips']} round trips")
    sys.stdout.write("\n".join(out) + "\n")
    return 0
