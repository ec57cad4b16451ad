"""The alarm and event message: a small JSON object on ``alarm/ami/{thing}/power`` or
``dt/ami/{thing}/events``.

One :class:`AlarmMessage` is one fact for the outage-management system (OMS) or the event
store. Its JSON form (schema ``alarm.schema.json`` beside this module, draft 2020-12) is compact
(no spaces), key order fixed, and symmetric: ``AlarmMessage.from_json(m.to_json()) == m``.

Identity: ``id`` is a deterministic idempotency key, the first 128 bits of BLAKE2b over the DCU,
the type, the sorted meter ids, the event time (as a UTC instant), the event code (where the
type carries one) and, for the DCU's own restore, a marker that keeps it apart from a meter's.
The same fact seen twice (a push and an event-log read) hashes to the same id, so the edge
emits it once and the cloud can drop a redelivery. ``seq`` is a per-DCU monotonic
number handed out by a sequence provider that the caller persists; it orders messages, it does
not identify them.

Times: ``event_time`` is the meter's (or the DCU's) clock, ISO-8601 with its UTC offset;
``detected_time`` is the DCU clock when the engine produced the message. Durations are whole
seconds.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from typing import Any

from edge_core.errors import DecodeError
from edge_core.model import DataClass, Topics

__all__ = [
    "EVENT_TYPES",
    "POWER_TYPES",
    "SCHEMA_VERSION",
    "AlarmMessage",
    "AlarmType",
    "CounterSequence",
    "Priority",
    "SequenceProvider",
    "alarm_id",
    "load_schema",
]

SCHEMA_VERSION = 1

#: A callable returning the next per-DCU sequence number. The caller persists the counter
#: (the spool is the natural place) so that it never goes backwards across restarts.
SequenceProvider = Callable[[], int]


class AlarmType(str, enum.Enum):
    """What happened. Power types go to the alarm topic, the others to the events topic."""

    LAST_GASP = "last_gasp"  # the DCU is losing power; lists the meters that were powered
    POWER_DOWN = "power_down"  # reserved: an unqualified meter power-down (not emitted by default)
    OUTAGE = "outage"  # a meter power-down that persisted past the qualification delay
    MOMENTARY = "momentary"  # summary of short interruptions of one meter over a period
    RESTORE = "restore"  # power back (meter, or the DCU itself when meter is null)
    PHASE_LOSS = "phase_loss"  # missing voltage on one phase (IDIS 82-84)
    PHASE_RESTORE = "phase_restore"  # voltage normal again (IDIS 85-87)
    TRANSFORMER_OUTAGE = "transformer_outage"  # many meters lost power together
    TRANSFORMER_RESTORE = "transformer_restore"  # ... and came back (per-meter durations)
    FLAPPING = "flapping"  # too many transitions of one meter; quiet until stable
    COMM_LOSS = "comm_loss"  # meter unreachable for more than M polling cycles
    COMM_RESTORE = "comm_restore"  # reachable again
    TAMPER = "tamper"  # cover opened, strong magnetic/DC field (IDIS 40-45)
    SECURITY = "security"  # failed associations, decryption failure, replay (IDIS 46, 49, 50)
    DISCONNECT = "disconnect"  # disconnector events (IDIS 60-64)
    UNDER_VOLTAGE = "under_voltage"  # IDIS 76-78
    OVER_VOLTAGE = "over_voltage"  # IDIS 79-81
    CLOCK_ADJUSTED = "clock_adjusted"  # IDIS 4/5, profile status bit 5
    DATA_NOT_VALID = "data_not_valid"  # profile status bit 2
    METER_EVENT = "meter_event"  # any other event-log code, forwarded with its code


POWER_TYPES = frozenset(
    {
        AlarmType.LAST_GASP,
        AlarmType.POWER_DOWN,
        AlarmType.OUTAGE,
        AlarmType.MOMENTARY,
        AlarmType.RESTORE,
        AlarmType.PHASE_LOSS,
        AlarmType.PHASE_RESTORE,
        AlarmType.TRANSFORMER_OUTAGE,
        AlarmType.TRANSFORMER_RESTORE,
        AlarmType.FLAPPING,
    }
)
EVENT_TYPES = frozenset(AlarmType) - POWER_TYPES


class Priority(enum.IntEnum):
    """Send order inside the alarm lane: lower is more urgent."""

    LAST_GASP = 0  # must leave before the supercapacitor runs out
    POWER = 1  # outage / restore / phase / transformer
    SUMMARY = 2  # momentary and flapping summaries
    EVENT = 3  # tamper, clock, data quality, comm loss


def _iso(t: datetime) -> str:
    return t.isoformat()


def _utc_key(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def alarm_id(
    dcu: str,
    type_: AlarmType,
    meters: Iterable[str],
    event_time: datetime,
    code: int | None = None,
    *,
    about_dcu: bool = False,
) -> str:
    """The idempotency key: 32 hex digits of BLAKE2b-128 over the identifying fields.

    Meters are sorted, the event time is taken as a UTC instant (the same instant written with
    another offset gives the same id), the code is included only when not None.

    ``about_dcu`` marks a message whose subject is the DCU itself although its type also exists
    per meter: the DCU's ``restore`` (``meter`` null). Its meter list is the last-gasp list, so
    with a single powered meter it would otherwise hash like that meter's own restore at the
    same instant, and one of the two facts would be dropped as a duplicate. The marker is added
    only when set, so every other id is unchanged.
    """
    parts = [dcu, type_.value, ",".join(sorted(meters)), _utc_key(event_time)]
    if code is not None:
        parts.append(str(code))
    if about_dcu:
        parts.append("dcu")
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class AlarmMessage:
    """One alarm or event.

    ``meter`` names the single meter of per-meter types (and is repeated in ``meters``);
    ``meters`` lists every meter concerned (last gasp: the meters that were powered; transformer
    types: the members). ``durations_s`` runs parallel to ``meters`` on a transformer restore.
    ``interruption`` classifies a restore: ``"momentary"`` (shorter than the momentary threshold)
    or ``"sustained"``. ``part``/``parts`` number the pieces of a message split to stay under the
    size bound (1-based). ``priority`` is the send order (see :class:`Priority`).
    """

    type: AlarmType
    dcu: str
    event_time: datetime
    detected_time: datetime
    id: str
    seq: int
    priority: int
    meter: str | None = None
    meters: tuple[str, ...] = ()
    phase: str | None = None
    duration_s: int | None = None
    count: int | None = None
    test: bool = False
    code: int | None = None
    interruption: str | None = None
    durations_s: tuple[int, ...] = field(default=())
    window_s: int | None = None
    part: int | None = None
    parts: int | None = None

    @property
    def data_class(self) -> DataClass:
        """The spool class every alarm and event is persisted in."""
        return DataClass.ALARM

    @property
    def is_power(self) -> bool:
        return self.type in POWER_TYPES

    def topic(self, topics: Topics) -> str:
        """``alarm/.../power`` for power types, ``dt/.../events`` for the rest."""
        return topics.alarm_power if self.is_power else topics.events

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "id": self.id,
            "seq": self.seq,
            "type": self.type.value,
            "priority": self.priority,
            "test": self.test,
            "dcu": self.dcu,
            "meter": self.meter,
            "meters": list(self.meters),
            "phase": self.phase,
            "event_time": _iso(self.event_time),
            "detected_time": _iso(self.detected_time),
            "duration_s": self.duration_s,
            "count": self.count,
        }
        if self.code is not None:
            d["code"] = self.code
        if self.interruption is not None:
            d["interruption"] = self.interruption
        if self.durations_s:
            d["durations_s"] = list(self.durations_s)
        if self.window_s is not None:
            d["window_s"] = self.window_s
        if self.part is not None:
            d["part"] = self.part
            d["parts"] = self.parts
        return d

    def to_json(self) -> bytes:
        """Compact UTF-8 JSON (no spaces), keys in a fixed order."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AlarmMessage:
        try:
            if d["v"] != SCHEMA_VERSION:
                raise DecodeError(f"unsupported alarm schema version {d['v']!r}")
            return cls(
                type=AlarmType(d["type"]),
                dcu=str(d["dcu"]),
                event_time=_parse_time(d["event_time"]),
                detected_time=_parse_time(d["detected_time"]),
                id=str(d["id"]),
                seq=int(d["seq"]),
                priority=int(d["priority"]),
                meter=d.get("meter"),
                meters=tuple(d.get("meters", ())),
                phase=d.get("phase"),
                duration_s=d.get("duration_s"),
                count=d.get("count"),
                test=bool(d.get("test", False)),
                code=d.get("code"),
                interruption=d.get("interruption"),
                durations_s=tuple(d.get("durations_s", ())),
                window_s=d.get("window_s"),
                part=d.get("part"),
                parts=d.get("parts"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"not an alarm message: {exc}") from exc

    @classmethod
    def from_json(cls, data: bytes | str) -> AlarmMessage:
        try:
            obj = json.loads(data)
        except ValueError as exc:
            raw = data.encode() if isinstance(data, str) else bytes(data)
            raise DecodeError(f"alarm message is not JSON: {exc}", data=raw) from exc
        if not isinstance(obj, dict):
            raise DecodeError("alarm message is not a JSON object")
        return cls.from_dict(obj)


def _parse_time(s: Any) -> datetime:
    t = datetime.fromisoformat(str(s))
    if t.tzinfo is None:
        raise ValueError(f"time without UTC offset: {s!r}")
    return t


class CounterSequence:
    """An in-memory sequence provider (tests, or a caller that persists ``value`` itself)."""

    def __init__(self, start: int = 1) -> None:
        self.value = start - 1

    def __call__(self) -> int:
        self.value += 1
        return self.value


def load_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the message, shipped as package data."""
    text = resources.files("edge_core.alarms").joinpath("alarm.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
