"""Direct MQTT bus on awscrt: plain TCP to a local broker, or mutual TLS to AWS IoT Core.

Theory of operation
-------------------
* One awscrt MQTT 3.1.1 connection per bus, with a client id that is unique per bus instance
  (unless the settings pin one). awscrt calls back on its own event-loop threads; every callback
  does exactly one thing: ``loop.call_soon_threadsafe`` onto the asyncio loop that called
  :meth:`MqttBus.start`. All state (connected flag, pending acknowledgements, handlers) is read and
  written on that loop only.
* Connection state: :attr:`MqttBus.connected` and :meth:`MqttBus.wait_connected`. After the first
  successful connect, awscrt reconnects by itself forever with exponential backoff between
  ``reconnect_min_s`` and ``reconnect_max_s``. On resume without a session the subscriptions are
  re-sent (``resubscribe_existing_topics``).
* :meth:`MqttBus.start` keeps trying the first connect for ``start_timeout_s`` (awscrt does not
  retry a first connect), then raises BusUnavailableError; calling start again is allowed.
* ``publish`` with QoS 1 returns once the PUBACK arrived; QoS 0 once the packet is written.
  It raises PayloadTooLargeError before sending when topic + payload exceed 128 KB,
  BusUnavailableError when not connected, PublishError when the acknowledgement does not come
  within ``publish_timeout_s`` or the connection drops first. Every pending acknowledgement is
  tracked by a local id and failed at interruption or close, so no waiter outlives them. A
  publish interrupted that way may still reach the broker when awscrt retransmits it after the
  resume: callers get at-least-once and make payloads idempotent (batch ids).
* Local publish/subscribe is in-process (:class:`~edge_core.bus.memory.LocalHub`): direct mode
  hosts its components in one process; separate processes need Greengrass IPC.
* Configuration comes from ``config_path`` (a JSON or YAML mapping) read at construction;
  :meth:`MqttBus.reload` re-reads it, runs the validator and tells the callbacks. Secrets come
  from the environment (``secret_env_prefix`` + upper-cased id) or ``secrets_path``; their values
  are never logged or put in an error message.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_core.bus.base import ConfigValidator, MessageHandler, UpdateGate
from edge_core.bus.memory import (
    HandlerRunner,
    InProcessHooks,
    LocalHub,
    check_message_size,
    validate_filter,
)
from edge_core.bus.settings import MqttSettings
from edge_core.errors import (
    BusError,
    BusUnavailableError,
    ConfigError,
    PublishError,
    SecretError,
)

__all__ = ["MqttBus", "MqttSubscription", "load_mapping_file"]

log = logging.getLogger(__name__)


class _Interrupted(Exception):
    """Internal: the connection dropped (or the bus closed) before the acknowledgement."""


def load_mapping_file(path: str | os.PathLike[str], *, what: str = "config") -> dict[str, Any]:
    """Read a JSON or YAML file holding a mapping; raises ConfigError otherwise."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {p}: {exc.strerror}", path=what) from exc
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{what} file {p} is not valid JSON: {exc}", path=what) from exc
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{what} file {p} is not valid YAML: {exc}", path=what) from exc
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{what} file {p} must hold a mapping", path=what)
    return dict(data)


@dataclass(eq=False)
class _Filter:
    """One topic filter subscribed at the broker and the handlers attached to it."""

    topic_filter: str
    handlers: list[MessageHandler] = field(default_factory=list)


@dataclass(eq=False)
class MqttSubscription:
    """Handle of one ``subscribe``; ``close`` unsubscribes once the last handler goes."""

    bus: MqttBus
    entry: _Filter
    handler: MessageHandler
    closed: bool = False

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        await self.bus._unsubscribe(self)


