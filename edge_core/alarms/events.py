"""Inputs of the outage engine (events are nouns), and their conversion from meter logs.

Every time here is timezone-aware: a meter's event time is its own clock with the UTC offset it
reports; a naive datetime is refused (``ValueError``, a programming error of the caller).

Converters:

- :func:`event_log_to_events` turns IDIS event-log rows ``(meter, code, time)`` into events
  (1 power down, 2 power up, 4/5 clock adjusted, 40-45 tamper, 46/49/50 security, 60-64
  disconnector, 76-81 under/over voltage, 82-84 missing voltage L1-L3, 85-87 voltage normal;
  any other code becomes a :class:`MeterEvent` of kind ``meter_event``).
- :func:`power_failure_log_to_events` turns power-failure log entries (end time, duration in s)
  into :class:`MeterPowerUp` with ``duration_s``; the engine reconstructs the interruption.
- :func:`profile_status_to_events` turns the IDIS load-profile status byte of a row into
  :class:`ClockAdjusted` (bit 5) and :class:`DataNotValid` (bit 2).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

__all__ = [
    "ClockAdjusted",
    "DataNotValid",
    "DcuPowerFail",
    "DcuPowerRestored",
    "Event",
    "MeterCommLost",
    "MeterCommRestored",
    "MeterEvent",
    "MeterPowerDown",
    "MeterPowerUp",
    "PhaseLoss",
    "PhaseRestore",
    "TamperEvent",
    "event_log_to_events",
    "power_failure_log_to_events",
    "profile_status_to_events",
]

Phase = Literal["L1", "L2", "L3"]
PHASES = ("L1", "L2", "L3")


def _aware(t: datetime, name: str = "event_time") -> None:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{name} must carry a UTC offset, got naive {t!r}")


def _phase(p: str | None) -> None:
    if p is not None and p not in PHASES:
        raise ValueError(f"phase must be one of {PHASES} or None, got {p!r}")


@dataclass(frozen=True, slots=True)
class MeterPowerDown:
    """A meter lost power at ``event_time`` (its clock). ``source`` is how we heard of it."""

    meter: str
    event_time: datetime
    phase: str | None = None
    source: Literal["push", "event_log"] = "push"

    def __post_init__(self) -> None:
        _aware(self.event_time)
        _phase(self.phase)


@dataclass(frozen=True, slots=True)
class MeterPowerUp:
    """A meter regained power at ``event_time``. ``duration_s`` (s), when the meter says it
    (power-failure log), takes precedence over the difference of the two event times."""

    meter: str
    event_time: datetime
    duration_s: int | None = None
    source: Literal["push", "event_log"] = "push"

    def __post_init__(self) -> None:
        _aware(self.event_time)
        if self.duration_s is not None and self.duration_s < 0:
            raise ValueError(f"negative duration {self.duration_s}")


@dataclass(frozen=True, slots=True)
class PhaseLoss:
    """Missing voltage on one phase (IDIS 82-84). The meter already applied its own
    voltage-missing time threshold before logging it."""

    meter: str
    phase: str
    event_time: datetime

    def __post_init__(self) -> None:
        _aware(self.event_time)
        _phase(self.phase)


@dataclass(frozen=True, slots=True)
class PhaseRestore:
    """Voltage normal again on one phase (IDIS 85-87)."""

    meter: str
    phase: str
    event_time: datetime

    def __post_init__(self) -> None:
        _aware(self.event_time)
        _phase(self.phase)


@dataclass(frozen=True, slots=True)
class MeterCommLost:
    """One polling cycle in which the meter did not answer."""

    meter: str


@dataclass(frozen=True, slots=True)
class MeterCommRestored:
    """The meter answered again."""

    meter: str


@dataclass(frozen=True, slots=True)
class DcuPowerFail:
    """The concentrator's own power-fail input went active at ``event_time`` (DCU clock).
    ``test`` marks a deliberate test of the last-gasp path."""

    event_time: datetime
    test: bool = False

    def __post_init__(self) -> None:
        _aware(self.event_time)


@dataclass(frozen=True, slots=True)
class DcuPowerRestored:
    """The concentrator's power is back at ``event_time`` (DCU clock).

    After a reboot the engine has forgotten the failure; the caller then passes the last
    unmatched last-gasp's ``outage_start`` and ``meters`` (from the spool) so the restore can
    still be reported with its duration.
    """

    event_time: datetime
    outage_start: datetime | None = None
    meters: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _aware(self.event_time)
        if self.outage_start is not None:
            _aware(self.outage_start, "outage_start")


@dataclass(frozen=True, slots=True)
class TamperEvent:
    """Cover opened, strong DC/magnetic field... ``code`` is the IDIS event code."""

    meter: str
    code: int
    event_time: datetime

    def __post_init__(self) -> None:
        _aware(self.event_time)


@dataclass(frozen=True, slots=True)
class ClockAdjusted:
    """The meter clock was set (IDIS 4 old time / 5 new time, or profile status bit 5)."""

    meter: str
    event_time: datetime
    code: int | None = None

    def __post_init__(self) -> None:
        _aware(self.event_time)


@dataclass(frozen=True, slots=True)
class DataNotValid:
    """The meter flagged captured data as not valid (profile status bit 2)."""

    meter: str
    event_time: datetime
    code: int | None = None

    def __post_init__(self) -> None:
        _aware(self.event_time)


MeterEventKind = Literal["security", "disconnect", "under_voltage", "over_voltage", "meter_event"]


@dataclass(frozen=True, slots=True)
class MeterEvent:
    """Any other meter event forwarded as-is: ``kind`` names the message type."""

    meter: str
    kind: MeterEventKind
    code: int
    event_time: datetime
    phase: str | None = None

    def __post_init__(self) -> None:
        _aware(self.event_time)
        _phase(self.phase)


Event = (
    MeterPowerDown
    | MeterPowerUp
    | PhaseLoss
    | PhaseRestore
    | MeterCommLost
    | MeterCommRestored
    | DcuPowerFail
    | DcuPowerRestored
    | TamperEvent
    | ClockAdjusted
    | DataNotValid
    | MeterEvent
)

# IDIS event codes (standard, fraud, disconnector and power-quality logs).
_POWER_DOWN = 1
_POWER_UP = 2
_CLOCK = frozenset({4, 5})
_TAMPER = range(40, 46)
_SECURITY = frozenset({46, 49, 50})
_DISCONNECT = range(60, 65)
_UNDER_VOLTAGE = range(76, 79)
_OVER_VOLTAGE = range(79, 82)
_MISSING_VOLTAGE = range(82, 85)
_VOLTAGE_NORMAL = range(85, 88)


def _one(meter: str, code: int, t: datetime) -> Event:
    if code == _POWER_DOWN:
        return MeterPowerDown(meter, t, source="event_log")
    if code == _POWER_UP:
        return MeterPowerUp(meter, t, source="event_log")
    if code in _CLOCK:
        return ClockAdjusted(meter, t, code=code)
    if code in _TAMPER:
        return TamperEvent(meter, code, t)
    if code in _SECURITY:
        return MeterEvent(meter, "security", code, t)
    if code in _DISCONNECT:
        return MeterEvent(meter, "disconnect", code, t)
    if code in _UNDER_VOLTAGE:
        return MeterEvent(meter, "under_voltage", code, t, phase=PHASES[code - 76])
    if code in _OVER_VOLTAGE:
        return MeterEvent(meter, "over_voltage", code, t, phase=PHASES[code - 79])
    if code in _MISSING_VOLTAGE:
        return PhaseLoss(meter, PHASES[code - 82], t)
    if code in _VOLTAGE_NORMAL:
        return PhaseRestore(meter, PHASES[code - 85], t)
    return MeterEvent(meter, "meter_event", code, t)


def event_log_to_events(rows: Iterable[tuple[str, int, datetime]]) -> list[Event]:
    """Convert event-log rows ``(meter, IDIS code, event time)`` into engine inputs, in the
    order given (meters log oldest first; keep it)."""
    return [_one(meter, int(code), t) for meter, code, t in rows]


def power_failure_log_to_events(
    meter: str, entries: Iterable[tuple[datetime, int]]
) -> list[MeterPowerUp]:
    """Power-failure log 1.0.99.97.0.255 entries ``(end time, duration s)`` as power-ups
    carrying their duration."""
    return [
        MeterPowerUp(meter, end, duration_s=int(duration), source="event_log")
        for end, duration in entries
    ]


STATUS_CLOCK_ADJUSTED = 0x20
STATUS_DATA_NOT_VALID = 0x04


def profile_status_to_events(meter: str, capture_time: datetime, status: int) -> list[Event]:
    """Data-quality events from one load-profile row's IDIS status byte (bit 5 clock
    adjusted, bit 2 data not valid). The power-down bit 7 is not an event: the event log and
    the pushes say when power went; the bit only marks the interval."""
    out: list[Event] = []
    if status & STATUS_CLOCK_ADJUSTED:
        out.append(ClockAdjusted(meter, capture_time))
    if status & STATUS_DATA_NOT_VALID:
        out.append(DataNotValid(meter, capture_time))
    return out
