"""The bus over Greengrass v2 IPC (awsiotsdk ``GreengrassCoreIPCClientV2``).

This is the only module of ami-edge that imports ``awsiot.greengrasscoreipc``; every IPC and
awscrt exception is mapped to the ami-edge tree here, chained with ``from exc``.

Theory of operation
-------------------
* Threads. The SDK completes futures and calls stream handlers on its own (awscrt) threads. The
  client is created without an executor, so those callbacks run on the awscrt thread and do one
  thing only: hand the event to the asyncio loop with ``loop.call_soon_threadsafe``. Every SDK
  future is awaited through :meth:`GreengrassBus._bridge` with a timeout.
* Acknowledgement. ``publish`` returns when the nucleus answers PublishToIoTCore, which means the
  message is *queued by the nucleus* (its spooler), not received by IoT Core. Callers keep
  at-least-once semantics with idempotent batch ids.
* Subscriptions are kept in a registry (cloud, local, configuration updates, validation requests,
  component updates). When the IPC connection drops (nucleus restart), a reconnect task retries
  with exponential backoff and re-opens every registered stream, then re-reads the configuration.
* Configuration. ``get_config`` returns the last configuration read with GetConfiguration. A
  SubscribeToConfigurationUpdate event triggers a fresh GetConfiguration; the result is checked
  with the installed validator and handed to the ``on_config_change`` callbacks when it differs.
* Validation (SubscribeToValidateConfigurationUpdates) is answered ACCEPTED or REJECTED (with the
  ConfigError message) by SendConfigurationValidityReport. Pre-update events are answered by
  DeferComponentUpdate: ``recheckAfterMs`` is what the update gate returns (0 acknowledges).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import inspect
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from awscrt.exceptions import AwsCrtError
from awscrt.io import (
    ClientBootstrap,
    DefaultHostResolver,
    EventLoopGroup,
    SocketDomain,
    SocketOptions,
)
from awsiot import eventstreamrpc
from awsiot.greengrasscoreipc import model
from awsiot.greengrasscoreipc.client import GreengrassCoreIPCClient
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

from edge_core.bus.base import ConfigValidator, MessageHandler, UpdateGate
from edge_core.errors import (
    BusError,
    BusUnavailableError,
    ConfigError,
    PayloadTooLargeError,
    PublishError,
    SecretError,
)

__all__ = ["ENV_SOCKET", "ENV_SVCUID", "IOT_CORE_MAX_MESSAGE", "GreengrassBus"]

log = logging.getLogger(__name__)

ENV_SOCKET = "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"
ENV_SVCUID = "SVCUID"
IOT_CORE_MAX_MESSAGE = (
    131072  # bytes; the nucleus' maxMessageSizeInBytes default and IoT Core's limit
)

T = TypeVar("T")

# The SDK exceptions that mean "the connection or the stream is gone".
_LINK_ERRORS: tuple[type[BaseException], ...] = (
    AwsCrtError,
    eventstreamrpc.ConnectionClosedError,
    eventstreamrpc.StreamClosedError,
    eventstreamrpc.EventStreamError,
)
_LINK_OR_TIMEOUT: tuple[type[BaseException], ...] = (*_LINK_ERRORS, TimeoutError)


def _describe(exc: BaseException) -> str:
    """A log-safe description of an SDK error (IPC error shapes keep their text in .message)."""
    if isinstance(exc, eventstreamrpc.ErrorShape):
        name = type(exc).__name__
        return f"{name}: {getattr(exc, 'message', '') or ''}".rstrip(": ")
    if isinstance(exc, AwsCrtError):
        return f"{exc.name}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def _map_error(exc: BaseException, what: str, kind: type[BusError], **kw: str) -> BusError:
    """Map one SDK exception to the ami-edge tree (the one boundary for awsiot/awscrt)."""
    detail = _describe(exc)
    if isinstance(exc, TimeoutError):
        return kind(f"{what}: no answer from the nucleus in time", **kw)
    if isinstance(exc, _LINK_ERRORS):
        if kind is BusError:
            return BusUnavailableError(f"{what}: IPC connection lost ({detail})")
        return kind(f"{what}: IPC connection lost ({detail})", **kw)
    if (
        kind is PublishError
        and isinstance(exc, model.InvalidArgumentsError | model.ServiceError)
        and "size" in (getattr(exc, "message", "") or "").lower()
    ):
        return PayloadTooLargeError(f"{what}: refused by the nucleus ({detail})", **kw)
    if isinstance(exc, model.UnauthorizedError):
        return kind(f"{what}: not authorized by the recipe's accessControl ({detail})", **kw)
    return kind(f"{what}: refused by the nucleus ({detail})", **kw)


@dataclass(eq=False)
class _Stream:
    """One registered subscription; ``operation`` is the live SDK operation (None while down)."""

    kind: str  # "iot" | "local" | "config" | "validate" | "updates"
    topic: str = ""
    handler: MessageHandler | None = None
    operation: Any = None
    closed: bool = False


@dataclass(eq=False)
class _Handle:
    """The Subscription returned by subscribe/subscribe_local."""

    bus: GreengrassBus
    stream: _Stream = field(repr=False)

    async def close(self) -> None:
        await self.bus._drop_stream(self.stream)


class _Lifecycle(eventstreamrpc.LifecycleHandler):  # type: ignore[misc]
    """Connection events, called on an awscrt thread: posted to the loop, nothing more."""

    def __init__(self, bus: GreengrassBus, generation: int) -> None:
        self._bus = bus
        self._generation = generation

    def on_connect(self) -> None:
        return None

    def on_disconnect(self, reason: Exception | None) -> None:
        self._bus._post(self._bus._on_disconnect, self._generation, reason)

    def on_error(self, error: Exception) -> bool:
        self._bus._post(log.warning, "IPC connection error: %s", _describe(error))
        return True

    def on_ping(self, headers: Any, payload: bytes) -> None:
        return None


class GreengrassBus:
    """The :class:`~edge_core.bus.base.Bus` over Greengrass v2 IPC.

    ``socket_path`` and ``auth_token`` default to the variables the nucleus sets for every
    lifecycle process. ``timeout`` (s) bounds every IPC call; ``max_message_size`` (bytes, topic
    plus payload) is checked before publishing (None leaves the check to the nucleus);
    ``reconnect_min``/``reconnect_max`` (s) bound the reconnect backoff.
    """

    def __init__(
        self,
        *,
        socket_path: str | None = None,
        auth_token: str | None = None,
        timeout: float = 10.0,
        max_message_size: int | None = IOT_CORE_MAX_MESSAGE,
        reconnect_min: float = 0.2,
        reconnect_max: float = 30.0,
    ) -> None:
        # awsiot.eventstreamrpc logs every request and response body at DEBUG, GetSecretValue
        # answers included: keep it quiet so a secret's value never reaches a log.
        sdk_log = logging.getLogger("awsiot.eventstreamrpc")
        if sdk_log.getEffectiveLevel() < logging.INFO:
            sdk_log.setLevel(logging.INFO)
        self._socket_path = socket_path or os.environ.get(ENV_SOCKET, "")
        self._auth_token = auth_token or os.environ.get(ENV_SVCUID, "")
        self._timeout = timeout
        self._max_message_size = max_message_size
        self._reconnect_min = reconnect_min
        self._reconnect_max = reconnect_max
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bootstrap: ClientBootstrap | None = None
        self._connection: eventstreamrpc.Connection | None = None
        self._client: GreengrassCoreIPCClientV2 | None = None
        self._generation = 0
        self._closing = False
        self._streams: list[_Stream] = []
        self._config: Mapping[str, Any] = MappingProxyType({})
        self._config_callbacks: list[Callable[[Mapping[str, Any]], None]] = []
        self._validator: ConfigValidator | None = None
        self._gate: UpdateGate | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._config_task: asyncio.Task[None] | None = None
        self._config_dirty = False
        self._tasks: set[asyncio.Task[Any]] = set()

    @classmethod
    def from_environment(cls, **kwargs: Any) -> GreengrassBus:
        """The bus of a Greengrass lifecycle process; ConfigError outside Greengrass."""
        missing = [v for v in (ENV_SOCKET, ENV_SVCUID) if not os.environ.get(v)]
        if missing:
            raise ConfigError(f"not running under Greengrass: {', '.join(missing)} unset")
        return cls(**kwargs)

    @property
    def connected(self) -> bool:
        return self._client is not None

    # -- thread hand-over --------------------------------------------------------------------

    def _post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the bus loop; called from awscrt threads only."""
        loop = self._loop
        if loop is None:
            return
        # RuntimeError: the loop is closed, the component is shutting down, nobody listens.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(fn, *args)

    async def _bridge(self, cfut: concurrent.futures.Future[T], timeout: float) -> T:
        """Await an SDK future on the loop, with a timeout (s)."""
        loop = asyncio.get_running_loop()
        afut: asyncio.Future[T] = loop.create_future()

        def settle(done: concurrent.futures.Future[T]) -> None:
            if afut.done():
                return
            exc = done.exception()
            if exc is not None:
                afut.set_exception(exc)
            else:
                afut.set_result(done.result())

        def transfer(done: concurrent.futures.Future[T]) -> None:
            # RuntimeError: the loop closed while the SDK was answering; nobody awaits any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, done)

        cfut.add_done_callback(transfer)
        return await asyncio.wait_for(afut, timeout)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        assert self._loop is not None
        task = self._loop.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed: %s", task.get_name(), task.exception())

    # -- connection --------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, read the configuration and open the registered streams."""
        if not self._socket_path or not self._auth_token:
            raise BusUnavailableError(f"{ENV_SOCKET} and {ENV_SVCUID} are required")
        self._loop = asyncio.get_running_loop()
        self._closing = False
        await self._connect()
        self._streams.insert(0, _Stream("config"))
        if self._validator is not None:
            self._streams.append(_Stream("validate"))
        if self._gate is not None:
            self._streams.append(_Stream("updates"))
        self._config = await self._fetch_config()
        for stream in self._streams:
            await self._open_stream(stream)

    async def _connect(self) -> None:
        if self._bootstrap is None:
            elg = EventLoopGroup(num_threads=1)
            self._bootstrap = ClientBootstrap(elg, DefaultHostResolver(elg))
        options = SocketOptions()
        options.domain = SocketDomain.Local
        self._generation += 1
        connection = eventstreamrpc.Connection(
            host_name=self._socket_path,
            port=0,
            bootstrap=self._bootstrap,
            socket_options=options,
            connect_message_amender=eventstreamrpc.MessageAmendment.create_static_authtoken_amender(
                self._auth_token
            ),
        )
        try:
            await self._bridge(
                connection.connect(_Lifecycle(self, self._generation)), self._timeout
            )
        except (*_LINK_ERRORS, eventstreamrpc.AccessDeniedError, TimeoutError, RuntimeError) as exc:
            connection.close()
            raise BusUnavailableError(
                f"cannot connect to the nucleus at {self._socket_path}: {_describe(exc)}"
            ) from exc
        self._connection = connection
        self._client = GreengrassCoreIPCClientV2(
            client=GreengrassCoreIPCClient(connection), executor=None
        )
        log.info("connected to the nucleus IPC at %s", self._socket_path)

    def _on_disconnect(self, generation: int, reason: Exception | None) -> None:
        if generation != self._generation or self._closing:
            return
        log.warning("IPC connection lost: %s", _describe(reason) if reason else "closed")
        self._client = None
        self._connection = None
        for stream in self._streams:
            stream.operation = None
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = self._spawn(self._reconnect(), "greengrass-reconnect")

    async def _reconnect(self) -> None:
        delay = self._reconnect_min
        while not self._closing:
            try:
                if self._client is None:
                    await self._connect()
                for stream in list(self._streams):
                    if stream.operation is None and not stream.closed:
                        await self._open_stream(stream)
                await self._refresh_config()
            except BusError as exc:
                log.warning("reconnect failed (%s); retrying in %.1f s", exc, delay)
                if self._client is not None and self._connection is not None:
                    self._connection.close()
                    self._client = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._reconnect_max)
            else:
                log.info("IPC connection re-established, %d streams re-opened", len(self._streams))
                return

    async def close(self) -> None:
        """Close every stream and the connection; idempotent."""
        self._closing = True
        for task in [self._reconnect_task, self._config_task, *self._tasks]:
            if task is not None and not task.done():
                task.cancel()
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=self._timeout)
        for stream in self._streams:
            await self._close_operation(stream)
        self._streams.clear()
        client, self._client, self._connection = self._client, None, None
        if client is not None:
            try:
                await self._bridge(client.close(), self._timeout)
            except _LINK_OR_TIMEOUT as exc:
                log.debug("IPC close: %s", _describe(exc))

    def _require(self, what: str, kind: type[BusError], **kw: str) -> GreengrassCoreIPCClientV2:
        client = self._client
        if client is None:
            if kind is BusError:
                raise BusUnavailableError(f"{what}: not connected to the nucleus")
            raise kind(f"{what}: not connected to the nucleus", **kw)
        return client

    async def _call(
        self,
        what: str,
        kind: type[BusError],
        start: Callable[[GreengrassCoreIPCClientV2], concurrent.futures.Future[T]],
        **kw: str,
    ) -> T:
        """One request/response operation, errors mapped to ``kind``."""
        client = self._require(what, kind, **kw)
        try:
            return await self._bridge(start(client), self._timeout)
        except BusError:
            raise
        except Exception as exc:  # the one boundary where SDK errors become ours
            raise _map_error(exc, what, kind, **kw) from exc

    # -- publish / subscribe -----------------------------------------------------------------

    async def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """PublishToIoTCore; returns when the nucleus has queued the message (see module doc)."""
        if qos not in (0, 1):
            raise PublishError(f"QoS {qos} is not supported (0 or 1)", topic=topic)
        size = len(topic.encode()) + len(payload)
        if self._max_message_size is not None and size > self._max_message_size:
            raise PayloadTooLargeError(
                f"{size} bytes exceed the {self._max_message_size}-byte message limit", topic=topic
            )
        level = model.QOS.AT_LEAST_ONCE if qos == 1 else model.QOS.AT_MOST_ONCE
        await self._call(
            "PublishToIoTCore",
            PublishError,
            lambda c: c.publish_to_iot_core_async(topic_name=topic, qos=level, payload=payload),
            topic=topic,
        )

    async def publish_local(self, topic: str, payload: bytes) -> None:
        """PublishToTopic with a binary message."""
        message = model.PublishMessage(binary_message=model.BinaryMessage(message=payload))
        await self._call(
            "PublishToTopic",
            PublishError,
            lambda c: c.publish_to_topic_async(topic=topic, publish_message=message),
            topic=topic,
        )

    async def subscribe(self, topic_filter: str, handler: MessageHandler) -> _Handle:
        """SubscribeToIoTCore (QoS 1); ``handler(topic, payload)`` runs on this loop."""
        return await self._add_stream(_Stream("iot", topic_filter, handler))

    async def subscribe_local(self, topic: str, handler: MessageHandler) -> _Handle:
        """SubscribeToTopic; ``handler(topic, payload)`` runs on this loop."""
        return await self._add_stream(_Stream("local", topic, handler))

    async def _add_stream(self, stream: _Stream) -> _Handle:
        await self._open_stream(stream)
        self._streams.append(stream)
        return _Handle(self, stream)

    async def _ensure_stream(self, stream: _Stream) -> None:
        """Register an internal stream; if the link is down, the reconnect task opens it."""
        self._streams.append(stream)
        try:
            await self._open_stream(stream)
        except BusError as exc:
            log.warning("%s: will retry after reconnect", exc)

    async def _drop_stream(self, stream: _Stream) -> None:
        stream.closed = True
        if stream in self._streams:
            self._streams.remove(stream)
        await self._close_operation(stream)

    async def _close_operation(self, stream: _Stream) -> None:
        op, stream.operation = stream.operation, None
        if op is None:
            return
        try:
            await self._bridge(op.close(), self._timeout)
        except _LINK_OR_TIMEOUT as exc:
            log.debug("closing %s stream: %s", stream.kind, _describe(exc))

    async def _open_stream(self, stream: _Stream) -> None:
        """Open (or re-open after a reconnect) the SDK operation behind ``stream``."""
        what = {
            "iot": "SubscribeToIoTCore",
            "local": "SubscribeToTopic",
            "config": "SubscribeToConfigurationUpdate",
            "validate": "SubscribeToValidateConfigurationUpdates",
            "updates": "SubscribeToComponentUpdates",
        }[stream.kind]
        client = self._require(what, BusError)

        def on_event(event: Any) -> None:  # awscrt thread
            self._post(self._on_event, stream, event)

        def on_error(error: Exception) -> bool:  # awscrt thread
            self._post(log.warning, "%s stream error: %s", what, _describe(error))
            return True

        handlers = {"on_stream_event": on_event, "on_stream_error": on_error}
        try:
            if stream.kind == "iot":
                fut, op = client.subscribe_to_iot_core_async(
                    topic_name=stream.topic, qos=model.QOS.AT_LEAST_ONCE, **handlers
                )
            elif stream.kind == "local":
                fut, op = client.subscribe_to_topic_async(topic=stream.topic, **handlers)
            elif stream.kind == "config":
                fut, op = client.subscribe_to_configuration_update_async(key_path=[], **handlers)
            elif stream.kind == "validate":
                fut, op = client.subscribe_to_validate_configuration_updates_async(**handlers)
            else:
                fut, op = client.subscribe_to_component_updates_async(**handlers)
            await self._bridge(fut, self._timeout)
        except Exception as exc:  # SDK boundary
            raise _map_error(exc, f"{what} {stream.topic}".rstrip(), BusError) from exc
        stream.operation = op

    def _on_event(self, stream: _Stream, event: Any) -> None:
        """A stream event, now on the loop."""
        if stream.closed or self._closing:
            return
        if stream.kind == "iot":
            msg = event.message
            self._dispatch(stream, msg.topic_name or "", msg.payload or b"")
        elif stream.kind == "local":
            if event.binary_message is not None:
                msg = event.binary_message
                topic = msg.context.topic if msg.context else stream.topic
                self._dispatch(stream, topic or stream.topic, msg.message or b"")
            elif event.json_message is not None:
                import json

                msg = event.json_message
                topic = msg.context.topic if msg.context else stream.topic
                self._dispatch(stream, topic or stream.topic, json.dumps(msg.message).encode())
        elif stream.kind == "config":
            self._config_dirty = True
            if self._config_task is None or self._config_task.done():
                self._config_task = self._spawn(self._refresh_config(), "greengrass-config")
        elif stream.kind == "validate":
            self._spawn(self._answer_validation(event), "greengrass-validate")
        elif stream.kind == "updates":
            self._spawn(self._answer_update(event), "greengrass-update-gate")

    def _dispatch(self, stream: _Stream, topic: str, payload: bytes) -> None:
        assert stream.handler is not None
        try:
            result = stream.handler(topic, payload)
        except Exception:  # an application handler must not break the bus
            log.exception("handler for %s failed", topic)
            return
        if inspect.isawaitable(result):
            self._spawn(result, f"handler {topic}")

    # -- configuration -----------------------------------------------------------------------

    async def _fetch_config(self) -> Mapping[str, Any]:
        response = await self._call(
            "GetConfiguration", BusError, lambda c: c.get_configuration_async(key_path=[])
        )
        value = response.value if isinstance(response.value, dict) else {}
        return MappingProxyType(copy.deepcopy(value))

    async def _refresh_config(self) -> None:
        """Re-read the configuration until no update event arrived meanwhile."""
        self._config_dirty = True
        while self._config_dirty:
            self._config_dirty = False
            new = await self._fetch_config()
            if dict(new) == dict(self._config):
                continue
            if self._validator is not None:
                try:
                    self._validator(new)
                except ConfigError as exc:
                    log.error("configuration change ignored, it does not validate: %s", exc)
                    continue
            self._config = new
            log.info("configuration changed")
            for callback in list(self._config_callbacks):
                try:
                    callback(new)
                except Exception:  # an application callback must not break the bus
                    log.exception("configuration callback failed")

    def get_config(self) -> Mapping[str, Any]:
        """The configuration read last (read-only mapping)."""
        return self._config

    def on_config_change(self, callback: Callable[[Mapping[str, Any]], None]) -> None:
        self._config_callbacks.append(callback)

    def set_config_validator(self, validator: ConfigValidator) -> None:
        """Install the validator; subscribes to validation requests (now, or at start)."""
        first = self._validator is None
        self._validator = validator
        if first and self._loop is not None:
            self._spawn(self._ensure_stream(_Stream("validate")), "greengrass-validate-subscribe")

    def set_update_gate(self, gate: UpdateGate) -> None:
        """Install the update gate; subscribes to component updates (now, or at start)."""
        first = self._gate is None
        self._gate = gate
        if first and self._loop is not None:
            self._spawn(self._ensure_stream(_Stream("updates")), "greengrass-updates-subscribe")

    async def _answer_validation(self, event: Any) -> None:
        proposal = event.validate_configuration_update_event
        status, message = model.ConfigurationValidityStatus.ACCEPTED, "configuration accepted"
        try:
            if self._validator is not None:
                self._validator(proposal.configuration or {})
        except ConfigError as exc:
            status, message = model.ConfigurationValidityStatus.REJECTED, str(exc)
        log.info("deployment %s: configuration %s", proposal.deployment_id, status)
        report = model.ConfigurationValidityReport(
            status=status, deployment_id=proposal.deployment_id, message=message
        )
        await self._call(
            "SendConfigurationValidityReport",
            BusError,
            lambda c: c.send_configuration_validity_report_async(
                configuration_validity_report=report
            ),
        )

    async def _answer_update(self, event: Any) -> None:
        pre = event.pre_update_event
        if pre is None:
            log.info("component update applied")
            return
        seconds = 0.0
        if self._gate is not None:
            try:
                seconds = max(0.0, float(self._gate()))
            except Exception:  # a broken gate must not block deployments forever
                log.exception("update gate failed; accepting the update")
        recheck_ms = int(seconds * 1000)
        message = f"work in flight; recheck in {seconds:.0f} s" if recheck_ms else "ready"
        log.info("deployment %s: update %s", pre.deployment_id, message)
        await self._call(
            "DeferComponentUpdate",
            BusError,
            lambda c: c.defer_component_update_async(
                deployment_id=pre.deployment_id, message=message, recheck_after_ms=recheck_ms
            ),
        )

    # -- state and secrets -------------------------------------------------------------------

    async def report_state(self, state: str) -> None:
        """UpdateState (RUNNING or ERRORED)."""
        if state not in (
            model.ReportedLifecycleState.RUNNING,
            model.ReportedLifecycleState.ERRORED,
        ):
            raise BusError(f"state {state!r} cannot be reported (RUNNING or ERRORED)")
        await self._call("UpdateState", BusError, lambda c: c.update_state_async(state=state))

    async def get_secret(self, secret_id: str) -> bytes:
        """GetSecretValue: the binary value, or the string value UTF-8 encoded. Never logged."""
        response = await self._call(
            f"GetSecretValue {secret_id}",
            SecretError,
            lambda c: c.get_secret_value_async(secret_id=secret_id),
        )
        value = response.secret_value
        if value is not None and value.secret_binary is not None:
            return bytes(value.secret_binary)
        if value is not None and value.secret_string is not None:
            return str(value.secret_string).encode()
        raise SecretError(f"secret {secret_id} has no value")