class MqttBus(InProcessHooks):
    """A :class:`~edge_core.bus.base.Bus` over direct MQTT (see the module docstring)."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        config: Mapping[str, Any] | None = None,
        local_hub: LocalHub | None = None,
    ) -> None:
        self.settings = settings
        self.client_id = (
            settings.client_id or f"{settings.client_id_prefix}-{uuid.uuid4().hex[:16]}"
        )
        self.state: str | None = None
        self._hub = local_hub or LocalHub.default()
        if config is not None:
            self._config: dict[str, Any] = dict(config)
        elif settings.config_path:
            self._config = load_mapping_file(settings.config_path)
        else:
            self._config = {}
        self._config_callbacks: list[Callable[[Mapping[str, Any]], None]] = []
        self._validator: ConfigValidator | None = None
        self._gate: UpdateGate | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: HandlerRunner | None = None
        self._conn: Any = None
        self._connected = False
        self._connected_event: asyncio.Event | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._filters: dict[str, _Filter] = {}
        self._local_subs: list[Any] = []
        self._closing = False
        self.interruptions = 0
        self.resumptions = 0

    # -- state -----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    async def wait_connected(self, timeout: float) -> None:
        """Return once connected; BusUnavailableError after ``timeout`` seconds."""
        if self._connected:
            return
        if self._connected_event is None:
            raise BusUnavailableError("bus not started")
        try:
            await asyncio.wait_for(self._connected_event.wait(), timeout)
        except asyncio.TimeoutError:
            raise BusUnavailableError(
                f"not connected to {self.settings.url} within {timeout} s"
            ) from None

    # -- lifecycle -------------------------------------------------------------------------

    def build_connection(self) -> Any:
        """Create the awscrt connection object (no network I/O). Raises BusError on bad TLS
        material. The mTLS path can only be checked this far without AWS."""
        from awscrt import io as crt_io
        from awscrt import mqtt as crt_mqtt
        from awscrt.exceptions import AwsCrtError

        s = self.settings
        try:
            tls_ctx = None
            if s.tls:
                opts = crt_io.TlsContextOptions.create_client_with_mtls_from_path(
                    s.cert_path, s.key_path
                )
                if s.ca_path:
                    opts.override_default_trust_store_from_path(None, s.ca_path)
                tls_ctx = crt_io.ClientTlsContext(opts)
            client = crt_mqtt.Client(None, tls_ctx)
            socket_options = crt_io.SocketOptions()
            socket_options.connect_timeout_ms = int(s.connect_timeout_s * 1000)
            return crt_mqtt.Connection(
                client=client,
                host_name=s.host,
                port=s.port,
                client_id=self.client_id,
                clean_session=True,
                on_connection_interrupted=self._crt_interrupted,
                on_connection_resumed=self._crt_resumed,
                on_connection_success=self._crt_success,
                on_connection_closed=self._crt_closed,
                reconnect_min_timeout_secs=s.reconnect_min_s,
                reconnect_max_timeout_secs=s.reconnect_max_s,
                keep_alive_secs=s.keep_alive_s,
                ping_timeout_ms=int(s.ping_timeout_s * 1000),
                protocol_operation_timeout_ms=int(s.publish_timeout_s * 1000),
                socket_options=socket_options,
                disable_metrics=True,
            )
        except (AwsCrtError, OSError, TypeError, ValueError) as exc:
            raise BusError(f"cannot set up the MQTT connection to {s.url}: {exc}") from exc

    async def start(self) -> None:
        """Connect, retrying for ``start_timeout_s``; BusUnavailableError if never reached."""
        if self._conn is not None and self._connected:
            return
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            raise BusError("an MqttBus is bound to the event loop that started it")
        self._loop = loop
        self._closing = False
        if self._runner is None:
            self._runner = HandlerRunner(loop)
        if self._connected_event is None:
            self._connected_event = asyncio.Event()
        deadline = loop.time() + self.settings.start_timeout_s
        delay = float(self.settings.reconnect_min_s)
        attempt = 0
        while True:
            attempt += 1
            self._conn = self.build_connection()
            try:
                await self._await_crt(
                    self._conn.connect(), self.settings.connect_timeout_s + 1.0, "connect"
                )
            except (PublishError, BusError) as exc:
                self._conn = None
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise BusUnavailableError(
                        f"cannot connect to {self.settings.url} after {attempt} attempt(s): {exc}"
                    ) from exc
                log.info("connect to %s failed (%s); retrying", self.settings.url, exc)
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * 2, float(self.settings.reconnect_max_s))
                continue
            self._set_connected(True)
            log.info("connected to %s as %s", self.settings.url, self.client_id)
            return

    async def close(self) -> None:
        """Disconnect, drop every subscription and fail pending acknowledgements; idempotent."""
        self._closing = True
        conn, self._conn = self._conn, None
        self._set_connected(False)
        self._fail_pending("bus closed")
        self._filters.clear()
        for sub in self._local_subs:
            await sub.close()
        self._local_subs.clear()
        if conn is not None:
            try:
                await self._await_crt(conn.disconnect(), 5.0, "disconnect")
            except BusError as exc:
                log.warning("disconnect from %s: %s", self.settings.url, exc)
        if self._runner is not None:
            await self._runner.close()

    # -- awscrt callbacks (awscrt threads: hand over, nothing else) ------------------------

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is left to tell
            loop.call_soon_threadsafe(fn, *args)

    def _crt_interrupted(self, connection: Any, error: Any, **kwargs: Any) -> None:
        self._post(self._on_interrupted, str(error))

    def _crt_resumed(
        self, connection: Any, return_code: Any, session_present: bool, **kwargs: Any
    ) -> None:
        self._post(self._on_resumed, connection, int(return_code), bool(session_present))

    def _crt_success(self, connection: Any, callback_data: Any) -> None:
        self._post(self._on_success, connection)

    def _crt_closed(self, connection: Any, callback_data: Any) -> None:
        self._post(self._on_closed, connection)

    # -- state changes (event loop) --------------------------------------------------------

    def _set_connected(self, connected: bool) -> None:
        self._connected = connected
        event = self._connected_event
        if event is not None:
            if connected:
                event.set()
            else:
                event.clear()

    def _on_interrupted(self, error: str) -> None:
        if self._closing:
            return
        self.interruptions += 1
        log.warning("connection to %s interrupted: %s", self.settings.url, error)
        self._set_connected(False)
        self._fail_pending("connection interrupted")

    def _on_resumed(self, connection: Any, return_code: int, session_present: bool) -> None:
        if self._closing or connection is not self._conn:
            return
        if return_code != 0:
            log.warning("reconnect to %s refused with code %d", self.settings.url, return_code)
            return
        self.resumptions += 1
        log.info(
            "connection to %s resumed (session present: %s)", self.settings.url, session_present
        )
        if not session_present and self._filters:
            future, _ = connection.resubscribe_existing_topics()
            future.add_done_callback(lambda f: self._post(self._on_resubscribed, f))
        self._set_connected(True)

    def _on_resubscribed(self, future: concurrent.futures.Future[Any]) -> None:
        exc = future.exception()
        if exc is not None:
            log.warning("resubscribe after resume failed: %s", exc)
            return
        failed = [t for t, qos in future.result().get("topics", []) if qos is None]
        if failed:
            log.warning("broker refused resubscription of %s", failed)

    def _on_success(self, connection: Any) -> None:
        if not self._closing and connection is self._conn:
            self._set_connected(True)

    def _on_closed(self, connection: Any) -> None:
        if connection is self._conn:
            self._set_connected(False)

    def _fail_pending(self, reason: str) -> None:
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(_Interrupted(reason))

    # -- bridging awscrt futures -----------------------------------------------------------

    def _bridge(self, cfut: concurrent.futures.Future[Any]) -> tuple[int, asyncio.Future[Any]]:
        """An asyncio future completed (on our loop) when ``cfut`` completes, tracked by id."""
        assert self._loop is not None
        afut: asyncio.Future[Any] = self._loop.create_future()
        self._next_id += 1
        op_id = self._next_id
        self._pending[op_id] = afut

        def transfer(source: concurrent.futures.Future[Any]) -> None:
            self._pending.pop(op_id, None)
            if afut.done():
                return
            exc = source.exception()
            if exc is not None:
                afut.set_exception(exc)
            else:
                afut.set_result(source.result())

        cfut.add_done_callback(lambda f: self._post(transfer, f))
        return op_id, afut

    async def _await_crt(
        self, cfut: concurrent.futures.Future[Any], timeout: float, what: str, topic: str = ""
    ) -> Any:
        from awscrt.exceptions import AwsCrtError

        op_id, afut = self._bridge(cfut)
        try:
            return await asyncio.wait_for(afut, timeout)
        except asyncio.TimeoutError:
            raise PublishError(f"{what}: no answer within {timeout} s", topic=topic) from None
        except _Interrupted as exc:
            raise PublishError(f"{what}: {exc}", topic=topic) from exc
        except (AwsCrtError, OSError) as exc:
            raise PublishError(f"{what} failed: {exc}", topic=topic) from exc
        except Exception as exc:  # awscrt raises a bare Exception for a refused CONNACK
            if isinstance(exc, asyncio.CancelledError | BusError):
                raise
            raise PublishError(f"{what} refused: {exc}", topic=topic) from exc
        finally:
            self._pending.pop(op_id, None)

    # -- cloud -----------------------------------------------------------------------------

    async def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        from awscrt import mqtt as crt_mqtt

        if qos not in (0, 1):
            raise PublishError(f"unsupported QoS {qos}", topic=topic)
        if not topic or "+" in topic or "#" in topic:
            raise PublishError("invalid topic name", topic=topic)
        check_message_size(topic, payload)
        conn = self._conn
        if conn is None or not self._connected:
            raise BusUnavailableError(f"not connected to {self.settings.url}")
        cfut, _packet_id = conn.publish(topic, bytes(payload), crt_mqtt.QoS(qos))
        await self._await_crt(cfut, self.settings.publish_timeout_s, "publish", topic)

    async def subscribe(self, topic_filter: str, handler: MessageHandler) -> MqttSubscription:
        """Subscribe with QoS 1; returns after the SUBACK. Handlers run on this bus' loop."""
        from awscrt import mqtt as crt_mqtt

        validate_filter(topic_filter)
        conn = self._conn
        if conn is None or not self._connected:
            raise BusUnavailableError(f"not connected to {self.settings.url}")
        entry = self._filters.get(topic_filter)
        if entry is None:
            entry = _Filter(topic_filter)
            runner = self._runner
            assert runner is not None

            def on_message(topic: str, payload: bytes, **kwargs: Any) -> None:
                runner.submit(self._dispatch_entry(entry), topic, payload)

            cfut, _ = conn.subscribe(topic_filter, crt_mqtt.QoS.AT_LEAST_ONCE, on_message)
            self._filters[topic_filter] = entry
            try:
                await self._await_crt(
                    cfut, self.settings.subscribe_timeout_s, "subscribe", topic_filter
                )
            except BusError:
                self._filters.pop(topic_filter, None)
                raise
        entry.handlers.append(handler)
        return MqttSubscription(self, entry, handler)

    def _dispatch_entry(self, entry: _Filter) -> MessageHandler:
        def dispatch(topic: str, payload: bytes) -> None:
            runner = self._runner
            if runner is None:
                return
            for handler in list(entry.handlers):
                runner.run(handler, topic, payload)

        return dispatch

    async def _unsubscribe(self, sub: MqttSubscription) -> None:
        entry = sub.entry
        if sub.handler in entry.handlers:
            entry.handlers.remove(sub.handler)
        if entry.handlers or self._filters.get(entry.topic_filter) is not entry:
            return
        del self._filters[entry.topic_filter]
        conn = self._conn
        if conn is not None and self._connected:
            cfut, _ = conn.unsubscribe(entry.topic_filter)
            try:
                await self._await_crt(
                    cfut, self.settings.subscribe_timeout_s, "unsubscribe", entry.topic_filter
                )
            except BusError as exc:
                log.warning("unsubscribe %s: %s", entry.topic_filter, exc)

    # -- configuration, update gate, state, secrets ----------------------------------------

    def reload(self) -> None:
        """Re-read ``config_path``; validate (ConfigError keeps the old one), then notify."""
        if not self.settings.config_path:
            raise ConfigError("no config file to reload", path="config_path")
        new = load_mapping_file(self.settings.config_path)
        if self._validator is not None:
            try:
                self._validator(new)
            except ConfigError:
                raise
            except Exception as exc:
                raise ConfigError(f"validator failed: {exc}") from exc
        self._config = new
        for callback in list(self._config_callbacks):
            callback(new)

    def set_update_gate(self, gate: UpdateGate) -> None:
        self._gate = gate

    def ask_update(self) -> float:
        """Direct mode has no nucleus: the operator's tooling may ask (0 = go ahead)."""
        return float(self._gate()) if self._gate is not None else 0.0

    async def report_state(self, state: str) -> None:
        self.state = state
        log.info("component state: %s", state)

    async def get_secret(self, secret_id: str) -> bytes:
        env_name = self.settings.secret_env_prefix + re.sub(r"[^A-Za-z0-9]", "_", secret_id).upper()
        value = os.environ.get(env_name)
        if value is not None:
            return value.encode()
        if self.settings.secrets_path:
            try:
                secrets = load_mapping_file(self.settings.secrets_path, what="secrets")
            except ConfigError as exc:
                raise SecretError(f"secret {secret_id!r}: secrets file unreadable") from exc
            found = secrets.get(secret_id)
            if isinstance(found, str):
                return found.encode()
            if isinstance(found, bytes):
                return found
        raise SecretError(f"secret {secret_id!r} not found (env {env_name} or secrets file)")
