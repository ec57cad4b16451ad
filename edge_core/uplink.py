"""The uplink: spool -> sealed batches -> MQTT, alarms first.

Theory of operation
-------------------
* Durability. A message leaves the spool (``ack``) only after the bus acknowledged its publish
  (PUBACK for QoS 1). A failed publish is ``nack``-ed (its attempt counter grows) and stays. After
  a crash the same outbox row, with the same payload and batch id, is published again: the cloud
  sees at-least-once delivery and deduplicates by batch id.
* Spool threads. The spool is synchronous SQLite: every call goes through a
  :class:`SpoolWorker` with one thread per lane. Alarm-lane calls (persist, ack, nack) run on
  their own thread, so an alarm never queues behind a bulk job (a seal, a group commit of
  puts); inside the spool it waits at most for the one short write transaction being
  committed (see edge_core.spool.store). Bulk puts queued together are group-committed.
* Two lanes share one spool:
  - the *alarm lane* publishes ALARM and ON_DEMAND outbox rows, each in its own task, retried
    with backoff until acknowledged. ``send_alarm`` persists the message and (by default) makes
    the first publish attempt while the spool commits, so the PUBACK never waits for a bulk job
    running on the spool thread; rows left over from a previous run are found by the bulk
    lane's scan and handed over;
  - the *bulk lane* seals batches class by class (highest priority first: a class is sealed when
    its oldest unsent reading is older than ``max_batch_age_s`` or ``max_batch_values`` have
    accumulated; everything during :meth:`Uplink.drain`) and publishes outbox rows in spool
    priority order with up to ``max_in_flight`` QoS 1 publishes pipelined.
* Pacing. One :class:`RateBudget` per connection (messages/s and bytes/s token buckets) is shared
  by both lanes; the bulk lane may never take the last ``alarm_reserve_*`` tokens, so an alarm
  always finds budget even while a week of backlog drains at full rate. Over any window of T
  seconds at most ``burst + rate * T`` messages (and bytes) are sent.
* Errors. A failed publish puts the lane into exponential backoff with jitter (or, when the bus
  can tell, until it reconnects); the row stays and is sent again, possibly after rows of the
  same class that were already in flight (the cloud orders by capture time, not arrival). A
  message over 128 KB can never be published: it is logged, counted and skipped for the life
  of the process (it stays in the spool for inspection).
* Time. Pacing and backoff use the event loop's monotonic clock (so a virtual-time loop drives
  them in tests); batch ages use ``wall_clock`` (UTC epoch seconds) because capture times are.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, fields
from typing import Any, Protocol, TypeVar

from edge_core.bus.base import Bus
from edge_core.bus.memory import check_message_size
from edge_core.errors import (
    BusError,
    ConfigError,
    PayloadTooLargeError,
    PublishError,
    SpoolError,
)
from edge_core.health import Health
from edge_core.model import DataClass, Topics

__all__ = [
    "ALARM_LANE_CLASSES",
    "Backoff",
    "OutboxItemLike",
    "RateBudget",
    "SpoolLike",
    "SpoolWorker",
    "Uplink",
    "UplinkSettings",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Data classes published by the alarm lane (small JSON on their own topics).
ALARM_LANE_CLASSES = frozenset({DataClass.ALARM, DataClass.ON_DEMAND})


class OutboxItemLike(Protocol):
    """What the uplink reads from an outbox row (edge_core.spool's OutboxItem)."""

    @property
    def id(self) -> int: ...
    @property
    def data_class(self) -> int: ...
    @property
    def topic(self) -> str: ...
    @property
    def payload(self) -> bytes: ...


class SpoolLike(Protocol):
    """The part of :class:`edge_core.spool.store.Spool` the uplink uses."""

    def put_message(
        self, data_class: DataClass, topic: str, payload: bytes, *, batch_id: bytes | None = None
    ) -> int: ...
    def seal(
        self,
        data_class: DataClass,
        *,
        thing: str,
        topic: str,
        max_values: int,
        min_age_s: float = 0,
        now: float | None = None,
    ) -> Any: ...
    def pending(self, limit: int = 100) -> Sequence[Any]: ...
    def ack(self, outbox_id: int) -> None: ...
    def nack(self, outbox_id: int) -> None: ...
    def stats(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class UplinkSettings:
    """Uplink tuning. Rates are per connection; sizes in bytes; durations in seconds.

    IoT Core allows 100 publishes/s and 512 KB/s per connection; the defaults stay at half.
    """

    max_batch_values: int = 50_000
    max_batch_age_s: float = 300.0
    max_publish_per_s: float = 50.0
    max_bytes_per_s: float = 262_144.0
    alarm_reserve_messages: float = 5.0
    alarm_reserve_bytes: float = 16_384.0
    burst_s: float = 0.1
    max_in_flight: int = 8
    max_alarms_in_flight: int = 16
    alarm_publish_while_persisting: bool = True
    qos: int = 1
    backoff_min_s: float = 0.2
    backoff_max_s: float = 30.0
    poll_interval_s: float = 1.0
    health_period_s: float = 300.0

    def __post_init__(self) -> None:
        positive = (
            "max_batch_values",
            "max_publish_per_s",
            "max_bytes_per_s",
            "max_in_flight",
            "max_alarms_in_flight",
            "backoff_min_s",
            "backoff_max_s",
            "poll_interval_s",
            "health_period_s",
            "burst_s",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError("must be positive", path=f"uplink.{name}")
        for name in ("max_batch_age_s", "alarm_reserve_messages", "alarm_reserve_bytes"):
            if getattr(self, name) < 0:
                raise ConfigError("must not be negative", path=f"uplink.{name}")
        if self.qos not in (0, 1):
            raise ConfigError("must be 0 or 1", path="uplink.qos")
        if self.backoff_max_s < self.backoff_min_s:
            raise ConfigError("must be >= backoff_min_s", path="uplink.backoff_max_s")
        if self.alarm_reserve_messages >= self.max_publish_per_s * 10:
            raise ConfigError("reserve leaves no budget for bulk", path="uplink.alarm_reserve")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> UplinkSettings:
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                raise ConfigError("unknown setting", path=f"uplink.{key}")
            kind = str(known[key].type)
            try:
                if kind == "bool" and isinstance(value, bool):
                    kwargs[key] = value
                    continue
                if isinstance(value, bool):
                    raise ValueError(value)
                if kind == "bool":
                    raise ValueError(value)
                kwargs[key] = int(value) if kind == "int" else float(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"expected {kind}, got {value!r}", path=f"uplink.{key}") from exc
        return cls(**kwargs)

    @classmethod
    def from_config(cls, config: Any, **overrides: Any) -> UplinkSettings:
        """From :class:`edge_core.config.UplinkConfig` (same names for the shared fields)."""
        shared = {f.name: getattr(config, f.name) for f in fields(cls) if hasattr(config, f.name)}
        return cls(**{**shared, **overrides})


# -- the spool thread ----------------------------------------------------------------------


class SpoolWorker:
    """Two threads that own the spool; ``await call(fn, ...)`` runs ``fn`` on one of them.

    ``priority`` ALARM (0 or lower) runs on the alarm thread, anything else on the bulk
    thread, each lane in submission order; so an alarm-lane call never waits behind a bulk
    job (a seal, a group of puts), only - inside the spool - for the one short write
    transaction being committed. The spool is thread-safe (see edge_core.spool.store).

    Group commit: when the bulk thread takes a call of a method marked with a
    ``coalesce_with`` attribute naming a sibling method (``Spool.put`` -> ``put_many``), it
    takes every queued bulk call of that same method (one positional argument, no keywords)
    and runs them as one ``put_many([...])``; each caller gets its own result or exception.
    Results are handed back to the caller's loop with ``call_soon_threadsafe``.
    """

    ALARM = 0
    BULK = 1
    MAX_COALESCED = 256  # calls per coalesced job

    def __init__(self, name: str = "ami-spool") -> None:
        self._cond = threading.Condition()
        self._lanes: tuple[collections.deque[Any], collections.deque[Any]] = (
            collections.deque(),
            collections.deque(),
        )
        self._closed = False
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"{name}-{lane}", daemon=True)
            for i, lane in enumerate(("alarm", "bulk"))
        ]
        for t in self._threads:
            t.start()

    def _next(self, lane: int) -> Any:
        q = self._lanes[lane]
        with self._cond:
            while not q:
                self._cond.wait(1.0)
            job = q.popleft()
            if job is None:
                return None
            fn = job[0]
            target = getattr(fn, "__func__", None)
            sibling = getattr(target, "coalesce_with", None)
            if sibling is None or job[2] or len(job[1]) != 1:
                return job
            group = [job]
            keep: collections.deque[Any] = collections.deque()
            while q and len(group) < self.MAX_COALESCED:
                other = q.popleft()
                if (
                    other is not None
                    and getattr(other[0], "__func__", None) is target
                    and getattr(other[0], "__self__", None) is fn.__self__
                    and not other[2]
                    and len(other[1]) == 1
                ):
                    group.append(other)
                else:
                    keep.append(other)
            keep.extend(q)
            q.clear()
            q.extend(keep)
        if len(group) == 1:
            return job
        return ("group", getattr(fn.__self__, sibling), group)

    def _run(self, lane: int) -> None:
        while True:
            job = self._next(lane)
            if job is None:
                return
            if job[0] == "group":
                self._run_group(job[1], job[2])
                continue
            fn, args, kwargs, fut = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                fut.set_exception(exc)

    @staticmethod
    def _run_group(many: Callable[[list[Any]], list[Any]], group: list[Any]) -> None:
        live = [j for j in group if j[3].set_running_or_notify_cancel()]
        try:
            results = many([j[1][0] for j in live])
        except BaseException as exc:
            for j in live:
                j[3].set_exception(exc)
            return
        for j, res in zip(live, results, strict=True):
            if isinstance(res, BaseException):
                j[3].set_exception(res)
            else:
                j[3].set_result(res)

    def submit(self, priority: int, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        if self._closed:
            raise SpoolError("spool worker is closed")
        fut: Future[T] = Future()
        with self._cond:
            self._lanes[0 if priority <= self.ALARM else 1].append((fn, args, kwargs, fut))
            self._cond.notify_all()
        return fut

    async def call(
        self, fn: Callable[..., T], *args: Any, priority: int = BULK, **kwargs: Any
    ) -> T:
        loop = asyncio.get_running_loop()
        afut: asyncio.Future[T] = loop.create_future()

        def transfer(src: Future[T]) -> None:
            if afut.done():
                return
            exc = src.exception()
            if exc is not None:
                afut.set_exception(exc)
            else:
                afut.set_result(src.result())

        def done(src: Future[T]) -> None:
            with contextlib.suppress(RuntimeError):  # loop closed: nobody waits any more
                loop.call_soon_threadsafe(transfer, src)

        self.submit(priority, fn, *args, **kwargs).add_done_callback(done)
        return await afut

    def close(self, timeout: float = 10.0) -> None:
        """Finish queued jobs, then stop the threads (waits up to ``timeout`` s)."""
        if self._closed:
            return
        self._closed = True
        with self._cond:
            for q in self._lanes:
                q.append(None)
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))


