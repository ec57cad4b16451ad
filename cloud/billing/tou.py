"""Tariffs with time-of-use (TOU) periods, and billing cycles.

An interval belongs to the TOU period in force at its **local start time** (the tariff's IANA
time zone, DST-aware through :mod:`zoneinfo`). Tariff JSON::

    {"name": "tou3", "timezone": "Europe/Amsterdam", "default": "offpeak",
     "periods": [
        {"name": "peak", "days": "weekday", "from": "07:00", "to": "21:00"},
        {"name": "shoulder", "days": ["sat"], "from": "09:00", "to": "17:00"}],
     "holidays": ["2024-04-01"]}

Rules are tried in order and the first match wins; no match gives ``default``. ``days`` is
``"all"``, ``"weekday"`` (Mon-Fri), ``"weekend"`` (Sat, Sun), ``"holiday"``, or a list of
``mon``..``sun`` / ``holiday``. A date in ``holidays`` is a holiday *instead of* its weekday:
rules for ``weekday`` or its own day name do not match it, rules for ``weekend`` and
``holiday`` do (holidays are billed like Sundays). ``from <= local time < to`` in minutes of
the day; ``to`` may be ``24:00``; ``from > to`` wraps past midnight (``22:00``-``06:00``).

A billing cycle is ``[start, end)`` in UTC epoch seconds. A cycle group reads on a day of the
month: the cycle of (year, month) runs from local midnight of the read day of the previous
month to local midnight of the read day of that month (days past the month's end clamp to its
last day).
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge_core.errors import ConfigError

__all__ = [
    "INTERVAL_S",
    "BillingCycle",
    "CycleGroup",
    "Tariff",
    "TouRule",
    "cycle_days",
]

INTERVAL_S = 900  # load-profile capture period (s)

_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOLIDAY = 7  # pseudo day number of a holiday
_DAY_SETS = {
    "all": frozenset(range(8)),
    "weekday": frozenset(range(5)),
    "weekend": frozenset({5, 6, _HOLIDAY}),
    "holiday": frozenset({_HOLIDAY}),
}


def _minutes(text: Any, path: str) -> int:
    try:
        hh, mm = str(text).split(":")
        value = int(hh) * 60 + int(mm)
    except ValueError as exc:
        raise ConfigError(f"not a HH:MM time: {text!r}", path=path) from exc
    if not 0 <= value <= 1440 or not 0 <= int(mm) < 60:
        raise ConfigError(f"time out of range: {text!r}", path=path)
    return value


def _days(spec: Any, path: str) -> frozenset[int]:
    if isinstance(spec, str):
        spec = [spec]
    if not isinstance(spec, list | tuple) or not spec:
        raise ConfigError("days must be a name or a non-empty list", path=path)
    out: set[int] = set()
    for item in spec:
        name = str(item).lower()
        if name in _DAY_SETS:
            out |= _DAY_SETS[name]
        elif name in _DAY_NAMES:
            out.add(_DAY_NAMES.index(name))
        else:
            raise ConfigError(f"unknown day {item!r}", path=path)
    return frozenset(out)


def _fmt(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True, slots=True)
class TouRule:
    """``period`` applies on ``days`` (0=Mon..6=Sun, 7=holiday) from ``start_min`` to
    ``end_min`` (minutes of the local day, end exclusive; start > end wraps midnight)."""

    period: str
    days: frozenset[int]
    start_min: int
    end_min: int

    def matches(self, day: int, minute: int) -> bool:
        if day not in self.days:
            return False
        if self.start_min <= self.end_min:
            return self.start_min <= minute < self.end_min
        return minute >= self.start_min or minute < self.end_min

    def to_dict(self) -> dict[str, Any]:
        names = [_DAY_NAMES[d] for d in sorted(self.days) if d < 7]
        if _HOLIDAY in self.days:
            names.append("holiday")
        return {
            "name": self.period,
            "days": names,
            "from": _fmt(self.start_min),
            "to": _fmt(self.end_min),
        }


@dataclass(frozen=True, slots=True)
class Tariff:
    """A TOU tariff (see the module doc for the JSON form)."""

    name: str
    timezone: str
    default: str
    rules: tuple[TouRule, ...] = ()
    holidays: frozenset[date] = frozenset()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Tariff:
        try:
            name = str(d["name"])
            tz = str(d["timezone"])
        except KeyError as exc:
            raise ConfigError(f"tariff field missing: {exc}") from exc
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"unknown time zone {tz!r}", path="timezone") from exc
        rules = []
        for i, r in enumerate(d.get("periods") or []):
            path = f"periods[{i}]"
            if not isinstance(r, Mapping) or not r.get("name"):
                raise ConfigError("a period needs a name", path=path)
            rules.append(
                TouRule(
                    period=str(r["name"]),
                    days=_days(r.get("days", "all"), f"{path}.days"),
                    start_min=_minutes(r.get("from", "00:00"), f"{path}.from"),
                    end_min=_minutes(r.get("to", "24:00"), f"{path}.to"),
                )
            )
        try:
            holidays = frozenset(date.fromisoformat(str(h)) for h in d.get("holidays") or [])
        except ValueError as exc:
            raise ConfigError(f"bad holiday date: {exc}", path="holidays") from exc
        default = str(d.get("default") or "offpeak")
        return cls(name, tz, default, tuple(rules), holidays)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "timezone": self.timezone,
            "default": self.default,
            "periods": [r.to_dict() for r in self.rules],
            "holidays": [h.isoformat() for h in sorted(self.holidays)],
        }

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)  # ZoneInfo caches its instances by key

    @property
    def period_names(self) -> tuple[str, ...]:
        """Every period the tariff can assign, rules first (in order), then the default."""
        seen: dict[str, None] = {}
        for r in self.rules:
            seen.setdefault(r.period)
        seen.setdefault(self.default)
        return tuple(seen)

    def period_of_local(self, local: datetime) -> str:
        day = _HOLIDAY if local.date() in self.holidays else local.weekday()
        minute = local.hour * 60 + local.minute
        for rule in self.rules:
            if rule.matches(day, minute):
                return rule.period
        return self.default

    def period_at(self, epoch: int) -> str:
        """The period of the interval starting at ``epoch`` (UTC s)."""
        return self.period_of_local(datetime.fromtimestamp(epoch, tz=self.zone))

    def periods(self, start: int, end: int, step: int = INTERVAL_S) -> list[str]:
        """Periods of the intervals starting at ``start, start+step, ... < end``."""
        return [self.period_at(t) for t in range(start, end, step)]

    def local_iso(self, epoch: int) -> str:
        """ISO 8601 local time with its UTC offset (``2024-03-31T03:15:00+02:00``)."""
        return datetime.fromtimestamp(epoch, tz=self.zone).isoformat()

    def local_midnight(self, day: date) -> int:
        """Epoch s of local midnight starting ``day`` (DST gaps resolved forward)."""
        naive = datetime(day.year, day.month, day.day)
        # fold=0 then normalise via UTC round trip: a midnight inside a DST gap moves forward.
        aware = naive.replace(tzinfo=self.zone)
        return int(aware.astimezone(timezone.utc).timestamp())


@dataclass(frozen=True, slots=True)
class BillingCycle:
    """One billing cycle ``[start, end)`` (UTC epoch s). ``label`` names it in exports."""

    start: int
    end: int
    label: str = ""

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ConfigError("a billing cycle must end after it starts")
        if self.start % INTERVAL_S or self.end % INTERVAL_S:
            raise ConfigError("billing cycle bounds must be on the 15-minute grid")

    @property
    def intervals(self) -> int:
        """Number of 15-minute intervals in the cycle (DST days included as they are)."""
        return (self.end - self.start) // INTERVAL_S

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "label": self.label}


@dataclass(frozen=True, slots=True)
class CycleGroup:
    """A billing-cycle group: meters read on ``read_day`` of every month (1-31)."""

    name: str
    read_day: int

    def __post_init__(self) -> None:
        if not 1 <= self.read_day <= 31:
            raise ConfigError("read_day must be 1..31", path="read_day")

    def read_date(self, year: int, month: int) -> date:
        last = calendar.monthrange(year, month)[1]
        return date(year, month, min(self.read_day, last))

    def cycle(self, year: int, month: int, tariff: Tariff) -> BillingCycle:
        """The cycle that ends on this group's read date of (year, month), local midnights."""
        prev_year, prev_month = (year - 1, 12) if month == 1 else (year, month - 1)
        start_day = self.read_date(prev_year, prev_month)
        end_day = self.read_date(year, month)
        return BillingCycle(
            tariff.local_midnight(start_day),
            tariff.local_midnight(end_day),
            label=f"{self.name}-{end_day.isoformat()}",
        )


def cycle_days(cycle: BillingCycle, tariff: Tariff) -> Sequence[date]:
    """Local dates touched by the cycle (for DST and completeness reporting)."""
    first = datetime.fromtimestamp(cycle.start, tz=tariff.zone).date()
    last = datetime.fromtimestamp(cycle.end - 1, tz=tariff.zone).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]
