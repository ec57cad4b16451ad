"""``ami-edge run --config FILE``: the concentrator over direct MQTT, outside Greengrass.

It is the same entry point as the Greengrass component (``python -m components.concentrator``):
under a nucleus the bus is Greengrass IPC, here it is MQTT configured by the file's ``mqtt``
section (plain TCP to a local broker, or mTLS to AWS IoT Core).
"""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run", help="run the concentrator (acquisition, spool, uplink) over direct MQTT"
    )
    p.add_argument("--config", required=True, help="YAML or JSON configuration file")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from components._main import run_component
    from components.concentrator.app import ConcentratorApp

    argv = ["--config", args.config]
    if getattr(args, "verbose", 0) >= 2:
        argv.append("-v")
    return run_component("concentrator", ConcentratorApp, argv)