# -- pacing and backoff --------------------------------------------------------------------


_EPSILON = 1e-6  # tokens: float rounding tolerance
_MIN_WAIT_S = 1e-3


class RateBudget:
    """Token buckets for messages and bytes with a reserve only priority callers may use.

    ``now`` is a monotonic clock in seconds. Capacity is ``reserve + max(one message,
    rate * burst_s)`` for each bucket (the byte bucket always holds one 128 KB message).
    """

    def __init__(
        self,
        *,
        messages_per_s: float,
        bytes_per_s: float,
        reserve_messages: float,
        reserve_bytes: float,
        burst_s: float,
        now: float,
        max_message_bytes: int = 128 * 1024,
    ) -> None:
        self.rates = (float(messages_per_s), float(bytes_per_s))
        self.reserves = (float(reserve_messages), float(reserve_bytes))
        self.capacities = (
            reserve_messages + max(1.0, messages_per_s * burst_s),
            reserve_bytes + max(float(max_message_bytes), bytes_per_s * burst_s),
        )
        self.levels = list(self.capacities)
        self._t = now

    def _refill(self, now: float) -> None:
        dt = max(0.0, now - self._t)
        self._t = max(self._t, now)
        for i in (0, 1):
            self.levels[i] = min(self.capacities[i], self.levels[i] + dt * self.rates[i])

    def try_take(self, nbytes: int, *, priority: bool, now: float) -> float:
        """Take one message of ``nbytes`` and return 0, or return the seconds to wait."""
        self._refill(now)
        need = (1.0, float(nbytes))
        floor = (0.0, 0.0) if priority else self.reserves
        wait = 0.0
        for i in (0, 1):
            # A message bigger than the whole bucket may go once the bucket is full.
            target = min(floor[i] + need[i], self.capacities[i])
            if self.levels[i] + _EPSILON < target:
                wait = max(wait, (target - self.levels[i]) / self.rates[i])
        if wait > 0:
            # Never ask for a wait shorter than a clock tick: float rounding could otherwise
            # make a caller spin on waits too small to move the clock.
            return max(wait, _MIN_WAIT_S)
        for i in (0, 1):
            self.levels[i] -= need[i]
        return 0.0

    async def take(self, nbytes: int, *, priority: bool) -> None:
        loop = asyncio.get_running_loop()
        while True:
            wait = self.try_take(nbytes, priority=priority, now=loop.time())
            if wait <= 0:
                return
            await asyncio.sleep(wait)


