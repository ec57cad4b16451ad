"""Typed configuration of the edge runtime, parsed once at the edge of the program.

The same parser vets a configuration proposed by a Greengrass deployment (the component's
validator calls :func:`EdgeConfig.from_mapping` and rejects the deployment on ConfigError), a
YAML/JSON file in direct mode, and the demo's generated settings. Every error names the
offending key path, e.g. ``meters[3].url``.

Units: durations in seconds unless the key says otherwise; sizes in bytes unless ``_mb``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from edge_core.alarms import AlarmSettings, PowerFailSettings
from edge_core.errors import ConfigError

__all__ = [
    "AuthSettings",
    "EdgeConfig",
    "MeterConfig",
    "MqttConfig",
    "PushSettings",
    "ScheduleSettings",
    "SpoolSettings",
    "UplinkConfig",
    "load_config_file",
]

T = TypeVar("T")

_THING_RE = re.compile(r"^[A-Za-z0-9:_-]{1,128}$")
_METER_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_TRANSPORTS = ("wrapper", "hdlc")
_AUTH = ("none", "low", "hls-gmac")


class _Reader:
    """Reads typed values out of a mapping, remembering where it is for error messages."""

    def __init__(self, data: Mapping[str, Any], path: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"expected a mapping, got {type(data).__name__}", path=path)
        self.data = data
        self.path = path
        self.seen: set[str] = set()

    def _p(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(
        self, key: str, kind: type[T], default: T | None = None, *, required: bool = False
    ) -> T:
        self.seen.add(key)
        if key not in self.data or self.data[key] is None:
            if required or default is None:
                raise ConfigError("is required", path=self._p(key))
            return default
        value = self.data[key]
        # Greengrass DefaultConfiguration keeps numbers as strings; accept them.
        try:
            if kind is bool:
                if isinstance(value, str):
                    if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError(value)
                    return value.lower() in ("true", "1", "yes")  # type: ignore[return-value]
                if not isinstance(value, bool):
                    raise ValueError(value)
                return value  # type: ignore[return-value]
            if kind is int:
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError(value)
                return int(value)  # type: ignore[return-value]
            if kind is float:
                if isinstance(value, bool):
                    raise ValueError(value)
                return float(value)  # type: ignore[return-value]
            if kind is str:
                if not isinstance(value, (str, int)) or isinstance(value, bool):
                    raise ValueError(value)
                return str(value)  # type: ignore[return-value]
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"expected {kind.__name__}, got {value!r}", path=self._p(key)
            ) from exc
        if not isinstance(value, kind):
            raise ConfigError(f"expected {kind.__name__}", path=self._p(key))
        return value

    def section(self, key: str) -> _Reader:
        self.seen.add(key)
        return _Reader(self.data.get(key) or {}, self._p(key))

    def items(self, key: str) -> list[_Reader]:
        self.seen.add(key)
        raw = self.data.get(key) or []
        if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)):
            raise ConfigError("expected a list", path=self._p(key))
        return [_Reader(item, f"{self._p(key)}[{i}]") for i, item in enumerate(raw)]

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise ConfigError(f"unknown key(s) {', '.join(unknown)}", path=self.path or "<root>")


def _range(value: float, lo: float, hi: float, path: str) -> None:
    if not lo <= value <= hi:
        raise ConfigError(f"{value} is outside [{lo}, {hi}]", path=path)


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """DLMS association security. Keys are *references* to secrets, never the keys themselves."""

    level: str = "none"  # none | low | hls-gmac
    password_secret: str = ""  # low-level security password (secret id)
    auth_key_secret: str = ""  # HLS-GMAC authentication key (secret id)
    cipher_key_secret: str = ""  # HLS-GMAC global unicast encryption key (secret id)
    system_title: str = ""  # client system title, 16 hex digits

    @classmethod
    def from_reader(cls, r: _Reader) -> AuthSettings:
        level = r.get("level", str, "none")
        if level not in _AUTH:
            raise ConfigError(f"must be one of {', '.join(_AUTH)}", path=r._p("level"))
        out = cls(
            level=level,
            password_secret=r.get("password_secret", str, ""),
            auth_key_secret=r.get("auth_key_secret", str, ""),
            cipher_key_secret=r.get("cipher_key_secret", str, ""),
            system_title=r.get("system_title", str, ""),
        )
        r.done()
        if level == "low" and not out.password_secret:
            raise ConfigError("low-level security needs password_secret", path=r.path)
        if level == "hls-gmac":
            if not (out.auth_key_secret and out.cipher_key_secret):
                raise ConfigError(
                    "hls-gmac needs auth_key_secret and cipher_key_secret", path=r.path
                )
            if not re.fullmatch(r"[0-9A-Fa-f]{16}", out.system_title):
                raise ConfigError("system_title must be 16 hex digits", path=r._p("system_title"))
        return out


@dataclass(frozen=True, slots=True)
class MeterConfig:
    """One meter: where it is and how to talk to it."""

    id: str
    url: str  # tcp://host:port, serial:///dev/ttyUSB0, socket://host:port, rfc2217://host:port
    transport: str = "wrapper"  # wrapper | hdlc
    client: int = 16  # client SAP / HDLC client address
    server: int = 1  # logical device / server SAP
    physical: int = 0  # HDLC lower (physical) server address, 0 = none
    baud: int = 9600  # serial buses only
    bus: str = ""  # serial bus name: meters on one bus are read one at a time
    auth: AuthSettings = field(default_factory=AuthSettings)
    pv: bool = False  # export (reverse flow) is expected
    timeout_s: float = 10.0

    @classmethod
    def from_reader(cls, r: _Reader) -> MeterConfig:
        mid = r.get("id", str, required=True)
        if not _METER_RE.match(mid):
            raise ConfigError("letters, digits and ._:- only, at most 64", path=r._p("id"))
        url = r.get("url", str, required=True)
        scheme = urlsplit(url).scheme
        if scheme not in ("tcp", "serial", "socket", "rfc2217"):
            raise ConfigError(
                "scheme must be tcp://, serial://, socket:// or rfc2217://", path=r._p("url")
            )
        transport = r.get("transport", str, "wrapper" if scheme == "tcp" else "hdlc")
        if transport not in _TRANSPORTS:
            raise ConfigError(f"must be one of {', '.join(_TRANSPORTS)}", path=r._p("transport"))
        if scheme != "tcp" and transport == "wrapper":
            raise ConfigError("serial links carry HDLC, not the wrapper", path=r._p("transport"))
        out = cls(
            id=mid,
            url=url,
            transport=transport,
            client=r.get("client", int, 16),
            server=r.get("server", int, 1),
            physical=r.get("physical", int, 0),
            baud=r.get("baud", int, 9600),
            bus=r.get("bus", str, "" if scheme == "tcp" else url),
            auth=AuthSettings.from_reader(r.section("auth")),
            pv=r.get("pv", bool, False),
            timeout_s=r.get("timeout_s", float, 10.0),
        )
        _range(out.client, 1, 0x7F, r._p("client"))
        _range(out.server, 0, 0x3FFF, r._p("server"))
        _range(out.baud, 300, 115200, r._p("baud"))
        _range(out.timeout_s, 0.1, 120, r._p("timeout_s"))
        r.done()
        return out


@dataclass(frozen=True, slots=True)
class ScheduleSettings:
    """When to read. Meter time is what the meter's clock says."""

    profile_read_s: int = (
        900  # how often the load profile is read (by range, since the last capture)
    )
    jitter_s: float = 30.0  # random delay added to each read so a fleet does not read in lockstep
    daily_after_s: int = 300  # the daily/midnight read runs this long after 00:00 meter time
    clock_check_s: int = 86400  # how often the meter clock is compared with the DCU's
    max_clock_drift_s: int = 10  # drift beyond which the clock is reported (and set if allowed)
    set_clock: bool = False
    events: bool = True  # read the event logs (standard, fraud, power quality, power failure)
    backfill_max_days: int = 31  # never ask a meter for more history than this
    max_concurrent_tcp: int = 16  # TCP meters read at the same time

    @classmethod
    def from_reader(cls, r: _Reader) -> ScheduleSettings:
        out = cls(
            profile_read_s=r.get("profile_read_s", int, 900),
            jitter_s=r.get("jitter_s", float, 30.0),
            daily_after_s=r.get("daily_after_s", int, 300),
            clock_check_s=r.get("clock_check_s", int, 86400),
            max_clock_drift_s=r.get("max_clock_drift_s", int, 10),
            set_clock=r.get("set_clock", bool, False),
            events=r.get("events", bool, True),
            backfill_max_days=r.get("backfill_max_days", int, 31),
            max_concurrent_tcp=r.get("max_concurrent_tcp", int, 16),
        )
        _range(out.profile_read_s, 1, 86400, r._p("profile_read_s"))
        _range(out.jitter_s, 0, 3600, r._p("jitter_s"))
        _range(out.backfill_max_days, 1, 366, r._p("backfill_max_days"))
        _range(out.max_concurrent_tcp, 1, 1024, r._p("max_concurrent_tcp"))
        r.done()
        return out


