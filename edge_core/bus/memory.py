"""An in-memory bus for unit tests, and the in-process local pub/sub shared with direct MQTT.

:class:`MemoryBus` records every cloud publish (with the event-loop time it was acknowledged),
lets a test inject cloud messages, change or propose a configuration, ask the update gate, read
secrets from a dict, and inject failures: fail the next N publishes, delay acknowledgements,
hold publishes until released, or drop the "connection".

:class:`LocalHub` is the local publish/subscribe of components that share one process; every
handler runs on the event loop that subscribed (handed over with ``call_soon_threadsafe`` when
the publisher runs on another loop or thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edge_core.bus.base import ConfigValidator, MessageHandler, UpdateGate
from edge_core.bus.settings import MAX_MESSAGE_BYTES
from edge_core.errors import (
    BusError,
    BusUnavailableError,
    ConfigError,
    PayloadTooLargeError,
    PublishError,
    SecretError,
)

__all__ = [
    "HandlerRunner",
    "LocalHub",
    "MemoryBus",
    "Published",
    "check_message_size",
    "topic_matches",
    "validate_filter",
]

log = logging.getLogger(__name__)


def validate_filter(topic_filter: str) -> None:
    """Raise BusError unless ``topic_filter`` is a valid MQTT topic filter."""
    if not topic_filter:
        raise BusError("empty topic filter")
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise BusError(f"'#' must be a whole last level: {topic_filter!r}")
        if "+" in level and level != "+":
            raise BusError(f"'+' must be a whole level: {topic_filter!r}")


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT filter matching (``+`` one level, ``#`` the rest, ``$`` topics need a literal)."""
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    if topic.startswith("$") and f_levels[0] in ("+", "#"):
        return False
    for i, f in enumerate(f_levels):
        if f == "#":
            return True
        if i >= len(t_levels):
            return False
        if f not in ("+", t_levels[i]):
            return False
    return len(f_levels) == len(t_levels)


def check_message_size(topic: str, payload: bytes) -> None:
    """Raise PayloadTooLargeError when topic + payload exceed IoT Core's 128 KB."""
    size = len(topic.encode()) + len(payload)
    if size > MAX_MESSAGE_BYTES:
        raise PayloadTooLargeError(
            f"{size} bytes of topic + payload exceed {MAX_MESSAGE_BYTES}", topic=topic
        )


