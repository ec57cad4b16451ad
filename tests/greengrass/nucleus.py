"""A Greengrass nucleus stand-in speaking AWS event-stream RPC on a Unix socket.

Test infrastructure, not shipped. It serves the unmodified awsiotsdk IPC client the way the
nucleus does, so the GreengrassBus and the component entry points are tested over the real wire
protocol, not against a mock of the SDK.

Wire format (one message)::

    total length (u32) | headers length (u32) | prelude CRC32 (u32)
    headers: name length (u8) name type (u8) value ...
    payload
    message CRC32 (u32, over everything before it)

RPC framing lives in headers: ``:message-type`` (0 application message, 1 application error,
2 ping, 3 ping response, 4 CONNECT, 5 CONNECT_ACK), ``:message-flags`` (1 connection accepted,
2 terminate stream) and ``:stream-id``. An operation opens a stream with an ``operation`` header;
request/response operations answer with flag 2; subscriptions answer without it and later push
events on the same stream id.

Theory of operation: the server runs on its own event loop in a background thread. Test code
calls the public methods from its own thread; they hop onto the server loop with
``run_coroutine_threadsafe`` and wait with a timeout. Everything the component asks for is
recorded in :attr:`NucleusStandIn.operations` (operation name, request body).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import fnmatch
import itertools
import json
import os
import struct
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Message",
    "NucleusStandIn",
    "Recorded",
    "WireError",
    "decode_message",
    "encode_message",
    "mqtt_match",
    "substitute",
]

# Header value types of the event-stream encoding.
T_TRUE, T_FALSE, T_BYTE, T_INT16, T_INT32, T_INT64, T_BYTES, T_STRING, T_TIMESTAMP, T_UUID = range(
    10
)

MT_APPLICATION_MESSAGE = 0
MT_APPLICATION_ERROR = 1
MT_PING = 2
MT_PING_RESPONSE = 3
MT_CONNECT = 4
MT_CONNECT_ACK = 5
FLAG_CONNECTION_ACCEPTED = 1
FLAG_TERMINATE_STREAM = 2

PRELUDE = struct.Struct(">II")
MAX_MESSAGE = 16 * 1024 * 1024


class WireError(Exception):
    """Bytes that are not a valid event-stream message."""


@dataclass(frozen=True, slots=True)
class Message:
    """One event-stream message: ordered headers (name -> value) and a payload."""

    headers: dict[str, Any]
    payload: bytes = b""

    @property
    def message_type(self) -> int:
        return int(self.headers.get(":message-type", MT_APPLICATION_MESSAGE))

    @property
    def flags(self) -> int:
        return int(self.headers.get(":message-flags", 0))

    @property
    def stream_id(self) -> int:
        return int(self.headers.get(":stream-id", 0))


def _encode_header(name: str, value: Any) -> bytes:
    raw = name.encode()
    out = bytes([len(raw)]) + raw
    if isinstance(value, bool):
        return out + bytes([T_TRUE if value else T_FALSE])
    if isinstance(value, int):
        return out + bytes([T_INT32]) + struct.pack(">i", value)
    if isinstance(value, bytes | bytearray):
        return out + bytes([T_BYTES]) + struct.pack(">H", len(value)) + bytes(value)
    if isinstance(value, str):
        data = value.encode()
        return out + bytes([T_STRING]) + struct.pack(">H", len(data)) + data
    raise TypeError(f"unsupported header value {value!r}")


def encode_message(headers: Mapping[str, Any], payload: bytes = b"") -> bytes:
    """Frame one message (int headers are sent as int32, str as string, bytes as byte-buf)."""
    hdr = b"".join(_encode_header(k, v) for k, v in headers.items())
    total = PRELUDE.size + 4 + len(hdr) + len(payload) + 4
    prelude = PRELUDE.pack(total, len(hdr))
    head = prelude + struct.pack(">I", binascii.crc32(prelude)) + hdr + payload
    return head + struct.pack(">I", binascii.crc32(head))


def _decode_headers(data: bytes) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    i = 0
    fixed = {T_BYTE: ">b", T_INT16: ">h", T_INT32: ">i", T_INT64: ">q", T_TIMESTAMP: ">q"}
    while i < len(data):
        n = data[i]
        name = data[i + 1 : i + 1 + n].decode()
        i += 1 + n
        t = data[i]
        i += 1
        value: Any
        if t in (T_TRUE, T_FALSE):
            value = t == T_TRUE
        elif t in fixed:
            fmt = struct.Struct(fixed[t])
            (value,) = fmt.unpack_from(data, i)
            i += fmt.size
        elif t in (T_BYTES, T_STRING):
            (ln,) = struct.unpack_from(">H", data, i)
            raw = data[i + 2 : i + 2 + ln]
            value = raw.decode() if t == T_STRING else bytes(raw)
            i += 2 + ln
        elif t == T_UUID:
            value = uuid.UUID(bytes=bytes(data[i : i + 16]))
            i += 16
        else:
            raise WireError(f"unknown header type {t}")
        headers[name] = value
    if i != len(data):
        raise WireError("headers overrun")
    return headers


def decode_message(buf: bytes) -> tuple[Message | None, int]:
    """Decode one message from the front of ``buf``: (message, bytes consumed) or (None, 0)."""
    if len(buf) < 12:
        return None, 0
    total, hlen = PRELUDE.unpack_from(buf, 0)
    if total > MAX_MESSAGE or total < 16 or hlen > total - 16:
        raise WireError(f"bad prelude total={total} headers={hlen}")
    (pcrc,) = struct.unpack_from(">I", buf, 8)
    if binascii.crc32(buf[:8]) != pcrc:
        raise WireError("prelude CRC mismatch")
    if len(buf) < total:
        return None, 0
    (mcrc,) = struct.unpack_from(">I", buf, total - 4)
    if binascii.crc32(buf[: total - 4]) != mcrc:
        raise WireError("message CRC mismatch")
    headers = _decode_headers(buf[12 : 12 + hlen])
    return Message(headers, bytes(buf[12 + hlen : total - 4])), total


def mqtt_match(pattern: str, topic: str) -> bool:
    """MQTT filter match (``+`` one level, ``#`` the rest) with Greengrass' ``*`` glob."""
    if "*" in pattern:
        return fnmatch.fnmatchcase(topic, pattern)
    p, t = pattern.split("/"), topic.split("/")
    for i, level in enumerate(p):
        if level == "#":
            return True
        if i >= len(t) or (level not in ("+", t[i])):
            return False
    return len(p) == len(t)


@dataclass(frozen=True, slots=True)
class Recorded:
    """One operation the component asked for: ``operation`` without the namespace."""

    operation: str
    body: dict[str, Any]


class _IpcError(Exception):
    def __init__(self, shape: str, message: str) -> None:
        super().__init__(message)
        self.shape = shape
        self.message = message


@dataclass
class _Stream:
    conn: _Conn
    stream_id: int
    operation: str
    request: dict[str, Any]


@dataclass(eq=False)
class _Conn:
    writer: asyncio.StreamWriter
    streams: dict[int, _Stream] = field(default_factory=dict)
    authenticated: bool = False

    def send(self, headers: Mapping[str, Any], payload: bytes = b"") -> None:
        if not self.writer.is_closing():
            self.writer.write(encode_message(headers, payload))


def _json(obj: Any) -> bytes:
    return json.dumps(obj).encode()


class NucleusStandIn:
    """A nucleus on ``socket_path`` for one component.

    ``policy`` is the component's accessControl mapping (``{"aws.greengrass.ipc.mqttproxy":
    {policyId: {"operations": [...], "resources": [...]}}}``, with ``{iot:thingName}``
    already substituted); None allows everything. ``secrets`` maps secret ids to str or bytes.
    """

    def __init__(
        self,
        socket_path: str,
        *,
        svcuid: str = "test-svcuid",
        component: str = "com.amiedge.Test",
        configuration: Mapping[str, Any] | None = None,
        policy: Mapping[str, Any] | None = None,
        secrets: Mapping[str, str | bytes] | None = None,
        max_message_size: int = 131072,
    ) -> None:
        self.socket_path = socket_path
        self.svcuid = svcuid
        self.component = component
        self.configuration: dict[str, Any] = copy.deepcopy(dict(configuration or {}))
        self.policy = policy
        self.secrets = dict(secrets or {})
        self.max_message_size = max_message_size
        self.offline = False
        self.spooler_full = False
        self.operations: list[Recorded] = []
        self.published: list[tuple[str, bytes, str]] = []
        self.local_published: list[tuple[str, bytes]] = []
        self.states: list[str] = []
        self.validity_reports: list[dict[str, Any]] = []
        self.deferrals: list[dict[str, Any]] = []
        self.connections_accepted = 0
        self.peers: list[NucleusStandIn] = []  # stand-ins sharing local pub/sub (bridge_local)
        self._lock = threading.Lock()
        self._conns: set[_Conn] = set()
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._ids = itertools.count(1)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> NucleusStandIn:
        loop = asyncio.new_event_loop()
        self._loop = loop
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(
                asyncio.start_unix_server(self._serve, path=self.socket_path)
            )
            started.set()
            loop.run_forever()
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="nucleus-stand-in", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("nucleus stand-in did not start")
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        with contextlib.suppress(RuntimeError):
            self._call(self._drop_all, timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)

    def __enter__(self) -> NucleusStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def environment(self) -> dict[str, str]:
        """The variables the nucleus gives every lifecycle process."""
        return {
            "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": self.socket_path,
            "SVCUID": self.svcuid,
        }

    # -- test-side controls (called from the test thread) -------------------------------------

    def _call(self, fn: Callable[..., Any], *args: Any, timeout: float = 10) -> Any:
        assert self._loop is not None

        async def run() -> Any:
            result = fn(*args)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def ops(self, name: str) -> list[dict[str, Any]]:
        """Bodies of every recorded call of operation ``name`` (e.g. ``"PublishToIoTCore"``)."""
        with self._lock:
            return [r.body for r in self.operations if r.operation == name]

    def subscribers(self, operation: str) -> int:
        return int(self._call(lambda: len(self._streams(operation))))

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10) -> None:
        """Block until ``predicate()`` (evaluated on the server loop after each event) holds."""

        async def wait() -> None:
            if predicate():
                return
            assert self._loop is not None
            fut: asyncio.Future[None] = self._loop.create_future()
            self._waiters.append((predicate, fut))
            await asyncio.wait_for(fut, timeout)

        self._call(wait, timeout=timeout + 1)

    def push_iot_message(self, topic: str, payload: bytes) -> int:
        """Deliver an IoT Core message to matching SubscribeToIoTCore streams; returns count."""

        def push() -> int:
            n = 0
            for s in self._streams("SubscribeToIoTCore"):
                if mqtt_match(s.request.get("topicName", ""), topic):
                    body = {"message": {"topicName": topic, "payload": _b64(payload)}}
                    self._event(s, "IoTCoreMessage", body)
                    n += 1
            return n

        return int(self._call(push))

    def push_local_message(self, topic: str, payload: bytes) -> int:
        return int(self._call(self._deliver_local, topic, payload))

    def update_configuration(self, configuration: Mapping[str, Any]) -> None:
        """Replace the component's configuration and notify SubscribeToConfigurationUpdate."""

        def update() -> None:
            old = self.configuration
            self.configuration = copy.deepcopy(dict(configuration))
            changed = sorted(set(old) | set(self.configuration))
            for s in self._streams("SubscribeToConfigurationUpdate"):
                for key in changed:
                    if old.get(key) != self.configuration.get(key):
                        body = {
                            "configurationUpdateEvent": {
                                "componentName": self.component,
                                "keyPath": [key],
                            }
                        }
                        self._event(s, "ConfigurationUpdateEvents", body)

        self._call(update)

    def request_validation(
        self, configuration: Mapping[str, Any], *, timeout: float = 10
    ) -> dict[str, Any]:
        """Ask validators about a proposed configuration; returns the component's report."""
        deployment = f"deployment-{next(self._ids)}"

        def ask() -> int:
            streams = self._streams("SubscribeToValidateConfigurationUpdates")
            for s in streams:
                body = {
                    "validateConfigurationUpdateEvent": {
                        "configuration": copy.deepcopy(dict(configuration)),
                        "deploymentId": deployment,
                    }
                }
                self._event(s, "ValidateConfigurationUpdateEvents", body)
            return len(streams)

        if not self._call(ask):
            raise AssertionError("no component subscribed to validate configuration updates")
        self.wait_until(
            lambda: any(r.get("deploymentId") == deployment for r in self.validity_reports),
            timeout,
        )
        with self._lock:
            return next(r for r in self.validity_reports if r.get("deploymentId") == deployment)

    def pre_update(self, *, timeout: float = 10) -> dict[str, Any]:
        """Announce a component update; returns the component's DeferComponentUpdate request."""
        deployment = f"deployment-{next(self._ids)}"

        def announce() -> int:
            streams = self._streams("SubscribeToComponentUpdates")
            for s in streams:
                body = {"preUpdateEvent": {"deploymentId": deployment, "isGgcRestarting": False}}
                self._event(s, "ComponentUpdatePolicyEvents", body)
            return len(streams)

        if not self._call(announce):
            raise AssertionError("no component subscribed to component updates")
        self.wait_until(
            lambda: any(d.get("deploymentId") == deployment for d in self.deferrals), timeout
        )
        with self._lock:
            return next(d for d in self.deferrals if d.get("deploymentId") == deployment)

    def bridge_local(self, other: NucleusStandIn) -> None:
        """Share local pub/sub with ``other``, both ways: two components of one nucleus, each
        with its own socket, configuration and accessControl. A PublishToTopic that this
        stand-in authorised is delivered to the matching SubscribeToTopic streams of both."""
        self.peers.append(other)
        other.peers.append(self)

    def _deliver_from_peer(self, topic: str, payload: bytes) -> None:
        """Called on any thread: deliver a peer's local message on this stand-in's loop."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # this stand-in is stopping
                loop.call_soon_threadsafe(self._deliver_local, topic, payload)

    def disconnect_all(self) -> None:
        """Drop every client connection (as a nucleus restart would)."""
        self._call(self._drop_all)

    # -- server side (runs on the server loop) ------------------------------------------------

    def _drop_all(self) -> None:
        for conn in list(self._conns):
            conn.streams.clear()
            conn.writer.close()
        self._conns.clear()

    def _streams(self, operation: str) -> list[_Stream]:
        return [s for c in self._conns for s in c.streams.values() if s.operation == operation]

    def _notify(self) -> None:
        for pred, fut in list(self._waiters):
            if not fut.done() and pred():
                fut.set_result(None)
        self._waiters = [(p, f) for p, f in self._waiters if not f.done()]

    def _event(self, s: _Stream, shape: str, body: Mapping[str, Any]) -> None:
        s.conn.send(_app_headers(s.stream_id, shape, 0), _json(body))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(writer)
        self._conns.add(conn)
        buf = b""
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                buf += chunk
                while True:
                    msg, used = decode_message(buf)
                    if msg is None:
                        break
                    buf = buf[used:]
                    self._handle(conn, msg)
                await writer.drain()
        except (ConnectionError, WireError):
            pass
        finally:
            self._conns.discard(conn)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _handle(self, conn: _Conn, msg: Message) -> None:
        mtype = msg.message_type
        if mtype == MT_CONNECT:
            token = json.loads(msg.payload or b"{}").get("authToken")
            ok = token == self.svcuid and msg.headers.get(":version") == "0.1.0"
            conn.authenticated = ok
            flags = FLAG_CONNECTION_ACCEPTED if ok else 0
            conn.send({":message-type": MT_CONNECT_ACK, ":message-flags": flags, ":stream-id": 0})
            if ok:
                self.connections_accepted += 1
            else:
                conn.writer.close()
            return
        if not conn.authenticated:
            conn.writer.close()
            return
        if mtype == MT_PING:
            conn.send({":message-type": MT_PING_RESPONSE, ":message-flags": 0, ":stream-id": 0})
            return
        sid = msg.stream_id
        if sid in conn.streams:
            if msg.flags & FLAG_TERMINATE_STREAM:
                del conn.streams[sid]
            return
        op = str(msg.headers.get("operation", ""))
        name = op.removeprefix("aws.greengrass#")
        body = json.loads(msg.payload) if msg.payload else {}
        with self._lock:
            self.operations.append(Recorded(name, body))
        stream = _Stream(conn, sid, name, body)
        try:
            response, keep_open = self._dispatch(name, body)
        except _IpcError as err:
            conn.send(
                {
                    ":message-type": MT_APPLICATION_ERROR,
                    ":message-flags": FLAG_TERMINATE_STREAM,
                    ":stream-id": sid,
                    ":content-type": "application/json",
                    "service-model-type": f"aws.greengrass#{err.shape}",
                },
                _json({"message": err.message, "_service": "aws.greengrass#GreengrassCoreIPC"}),
            )
        else:
            if keep_open:
                conn.streams[sid] = stream
            flags = 0 if keep_open else FLAG_TERMINATE_STREAM
            conn.send(_app_headers(sid, f"{name}Response", flags), _json(response))
        self._notify()

    def _allowed(self, service: str, operation: str, resource: str) -> bool:
        if self.policy is None:
            return True
        for entry in (self.policy.get(service) or {}).values():
            ops = entry.get("operations", [])
            resources = entry.get("resources", [])
            if (f"aws.greengrass#{operation}" in ops or "*" in ops) and any(
                mqtt_match(r, resource) or r == "*" for r in resources
            ):
                return True
        return False

    def _require(self, service: str, operation: str, resource: str) -> None:
        if not self._allowed(service, operation, resource):
            raise _IpcError(
                "UnauthorizedError",
                f"Principal {self.component} is not authorized to perform "
                f"{service}:aws.greengrass#{operation} on resource {resource}",
            )

    def _deliver_local(self, topic: str, payload: bytes) -> int:
        n = 0
        for s in self._streams("SubscribeToTopic"):
            if mqtt_match(s.request.get("topic", ""), topic):
                body = {"binaryMessage": {"message": _b64(payload), "context": {"topic": topic}}}
                self._event(s, "SubscriptionResponseMessage", body)
                n += 1
        return n

    def _dispatch(self, name: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Answer one operation: (response body, keep the stream open)."""
        mqtt = "aws.greengrass.ipc.mqttproxy"
        if name == "PublishToIoTCore":
            topic = body.get("topicName", "")
            payload = base64.b64decode(body.get("payload", ""))
            qos = str(body.get("qos", "0"))
            self._require(mqtt, name, topic)
            if len(payload) > self.max_message_size:
                raise _IpcError(
                    "InvalidArgumentsError",
                    f"message size {len(payload)} is larger than maxMessageSizeInBytes "
                    f"{self.max_message_size}",
                )
            if self.offline and qos == "0":
                raise _IpcError("ServiceError", "Device is offline. Dropping QoS 0 message.")
            if self.spooler_full:
                raise _IpcError("ServiceError", "Spooler queue is full; message not added")
            with self._lock:
                self.published.append((topic, payload, qos))
            return {}, False
        if name == "SubscribeToIoTCore":
            self._require(mqtt, name, body.get("topicName", ""))
            return {}, True
        if name == "PublishToTopic":
            topic = body.get("topic", "")
            self._require("aws.greengrass.ipc.pubsub", name, topic)
            msg = body.get("publishMessage", {})
            if "binaryMessage" in msg:
                data = base64.b64decode(msg["binaryMessage"].get("message", ""))
            else:
                data = _json(msg.get("jsonMessage", {}).get("message"))
            with self._lock:
                self.local_published.append((topic, data))
            self._deliver_local(topic, data)
            for peer in self.peers:
                peer._deliver_from_peer(topic, data)
            return {}, False
        if name == "SubscribeToTopic":
            self._require("aws.greengrass.ipc.pubsub", name, body.get("topic", ""))
            return {}, True
        if name == "GetConfiguration":
            value: Any = self.configuration
            for key in body.get("keyPath") or []:
                if not isinstance(value, dict) or key not in value:
                    raise _IpcError("ResourceNotFoundError", f"Key not found: {key}")
                value = value[key]
            return {
                "componentName": body.get("componentName") or self.component,
                "value": value,
            }, False
        if name in (
            "SubscribeToConfigurationUpdate",
            "SubscribeToValidateConfigurationUpdates",
            "SubscribeToComponentUpdates",
        ):
            return {}, True
        if name == "SendConfigurationValidityReport":
            with self._lock:
                self.validity_reports.append(dict(body.get("configurationValidityReport", {})))
            return {}, False
        if name == "DeferComponentUpdate":
            with self._lock:
                self.deferrals.append(dict(body))
            return {}, False
        if name == "UpdateState":
            with self._lock:
                self.states.append(str(body.get("state")))
            return {}, False
        if name == "GetSecretValue":
            sid = body.get("secretId", "")
            self._require("aws.greengrass.SecretManager", name, sid)
            if sid not in self.secrets:
                raise _IpcError("ResourceNotFoundError", f"secret {sid} not found")
            value = self.secrets[sid]
            secret = (
                {"secretBinary": _b64(value)}
                if isinstance(value, bytes)
                else {"secretString": value}
            )
            return {
                "secretId": sid,
                "versionId": "v1",
                "versionStage": ["AWSCURRENT"],
                "secretValue": secret,
            }, False
        raise _IpcError("ServiceError", f"operation {name} not served by the stand-in")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _app_headers(stream_id: int, shape: str, flags: int) -> dict[str, Any]:
    return {
        ":message-type": MT_APPLICATION_MESSAGE,
        ":message-flags": flags,
        ":stream-id": stream_id,
        ":content-type": "application/json",
        "service-model-type": f"aws.greengrass#{shape}",
    }


def substitute(policy: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    """Replace recipe variables such as ``{iot:thingName}`` throughout a policy mapping."""

    def sub(x: Any) -> Any:
        if isinstance(x, str):
            for k, v in values.items():
                x = x.replace("{" + k + "}", v)
            return x
        if isinstance(x, dict):
            return {k: sub(v) for k, v in x.items()}
        if isinstance(x, list):
            return [sub(v) for v in x]
        return x

    return dict(sub(dict(policy)))
