"""The concentrator app: configuration, spool ownership, health, update gate.

The work is done by :class:`edge_core.runtime.app.EdgeApp` (acquisition, the spool it owns, the
uplink with its alarm lane, on-demand reads); this module only adds the component shell:
configuration parsing, health on ``dt/ami/{thing}/health`` at start and stop, and the update
gate.

The component-level settings live under the ``greengrass`` key of the configuration so that the
rest stays exactly what :class:`~edge_core.config.EdgeConfig` parses:

``greengrass.defer_updates``    "true" holds component updates (a billing run, a field campaign)
``greengrass.update_recheck_s`` seconds the nucleus waits before asking again (1..3600)
``greengrass.log_level``        DEBUG, INFO, WARNING or ERROR (passed as AMI_LOG_LEVEL)
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components._main import with_thing_name
from edge_core import __version__
from edge_core.bus.base import Bus
from edge_core.config import EdgeConfig
from edge_core.errors import BusError, ConfigError
from edge_core.model import Topics
from edge_core.runtime.app import EdgeApp

__all__ = ["COMPONENT", "ConcentratorApp", "GreengrassSettings", "parse_config"]

log = logging.getLogger(__name__)

COMPONENT = "com.amiedge.Concentrator"
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True, slots=True)
class GreengrassSettings:
    """Component-level settings (the ``greengrass`` section). Durations in seconds."""

    defer_updates: bool = False
    update_recheck_s: int = 60
    log_level: str = "INFO"

    @classmethod
    def from_mapping(cls, data: Any) -> GreengrassSettings:
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigError("expected a mapping", path="greengrass")
        unknown = sorted(set(data) - {"defer_updates", "update_recheck_s", "log_level"})
        if unknown:
            raise ConfigError(f"unknown key(s) {', '.join(unknown)}", path="greengrass")
        raw = str(data.get("defer_updates", "false")).lower()
        if raw not in _TRUE + _FALSE:
            raise ConfigError(f"expected true/false, got {raw!r}", path="greengrass.defer_updates")
        try:
            recheck = int(str(data.get("update_recheck_s", "60")))
        except ValueError as exc:
            raise ConfigError("expected an integer", path="greengrass.update_recheck_s") from exc
        if not 1 <= recheck <= 3600:
            raise ConfigError(f"{recheck} is outside [1, 3600]", path="greengrass.update_recheck_s")
        level = str(data.get("log_level", "INFO")).upper()
        if level not in _LEVELS:
            raise ConfigError(f"one of {', '.join(_LEVELS)}", path="greengrass.log_level")
        return cls(defer_updates=raw in _TRUE, update_recheck_s=recheck, log_level=level)


def parse_config(mapping: Mapping[str, Any]) -> tuple[EdgeConfig, GreengrassSettings]:
    """Parse a whole component configuration (raises ConfigError naming the key)."""
    data = with_thing_name(mapping)
    gg = GreengrassSettings.from_mapping(data.pop("greengrass", None))
    return EdgeConfig.from_mapping(data), gg


class ConcentratorApp:
    """The com.amiedge.Concentrator application object (see module doc)."""

    def __init__(self) -> None:
        self.config: EdgeConfig | None = None
        self.settings = GreengrassSettings()
        self.in_flight = 0  # extra work the shell itself holds (none today)
        self._bus: Bus | None = None
        self._edge: EdgeApp | None = None

    def validate_config(self, mapping: Mapping[str, Any]) -> None:
        parse_config(mapping)

    def apply_config(self, mapping: Mapping[str, Any]) -> None:
        self.config, self.settings = parse_config(mapping)
        if self._edge is not None:
            self._edge.reconfigure(self.config)
        log.info("configuration applied: %d meters", len(self.config.meters))

    def update_gate(self) -> float:
        """Defer while updates are held or a meter read, alarm or batch is in flight."""
        edge_busy = self._edge is not None and self._edge.update_gate() > 0
        if self.settings.defer_updates or self.in_flight or edge_busy:
            return float(self.settings.update_recheck_s)
        return 0.0

    async def start(self, bus: Bus) -> None:
        self._bus = bus
        self.config, self.settings = parse_config(bus.get_config())
        self._edge = EdgeApp(self.config, bus, report_running=False)
        await self._edge.start()
        log.info("spool open at %s", self.config.spool.path)
        await self._health("started")

    async def stop(self) -> None:
        await self._health("stopping")
        if self._edge is not None:
            await self._edge.stop()
            self._edge = None
            log.info("spool closed")

    async def _health(self, event: str) -> None:
        if self._bus is None or self.config is None:
            return
        body = {
            "component": COMPONENT,
            "event": event,
            "version": __version__,
            "meters": len(self.config.meters),
            "time": int(time.time()),
        }
        topic = Topics(self.config.thing_name).health
        try:
            await self._bus.publish(topic, json.dumps(body).encode(), qos=1)
        except BusError as exc:  # health is best effort; the nucleus may be offline
            log.warning("health not published: %s", exc)
