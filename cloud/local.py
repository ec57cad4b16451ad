"""The local stack: broker subscription + rules evaluator + actions + API, in one process.

Theory of operation
-------------------
IoT Core's part is played by :class:`~cloud.rules.RuleEngine`: one MQTT subscription per
covering rule filter (:meth:`RuleEngine.topic_filters`, which refuses partial overlaps), and
every rule runs on every message it matches, so each rule sees each message once. Actions run
in a worker thread (:func:`asyncio.to_thread`) so SQLite and Parquet work never blocks the event
loop, one message at a time in arrival order (the stores serialise access with their own lock
anyway, and ordered processing keeps an alarm ahead of its restore). An action that fails is
logged and counted, and the other actions of the message still run (IoT Core runs actions
independently).

The API server runs in its own thread (:class:`~cloud.http.ApiServer`). On-demand read
commands (``POST /v1/reads``) are published on the stack's own MQTT connection: the HTTP thread
hands the publish to the event loop (:func:`asyncio.run_coroutine_threadsafe`) and waits for the
broker's acknowledgement, at most :data:`PUBLISH_TIMEOUT_S`. The same server serves the
dashboard at ``/``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloud.api import ApiApp
from cloud.billing.service import LocalBilling
from cloud.events import DocumentIngestor
from cloud.http import ApiServer
from cloud.ingest import Ingestor
from cloud.registry import load_registry_file
from cloud.rules import RULES, ActionInvocation, Rule, RuleEngine
from cloud.storage.base import Stores
from cloud.storage.local import SqliteDb, SqliteIntervalStore, open_local_stores
from edge_core.errors import AmiError, PublishError

__all__ = [
    "PUBLISH_TIMEOUT_S",
    "LocalActions",
    "LocalStackHandle",
    "bus_publisher",
    "run_local_stack",
]

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 10.0  # longest wait of an API thread for a command's acknowledgement (s)


def bus_publisher(
    bus: Any, loop: asyncio.AbstractEventLoop, timeout_s: float = PUBLISH_TIMEOUT_S
) -> Callable[[str, bytes], None]:
    """A blocking ``publish(topic, payload)`` for threads other than ``loop``'s: QoS 1 on
    ``bus``, returns once acknowledged; PublishError on failure or after ``timeout_s``."""

    def publish(topic: str, payload: bytes) -> None:
        fut = asyncio.run_coroutine_threadsafe(bus.publish(topic, payload, 1), loop)
        try:
            fut.result(timeout=timeout_s)
        except concurrent.futures.TimeoutError as exc:
            fut.cancel()
            raise PublishError(f"no acknowledgement for {topic} in {timeout_s} s") from exc
        except RuntimeError as exc:  # the loop is closed (stack shutting down)
            raise PublishError(f"cannot publish {topic}: {exc}") from exc

    return publish


@dataclass(slots=True)
class ActionStats:
    invocations: int = 0
    failures: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class LocalActions:
    """Executes action invocations against local stores and in-process handlers."""

    def __init__(self, stores: Stores, ingestor: Ingestor) -> None:
        self.stores = stores
        self.ingestor = ingestor
        self.documents = DocumentIngestor(stores)
        self.stats = ActionStats()

    def run(self, inv: ActionInvocation) -> Any:
        self.stats.invocations += 1
        self.stats.by_kind[inv.kind] = self.stats.by_kind.get(inv.kind, 0) + 1
        try:
            return self._run(inv)
        except AmiError:
            self.stats.failures += 1
            log.exception("action %s/%s of rule %s failed", inv.kind, inv.target, inv.rule)
            return None

    def _run(self, inv: ActionInvocation) -> Any:
        if inv.kind == "s3":
            if isinstance(inv.payload, bytes):
                self.stores.objects.put(inv.target, inv.payload)
            else:
                doc = json.dumps(inv.payload, sort_keys=True).encode()
                self.stores.objects.put(inv.target, doc, "application/json")
            return None
        if inv.kind == "sqs":
            body = (
                inv.payload.decode("utf-8", "replace")
                if isinstance(inv.payload, bytes)
                else json.dumps(inv.payload, sort_keys=True)
            )
            self.stores.queues.send(inv.target, body)
            return None
        event: dict[str, Any] = inv.payload if isinstance(inv.payload, dict) else {}
        if inv.target == "ingest":
            return self.ingestor.handle_event(event)
        if inv.target == "alarm":
            return self.ingestor.handle_alarm(event)
        if inv.target == "documents":
            return self.documents.handle(event)
        raise AmiError(f"no local function {inv.target!r}")


class LocalStackHandle:
    """A running local stack. ``api_url`` is the base URL; ``close()`` stops everything."""

    def __init__(
        self,
        bus: Any,
        *,
        server: ApiServer,
        engine: RuleEngine,
        actions: LocalActions,
        stores: Stores,
        db: SqliteDb,
    ) -> None:
        self.bus = bus
        self.server = server
        self.engine = engine
        self.actions = actions
        self.stores = stores
        self._db = db
        self.received = 0
        self.completed = 0
        self._closed = False
        self._order = asyncio.Lock()
        self._compactor: asyncio.Task[None] | None = None

    @property
    def api_url(self) -> str:
        return self.server.url

    @property
    def messages(self) -> int:
        """received + completed: changes when a message arrives and when its actions are done,
        so "unchanged for a while" means idle."""
        return self.received + self.completed

    @property
    def in_flight(self) -> int:
        return self.received - self.completed

    async def wait_idle(self, quiet_s: float = 0.5, timeout_s: float = 30.0) -> bool:
        """Wait until nothing is in flight and nothing arrived for ``quiet_s`` seconds.
        Returns False if that did not happen within ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        last = -1
        while loop.time() < deadline:
            if self.in_flight == 0 and self.messages == last:
                return True
            last = self.messages
            await asyncio.sleep(quiet_s)
        return False

    async def on_message(self, topic: str, payload: bytes) -> None:
        self.received += 1
        try:
            # One message at a time, in arrival order (asyncio.Lock wakes waiters FIFO): an
            # alarm and its restore, sent in that order, are applied in that order.
            async with self._order:
                await asyncio.to_thread(self._process, topic, payload)
        finally:
            self.completed += 1

    def _process(self, topic: str, payload: bytes) -> None:
        for inv in self.engine.evaluate(topic, payload):
            self.actions.run(inv)

    def compact(self) -> list[str]:
        """Rewrite the lake days written since the last compaction; returns their keys."""
        intervals = self.stores.intervals
        if isinstance(intervals, SqliteIntervalStore):
            return intervals.compact_dirty()
        return []

    async def _compact_every(self, period_s: float) -> None:
        while True:
            await asyncio.sleep(period_s)
            try:
                keys = await asyncio.to_thread(self.compact)
                log.debug("compacted %d lake files", len(keys))
            except AmiError:
                log.exception("periodic compaction failed; retried next period")

    async def close(self) -> None:
        """Disconnect, stop the API, compact the lake, close the database; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._compactor is not None:
            self._compactor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._compactor
        try:
            await self.bus.close()
        finally:
            self.server.close()
            try:
                await asyncio.to_thread(self.compact)
            except AmiError:
                log.exception("compaction at shutdown failed")
            finally:
                self._db.close()


async def run_local_stack(
    broker_host: str,
    broker_port: int,
    data_dir: str | Path,
    http_port: int = 0,
    api_key: str | None = None,
    *,
    registry: str | Path | None = None,
    rules: tuple[Rule, ...] = RULES,
    compact_every_s: float = 300.0,
) -> LocalStackHandle:
    """Start the local stack against a broker; returns once subscribed and serving.

    ``http_port`` 0 picks a free port; ``api_key`` None disables the key check. The lake is
    compacted every ``compact_every_s`` seconds (0: only at close) and at close.
    """
    from edge_core.bus.mqtt import MqttBus
    from edge_core.bus.settings import MqttSettings

    stores, db = open_local_stores(data_dir)
    try:
        if registry is not None:
            stores.registry.upsert(load_registry_file(registry))
        engine = RuleEngine(rules)
        actions = LocalActions(stores, Ingestor(stores))
        bus = MqttBus(
            MqttSettings.from_url(
                f"mqtt://{broker_host}:{broker_port}", client_id_prefix="ami-cloud-local"
            )
        )
        publisher = bus_publisher(bus, asyncio.get_running_loop())
        billing = LocalBilling(
            Path(getattr(stores.intervals, "objects_root", Path(data_dir) / "bucket")),
            before_query=getattr(stores.intervals, "compact_dirty", None),
        )
        server = ApiServer(
            ApiApp(stores, api_key=api_key, publisher=publisher, billing=billing).handle, http_port
        )
    except BaseException:
        db.close()
        raise
    handle = LocalStackHandle(
        bus, server=server, engine=engine, actions=actions, stores=stores, db=db
    )
    try:
        await bus.start()
        for topic_filter in engine.topic_filters():
            await bus.subscribe(topic_filter, handle.on_message)
        server.start()
        if compact_every_s > 0:
            handle._compactor = asyncio.create_task(handle._compact_every(compact_every_s))
    except BaseException:
        await handle.close()
        raise
    log.info("local cloud stack: API at %s, rules %s", server.url, [r.name for r in rules])
    return handle
