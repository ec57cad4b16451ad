"""Scripted happenings of a simulated meter: outages, phase loss, tamper, clock drift,
consumption changes, pushes and link faults.

Theory of operation
-------------------
Everything scripted is stored as plain facts on the simulator's time axis (UTC epoch seconds
of the meter's ``clock()``, the true time; the meter's own clock may be offset from it, see
``SimulatedMeter.clock_offset_s``). Nothing is "executed": the object model asks, at every
read, what the facts imply *now*:

* event-log rows are the facts whose time is not after now (a future outage is invisible
  until its time comes);
* the meter is silent (answers nothing) while now lies inside an outage;
* an interval touched by an outage is flagged power-down (status bit 7) and its energy is
  scaled by the fraction of the interval with power; a consumption factor scales every
  interval that starts at or after its time.

Pushes are the one thing with a side effect: a due push is handed out once by
:meth:`Script.due_pushes` (the network side sends it). Link faults are consumed one per
answer, in the order they were injected.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from edge_core.dlms.obis import Obis
from edge_core.errors import ConfigError

__all__ = [
    "ALARM_FRAUD",
    "ALARM_LAST_GASP",
    "ALARM_POWER_UP",
    "FRAUD_EVENT_LOG",
    "POWER_FAILURE_LOG",
    "POWER_QUALITY_LOG",
    "STANDARD_EVENT_LOG",
    "TAMPER_CODES",
    "EventEntry",
    "LinkFault",
    "Outage",
    "PendingPush",
    "Script",
    "epoch_s",
]

STANDARD_EVENT_LOG = Obis(0, 0, 99, 98, 0, 255)
FRAUD_EVENT_LOG = Obis(0, 0, 99, 98, 1, 255)
POWER_QUALITY_LOG = Obis(0, 0, 99, 98, 4, 255)
POWER_FAILURE_LOG = Obis(1, 0, 99, 97, 0, 255)

# IDIS event codes used here (FIELD-NOTES)
POWER_DOWN = 1
POWER_UP = 2
CLOCK_ADJUSTED_OLD = 4
CLOCK_ADJUSTED_NEW = 5
MISSING_VOLTAGE = (82, 83, 84)
VOLTAGE_NORMAL = (85, 86, 87)
TAMPER_CODES = {
    "terminal_cover": (40, 41),
    "magnetic": (42, 43),
    "meter_cover": (44, 45),
}
"""Tamper kind -> (code when it starts, code when it ends)."""

# Alarm register bits carried by pushes (SMR5 alarm register: bit 0 = last gasp).
ALARM_LAST_GASP = 1 << 0
ALARM_POWER_UP = 1 << 1
ALARM_FRAUD = 1 << 8


def epoch_s(t: datetime | float) -> float:
    """UTC epoch seconds of an aware (or naive = UTC) datetime, or the number itself."""
    if isinstance(t, int | float):
        return float(t)
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


@dataclass(frozen=True, slots=True, order=True)
class EventEntry:
    """One event-log row: time (epoch s), IDIS code, duration in s (power-failure log)."""

    time_s: float
    code: int
    duration_s: int | None = None


@dataclass(frozen=True, slots=True)
class Outage:
    """The meter has no supply in [start_s, end_s) (epoch s)."""

    start_s: float
    end_s: float


@dataclass(frozen=True, slots=True)
class PendingPush:
    """A push due at ``time_s`` carrying ``alarm_bits`` (alarm register value)."""

    time_s: float
    alarm_bits: int


@dataclass(frozen=True, slots=True)
class LinkFault:
    """One answer's fate: ``drop`` (never sent), ``corrupt`` (one byte flipped), ``delay``
    (sent after ``delay_s`` seconds)."""

    kind: str
    delay_s: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("drop", "corrupt", "delay"):
            raise ConfigError(f"unknown link fault {self.kind!r} (drop, corrupt, delay)")
        if self.delay_s < 0:
            raise ConfigError("a delay is not negative")


@dataclass
class Script:
    """The scripted facts of one meter (see the module docstring)."""

    logs: dict[Obis, list[EventEntry]] = field(default_factory=dict)
    outages: list[Outage] = field(default_factory=list)
    phase_losses: list[tuple[int, float, float]] = field(default_factory=list)
    factors: list[tuple[float, float]] = field(default_factory=list)  # (from epoch s, factor)
    pushes: list[PendingPush] = field(default_factory=list)
    faults: deque[LinkFault] = field(default_factory=deque)

    def log(self, obis: Obis, entry: EventEntry) -> None:
        bisect.insort(self.logs.setdefault(obis, []), entry)

    def entries(self, obis: Obis, lo: float, hi: float) -> list[EventEntry]:
        """Rows of ``obis`` with lo <= time <= hi (epoch s), in time order."""
        rows = self.logs.get(obis, [])
        i = bisect.bisect_left(rows, EventEntry(lo, -1))
        out = []
        for e in rows[i:]:
            if e.time_s > hi:
                break
            out.append(e)
        return out

    def is_down(self, now_s: float) -> bool:
        return any(o.start_s <= now_s < o.end_s for o in self.outages)

    def phase_down(self, phase: int, now_s: float) -> bool:
        return any(p == phase and s <= now_s < e for p, s, e in self.phase_losses)

    def powered_fraction(self, start_s: float, end_s: float) -> float:
        """Share of [start_s, end_s) with supply (0..1)."""
        lost = 0.0
        for o in self.outages:
            lost += max(0.0, min(end_s, o.end_s) - max(start_s, o.start_s))
        return max(0.0, 1.0 - lost / (end_s - start_s))

    def factor(self, t_s: float) -> float:
        """The consumption factor in force at ``t_s`` (1.0 when none)."""
        f = 1.0
        for since, value in self.factors:
            if since <= t_s:
                f = value
        return f

    def due_pushes(self, now_s: float) -> list[PendingPush]:
        due = [p for p in self.pushes if p.time_s <= now_s]
        if due:
            self.pushes = [p for p in self.pushes if p.time_s > now_s]
        return due

    def take_fault(self) -> LinkFault | None:
        return self.faults.popleft() if self.faults else None