@dataclass(frozen=True, slots=True)
class SpoolSettings:
    path: str = "/var/lib/ami-edge/spool.db"
    quota_mb: int = 512

    @classmethod
    def from_reader(cls, r: _Reader) -> SpoolSettings:
        out = cls(
            path=r.get("path", str, "/var/lib/ami-edge/spool.db"),
            quota_mb=r.get("quota_mb", int, 512),
        )
        _range(out.quota_mb, 1, 1 << 20, r._p("quota_mb"))
        r.done()
        return out


@dataclass(frozen=True, slots=True)
class UplinkConfig:
    max_batch_values: int = 50_000  # values per batch before it is sealed (128 KB is the hard cap)
    max_batch_age_s: float = 300.0  # a batch is sealed when its oldest value waited this long
    max_publish_per_s: float = 50.0  # below IoT Core's 100 publishes/s per connection
    max_bytes_per_s: int = 262_144  # below IoT Core's 512 KB/s per connection
    health_period_s: float = 300.0

    @classmethod
    def from_reader(cls, r: _Reader) -> UplinkConfig:
        out = cls(
            max_batch_values=r.get("max_batch_values", int, 50_000),
            max_batch_age_s=r.get("max_batch_age_s", float, 300.0),
            max_publish_per_s=r.get("max_publish_per_s", float, 50.0),
            max_bytes_per_s=r.get("max_bytes_per_s", int, 262_144),
            health_period_s=r.get("health_period_s", float, 300.0),
        )
        _range(out.max_batch_values, 1, 1_000_000, r._p("max_batch_values"))
        _range(out.max_publish_per_s, 0.1, 100, r._p("max_publish_per_s"))
        _range(out.max_bytes_per_s, 1024, 512 * 1024, r._p("max_bytes_per_s"))
        r.done()
        return out


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """Direct MQTT (no Greengrass): mqtt://host:port, or mqtts://endpoint:8883 with mTLS files."""

    url: str = "mqtt://127.0.0.1:1883"
    client_id: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    @classmethod
    def from_reader(cls, r: _Reader) -> MqttConfig:
        out = cls(
            url=r.get("url", str, "mqtt://127.0.0.1:1883"),
            client_id=r.get("client_id", str, ""),
            ca_file=r.get("ca_file", str, ""),
            cert_file=r.get("cert_file", str, ""),
            key_file=r.get("key_file", str, ""),
        )
        parts = urlsplit(out.url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ConfigError("must be mqtt://host:port or mqtts://host:port", path=r._p("url"))
        if parts.scheme == "mqtts" and not (out.cert_file and out.key_file):
            raise ConfigError("mqtts needs cert_file and key_file (mTLS)", path=r.path)
        r.done()
        return out


@dataclass(frozen=True, slots=True)
class PushSettings:
    """The listener meters push DataNotifications to (alarms, last gasp): IDIS push setup's
    destination is this host and port, wrapper framing over TCP. Port 0: no listener."""

    host: str = "0.0.0.0"
    port: int = 0

    @classmethod
    def from_reader(cls, r: _Reader) -> PushSettings:
        out = cls(host=r.get("host", str, "0.0.0.0"), port=r.get("port", int, 0))
        _range(out.port, 0, 65535, r._p("port"))
        r.done()
        return out


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    """The whole edge runtime configuration."""

    thing_name: str
    meters: tuple[MeterConfig, ...] = ()
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    spool: SpoolSettings = field(default_factory=SpoolSettings)
    uplink: UplinkConfig = field(default_factory=UplinkConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    timezone: str = "UTC"  # the meters' local time zone (daily reads, DST days)
    alarms: AlarmSettings = field(default_factory=AlarmSettings)
    powerfail: PowerFailSettings | None = None  # the DCU's own power-fail input, if wired
    push: PushSettings = field(default_factory=PushSettings)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> EdgeConfig:
        r = _Reader(data, "")
        thing = r.get("thing_name", str, required=True)
        if not _THING_RE.match(thing):
            raise ConfigError("letters, digits and :_- only, at most 128", path="thing_name")
        meters = tuple(MeterConfig.from_reader(m) for m in r.items("meters"))
        seen: set[str] = set()
        for i, m in enumerate(meters):
            if m.id in seen:
                raise ConfigError(f"duplicate meter id {m.id!r}", path=f"meters[{i}].id")
            seen.add(m.id)
        tz = r.get("timezone", str, "UTC")
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(tz)
        except Exception as exc:  # ZoneInfoNotFoundError, ValueError for odd keys
            raise ConfigError(f"unknown time zone {tz!r}", path="timezone") from exc
        out = cls(
            thing_name=thing,
            meters=meters,
            schedule=ScheduleSettings.from_reader(r.section("schedule")),
            spool=SpoolSettings.from_reader(r.section("spool")),
            uplink=UplinkConfig.from_reader(r.section("uplink")),
            mqtt=MqttConfig.from_reader(r.section("mqtt")),
            push=PushSettings.from_reader(r.section("push")),
            timezone=tz,
            alarms=AlarmSettings.from_mapping(_raw_section(r, "alarms") or {}),
            powerfail=(
                PowerFailSettings.from_mapping(pf) if (pf := _raw_section(r, "powerfail")) else None
            ),
        )
        r.done()
        return out


def _raw_section(r: _Reader, key: str) -> Mapping[str, Any] | None:
    """A section parsed by its own module's ``from_mapping`` (alarms, power-fail input)."""
    r.seen.add(key)
    raw = r.data.get(key)
    if raw is not None and not isinstance(raw, Mapping):
        raise ConfigError("expected a mapping", path=key)
    return raw


def load_config_file(path: str | Path) -> EdgeConfig:
    """Parse a YAML or JSON configuration file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {p}: {exc.strerror}") from exc
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError
        raise ConfigError(f"{p} is not valid {p.suffix.lstrip('.') or 'JSON'}: {exc}") from exc
    return EdgeConfig.from_mapping(data or {})