class HandlerRunner:
    """Runs message handlers on one event loop; coroutine handlers become tracked tasks.

    A handler that raises is logged and does not stop delivery to others. :meth:`close`
    cancels the tasks still running.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._tasks: set[asyncio.Task[Any]] = set()

    def run(self, handler: MessageHandler, topic: str, payload: bytes) -> None:
        """Call on ``self.loop`` (its thread) only."""
        try:
            result = handler(topic, payload)
        except Exception:
            log.exception("handler for %s failed", topic)
            return
        if inspect.isawaitable(result):
            task = self.loop.create_task(_guard(result, topic))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def submit(self, handler: MessageHandler, topic: str, payload: bytes) -> None:
        """Hand a message over from any thread (the only cross-thread entry point)."""
        # RuntimeError: the loop is closed; the subscriber is gone, so is the audience.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.run, handler, topic, payload)

    async def close(self, timeout: float = 1.0) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)


async def _guard(awaitable: Any, topic: str) -> None:
    try:
        await awaitable
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("handler for %s failed", topic)


@dataclass(eq=False)
class _LocalSub:
    hub: LocalHub
    topic_filter: str
    handler: MessageHandler
    runner: HandlerRunner

    async def close(self) -> None:
        self.hub._remove(self)


class LocalHub:
    """In-process local publish/subscribe (thread-safe; handlers run on their own loop).

    ``LocalHub.default()`` is the process-wide hub that buses use unless given one, so that
    components hosted in one process see each other. Direct mode has no cross-process local
    bus: components in different processes must use Greengrass IPC.
    """

    _default: LocalHub | None = None
    _default_lock = threading.Lock()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: list[_LocalSub] = []
        self._runners: dict[asyncio.AbstractEventLoop, HandlerRunner] = {}

    @classmethod
    def default(cls) -> LocalHub:
        with cls._default_lock:
            if cls._default is None:
                cls._default = cls()
            return cls._default

    def subscribe(self, topic_filter: str, handler: MessageHandler) -> _LocalSub:
        """Subscribe from inside a running event loop; the handler runs on that loop."""
        validate_filter(topic_filter)
        loop = asyncio.get_running_loop()
        with self._lock:
            runner = self._runners.get(loop)
            if runner is None or runner.loop.is_closed():
                runner = self._runners[loop] = HandlerRunner(loop)
            sub = _LocalSub(self, topic_filter, handler, runner)
            self._subs.append(sub)
        return sub

    def publish(self, topic: str, payload: bytes) -> int:
        """Deliver to every matching subscriber; returns how many were handed the message."""
        with self._lock:
            targets = [s for s in self._subs if topic_matches(s.topic_filter, topic)]
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for sub in targets:
            if sub.runner.loop is current:
                current.call_soon(sub.runner.run, sub.handler, topic, bytes(payload))
            else:
                sub.runner.submit(sub.handler, topic, bytes(payload))
        return len(targets)

    def _remove(self, sub: _LocalSub) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)


@dataclass(frozen=True, slots=True)
class Published:
    """One acknowledged cloud publish; ``time`` is the event-loop clock at the ack, in s."""

    topic: str
    payload: bytes
    qos: int
    time: float


@dataclass(eq=False)
class _CloudSub:
    bus: MemoryBus
    topic_filter: str
    handler: MessageHandler
    closed: bool = False

    async def close(self) -> None:
        self.closed = True
        if self in self.bus._subs:
            self.bus._subs.remove(self)


@dataclass
class _Faults:
    fail_next: int = 0
    fail_with: type[BusError] = PublishError
    delay_s: float = 0.0
    released: asyncio.Event | None = None


class InProcessHooks:
    """The parts of the bus that live in this process for both MemoryBus and MqttBus: local
    pub/sub through a :class:`LocalHub` and configuration held in memory. The owner sets
    ``_hub``, ``_local_subs``, ``_config``, ``_config_callbacks`` and ``_validator``."""

    _hub: LocalHub
    _local_subs: list[Any]
    _config: dict[str, Any]
    _config_callbacks: list[Callable[[Mapping[str, Any]], None]]
    _validator: ConfigValidator | None

    async def publish_local(self, topic: str, payload: bytes) -> None:
        self._hub.publish(topic, payload)

    async def subscribe_local(self, topic: str, handler: MessageHandler) -> _LocalSub:
        sub = self._hub.subscribe(topic, handler)
        self._local_subs.append(sub)
        return sub

    def get_config(self) -> Mapping[str, Any]:
        return self._config

    def on_config_change(self, callback: Callable[[Mapping[str, Any]], None]) -> None:
        self._config_callbacks.append(callback)

    def set_config_validator(self, validator: ConfigValidator) -> None:
        self._validator = validator


class MemoryBus(InProcessHooks):
    """A :class:`~edge_core.bus.base.Bus` that lives in memory (for tests and the demo).

    ``clock`` stamps :attr:`published` records (default: the running loop's ``time()``, so a
    virtual-time loop gives virtual stamps).
    """

    def __init__(
        self,
        *,
        config: Mapping[str, Any] | None = None,
        secrets: Mapping[str, bytes | str] | None = None,
        local_hub: LocalHub | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.published: list[Published] = []
        self.attempts = 0
        self.state: str | None = None
        self.connected = False
        self._config: dict[str, Any] = dict(config or {})
        self._secrets = {
            k: v.encode() if isinstance(v, str) else bytes(v) for k, v in (secrets or {}).items()
        }
        self._hub = local_hub or LocalHub()
        self._clock = clock
        self._subs: list[_CloudSub] = []
        self._config_callbacks: list[Callable[[Mapping[str, Any]], None]] = []
        self._validator: ConfigValidator | None = None
        self._gate: UpdateGate | None = None
        self._faults = _Faults()
        self._local_subs: list[_LocalSub] = []

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self.connected = True

    async def close(self) -> None:
        self.connected = False
        self._subs.clear()
        for sub in self._local_subs:
            await sub.close()
        self._local_subs.clear()

    # -- failure injection -----------------------------------------------------------------

    def fail_next(self, count: int, error: type[BusError] = PublishError) -> None:
        """Make the next ``count`` publishes raise ``error`` (nothing is recorded)."""
        self._faults.fail_next = count
        self._faults.fail_with = error

    def set_delay(self, seconds: float) -> None:
        """Delay every acknowledgement by ``seconds`` (event-loop time)."""
        self._faults.delay_s = seconds

    def hold(self) -> None:
        """Block publishes (they wait, unacknowledged) until :meth:`release`."""
        self._faults.released = asyncio.Event()

    def release(self) -> None:
        if self._faults.released is not None:
            self._faults.released.set()
            self._faults.released = None

    def set_connected(self, connected: bool) -> None:
        """While False, publishes raise BusUnavailableError."""
        self.connected = connected

    # -- cloud -----------------------------------------------------------------------------

    async def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        if qos not in (0, 1):
            raise PublishError(f"unsupported QoS {qos}", topic=topic)
        check_message_size(topic, payload)
        self.attempts += 1
        if not self.connected:
            raise BusUnavailableError("memory bus not connected")
        faults = self._faults
        if faults.fail_next > 0:
            faults.fail_next -= 1
            raise faults.fail_with("injected failure")
        if faults.released is not None:
            await faults.released.wait()
        if faults.delay_s > 0:
            await asyncio.sleep(faults.delay_s)
        if not self.connected:
            raise PublishError("connection lost before the acknowledgement", topic=topic)
        now = self._clock() if self._clock else asyncio.get_running_loop().time()
        self.published.append(Published(topic, bytes(payload), qos, now))

    def topics(self) -> list[str]:
        return [p.topic for p in self.published]

    async def subscribe(self, topic_filter: str, handler: MessageHandler) -> _CloudSub:
        validate_filter(topic_filter)
        sub = _CloudSub(self, topic_filter, handler)
        self._subs.append(sub)
        return sub

    async def inject(self, topic: str, payload: bytes) -> int:
        """Deliver a cloud message to matching subscribers; returns how many got it."""
        count = 0
        for sub in list(self._subs):
            if topic_matches(sub.topic_filter, topic):
                result = sub.handler(topic, bytes(payload))
                if inspect.isawaitable(result):
                    await result
                count += 1
        return count

    # -- configuration, update gate, state, secrets ----------------------------------------

    def set_config(self, config: Mapping[str, Any]) -> None:
        """Replace the configuration without validation and tell the callbacks."""
        self._config = dict(config)
        for callback in list(self._config_callbacks):
            callback(self._config)

    def propose_config(self, config: Mapping[str, Any]) -> None:
        """A deployment: validate (raises ConfigError, nothing changes), then apply."""
        if self._validator is not None:
            try:
                self._validator(config)
            except ConfigError:
                raise
            except Exception as exc:
                raise ConfigError(f"validator failed: {exc}") from exc
        self.set_config(config)

    def set_update_gate(self, gate: UpdateGate) -> None:
        self._gate = gate

    def ask_update(self) -> float:
        """What the nucleus would hear: 0 to proceed, else seconds to defer."""
        return float(self._gate()) if self._gate is not None else 0.0

    async def report_state(self, state: str) -> None:
        self.state = state

    async def get_secret(self, secret_id: str) -> bytes:
        try:
            return self._secrets[secret_id]
        except KeyError:
            raise SecretError(f"secret {secret_id!r} not found") from None
