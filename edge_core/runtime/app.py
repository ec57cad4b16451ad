"""The concentrator application: acquisition -> spool -> uplink, plus on-demand reads.

Theory of operation
-------------------
* The spool has exactly one owner: this application's :class:`~edge_core.uplink.SpoolWorker`
  thread. Acquisition, the uplink and the command handler all reach SQLite through it, so no
  two threads ever share the connection, and alarm-lane calls jump the queue.
* A read is acknowledged as stored only when ``Spool.put`` returned (committed, fsynced); the
  uplink deletes a batch only after its publish was acknowledged. A crash anywhere in between
  re-sends (same batch id) rather than loses.
* The component reports RUNNING only once the spool is open and acquisition has started.
* Before a component update the gate defers while a meter transaction or an alarm is in flight.
* Analytics runs in another process (a crash there loses and stalls no reads): every stored set
  of readings is offered to it on the local topic ``ami/local/readings`` (batch format,
  fire and forget), and its anomaly events come back on ``ami/local/anomaly``; they are
  spooled like any other message and published on ``dt/ami/{thing}/anomaly``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edge_core.alarms import AlarmMessage
from edge_core.batch import encode_split
from edge_core.bus.base import Bus, Subscription
from edge_core.clock import Clock, SystemClock
from edge_core.config import EdgeConfig, MeterConfig
from edge_core.dlms.counters import CounterStore
from edge_core.dlms.obis import Obis
from edge_core.errors import AmiError, PublishError, SpoolError
from edge_core.meter import read_meter, resolve_reader_security
from edge_core.model import DataClass, Reading, Topics
from edge_core.runtime.acquisition import Acquisition, ReadOutcome, ReadPlan
from edge_core.runtime.alarm_service import AlarmService
from edge_core.runtime.commands import CommandHandler, ReadRequest
from edge_core.spool.store import PutResult, Spool
from edge_core.uplink import SpoolWorker, Uplink, UplinkSettings

__all__ = ["EdgeApp"]

log = logging.getLogger(__name__)

UPDATE_DEFER_S = 30.0


class EdgeApp:
    """One concentrator: reads its meters, spools, publishes, answers on-demand reads."""

    def __init__(
        self,
        config: EdgeConfig,
        bus: Bus,
        *,
        clock: Clock | None = None,
        uplink_settings: UplinkSettings | None = None,
        initial_backfill_s: int = 86400,
        seed: int | None = None,
        report_running: bool = True,
    ) -> None:
        self.config = config
        self.bus = bus
        self.clock = clock or SystemClock()
        self.topics = Topics(config.thing_name)
        self._uplink_settings = uplink_settings or UplinkSettings.from_config(config.uplink)
        self._initial_backfill_s = initial_backfill_s
        self._seed = seed
        self._report_running = report_running
        self._reconfiguring: asyncio.Task[None] | None = None
        self.worker: SpoolWorker | None = None
        self.spool: Spool | None = None
        self.uplink: Uplink | None = None
        self.acquisition: Acquisition | None = None
        self.alarms: AlarmService | None = None
        self.commands = CommandHandler(config, self._on_demand_read, self._respond, self._now_iso)
        self._uplink_task: asyncio.Task[None] | None = None
        self._push_task: asyncio.Task[None] | None = None
        self._security: dict[str, Any] = {}
        self._counters: CounterStore | None = None
        self.pushes_received = 0
        self.local_offer_failures = 0
        self.bad_local_messages = 0
        self.anomalies_spooled = 0
        self._subs: list[Subscription] = []

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        Path(self.config.spool.path).parent.mkdir(parents=True, exist_ok=True)
        self.worker = SpoolWorker()
        self.spool = await self.worker.call(
            Spool.open, self.config.spool.path, quota_bytes=self.config.spool.quota_mb << 20
        )
        self.uplink = Uplink(
            self.spool,
            self.bus,
            self.topics,
            self._uplink_settings,
            worker=self.worker,
            wall_clock=self.clock.now,
        )
        self._uplink_task = asyncio.create_task(self.uplink.run(), name="uplink")
        self.alarms = AlarmService(
            self.config.thing_name,
            [m.id for m in self.config.meters],
            self.clock,
            self._send_alarm,
            settings=self.config.alarms,
            powerfail=self.config.powerfail,
            sequence_path=Path(self.config.spool.path).with_suffix(".alarm-seq"),
            outage_path=Path(self.config.spool.path).with_suffix(".dcu-outage"),
        )
        await self.alarms.start()
        if self.config.push.port:
            self._push_task = asyncio.create_task(self._listen_for_pushes(), name="push-listener")
        self.acquisition = self._new_acquisition(self.config)
        await self.acquisition.start()
        self._subs.append(await self.bus.subscribe(self.topics.read_request, self._on_command))
        self._subs.append(
            await self.bus.subscribe_local(self.topics.local_anomaly, self._on_anomaly)
        )
        if self._report_running:  # a component shell reports for itself
            self.bus.set_config_validator(self.validate_config)
            self.bus.set_update_gate(self.update_gate)
            await self.bus.report_state("RUNNING")
        log.info(
            "concentrator %s running with %d meters",
            self.config.thing_name,
            len(self.config.meters),
        )

    def _new_acquisition(self, config: EdgeConfig) -> Acquisition:
        return Acquisition(
            config,
            self.clock,
            put=self._put,
            last_capture=self._last_capture,
            read=self._read,
            on_comm=self.alarms.on_comm if self.alarms is not None else None,
            on_events=self._on_meter_events,
            initial_backfill_s=self._initial_backfill_s,
            seed=self._seed,
        )

    def reconfigure(self, config: EdgeConfig) -> None:
        """Apply a validated configuration live: acquisition restarts with the new read plan;
        the spool and the uplink (and whatever they hold) carry on untouched. Backfill by
        range means a meter whose read was interrupted loses nothing."""
        if config.thing_name != self.config.thing_name or config.spool != self.config.spool:
            log.warning("thing name and spool changes take effect at the next restart")
        self.config = config
        self._security.clear()  # keys or titles may have changed
        self.commands = CommandHandler(config, self._on_demand_read, self._respond, self._now_iso)
        if self.acquisition is None:
            return

        async def swap() -> None:
            old = self.acquisition
            if old is not None:
                await old.stop()
            self.acquisition = self._new_acquisition(config)
            await self.acquisition.start()

        self._reconfiguring = asyncio.get_running_loop().create_task(swap())

    async def stop(self, drain_timeout: float = 0.0) -> None:
        """Stop reading, optionally drain the spool (``drain_timeout`` s), close the spool."""
        for sub in self._subs:
            await sub.close()
        self._subs.clear()
        if self._reconfiguring is not None:
            await self._reconfiguring
        if self.acquisition is not None:
            await self.acquisition.stop()
        if self._push_task is not None:
            self._push_task.cancel()
            await asyncio.gather(self._push_task, return_exceptions=True)
            self._push_task = None
        if self.alarms is not None:
            await self.alarms.stop()
        if self.uplink is not None and drain_timeout > 0:
            try:
                await self.uplink.drain(drain_timeout)
            except Exception as exc:  # a broker outage at shutdown must not block closing
                log.warning("spool not drained at stop: %s", exc)
        if self.uplink is not None:
            await self.uplink.stop()
        if self._uplink_task is not None:
            await self._uplink_task
        if self.worker is not None and self.spool is not None:
            await self.worker.call(self.spool.close)
            await asyncio.to_thread(self.worker.close)
        self.worker = None

    async def _on_command(self, topic: str, payload: bytes) -> None:
        await self.commands.handle(topic, payload)

    # -- Greengrass hooks ---------------------------------------------------------------

    @staticmethod
    def validate_config(mapping: Mapping[str, Any]) -> None:
        EdgeConfig.from_mapping(mapping)

    def update_gate(self) -> float:
        busy_meter = self.acquisition is not None and self.acquisition.busy
        alarms = self.uplink is not None and self.uplink.snapshot().get("in_flight", 0) > 0
        return UPDATE_DEFER_S if (busy_meter or alarms) else 0.0

    # -- the spool, through its owner thread --------------------------------------------

    async def _put(self, readings: Sequence[Reading]) -> PutResult:
        worker, spool = self._owner()
        result = await worker.call(spool.put, list(readings))
        if self.uplink is not None:
            self.uplink.notify()
        await self._offer_to_analytics(readings)
        return result

    async def _offer_to_analytics(self, readings: Sequence[Reading]) -> None:
        """Hand stored readings to the analytics component; its absence costs nothing."""
        by_class: dict[DataClass, list[Reading]] = {}
        for r in readings:
            by_class.setdefault(r.data_class, []).append(r)
        try:
            for dc, rows in by_class.items():
                for _batch, payload in encode_split(
                    rows, thing=self.config.thing_name, data_class=dc
                ):
                    await self.bus.publish_local(self.topics.local_readings, payload)
        except AmiError as exc:
            self.local_offer_failures += 1
            log.debug("readings not offered to analytics: %s", exc)

    MAX_ANOMALY_EVENT_BYTES = 4096

    async def _on_anomaly(self, _topic: str, payload: bytes) -> None:
        """Spool an anomaly event from analytics for upload (bulk lane, daily priority)."""
        if not payload or len(payload) > self.MAX_ANOMALY_EVENT_BYTES or payload[:1] != b"{":
            self.bad_local_messages += 1
            log.warning("anomaly event refused (%d bytes, not a JSON object)", len(payload))
            return
        worker, spool = self._owner()
        try:
            await worker.call(spool.put_message, DataClass.DAILY, self.topics.anomaly, payload)
        except AmiError as exc:
            log.error("anomaly event not spooled: %s", exc)
            return
        self.anomalies_spooled += 1
        if self.uplink is not None:
            self.uplink.notify()

    async def _last_capture(self, meter: str, obis: str, data_class: DataClass) -> int | None:
        worker, spool = self._owner()
        return await worker.call(spool.last_capture, meter, obis, data_class)

    # -- meters ---------------------------------------------------------------------------

    async def _credentials(self, meter: MeterConfig) -> dict[str, Any]:
        """Association secrets of one meter, read through the bus (never logged)."""
        if meter.auth.level == "low":
            return {"password": await self.bus.get_secret(meter.auth.password_secret)}
        if meter.auth.level == "hls-gmac":
            security = self._security.get(meter.id)
            if security is None:
                security = await resolve_reader_security(
                    self.bus.get_secret,
                    auth_key_secret=meter.auth.auth_key_secret,
                    cipher_key_secret=meter.auth.cipher_key_secret,
                    system_title=meter.auth.system_title,
                    store=self._counter_store(),
                )
                self._security[meter.id] = security
            return {"security": security}
        return {}

    def _counter_store(self) -> CounterStore:
        """Invocation counters live beside the spool: one store for the process."""
        if self._counters is None:
            self._counters = CounterStore(Path(self.config.spool.path).parent / "ic-counters")
        return self._counters

    async def _read(self, meter: MeterConfig, plan: ReadPlan) -> ReadOutcome:
        """One association: profile range, daily range, event logs and the clock check."""
        schedule = self.config.schedule
        result = await read_meter(
            meter.url,
            client=meter.client,
            server=meter.server,
            obis=(),
            load_profile=plan.profile,
            daily=plan.daily,
            events=plan.events,
            transport=meter.transport,
            timeout=meter.timeout_s,
            baud=meter.baud,
            set_clock=schedule.set_clock,
            max_drift_s=schedule.max_clock_drift_s,
            clock_reference=self.clock.now_dt,
            meter_id=meter.id,
            **await self._credentials(meter),
        )
        readings: list[Reading] = []
        if result.load_profile is not None:
            readings += result.load_profile.to_readings(meter.id, DataClass.INTERVAL)
        if result.daily_profile is not None:
            readings += result.daily_profile.to_readings(meter.id, DataClass.DAILY)
        check = result.clock_check
        return ReadOutcome(
            readings,
            list(result.events or ()),
            check.drift_s if check is not None else None,
            bool(check and check.adjusted),
        )

    async def _listen_for_pushes(self) -> None:
        """Meters' DataNotification pushes (alarm register, last gasp) into the alarm engine."""
        from edge_core.meter.push import PushListener

        push = self.config.push
        async with PushListener(push.host, push.port) as listener:
            log.info("listening for meter pushes on %s:%d", push.host, listener.port)
            async for received in listener:
                self.pushes_received += 1
                if self.alarms is not None:
                    await self.alarms.feed_push(received)

    async def _on_meter_events(
        self, meter: str, records: list[Any], readings: list[Reading]
    ) -> None:
        if self.alarms is not None:
            await self.alarms.feed_meter_records(meter, records, readings)

    async def _on_demand_read(self, meter: MeterConfig, req: ReadRequest) -> Mapping[str, Any]:
        result = await read_meter(
            meter.url,
            client=meter.client,
            server=meter.server,
            obis=[Obis.parse(o) for o in req.obis] if req.obis else None,
            load_profile=req.profile,
            transport=meter.transport,
            timeout=meter.timeout_s,
            baud=meter.baud,
            meter_id=meter.id,
            **await self._credentials(meter),
        )
        doc = result.to_json()
        doc.pop("meter", None)  # the URL; the response names the meter by id
        return doc

    async def _send_alarm(self, msg: AlarmMessage) -> None:
        uplink = self._require_uplink()
        await uplink.send_alarm(msg.topic(self.topics), msg.to_json(), data_class=msg.data_class)

    async def _respond(self, payload: bytes) -> None:
        uplink = self._require_uplink()
        await uplink.send_alarm(self.topics.read_response, payload, data_class=DataClass.ON_DEMAND)

    def _owner(self) -> tuple[SpoolWorker, Spool]:
        if self.worker is None or self.spool is None:
            raise SpoolError("the concentrator is not started: the spool is closed")
        return self.worker, self.spool

    def _require_uplink(self) -> Uplink:
        if self.uplink is None:
            raise PublishError("the concentrator is not started: no uplink")
        return self.uplink

    def _now_iso(self) -> str:
        return self.clock.now_dt().isoformat()

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.acquisition is not None:
            out["acquisition"] = self.acquisition.stats.totals()
        if self.uplink is not None:
            out["uplink"] = self.uplink.snapshot()
        if self.alarms is not None:
            out["alarms"] = {"sent": self.alarms.sent, "failed": self.alarms.failed}
        out["analytics"] = {
            "anomalies_spooled": self.anomalies_spooled,
            "offer_failures": self.local_offer_failures,
            "bad_local_messages": self.bad_local_messages,
        }
        return out
