"""The ``ami-edge`` command line.

Each subcommand lives in the module that owns it; that module exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a callable taking the parsed
namespace and returning the exit status). Errors of the ami-edge tree end the program with one
clear line on stderr and a non-zero status; nothing else is printed here.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from edge_core import __version__
from edge_core.errors import AmiError, ConfigError, MeterError, TransportError

__all__ = ["build_parser", "main"]

# Modules that contribute subcommands, in the order they appear in --help.
COMMAND_MODULES = (
    "edge_core.simulator.cli",  # simulate
    "edge_core.meter.cli",  # read
    "edge_core.spool.cli",  # spool stats
    "edge_core.runtime.cli",  # run (the edge runtime)
    "cloud.cli",  # cloud serve
    "edge_core.demo",  # demo
    "edge_core.training.cli",  # model train
    "edge_core.build",  # build (Greengrass components)
)

EXIT_CONFIG = 2
EXIT_TRANSPORT = 3
EXIT_METER = 4
EXIT_OTHER = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ami-edge", description="Edge runtime for DLMS/COSEM meter data concentrators."
    )
    parser.add_argument("--version", action="version", version=f"ami-edge {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if not exc.name or not name.startswith(exc.name):
                raise
            continue  # optional part not installed (e.g. the cloud package on a DCU)
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_CONFIG
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except ConfigError as exc:
        print(f"ami-edge: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except TransportError as exc:
        print(f"ami-edge: {exc}", file=sys.stderr)
        return EXIT_TRANSPORT
    except MeterError as exc:
        print(f"ami-edge: {exc}", file=sys.stderr)
        return EXIT_METER
    except AmiError as exc:
        print(f"ami-edge: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_OTHER


if __name__ == "__main__":
    raise SystemExit(main())
