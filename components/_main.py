"""Shared entry point of the ami-edge components: environment -> bus -> app -> run until SIGTERM.

Under Greengrass (``AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT`` set by the nucleus)
the bus is :class:`~edge_core.bus.greengrass.GreengrassBus`; otherwise it is
:class:`~edge_core.bus.mqtt.MqttBus` configured from ``--config FILE`` (or ``AMI_EDGE_CONFIG``).

Sequence: install the app's validator and update gate, connect, validate the current
configuration (ERRORED and exit 2 if it does not parse), start the app, report RUNNING, wait for
SIGTERM/SIGINT, stop the app (bounded by ``STOP_TIMEOUT_S``), close the bus, exit 0. Greengrass
sends SIGTERM and waits its Shutdown timeout (15 s by default) before killing; the stop timeout
stays well inside it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from edge_core.bus.base import Bus
from edge_core.errors import AmiError, ConfigError
from edge_core.runtime.memory import tune_malloc

__all__ = ["STOP_TIMEOUT_S", "ComponentApp", "make_bus", "run_component", "with_thing_name"]

log = logging.getLogger("components")

STOP_TIMEOUT_S = 10.0
ENV_SOCKET = "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"
ENV_THING = "AWS_IOT_THING_NAME"


class ComponentApp(Protocol):
    """What a component entry point runs. ``apply_config`` is optional."""

    async def start(self, bus: Bus) -> None: ...

    async def stop(self) -> None: ...

    def validate_config(self, mapping: Mapping[str, Any]) -> None:
        """Raise ConfigError if ``mapping`` is not a valid configuration of this component."""

    def update_gate(self) -> float:
        """Seconds to defer a component update (0 to accept)."""


def with_thing_name(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration with an empty ``thing_name`` filled from ``AWS_IOT_THING_NAME``.

    The nucleus sets that variable for every component process, so recipes leave the thing
    name out of DefaultConfiguration instead of relying on configuration interpolation.
    """
    out = dict(mapping)
    if not out.get("thing_name") and os.environ.get(ENV_THING):
        out["thing_name"] = os.environ[ENV_THING]
    return out


def make_bus(config_path: str | None) -> Bus:
    """GreengrassBus under a nucleus, else MqttBus from the configuration file."""
    if os.environ.get(ENV_SOCKET):
        from edge_core.bus.greengrass import GreengrassBus

        return GreengrassBus.from_environment()
    if not config_path:
        raise ConfigError(f"not under Greengrass ({ENV_SOCKET} unset) and no --config file given")
    from edge_core.bus.mqtt import MqttBus, load_mapping_file
    from edge_core.bus.settings import MqttSettings

    mapping = load_mapping_file(config_path)
    mqtt = dict(mapping.get("mqtt") or {})
    overrides = {
        "client_id": mqtt.get("client_id") or None,
        "ca_path": mqtt.get("ca_file") or None,
        "cert_path": mqtt.get("cert_file") or None,
        "key_path": mqtt.get("key_file") or None,
        "config_path": config_path,
    }
    settings = MqttSettings.from_url(
        str(mqtt.get("url", "mqtt://127.0.0.1:1883")),
        **{k: v for k, v in overrides.items() if v is not None},
    )
    return MqttBus(settings, config=mapping)


async def _serve(name: str, app: ComponentApp, bus: Bus) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bus.set_config_validator(app.validate_config)
    bus.set_update_gate(app.update_gate)
    apply = getattr(app, "apply_config", None)
    if callable(apply):
        bus.on_config_change(apply)
    await bus.start()
    try:
        try:
            app.validate_config(bus.get_config())
        except ConfigError as exc:
            log.error("%s: configuration rejected: %s", name, exc)
            await bus.report_state("ERRORED")
            return 2
        try:
            await app.start(bus)
        except AmiError as exc:
            log.error("%s: cannot start: %s: %s", name, type(exc).__name__, exc)
            await bus.report_state("ERRORED")
            return 1
        await bus.report_state("RUNNING")
        log.info("%s running", name)
        await stop.wait()
        log.info("%s stopping", name)
        try:
            await asyncio.wait_for(app.stop(), STOP_TIMEOUT_S)
        except TimeoutError:
            log.error("%s: stop did not finish within %.0f s", name, STOP_TIMEOUT_S)
            return 1
        return 0
    finally:
        await bus.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def run_component(
    name: str, app_factory: Callable[[], ComponentApp], argv: Sequence[str] | None = None
) -> int:
    """Run one component until SIGTERM; returns the process exit status."""
    parser = argparse.ArgumentParser(prog=f"python -m components.{name}")
    parser.add_argument(
        "--config",
        default=os.environ.get("AMI_EDGE_CONFIG"),
        help="configuration file (direct MQTT mode only)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    level = "DEBUG" if args.verbose else os.environ.get("AMI_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    tune_malloc()  # before any thread starts: see edge_core/runtime/memory.py
    try:
        app = app_factory()
        bus = make_bus(args.config)
        status = asyncio.run(_serve(name, app, bus))
    except ConfigError as exc:
        log.error("%s: configuration error: %s", name, exc)
        return 2
    except AmiError as exc:
        log.error("%s: %s: %s", name, type(exc).__name__, exc)
        return 1
    log.info("%s stopped (status %d)", name, status)
    return status
