"""A scripted driver for the outage engine: a manual clock, and every message checked.

Every message the engine emits through :class:`Harness` is validated against
``alarm.schema.json``, decoded back (symmetric codec), checked against the size bound and for a
strictly increasing sequence number.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import jsonschema

from edge_core.alarms import (
    AlarmMessage,
    AlarmSettings,
    CounterSequence,
    Event,
    OutageEngine,
    load_schema,
)

__all__ = ["DCU", "METER_TZ", "T0", "Harness", "Heard", "check_message", "kinds"]

DCU = "dcu-0042"
METER_TZ = timezone(timedelta(hours=1))
T0 = datetime(2026, 3, 2, 10, 0, 0, tzinfo=METER_TZ)

_VALIDATOR = jsonschema.Draft202012Validator(
    load_schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)


def check_message(msg: AlarmMessage, bound: int, *, validate: bool = True) -> None:
    payload = msg.to_json()
    if validate:
        _VALIDATOR.validate(json.loads(payload))
    assert AlarmMessage.from_json(payload) == msg
    assert len(payload) <= bound, (len(payload), msg.type)


def kinds(msgs: Iterable[AlarmMessage]) -> list[str]:
    return [m.type.value for m in msgs]


@dataclass(frozen=True)
class Heard:
    """One event as the DCU heard it: ``at`` seconds after T0 on the DCU clock."""

    at: float
    event: Event


class Harness:
    def __init__(
        self,
        settings: AlarmSettings | None = None,
        meters: Iterable[str] = (),
        *,
        validate: bool = True,
    ) -> None:
        self.validate = validate
        self.settings = settings or AlarmSettings()
        self.seq = CounterSequence()
        self.engine = OutageEngine(DCU, self.settings, sequence=self.seq, meters=meters)
        self.out: list[AlarmMessage] = []

    @staticmethod
    def at(seconds: float) -> datetime:
        return T0 + timedelta(seconds=seconds)

    def _check(self, msgs: list[AlarmMessage]) -> list[AlarmMessage]:
        last = self.out[-1].seq if self.out else 0
        for m in msgs:
            check_message(m, self.settings.max_message_bytes, validate=self.validate)
            assert m.seq > last
            last = m.seq
            assert m.dcu == DCU
        self.out.extend(msgs)
        return msgs

    def feed(self, heard_s: float, *events: Event) -> list[AlarmMessage]:
        return self._check(self.engine.handle_many(events, self.at(heard_s)))

    def tick(self, now_s: float) -> list[AlarmMessage]:
        return self._check(self.engine.tick(self.at(now_s)))

    def replay(self, heard: Sequence[Heard], ticks: Iterable[float] = ()) -> list[AlarmMessage]:
        """Feed a script as the property test does: events and ticks in DCU-time order (a stable
        sort, so events heard at the same instant keep their script order), then one tick far
        enough ahead for every timer to run out. Returns everything emitted."""
        steps: list[tuple[float, Event | None]] = [(x.at, x.event) for x in heard]
        steps += [(t, None) for t in ticks]
        steps.sort(key=lambda s: s[0])
        for at, event in steps:
            if event is None:
                self.tick(at)
            else:
                self.feed(at, event)
        self.tick(max([s[0] for s in steps], default=0.0) + 100_000)
        return self.out
