"""The analytics app: stored readings in (local topic), anomaly events out (local topic).

Theory of operation
-------------------
* The concentrator offers every stored set of readings on ``ami/local/readings`` (batch format,
  fire and forget). A bounded queue (:data:`QUEUE_DEPTH` payloads) decouples the IPC thread
  from the :class:`~edge_core.analytics.service.AnalyticsService`, which processes one batch
  at a time; when analytics falls behind, further payloads are dropped and counted, never
  buffered without bound. The concentrator is never slowed: it does not wait for us.
* Anomaly events go back on ``ami/local/anomaly``; the concentrator spools them and uploads
  them on ``dt/ami/{thing}/anomaly``, so an event survives an uplink outage exactly like data.
* The model comes from com.amiedge.AnomalyModel, an artifact-only component: the recipe passes
  its folder in ``AMI_MODEL_DIR``; ``model_dir`` in the configuration overrides it. A
  configuration update that names another folder hot-swaps the model *in this process*, without
  a restart: :meth:`ModelManager.update` loads and validates the new folder first and keeps the
  model in service if it is refused (wrong feature spec, digest mismatch, unreadable). Either
  outcome is logged, published as health on ``dt/ami/{thing}/health`` and written to the status
  file. A model that cannot be loaded at start is fatal (ERRORED): there is nothing to fall
  back to.
* The update gate defers a component update while a batch is being scored or a model is being
  swapped (:data:`UPDATE_DEFER_S`).
* The status file (``<state_path without suffix>.status.json``, replaced atomically) holds the
  model in service, the last refused model and the service counters: what a field technician or
  a test reads without a cloud connection.

Configuration keys (numbers are strings, as in every recipe of this project):
``thing_name`` (default: AWS_IOT_THING_NAME), ``model_dir``, ``input_topic``, ``threshold``
(empty: the model card's), ``max_batch_windows``, ``timezone`` (IANA, the meters' local time),
``state_path`` (SQLite state; relative paths live in the work folder), ``history_days`` (days of
baseline kept per meter, 7..366), ``meters`` (list of ``{id, pv, rated_current_a,
nominal_voltage_v, phases, register_digits}``: nameplate data for the rules; meters not listed
are taken as single-phase 60 A without PV), ``log_level`` (read by the entry point).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components._main import with_thing_name
from edge_core import __version__
from edge_core.bus.base import Bus, Subscription
from edge_core.errors import AmiError, BusError, ConfigError, ModelError
from edge_core.model import Topics

__all__ = [
    "COMPONENT",
    "QUEUE_DEPTH",
    "UPDATE_DEFER_S",
    "AnalyticsApp",
    "AnalyticsConfig",
    "MeterSettings",
]

log = logging.getLogger(__name__)

COMPONENT = "com.amiedge.Analytics"
ENV_MODEL_DIR = "AMI_MODEL_DIR"
DEFAULT_INPUT_TOPIC = "ami/local/readings"
#: Payloads waiting for the service; more are dropped (counted) rather than buffered.
QUEUE_DEPTH = 64
#: Seconds a component update is deferred while a batch or a model swap is in flight.
UPDATE_DEFER_S = 5.0
_KEYS = (
    "thing_name", "model_dir", "input_topic", "threshold", "max_batch_windows", "log_level",
    "timezone", "state_path", "history_days", "meters",
)
_METER_KEYS = ("id", "pv", "rated_current_a", "nominal_voltage_v", "phases", "register_digits")
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no", "")


@dataclass(frozen=True, slots=True)
class MeterSettings:
    """Nameplate data of one meter for the rules (A, V, whole-kWh register digits)."""

    id: str
    pv: bool = False
    rated_current_a: float = 60.0
    nominal_voltage_v: float = 230.0
    phases: int = 1
    register_digits: int = 8

    @classmethod
    def from_mapping(cls, data: Any, path: str) -> MeterSettings:
        if not isinstance(data, Mapping):
            raise ConfigError("expected a mapping", path=path)
        unknown = sorted(set(data) - set(_METER_KEYS))
        if unknown:
            raise ConfigError(f"unknown key(s) {', '.join(unknown)}", path=path)
        mid = str(data.get("id") or "")
        if not mid:
            raise ConfigError("a meter id is required", path=f"{path}.id")
        pv = str(data.get("pv", "false")).lower()
        if pv not in _TRUE + _FALSE:
            raise ConfigError(f"expected true/false, got {pv!r}", path=f"{path}.pv")
        try:
            out = cls(
                id=mid,
                pv=pv in _TRUE,
                rated_current_a=float(str(data.get("rated_current_a", "60"))),
                nominal_voltage_v=float(str(data.get("nominal_voltage_v", "230"))),
                phases=int(str(data.get("phases", "1"))),
                register_digits=int(str(data.get("register_digits", "8"))),
            )
        except ValueError as exc:
            raise ConfigError(f"not a number: {exc}", path=path) from exc
        if not (0 < out.rated_current_a <= 10_000 and 0 < out.nominal_voltage_v <= 1_000
                and out.phases in (1, 2, 3) and 4 <= out.register_digits <= 12):
            raise ConfigError("rated_current_a, nominal_voltage_v, phases (1-3) or "
                              "register_digits (4-12) out of range", path=path)
        return out

    def detector_config(self) -> Any:
        from edge_core.analytics.detectors import MeterConfig

        return MeterConfig(self.id, has_pv=self.pv, rated_current_a=self.rated_current_a,
                           nominal_voltage_v=self.nominal_voltage_v, phases=self.phases,
                           register_digits=self.register_digits)


@dataclass(frozen=True, slots=True)
class AnalyticsConfig:
    thing_name: str
    model_dir: str
    input_topic: str = DEFAULT_INPUT_TOPIC
    threshold: float | None = None
    max_batch_windows: int = 4096
    timezone: str = "UTC"
    state_path: str = "analytics-state.db"
    history_days: int = 28
    meters: tuple[MeterSettings, ...] = field(default=())

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> AnalyticsConfig:
        data = with_thing_name(mapping)
        unknown = sorted(set(data) - set(_KEYS))
        if unknown:
            raise ConfigError(f"unknown key(s) {', '.join(unknown)}", path="<root>")
        thing = str(data.get("thing_name") or "")
        try:
            Topics(thing)
        except ValueError as exc:
            raise ConfigError(str(exc), path="thing_name") from exc
        model_dir = str(data.get("model_dir") or os.environ.get(ENV_MODEL_DIR, ""))
        if not model_dir:
            raise ConfigError(f"no model_dir and {ENV_MODEL_DIR} unset", path="model_dir")
        raw_threshold = str(data.get("threshold", "") or "")
        try:
            threshold = float(raw_threshold) if raw_threshold else None
            batch = int(str(data.get("max_batch_windows", "4096")))
        except ValueError as exc:
            raise ConfigError(f"not a number: {exc}", path="threshold/max_batch_windows") from exc
        if not 1 <= batch <= 1_000_000:
            raise ConfigError(f"{batch} is outside [1, 1000000]", path="max_batch_windows")
        topic = str(data.get("input_topic") or DEFAULT_INPUT_TOPIC)
        if "#" in topic or "+" in topic:
            raise ConfigError("a plain local topic is required", path="input_topic")
        tz = str(data.get("timezone") or "UTC")
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(tz)
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"unknown time zone {tz!r}", path="timezone") from exc
        state = str(data.get("state_path") or "analytics-state.db")
        try:
            days = int(str(data.get("history_days", "28")))
        except ValueError as exc:
            raise ConfigError("expected an integer", path="history_days") from exc
        if not 7 <= days <= 366:
            raise ConfigError(f"{days} is outside [7, 366]", path="history_days")
        raw_meters = data.get("meters") or []
        if not isinstance(raw_meters, list):
            raise ConfigError("expected a list", path="meters")
        meters = tuple(MeterSettings.from_mapping(m, f"meters[{i}]")
                       for i, m in enumerate(raw_meters))
        ids = [m.id for m in meters]
        if len(set(ids)) != len(ids):
            raise ConfigError("duplicate meter id", path="meters")
        return cls(thing, model_dir, topic, threshold, batch, tz, state, days, meters)

    @property
    def status_path(self) -> Path:
        return Path(self.state_path).with_suffix(".status.json")


class AnalyticsApp:
    """The com.amiedge.Analytics application object (see module doc)."""

    def __init__(self) -> None:
        from edge_core.analytics.inference import ModelManager

        self.config: AnalyticsConfig | None = None
        self.models = ModelManager()
        self.model_dir = ""  # the folder of the model in service
        self.model_version = ""
        self.last_rejected: dict[str, str] | None = None
        self.dropped = 0  # payloads dropped because the queue was full
        self.service: Any = None  # AnalyticsService once started
        self._bus: Bus | None = None
        self._sub: Subscription | None = None
        self._queue: asyncio.Queue[bytes | None] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._reconfiguring: asyncio.Task[None] | None = None
        self._swapping = False

    # -- Greengrass hooks ------------------------------------------------------------------

    def validate_config(self, mapping: Mapping[str, Any]) -> None:
        AnalyticsConfig.from_mapping(mapping)

    def apply_config(self, mapping: Mapping[str, Any]) -> None:
        """Take a validated configuration live: rule settings at once; a new model folder or
        input topic in a task (loading a model takes a moment and must not block the loop)."""
        new = AnalyticsConfig.from_mapping(mapping)
        old, self.config = self.config, new
        if self.service is None or old is None:
            return
        self.service.meter_settings = {m.id: m.detector_config() for m in new.meters}
        self.service.threshold = new.threshold
        self.service.max_batch_windows = new.max_batch_windows
        if (new.state_path, new.timezone, new.history_days) != (
            old.state_path, old.timezone, old.history_days
        ):
            log.warning("state_path, timezone and history_days take effect at the next restart")
        if new.model_dir != self.model_dir or new.input_topic != old.input_topic:
            previous = self._reconfiguring
            self._reconfiguring = asyncio.get_running_loop().create_task(
                self._reconfigure(new, old, previous), name="analytics-reconfigure"
            )

    def update_gate(self) -> float:
        """Defer while a batch is being scored or a model is being swapped."""
        busy = self.service is not None and self.service.busy
        return UPDATE_DEFER_S if (busy or self._swapping) else 0.0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, bus: Bus) -> None:
        from edge_core.analytics.service import AnalyticsService

        self._bus = bus
        cfg = self.config = AnalyticsConfig.from_mapping(bus.get_config())
        model = await asyncio.to_thread(self.models.update, cfg.model_dir)  # ModelError: ERRORED
        self.model_dir, self.model_version = cfg.model_dir, model.version
        log.info("anomaly model %s ready in %s", model.version, cfg.model_dir)
        self.service = AnalyticsService(
            cfg.thing_name,
            cfg.timezone,
            self.models,
            state_path=cfg.state_path,
            publish=self._publish_event,
            meter_settings={m.id: m.detector_config() for m in cfg.meters},
            threshold=cfg.threshold,
            max_batch_windows=cfg.max_batch_windows,
            keep_days=cfg.history_days,
        )
        self._queue = asyncio.Queue(QUEUE_DEPTH)
        self._worker = asyncio.create_task(self._work(), name="analytics-worker")
        self._sub = await bus.subscribe_local(cfg.input_topic, self._on_readings)
        log.info("analytics listening on %s", cfg.input_topic)
        self._write_status()
        await self._health("started")

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.close()
            self._sub = None
        if self._reconfiguring is not None:
            with contextlib.suppress(Exception):
                await self._reconfiguring
        if self._queue is not None and self._worker is not None:
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(None)  # finish the batch in flight, then stop
            try:
                await asyncio.wait_for(asyncio.shield(self._worker), 5.0)
            except TimeoutError:
                self._worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._worker
        if self.service is not None:
            await self.service.close()
            self._write_status()
        await self._health("stopping")
        self._bus = None

    # -- readings in, events out -----------------------------------------------------------

    async def _on_readings(self, _topic: str, payload: bytes) -> None:
        assert self._queue is not None
        try:
            self._queue.put_nowait(payload)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("analytics behind: readings batch dropped (%d so far)", self.dropped)

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            payload = await self._queue.get()
            if payload is None:
                return
            try:
                outcome = await self.service.consume(payload)
            except Exception:  # the worker must survive anything one batch does
                log.exception("readings batch failed")
                continue
            if outcome.days or outcome.published:
                log.info("batch: %d readings, %d days complete, %d events (model %s)",
                         outcome.accepted, outcome.days, outcome.published,
                         outcome.model_version or "-")
                self._write_status()

    async def _publish_event(self, payload: bytes) -> None:
        if self._bus is None or self.config is None:
            raise BusError("analytics is stopping")
        await self._bus.publish_local(Topics(self.config.thing_name).local_anomaly, payload)

    # -- model hot swap --------------------------------------------------------------------

    async def _reconfigure(
        self, new: AnalyticsConfig, old: AnalyticsConfig, previous: asyncio.Task[None] | None
    ) -> None:
        if previous is not None:
            with contextlib.suppress(Exception):
                await previous
        if new.input_topic != old.input_topic and self._bus is not None:
            if self._sub is not None:
                await self._sub.close()
            self._sub = await self._bus.subscribe_local(new.input_topic, self._on_readings)
            log.info("analytics now listening on %s", new.input_topic)
        if new.model_dir != self.model_dir:
            await self.swap_model(new.model_dir)

    async def swap_model(self, path: str) -> bool:
        """Load ``path`` and put it in service; on refusal keep the current model. Reports
        either outcome (log, health, status file); returns whether the swap happened."""
        self._swapping = True
        try:
            model = await asyncio.to_thread(self.models.update, path)
        except ModelError as exc:
            self.last_rejected = {"model_dir": path, "reason": str(exc),
                                  "time": str(int(time.time()))}
            log.error("model at %s refused: %s; keeping %s", path, exc, self.model_version)
            self._write_status()
            await self._health("model_rejected", rejected=self.last_rejected)
            return False
        finally:
            self._swapping = False
        old = self.model_version
        self.model_dir, self.model_version = path, model.version
        log.info("anomaly model swapped without restart: %s -> %s (%s)", old, model.version, path)
        self._write_status()
        await self._health("model_swapped", previous=old)
        return True

    # -- reporting -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "component": COMPONENT,
            "version": __version__,
            "pid": os.getpid(),
            "model_version": self.model_version,
            "model_dir": self.model_dir,
            "last_rejected": self.last_rejected,
            "dropped_batches": self.dropped,
            "service": self.service.snapshot() if self.service is not None else None,
            "time": int(time.time()),
        }

    def _write_status(self) -> None:
        if self.config is None:
            return
        path = self.config.status_path
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self.status(), sort_keys=True), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("status file %s not written: %s", path, exc)

    async def _health(self, event: str, **extra: Any) -> None:
        if self._bus is None or self.config is None:
            return
        body = {
            "component": COMPONENT,
            "event": event,
            "version": __version__,
            "model_version": self.model_version,
            "time": int(time.time()),
            **extra,
        }
        topic = Topics(self.config.thing_name).health
        try:
            await self._bus.publish(topic, json.dumps(body).encode(), qos=1)
        except AmiError as exc:  # health is best effort; the nucleus may be offline
            log.warning("health not published: %s", exc)
