"""``ami-edge cloud serve|template|compact|billing-export``: the local cloud stack from the command
line."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import sys
from typing import Any
from urllib.parse import quote, urlsplit

from edge_core.errors import ConfigError

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("cloud", help="the companion cloud, run locally")
    sub = parser.add_subparsers(dest="cloud_command", metavar="CLOUD_COMMAND", required=True)

    serve = sub.add_parser("serve", help="rules + ingest + REST API against a local broker")
    serve.add_argument("--broker", required=True, help="mqtt://127.0.0.1:PORT")
    serve.add_argument("--data-dir", required=True, help="bucket directory and databases")
    serve.add_argument("--http-port", type=int, default=8080, help="API port on 127.0.0.1")
    serve.add_argument(
        "--api-key",
        default=None,
        help="x-api-key required on /v1 (default: $AMI_API_KEY, else a random key, printed)",
    )
    serve.add_argument("--registry", default=None, help="meter registry, JSON or CSV")
    serve.add_argument(
        "--compact-every",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="rewrite the Parquet lake days written since the last run (0: only at exit)",
    )
    serve.set_defaults(func=_serve)

    tmpl = sub.add_parser("template", help="print the CloudFormation template")
    tmpl.add_argument("--format", choices=("json", "yaml"), default="yaml")
    tmpl.set_defaults(func=_template)

    compact = sub.add_parser("compact", help="write the Parquet lake from the interval index")
    compact.add_argument("--data-dir", required=True)
    compact.set_defaults(func=_compact)

    export = sub.add_parser(
        "billing-export",
        help="write the billing CSV files of a cycle group where an SFTP server would expose them",
    )
    export.add_argument("--data-dir", required=True, help="the local stack's data directory")
    export.add_argument("--read-day", type=int, required=True, help="the group's read day, 1..31")
    export.add_argument("--month", required=True, help="YYYY-MM whose read date ends the cycle")
    export.add_argument("--out", required=True, help="outbox directory (the SFTP export root)")
    export.add_argument("--utility", default="utility", help="utility name in the file names")
    export.add_argument("--tariff", default=None, help="tariff JSON file (default: two-rate)")
    export.set_defaults(func=_billing_export)


def _broker(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise ConfigError("expected mqtt://HOST:PORT", path="--broker")
    return parts.hostname, parts.port or 1883


def _serve(args: argparse.Namespace) -> int:
    host, port = _broker(args.broker)
    return asyncio.run(_serve_async(host, port, args))


async def _serve_async(host: str, port: int, args: argparse.Namespace) -> int:
    from cloud.local import run_local_stack

    generated = not (args.api_key or os.environ.get("AMI_API_KEY"))
    api_key = args.api_key or os.environ.get("AMI_API_KEY") or secrets.token_urlsafe(16)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    handle = await run_local_stack(
        host,
        port,
        args.data_dir,
        args.http_port,
        api_key,
        registry=args.registry,
        compact_every_s=args.compact_every,
    )
    print(f"API: {handle.api_url}", flush=True)
    if generated:  # a key the user chose is not echoed
        print(f"x-api-key: {api_key}", flush=True)
        print(f"dashboard: {handle.api_url}/?key={quote(api_key)}", flush=True)
    else:
        print(f"dashboard: {handle.api_url}/ (asks for the key)", flush=True)
    try:
        await stop.wait()
    finally:
        await handle.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0


def _template(args: argparse.Namespace) -> int:
    from cloud.template import render

    sys.stdout.write(render(args.format))
    return 0


def _compact(args: argparse.Namespace) -> int:
    from cloud.storage.local import open_local_stores

    stores, db = open_local_stores(args.data_dir)
    try:
        keys = stores.intervals.compact_all()  # type: ignore[attr-defined]
    finally:
        db.close()
    for key in keys:
        print(key)
    return 0


def _billing_export(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from cloud.billing.export import write_billing_export
    from cloud.billing.service import DEFAULT_TARIFF, LocalBilling
    from cloud.billing.tou import CycleGroup, Tariff
    from cloud.storage.local import open_local_stores

    try:
        year, month = (int(x) for x in args.month.split("-"))
    except ValueError as exc:
        raise ConfigError("expected YYYY-MM", path="--month") from exc
    if args.tariff:
        try:
            tariff = Tariff.from_dict(json.loads(Path(args.tariff).read_text()))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the tariff: {exc}", path="--tariff") from exc
    else:
        tariff = Tariff.from_dict(DEFAULT_TARIFF)
    group = CycleGroup(f"day{args.read_day:02d}", args.read_day)
    cycle = group.cycle(year, month, tariff)
    stores, db = open_local_stores(args.data_dir)
    try:
        billing = LocalBilling(
            Path(stores.intervals.objects_root),  # type: ignore[attr-defined]
            tariff,
            # A fresh process does not know which days are new: rewrite every day of the lake.
            before_query=getattr(stores.intervals, "compact_all", None),
        )
        seen = {e.meter for e in stores.fleet.list()} if stores.fleet else set()
        meters = sorted(seen | set(stores.registry.meters()))
        dets = billing.determinants(meters, cycle) if meters else []
    finally:
        db.close()
    paths = write_billing_export(
        dets, args.out, utility=args.utility, group=group.name, cycle=cycle, tariff=tariff
    )
    for p in paths:
        print(p)
    print(f"{len(dets)} meters, cycle {cycle.label}", file=sys.stderr)
    return 0
