"""``ami-edge simulate``: serve simulated meters until SIGINT/SIGTERM.

Prints one line per meter (``<meter id> tcp://HOST:PORT``) and then ``ready`` on stdout, so
scripts and tests can wait for the ports to listen.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from datetime import UTC, date, datetime, timedelta
from typing import Any

from edge_core.errors import ConfigError

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="serve simulated DLMS/COSEM meters",
        description="Serve N simulated IDIS-style meters on ports P, P+1, ... until interrupted.",
    )
    p.add_argument("--meters", type=int, default=1, help="number of meters (default 1)")
    p.add_argument("--port", type=int, required=True, help="first TCP port")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--transport", choices=("wrapper", "hdlc"), default="wrapper")
    p.add_argument("--seed", type=int, default=1, help="seed of the consumption model")
    p.add_argument(
        "--serial",
        action="store_true",
        help="serve each meter on a pseudo-terminal (HDLC only); prints the device paths",
    )
    p.add_argument(
        "--auth", choices=("none", "low", "hls-gmac"), default="none", help="authentication level"
    )
    p.add_argument("--password", help="LLS password (--auth low)")
    p.add_argument("--auth-key", help="HLS-GMAC authentication key AK, 32 hex digits")
    p.add_argument("--cipher-key", help="HLS-GMAC global unicast encryption key EK, 32 hex digits")
    p.add_argument(
        "--system-title",
        help="HLS-GMAC system title of the first meter, 16 hex digits (meter i: last 4 bytes + i)",
    )
    p.add_argument(
        "--start",
        help="first day of the profile buffers, YYYY-MM-DD (default: 7 days ago)",
    )
    p.set_defaults(func=_simulate)


def _parse_start(text: str | None) -> date:
    if text is None:
        return (datetime.now(UTC) - timedelta(days=7)).date()
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"--start must be YYYY-MM-DD, got {text!r}", path="start") from exc


def _security(args: argparse.Namespace) -> Any:
    """The MeterSecurity of ``--auth hls-gmac`` (None otherwise)."""
    if args.auth != "hls-gmac":
        if args.auth_key or args.cipher_key or args.system_title:
            raise ConfigError("--auth-key/--cipher-key/--system-title need --auth hls-gmac")
        return None
    from edge_core.meter.security import key_from_hex, parse_system_title
    from edge_core.simulator.security import DEFAULT_METER_TITLE, MeterSecurity

    if not args.auth_key or not args.cipher_key:
        raise ConfigError("--auth hls-gmac needs --auth-key and --cipher-key", path="auth")
    title = (
        parse_system_title(args.system_title, path="system-title")
        if args.system_title
        else DEFAULT_METER_TITLE
    )
    return MeterSecurity(
        key_from_hex(args.cipher_key, label="cipher-key"),
        key_from_hex(args.auth_key, label="auth-key"),
        title,
    )


def _simulate(args: argparse.Namespace) -> int:
    start = _parse_start(args.start)
    if args.meters < 1:
        raise ConfigError("must be at least 1", path="meters")
    if not 0 < args.port < 65536 or args.port + args.meters - 1 > 65535:
        raise ConfigError(
            f"ports {args.port}..{args.port + args.meters - 1} out of range", path="port"
        )
    return asyncio.run(_run(args, start))


async def _run(args: argparse.Namespace, start: date) -> int:
    from edge_core.simulator.server import serve_meters

    if args.serial and args.transport != "hdlc":
        raise ConfigError("--serial needs --transport hdlc", path="serial")
    password = None
    if args.auth == "low":
        if not args.password:
            raise ConfigError("--auth low needs --password", path="password")
        password = args.password.encode()
    security = _security(args)
    handle = await serve_meters(
        args.meters,
        args.host,
        args.port,
        args.seed,
        start,
        transport=args.transport,
        serial=args.serial,
        password=password,
        security=security,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        for i, meter_id in enumerate(handle.meter_ids):
            sys.stdout.write(f"{meter_id} {handle.url(i)}\n")
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await handle.close()
    return 0