class Backoff:
    """Exponential backoff with "equal jitter": the n-th delay is in [d/2, d], d = min*2^n."""

    def __init__(self, minimum: float, maximum: float, rng: random.Random | None = None) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        d = min(self.maximum, self.minimum * 2.0 ** min(self.failures, 30))
        self.failures += 1
        return d / 2 + self._rng.random() * d / 2

    def reset(self) -> None:
        self.failures = 0


# -- the uplink ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Msg:
    id: int
    data_class: int
    topic: str
    payload: bytes


class Uplink:
    """Publishes the spool's outbox over a bus (see the module docstring).

    ``worker``: the :class:`SpoolWorker` that owns ``spool``; pass the one shared with
    acquisition. When omitted the uplink starts its own and ends it in :meth:`close` (then
    nothing else may call the spool meanwhile).
    """

    def __init__(
        self,
        spool: SpoolLike,
        bus: Bus,
        topics: Topics,
        settings: UplinkSettings | None = None,
        *,
        worker: SpoolWorker | None = None,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.spool = spool
        self.bus = bus
        self.topics = topics
        self.settings = settings or UplinkSettings()
        self._own_worker = worker is None
        self.worker = worker or SpoolWorker()
        self.wall_clock = wall_clock
        self.health = Health(thing=topics.thing, wall_clock=wall_clock)
        self._rng = rng or random.Random()
        self._budget: RateBudget | None = None
        self._stopping = False
        self._running = False
        self._wake: asyncio.Event | None = None
        self._stop_event: asyncio.Event | None = None
        self._alarm_queue: asyncio.Queue[_Msg] | None = None
        self._alarm_known: set[int] = set()
        self._alarm_slots: asyncio.Semaphore | None = None
        self._alarm_tasks: set[asyncio.Task[None]] = set()
        self._delivered: dict[int, asyncio.Future[None]] = {}
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._bulk_slots: asyncio.Semaphore | None = None
        self._bulk_failed = False
        self._bulk_backoff = Backoff(
            self.settings.backoff_min_s, self.settings.backoff_max_s, self._rng
        )
        self._poison: set[int] = set()
        self._flush = 0
        self._drained: asyncio.Event | None = None
        self._alarm_progress: asyncio.Event | None = None
        self._health_due = 0.0

    # -- public API ------------------------------------------------------------------------

    def notify(self) -> None:
        """New readings are in the spool: look at once instead of at the next poll."""
        if self._wake is not None:
            self._wake.set()

    async def send_alarm(
        self, topic: str, payload: bytes, *, data_class: DataClass = DataClass.ALARM
    ) -> int:
        """Persist an alarm (or an on-demand response) and publish it ahead of all bulk data.

        Returns the outbox id once the message is durable in the spool; :meth:`wait_published`
        waits for its acknowledgement. Raises PayloadTooLargeError before persisting anything
        that could never be published, SpoolError when it cannot be stored.

        With ``alarm_publish_while_persisting`` (the default) the first publish attempt starts
        while the spool commits, so a long bulk job on the spool thread (sealing a big batch)
        does not delay the alarm; the row is acknowledged in the spool once both are done. The
        guarantees are those of persisting first: until this returns the caller has no promise;
        once it returns the alarm survives a crash, and a crash in between can at worst publish
        it without a spool row (no loss) or leave a row already published (a duplicate).
        """
        if data_class not in ALARM_LANE_CLASSES:
            raise PublishError(f"{data_class.name} does not travel on the alarm lane", topic=topic)
        check_message_size(topic, payload)
        self._ensure_loop_state()
        body = bytes(payload)
        early: asyncio.Task[bool] | None = None
        if self.settings.alarm_publish_while_persisting:
            early = asyncio.create_task(self._publish_once(topic, body))
        try:
            outbox_id = await self.worker.call(
                self.spool.put_message, data_class, topic, body, priority=SpoolWorker.ALARM
            )
        except BaseException:
            if early is not None and not early.done():
                # Not durable: the caller is told so; a publish already under way may still land.
                early.add_done_callback(_swallow)
            raise
        msg = _Msg(outbox_id, int(data_class), topic, body)
        if early is None:
            self._enqueue_alarm(msg)
        else:
            self._track_alarm(msg)
            task = asyncio.create_task(self._finish_early(msg, early))
            self._alarm_tasks.add(task)
            task.add_done_callback(self._alarm_tasks.discard)
        return outbox_id

    async def _publish_once(self, topic: str, payload: bytes) -> bool:
        """One alarm publish attempt, True when acknowledged (errors are the lane's to retry)."""
        assert self._budget is not None
        loop = asyncio.get_running_loop()
        await self._budget.take(len(topic) + len(payload), priority=True)
        t0 = loop.time()
        try:
            await self.bus.publish(topic, payload, qos=self.settings.qos)
        except BusError as exc:
            self.health.record_error()
            log.info("first publish of an alarm failed (%s); the alarm lane retries it", exc)
            return False
        self.health.record_publish("alarm", len(payload), loop.time() - t0)
        return True

    async def _finish_early(self, msg: _Msg, early: asyncio.Task[bool]) -> None:
        if await early:
            self._resolve(msg.id)
            await self._spool_quiet(self.spool.ack, msg.id, priority=SpoolWorker.ALARM)
            self._forget_alarm(msg.id)
            return
        await self._spool_quiet(self.spool.nack, msg.id, priority=SpoolWorker.ALARM)
        assert self._alarm_queue is not None
        self._alarm_queue.put_nowait(msg)

    def _resolve(self, outbox_id: int) -> None:
        fut = self._delivered.pop(outbox_id, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def wait_published(self, outbox_id: int, timeout: float) -> None:
        """Wait until the alarm ``outbox_id`` was acknowledged; PublishError after ``timeout``."""
        fut = self._delivered.get(outbox_id)
        if fut is None:
            if outbox_id in self._alarm_known:
                raise PublishError(f"outbox {outbox_id} is not being waited for")
            return  # already acknowledged (or never ours)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except asyncio.TimeoutError:
            raise PublishError(f"outbox {outbox_id} not acknowledged within {timeout} s") from None

    async def run(self) -> None:
        """Run both lanes and the health reporter until :meth:`stop`; restarts a lane that
        fails unexpectedly (after a backoff)."""
        if self._running:
            raise PublishError("uplink already running")
        self._running = True
        self._stopping = False
        self._ensure_loop_state()
        assert self._stop_event is not None
        self._stop_event.clear()
        try:
            lanes = [
                asyncio.create_task(self._supervise("alarm", self._alarm_lane)),
                asyncio.create_task(self._supervise("bulk", self._bulk_lane)),
                asyncio.create_task(self._supervise("health", self._health_loop)),
            ]
            await self._stop_event.wait()
            for task in lanes:
                task.cancel()
            await asyncio.gather(*lanes, return_exceptions=True)
            await self._finish_in_flight(timeout=5.0)
        finally:
            self._running = False

    async def close(self) -> None:
        """Stop, and end the spool thread if the uplink started it (the spool stays open)."""
        await self.stop()
        if self._own_worker:
            await asyncio.to_thread(self.worker.close)

    async def __aenter__(self) -> Uplink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def stop(self) -> None:
        """Ask :meth:`run` to finish (in-flight publishes get a few seconds to complete)."""
        self._stopping = True
        if self._stop_event is not None:
            self._stop_event.set()

    async def drain(self, timeout: float) -> None:
        """Seal and publish everything in the spool, regardless of batch age.

        Returns once the spool has nothing left to send and nothing is in flight. Runs the lanes
        itself when :meth:`run` is not running. Raises PublishError after ``timeout`` s.
        """
        self._ensure_loop_state()
        own_run = None
        if not self._running:
            own_run = asyncio.create_task(self.run())
        assert self._drained is not None
        assert self._wake is not None
        self._flush += 1
        self._drained.clear()
        self._wake.set()
        try:
            # Bulk first; then the alarms known at that moment (alarms raised meanwhile keep
            # coming and must not keep the drain from ever finishing).
            await asyncio.wait_for(self._drain_both(), timeout)
        except asyncio.TimeoutError:
            log.warning(
                "drain timed out: in flight %d, alarm tasks %d, alarm queue %s, failed %s",
                len(self._in_flight),
                len(self._alarm_tasks),
                None if self._alarm_queue is None else self._alarm_queue.qsize(),
                self._bulk_failed,
            )
            raise PublishError(f"spool not drained within {timeout} s") from None
        finally:
            self._flush -= 1
            if own_run is not None:
                await self.stop()
                await own_run

    async def _drain_both(self) -> None:
        assert self._drained is not None
        assert self._alarm_progress is not None
        await self._drained.wait()
        waiting = set(self._alarm_known) - self._poison
        while waiting & self._alarm_known:
            self._alarm_progress.clear()
            await self._alarm_progress.wait()

    def _forget_alarm(self, outbox_id: int) -> None:
        self._alarm_known.discard(outbox_id)
        if self._alarm_progress is not None:
            self._alarm_progress.set()

    def update_deferral(self) -> float:
        """An update gate for :meth:`Bus.set_update_gate`: seconds to defer a component update
        while an alarm or a batch is in flight (0 when idle)."""
        queued = self._alarm_queue is not None and not self._alarm_queue.empty()
        busy = bool(self._in_flight) or bool(self._alarm_tasks) or queued
        return 10.0 if busy else 0.0

    def snapshot(self) -> dict[str, Any]:
        self.health.in_flight = len(self._in_flight) + len(self._alarm_tasks)
        self.health.connected = getattr(self.bus, "connected", None)
        return self.health.snapshot()

    # -- loop state ------------------------------------------------------------------------

    def _ensure_loop_state(self) -> None:
        if self._wake is not None:
            return
        loop = asyncio.get_running_loop()
        s = self.settings
        self._wake = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._drained = asyncio.Event()
        self._alarm_progress = asyncio.Event()
        self._alarm_queue = asyncio.Queue()
        self._alarm_slots = asyncio.Semaphore(s.max_alarms_in_flight)
        self._bulk_slots = asyncio.Semaphore(s.max_in_flight)
        self._budget = RateBudget(
            messages_per_s=s.max_publish_per_s,
            bytes_per_s=s.max_bytes_per_s,
            reserve_messages=s.alarm_reserve_messages,
            reserve_bytes=s.alarm_reserve_bytes,
            burst_s=s.burst_s,
            now=loop.time(),
        )

    async def _supervise(self, name: str, lane: Callable[[], Any]) -> None:
        backoff = Backoff(self.settings.backoff_min_s, self.settings.backoff_max_s, self._rng)
        while not self._stopping:
            try:
                await lane()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                delay = backoff.next_delay()
                log.exception("uplink %s lane failed; restarting in %.1f s", name, delay)
                await asyncio.sleep(delay)

    async def _sleep_or_wake(self, seconds: float) -> None:
        assert self._wake is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    # -- alarm lane ------------------------------------------------------------------------

    def _track_alarm(self, msg: _Msg) -> bool:
        """Mark an alarm-lane row as ours (False when it already was)."""
        if msg.id in self._alarm_known:
            return False
        self._alarm_known.add(msg.id)
        self._delivered[msg.id] = asyncio.get_running_loop().create_future()
        return True

    def _enqueue_alarm(self, msg: _Msg) -> None:
        assert self._alarm_queue is not None
        if self._track_alarm(msg):
            self._alarm_queue.put_nowait(msg)

    async def _alarm_lane(self) -> None:
        assert self._alarm_queue is not None
        assert self._alarm_slots is not None
        while True:
            msg = await self._alarm_queue.get()
            await self._alarm_slots.acquire()
            task = asyncio.create_task(self._send_alarm_msg(msg))
            self._alarm_tasks.add(task)
            task.add_done_callback(self._alarm_tasks.discard)

    async def _send_alarm_msg(self, msg: _Msg) -> None:
        assert self._budget is not None
        assert self._alarm_slots is not None
        backoff = Backoff(
            min(0.05, self.settings.backoff_min_s), self.settings.backoff_max_s, self._rng
        )
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._budget.take(len(msg.topic) + len(msg.payload), priority=True)
                t0 = loop.time()
                try:
                    await self.bus.publish(msg.topic, msg.payload, qos=self.settings.qos)
                except PayloadTooLargeError:
                    self._give_up(msg)
                    return
                except BusError as exc:
                    self.health.record_error()
                    await self._spool_quiet(self.spool.nack, msg.id, priority=SpoolWorker.ALARM)
                    if self._stopping:
                        return
                    delay = backoff.next_delay()
                    log.warning("alarm %d not published (%s); retry in %.2f s", msg.id, exc, delay)
                    await self._pause_before_retry(delay)
                    continue
                self.health.record_publish("alarm", len(msg.payload), loop.time() - t0)
                self._resolve(msg.id)
                await self._spool_quiet(self.spool.ack, msg.id, priority=SpoolWorker.ALARM)
                self._forget_alarm(msg.id)
                return
        finally:
            self._alarm_slots.release()

    # -- bulk lane -------------------------------------------------------------------------

    async def _bulk_lane(self) -> None:
        assert self._bulk_slots is not None
        assert self._budget is not None
        assert self._drained is not None
        while True:
            if self._bulk_failed:
                await self._pause_before_retry(self._bulk_backoff.next_delay())
                self._bulk_failed = False
            # A publish that fails while the outbox is scanned puts its row back after the
            # scan skipped it: "nothing to send" counts only if nothing was in flight before.
            busy_before = bool(self._in_flight) or self._bulk_failed
            items = await self._next_bulk_items()
            if not items:
                if self._flush and self._in_flight:
                    # Wait for an acknowledgement before deciding the spool is empty.
                    await asyncio.wait(
                        list(self._in_flight.values()),
                        timeout=1.0,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    continue
                if self._flush and busy_before:
                    continue
                if self._flush and not self._bulk_failed:
                    self._drained.set()
                await self._sleep_or_wake(self.settings.poll_interval_s)
                continue
            for msg in items:
                await self._bulk_slots.acquire()
                if self._bulk_failed:
                    self._bulk_slots.release()
                    break
                await self._budget.take(len(msg.topic) + len(msg.payload), priority=False)
                task = asyncio.create_task(self._send_bulk_msg(msg))
                self._in_flight[msg.id] = task

    async def _next_bulk_items(self) -> list[_Msg]:
        """Outbox rows for the bulk lane, sealing new batches when fewer than a pipeline's worth
        wait. ALARM/ON_DEMAND rows found on the way go to the alarm lane."""
        want = self.settings.max_in_flight
        items = await self._scan_outbox(want)
        if len(items) >= want:
            return items
        min_age = 0.0 if self._flush else self.settings.max_batch_age_s
        for cls in DataClass:
            while len(items) < want:
                sealed = await self.worker.call(
                    self.spool.seal,
                    cls,
                    thing=self.topics.thing,
                    topic=self.topics.data(cls),
                    max_values=self.settings.max_batch_values,
                    min_age_s=min_age,
                    now=self.wall_clock(),
                )
                if sealed is None:
                    break
                msg = _msg(sealed)
                if msg.data_class in ALARM_LANE_CLASSES:
                    self._enqueue_alarm(msg)
                else:
                    items.append(msg)
        return items

    async def _scan_outbox(self, want: int) -> list[_Msg]:
        skip = len(self._in_flight) + len(self._alarm_known) + len(self._poison)
        rows = await self.worker.call(self.spool.pending, skip + want)
        out: list[_Msg] = []
        for row in rows:
            msg = _msg(row)
            if msg.id in self._in_flight or msg.id in self._poison:
                continue
            if msg.data_class in ALARM_LANE_CLASSES:
                self._enqueue_alarm(msg)
                continue
            if len(out) < want:
                out.append(msg)
        return out

    async def _send_bulk_msg(self, msg: _Msg) -> None:
        assert self._bulk_slots is not None
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            try:
                await self.bus.publish(msg.topic, msg.payload, qos=self.settings.qos)
            except PayloadTooLargeError:
                self._give_up(msg)
                return
            except BusError as exc:
                self.health.record_error()
                if not self._bulk_failed:
                    log.warning("batch %d not published (%s); backing off", msg.id, exc)
                self._bulk_failed = True
                await self._spool_quiet(self.spool.nack, msg.id)
                return
            self.health.record_publish("bulk", len(msg.payload), loop.time() - t0)
            self._bulk_backoff.reset()
            await self._spool_quiet(self.spool.ack, msg.id)
        finally:
            self._in_flight.pop(msg.id, None)
            self._bulk_slots.release()
            if self._wake is not None:
                self._wake.set()

    async def _pause_before_retry(self, delay: float) -> None:
        """Back off ``delay`` s; when the bus is known to be disconnected and can say when it
        is back (MqttBus.wait_connected), retry as soon as it reconnects instead."""
        wait_connected = getattr(self.bus, "wait_connected", None)
        if callable(wait_connected) and getattr(self.bus, "connected", True) is False:
            with contextlib.suppress(BusError):
                await wait_connected(delay)
                # Reconnected: spread the retries a little rather than all at once.
                await asyncio.sleep(self._rng.random() * self.settings.backoff_min_s)
                return
            return
        await asyncio.sleep(delay)

    def _give_up(self, msg: _Msg) -> None:
        self.health.record_error()
        self._poison.add(msg.id)
        self._forget_alarm(msg.id)
        log.error(
            "outbox %d (%s, %d bytes) exceeds the message limit; left in the spool",
            msg.id,
            msg.topic,
            len(msg.payload),
        )

    async def _spool_quiet(
        self, fn: Callable[..., Any], *args: Any, priority: int = SpoolWorker.BULK
    ) -> None:
        """ack/nack: a failure is logged (the row stays; it will be sent again)."""
        try:
            await self.worker.call(fn, *args, priority=priority)
        except SpoolError as exc:
            self.health.spool_errors += 1
            log.error("spool %s%s failed: %s", getattr(fn, "__name__", fn), args, exc)

    async def _finish_in_flight(self, timeout: float) -> None:
        tasks = [*self._in_flight.values(), *self._alarm_tasks]
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)

    # -- health ----------------------------------------------------------------------------

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_period_s)
            await self.publish_health()

    async def publish_health(self) -> None:
        """Refresh spool statistics and publish :meth:`snapshot` on ``topics.health``."""
        try:
            self.health.update_spool(await self.worker.call(self.spool.stats))
        except SpoolError as exc:
            self.health.spool_errors += 1
            log.warning("spool stats failed: %s", exc)
        self.snapshot()  # refreshes the gauges
        payload = self.health.to_json()
        assert self._budget is not None
        await self._budget.take(len(self.topics.health) + len(payload), priority=False)
        try:
            await self.bus.publish(self.topics.health, payload, qos=self.settings.qos)
            self.health.health_reports += 1
        except BusError as exc:
            log.info("health report not published: %s", exc)


def _swallow(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _msg(row: Any) -> _Msg:
    return _Msg(int(row.id), int(row.data_class), str(row.topic), bytes(row.payload))
