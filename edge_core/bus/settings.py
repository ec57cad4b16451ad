"""Typed settings of the direct-MQTT bus, parsed once from a URL or a mapping.

``mqtt://host:port`` is plain TCP to a local broker (tests, the local stack);
``mqtts://endpoint:8883`` is mutual TLS to AWS IoT Core and needs ``cert_path``, ``key_path``
and (usually) ``ca_path``. Every duration is in seconds. :meth:`MqttSettings.from_mapping` and
:meth:`MqttSettings.to_mapping` are symmetric; unknown keys and wrong types raise
:class:`~edge_core.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

from edge_core.errors import ConfigError

__all__ = ["MAX_MESSAGE_BYTES", "MqttSettings"]

#: IoT Core's hard limit on topic + payload of one message, in bytes (and the Greengrass
#: nucleus' maxMessageSizeInBytes default).
MAX_MESSAGE_BYTES = 128 * 1024

_SCHEMES = {"mqtt": (False, 1883), "tcp": (False, 1883), "mqtts": (True, 8883), "ssl": (True, 8883)}


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """Connection settings of :class:`~edge_core.bus.mqtt.MqttBus`.

    ``client_id``: used verbatim when set (IoT Core policies often pin it to the thing name);
    otherwise every connection gets ``client_id_prefix`` plus a random suffix, so two buses in
    one process never steal each other's session.

    ``start_timeout_s``: how long :meth:`MqttBus.start` keeps trying to reach the broker before
    raising BusUnavailableError (0 = one attempt).
    """

    host: str
    port: int
    tls: bool = False
    cert_path: str | None = None
    key_path: str | None = None
    ca_path: str | None = None
    client_id: str | None = None
    client_id_prefix: str = "ami-edge"
    keep_alive_s: int = 30
    ping_timeout_s: float = 3.0
    connect_timeout_s: float = 5.0
    reconnect_min_s: int = 1
    reconnect_max_s: int = 30
    start_timeout_s: float = 10.0
    publish_timeout_s: float = 10.0
    subscribe_timeout_s: float = 10.0
    config_path: str | None = None
    secrets_path: str | None = None
    secret_env_prefix: str = "AMI_SECRET_"

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("empty host", path="host")
        if not 0 < self.port < 65536:
            raise ConfigError(f"port {self.port} out of range", path="port")
        if self.tls and not (self.cert_path and self.key_path):
            raise ConfigError("mqtts needs cert_path and key_path", path="cert_path")
        if not 1 <= self.reconnect_min_s <= self.reconnect_max_s:
            raise ConfigError(
                "need 1 <= reconnect_min_s <= reconnect_max_s", path="reconnect_min_s"
            )
        if self.keep_alive_s <= self.ping_timeout_s:
            raise ConfigError("keep_alive_s must exceed ping_timeout_s", path="keep_alive_s")
        for name in (
            "ping_timeout_s",
            "connect_timeout_s",
            "publish_timeout_s",
            "subscribe_timeout_s",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"must be a positive number of seconds, not {value!r}", path=name)
        if not (math.isfinite(self.start_timeout_s) and self.start_timeout_s >= 0):
            raise ConfigError("must be >= 0 s", path="start_timeout_s")

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> MqttSettings:
        """``mqtt://host[:port]`` or ``mqtts://endpoint[:port]``, plus keyword overrides."""
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES:
            raise ConfigError(f"unsupported scheme in {url!r} (mqtt:// or mqtts://)", path="url")
        tls, default_port = _SCHEMES[parts.scheme]
        try:
            port = parts.port or default_port
        except ValueError as exc:
            raise ConfigError(f"bad port in {url!r}", path="url") from exc
        if parts.path not in ("", "/") or parts.query:
            raise ConfigError(f"unexpected path or query in {url!r}", path="url")
        base = {"host": parts.hostname or "", "port": port, "tls": tls}
        return cls.from_mapping({**base, **overrides})

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> MqttSettings:
        """Parse a JSON-like mapping; ``url`` may stand for host, port and tls."""
        data = dict(data)
        if "url" in data:
            url = data.pop("url")
            if not isinstance(url, str):
                raise ConfigError("must be a string", path="url")
            return cls.from_url(url, **data)
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                raise ConfigError("unknown setting", path=key)
            kwargs[key] = _coerce(key, value, str(known[key].type))
        for required in ("host", "port"):
            if required not in kwargs:
                raise ConfigError("missing", path=required)
        return cls(**kwargs)

    @classmethod
    def from_config(cls, config: Any, **overrides: Any) -> MqttSettings:
        """From :class:`edge_core.config.MqttConfig` (url, client_id, ca/cert/key files)."""
        extra: dict[str, Any] = {
            "client_id": config.client_id or None,
            "ca_path": config.ca_file or None,
            "cert_path": config.cert_file or None,
            "key_path": config.key_file or None,
        }
        return cls.from_url(config.url, **{**extra, **overrides})

    def to_mapping(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _coerce(key: str, value: Any, type_name: str) -> Any:
    """Accept the JSON type of a field, and numbers given as strings (Greengrass recipes)."""
    optional = "None" in type_name
    if value is None:
        if optional:
            return None
        raise ConfigError("must not be null", path=key)
    base = type_name.replace(" | None", "")
    try:
        if base == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise ValueError(value)
        if base == "int":
            if isinstance(value, bool):
                raise ValueError(value)
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if base == "float":
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if not isinstance(value, str):
            raise ValueError(value)
        return value
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"expected {base}, got {value!r}", path=key) from exc
