"""The outage engine: meter and DCU power events in, alarm messages out. Pure logic.

No I/O, no wall clock, no ML import: every entry point takes ``now`` (the DCU clock, aware
datetime) or reads an injected clock, so a script of events gives one exact output.

Theory of operation
-------------------
Two clocks. *Timers* (qualification, summary period, flapping stability, restore correlation,
comm loss) run on the DCU clock ``now``: meter clocks drift and an event-log read delivers old
events late, so only the DCU can say how long something has *persisted since we heard of it*.
*Facts* (event times, durations, correlation of power-downs, the flapping window) use the
meter's clock, as the meter reported it.

Per meter, power is one of UP -> PENDING (down heard, not yet qualified) -> OUT (alarm sent).

- A PENDING meter becomes OUT when ``qualification_delay_s`` has passed since the down was heard
  (``tick``). At that moment all PENDING meters are clustered by down time (a cluster spans at
  most ``correlation_window_s`` of meter time); a cluster of at least ``transformer_min_meters``
  meters, or ``transformer_min_fraction`` of the DCU's meters (and at least two), becomes one
  ``transformer_outage`` listing every member (even members heard too recently to qualify on
  their own: the cluster corroborates them). Otherwise each qualified meter gets an ``outage``.
  The qualification delay (30 s) is longer than the correlation window (10 s), so the pushes of a
  whole transformer are all in before its first member qualifies.
- A power-up of a PENDING meter (interruption over before it qualified): if shorter than the
  momentary threshold it is added to the meter's momentary summary (one ``momentary`` message per
  meter and summary period, with count and total duration); if longer (an old interruption read
  from a log) it is reported as ``outage`` followed by ``restore``.
- A power-up of an OUT meter always yields its restore (``restore`` with duration and
  ``interruption`` momentary/sustained; the qualification delay gates the outage alarm, a restore
  within the momentary threshold classifies the interruption as momentary). Members of a
  transformer incident are restored together in one ``transformer_restore`` with per-meter
  durations, once all are back, or ``restore_correlation_s`` after the first came back (the rest
  then stay OUT individually and get their own ``restore``). So every meter listed in an outage
  is listed in exactly one later restore.
- Duplicates: a down while PENDING/OUT, an up while UP, and any transition older than the meter's
  last accepted one are dropped (the same interruption seen via push and via the event log).
  Every message id is remembered (bounded), and an id already emitted is never emitted again.
- Flapping: more than ``flap_max_transitions`` accepted transitions within ``flap_window_s`` of
  meter time mark the meter flapping: one ``flapping`` summary, its open momentary summary is
  dropped (its blinks are in the flapping count), and it raises no new outage or momentary until
  no transition was heard for ``flap_stable_s``; if it then is still down it qualifies at once.
  A restore of an outage already sent is never suppressed.
- DCU power fail: at once one ``last_gasp`` (priority 0) listing the meters then UP, then every
  open momentary summary is flushed (the process may not live to the end of the period). On
  power back, one ``restore`` for the DCU (meter null, the last-gasp meters, duration; its id is
  marked as the DCU's, so it never equals a meter's restore at the same instant). Meter
  interruptions that begin and end inside the DCU's outage (``dcu_absorb_margin_s`` either side)
  for meters listed in the last gasp, over before they qualify, are absorbed: the DCU alarm
  already covers them. While the DCU's outage is still open it ends after any up we hear, so
  there only the start is checked.
- Comm loss: more than ``comm_loss_cycles`` consecutive failed polls give one ``comm_loss``
  (never an outage: only a power-down corroborates an outage; and no comm_loss is raised for a
  meter that is PENDING/OUT, whose silence the outage explains); an answer gives ``comm_restore``.
- Phase loss/restore and tamper/clock/data-quality/other events are forwarded (deduplicated).
  A clock adjustment that sets a meter's clock before its last accepted transition reopens that
  span, so the meter's next transitions are not taken for stale ones.

Output: ``handle`` and ``tick`` return the messages made in that step sorted by priority (a last
gasp first), with sequence numbers assigned in that order. The caller persists them to the
spool's alarm class *before* handing them to the uplink, whose alarm lane sends by priority.
A message whose encoding exceeds ``max_message_bytes`` is split into parts by meter list.

State lives in memory. After a restart open outages are unknown to the engine; the runtime
re-feeds what it knows (``DcuPowerRestored.outage_start`` for an unmatched last gasp).
"""

from __future__ import annotations

import enum
import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from typing import Any

from edge_core.alarms.events import (
    ClockAdjusted,
    DataNotValid,
    DcuPowerFail,
    DcuPowerRestored,
    Event,
    MeterCommLost,
    MeterCommRestored,
    MeterEvent,
    MeterPowerDown,
    MeterPowerUp,
    PhaseLoss,
    PhaseRestore,
    TamperEvent,
)
from edge_core.alarms.messages import (
    AlarmMessage,
    AlarmType,
    Priority,
    SequenceProvider,
    alarm_id,
)
from edge_core.errors import ConfigError

__all__ = ["AlarmSettings", "OutageEngine"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AlarmSettings:
    """Thresholds of the engine. Times in seconds, sizes in bytes.

    Defaults and why:

    - ``qualification_delay_s = 30``: longer than a recloser's reclosing sequence (shots of
      0.5-15 s), so a fault the recloser clears raises no outage, and longer than the
      correlation window so a whole transformer is in before its first meter qualifies; short
      enough for the OMS to hear within a minute.
    - ``momentary_threshold_s = 300``: IEEE 1366 (an interruption under 5 min is momentary);
      set 180 for EN 50160 (short interruption up to 3 min).
    - ``summary_period_s = 900``: one momentary summary per meter per 15 minutes at most.
    - ``correlation_window_s = 10``: power-downs of one transformer spread over a few seconds.
    - ``transformer_min_meters = 5`` / ``transformer_min_fraction = 0.5``: either is enough.
    - ``restore_correlation_s = 60``: how long a transformer restore waits for stragglers.
    - ``flap_max_transitions = 8`` in ``flap_window_s = 300``; quiet until ``flap_stable_s
      = 600`` without a transition.
    - ``comm_loss_cycles = 3``: comm_loss after the 4th failed poll in a row.
    - ``max_message_bytes = 2048``: bigger messages are split by meter list.
    """

    qualification_delay_s: float = 30.0
    momentary_threshold_s: float = 300.0
    summary_period_s: float = 900.0
    correlation_window_s: float = 10.0
    transformer_min_meters: int = 5
    transformer_min_fraction: float = 0.5
    restore_correlation_s: float = 60.0
    flap_max_transitions: int = 8
    flap_window_s: float = 300.0
    flap_stable_s: float = 600.0
    comm_loss_cycles: int = 3
    dcu_absorb_margin_s: float = 60.0
    max_message_bytes: int = 2048
    remembered_ids: int = 8192
    test: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "test":
                continue
            if value < 0:
                raise ConfigError(f"must be >= 0, got {value!r}", path=f"alarms.{f.name}")
        if not 0.0 < self.transformer_min_fraction <= 1.0:
            raise ConfigError("must be in (0, 1]", path="alarms.transformer_min_fraction")
        if self.transformer_min_meters < 2:
            raise ConfigError("must be >= 2", path="alarms.transformer_min_meters")
        if self.max_message_bytes < 512:
            raise ConfigError("must be >= 512", path="alarms.max_message_bytes")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], path: str = "alarms") -> AlarmSettings:
        """Parse a configuration mapping (numbers may be strings, as Greengrass keeps them)."""
        kwargs: dict[str, Any] = {}
        known = {f.name: f for f in fields(cls)}
        for key, value in raw.items():
            if key not in known:
                raise ConfigError("unknown setting", path=f"{path}.{key}")
            default = getattr(cls(), key)
            try:
                if isinstance(default, bool):
                    if isinstance(value, str):
                        if value.lower() not in ("true", "false"):
                            raise ValueError(value)
                        kwargs[key] = value.lower() == "true"
                    else:
                        kwargs[key] = bool(value)
                elif isinstance(default, int):
                    kwargs[key] = int(value)
                else:
                    kwargs[key] = float(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"not a number: {value!r}", path=f"{path}.{key}") from exc
        return cls(**kwargs)


class _Power(enum.Enum):
    UP = "up"
    PENDING = "pending"
    OUT = "out"


@dataclass(slots=True)
class _Summary:
    opened: datetime  # DCU clock
    first_event: datetime  # meter clock
    count: int = 0
    total_s: int = 0


@dataclass(slots=True)
class _Meter:
    power: _Power = _Power.UP
    down_time: datetime | None = None  # meter clock
    down_heard: datetime | None = None  # DCU clock
    incident: int | None = None
    last_transition: datetime | None = None  # meter clock of the last accepted transition
    last_heard: datetime | None = None  # DCU clock of the last accepted transition
    transitions: deque[datetime] = field(default_factory=deque)
    flapping: bool = False
    momentary: _Summary | None = None
    phases_lost: dict[str, datetime] = field(default_factory=dict)
    comm_failures: int = 0
    comm_since: datetime | None = None
    comm_alarmed: bool = False


@dataclass(slots=True)
class _Incident:
    first_down: datetime
    members: dict[str, datetime]  # meter -> down time
    restored: dict[str, tuple[datetime, int]] = field(default_factory=dict)
    first_restore_heard: datetime | None = None


@dataclass(frozen=True, slots=True)
class _DcuOutage:
    start: datetime
    end: datetime
    meters: frozenset[str]


@dataclass(slots=True)
class _Draft:
    type: AlarmType
    priority: int
    event_time: datetime
    meter: str | None = None
    meters: tuple[str, ...] = ()
    phase: str | None = None
    duration_s: int | None = None
    count: int | None = None
    test: bool = False
    code: int | None = None
    interruption: str | None = None
    durations_s: tuple[int, ...] = ()
    window_s: int | None = None
    about_dcu: bool = False  # the DCU's own restore: its id must differ from any meter's


def _secs(delta: timedelta) -> int:
    return max(0, round(delta.total_seconds()))


class OutageEngine:
    """Turns meter/DCU events into :class:`AlarmMessage` objects (see the module docstring).

    ``sequence`` hands out per-DCU sequence numbers (persisted by the caller); ``clock`` is used
    only when a call gives no ``now``; ``meters`` is the DCU's meter population (for the
    transformer fraction and the last-gasp list; meters heard of are added).
    """

    def __init__(
        self,
        dcu: str,
        settings: AlarmSettings | None = None,
        *,
        sequence: SequenceProvider,
        clock: Callable[[], datetime] | None = None,
        meters: Iterable[str] = (),
    ) -> None:
        if not dcu:
            raise ConfigError("empty DCU name", path="alarms.dcu")
        self.dcu = dcu
        self.settings = settings or AlarmSettings()
        self._sequence = sequence
        self._clock = clock
        self._meters: dict[str, _Meter] = {}
        # Meters with a running timer (PENDING, open summary, flapping): the timers visit only
        # these, so a step costs O(active meters), not O(population).
        self._active: set[str] = set()
        self._incidents: dict[int, _Incident] = {}
        self._next_incident = 1
        self._dcu_failed: DcuPowerFail | None = None
        self._last_gasp_meters: tuple[str, ...] = ()
        self._dcu_outages: deque[_DcuOutage] = deque(maxlen=8)
        self._emitted: OrderedDict[str, None] = OrderedDict()
        self._drafts: list[_Draft] = []
        for m in meters:
            self._meter(m)

    # ------------------------------------------------------------------ public API

    def set_meters(self, meters: Iterable[str]) -> None:
        """Declare the DCU's meter population (meters already known are kept)."""
        for m in meters:
            self._meter(m)

    @property
    def meters(self) -> tuple[str, ...]:
        return tuple(sorted(self._meters))

    def handle(self, event: Event, now: datetime | None = None) -> list[AlarmMessage]:
        """Feed one event heard at ``now`` (DCU clock); returns the messages it produced,
        together with those of timers that expired up to ``now``."""
        t = self._now(now)
        self._advance(t)
        self._dispatch(event, t)
        return self._finish(t)

    def handle_many(
        self, events: Iterable[Event], now: datetime | None = None
    ) -> list[AlarmMessage]:
        """Feed several events heard at the same ``now`` (one event-log read)."""
        t = self._now(now)
        self._advance(t)
        for event in events:
            self._dispatch(event, t)
        return self._finish(t)

    def tick(self, now: datetime | None = None) -> list[AlarmMessage]:
        """Advance the timers to ``now``; returns what they produced."""
        t = self._now(now)
        self._advance(t)
        return self._finish(t)

    def next_deadline(self) -> datetime | None:
        """The earliest DCU time at which ``tick`` may produce something (None: nothing open)."""
        s = self.settings
        candidates: list[datetime] = []
        for st in (self._meters[m] for m in self._active):
            if st.power is _Power.PENDING and not st.flapping and st.down_heard is not None:
                candidates.append(st.down_heard + timedelta(seconds=s.qualification_delay_s))
            if st.momentary is not None:
                candidates.append(st.momentary.opened + timedelta(seconds=s.summary_period_s))
            if st.flapping and st.last_heard is not None:
                candidates.append(st.last_heard + timedelta(seconds=s.flap_stable_s))
        for inc in self._incidents.values():
            if inc.first_restore_heard is not None:
                candidates.append(
                    inc.first_restore_heard + timedelta(seconds=s.restore_correlation_s)
                )
        return min(candidates) if candidates else None

    # ------------------------------------------------------------------ plumbing

    def _now(self, now: datetime | None) -> datetime:
        if now is None:
            if self._clock is None:
                raise ConfigError("OutageEngine needs `now` or a clock", path="alarms.clock")
            now = self._clock()
        if now.tzinfo is None:
            raise ValueError("now must carry a UTC offset")
        return now

    def _meter(self, meter: str) -> _Meter:
        st = self._meters.get(meter)
        if st is None:
            st = self._meters[meter] = _Meter()
        return st

    def _emit(self, type_: AlarmType, priority: int, event_time: datetime, **kw: Any) -> None:
        self._drafts.append(_Draft(type_, int(priority), event_time, test=self.settings.test, **kw))

    def _dispatch(self, ev: Event, now: datetime) -> None:
        if isinstance(ev, MeterPowerDown):
            self._on_down(ev.meter, ev.event_time, now)
        elif isinstance(ev, MeterPowerUp):
            self._on_up(ev.meter, ev.event_time, ev.duration_s, now)
        elif isinstance(ev, PhaseLoss):
            self._on_phase_loss(ev)
        elif isinstance(ev, PhaseRestore):
            self._on_phase_restore(ev)
        elif isinstance(ev, MeterCommLost):
            self._on_comm_lost(ev.meter, now)
        elif isinstance(ev, MeterCommRestored):
            self._on_comm_restored(ev.meter, now)
        elif isinstance(ev, DcuPowerFail):
            self._on_dcu_fail(ev)
        elif isinstance(ev, DcuPowerRestored):
            self._on_dcu_restored(ev)
        elif isinstance(ev, TamperEvent):
            self._forward(AlarmType.TAMPER, ev.meter, ev.event_time, code=ev.code)
        elif isinstance(ev, ClockAdjusted):
            self._on_clock_adjusted(ev)
        elif isinstance(ev, DataNotValid):
            self._forward(AlarmType.DATA_NOT_VALID, ev.meter, ev.event_time, code=ev.code)
        elif isinstance(ev, MeterEvent):
            self._forward(AlarmType(ev.kind), ev.meter, ev.event_time, code=ev.code, phase=ev.phase)
        else:
            raise TypeError(f"not an engine event: {ev!r}")

    # ------------------------------------------------------------------ meter power

    def _accept_transition(self, meter: str, st: _Meter, t: datetime, now: datetime) -> None:
        """Record an accepted transition; may start flapping."""
        s = self.settings
        st.last_transition = t
        st.last_heard = now
        st.transitions.append(t)
        window = timedelta(seconds=s.flap_window_s)
        while st.transitions and t - st.transitions[0] > window:
            st.transitions.popleft()
        if not st.flapping and len(st.transitions) > s.flap_max_transitions:
            st.flapping = True
            st.momentary = None
            self._active.add(meter)
            log.info("meter %s flapping: %d transitions", meter, len(st.transitions))
            self._emit(
                AlarmType.FLAPPING,
                Priority.SUMMARY,
                st.transitions[0],
                meter=meter,
                meters=(meter,),
                count=len(st.transitions),
                window_s=round(s.flap_window_s),
            )

    def _on_down(self, meter: str, t: datetime, now: datetime) -> None:
        st = self._meter(meter)
        if st.last_transition is not None and t < st.last_transition:
            log.debug("meter %s: down at %s older than last transition (stale)", meter, t)
            return
        if st.power is not _Power.UP:
            # Already down: a duplicate, or a newer down whose up we missed (the interruption
            # then runs from the first down to an up newer than this one).
            st.last_transition = t
            return
        for key, inc in list(self._incidents.items()):
            if meter in inc.restored:
                # A restored member goes down again: report the incident's restore now, so
                # that it precedes any alarm about this new interruption.
                self._close_incident(key)
        st.power = _Power.PENDING
        self._active.add(meter)
        st.down_time = t
        st.down_heard = now
        self._accept_transition(meter, st, t, now)

    def _on_up(self, meter: str, t: datetime, duration_s: int | None, now: datetime) -> None:
        st = self._meter(meter)
        if st.last_transition is not None and t < st.last_transition:
            log.debug("meter %s: up at %s older than last transition (stale)", meter, t)
            return
        if st.power is _Power.UP:
            if duration_s is None:
                # A duplicate, or a newer up whose down we missed: only the time advances, so
                # that an older down delivered later is recognised as stale.
                st.last_transition = t
                return
            start = t - timedelta(seconds=duration_s)
            if st.last_transition is not None and start <= st.last_transition:
                log.debug("meter %s: power-failure entry ending %s already known", meter, t)
                return
            self._on_down(meter, start, now)
            if self._meters[meter].power is not _Power.PENDING:
                return
        assert st.down_time is not None
        duration = duration_s if duration_s is not None else _secs(t - st.down_time)
        was, down_time, incident = st.power, st.down_time, st.incident
        st.power, st.down_time, st.down_heard, st.incident = _Power.UP, None, None, None
        self._accept_transition(meter, st, t, now)
        if was is _Power.OUT:
            if incident is not None and incident in self._incidents:
                self._incident_member_up(incident, meter, t, duration, now)
            else:
                self._emit_restore(meter, t, duration)
            return
        # PENDING: over before it qualified.
        if st.flapping:
            return
        if self._absorbed(meter, down_time, t):
            log.debug("meter %s: interruption inside the DCU outage; absorbed", meter)
            return
        if duration < self.settings.momentary_threshold_s:
            if st.momentary is None:
                st.momentary = _Summary(opened=now, first_event=down_time)
                self._active.add(meter)
            st.momentary.count += 1
            st.momentary.total_s += duration
            return
        # An old, long interruption read from a log: report it whole.
        self._emit(AlarmType.OUTAGE, Priority.POWER, down_time, meter=meter, meters=(meter,))
        self._emit_restore(meter, t, duration)

    def _classify(self, duration: int) -> str:
        return "momentary" if duration < self.settings.momentary_threshold_s else "sustained"

    def _emit_restore(self, meter: str, t: datetime, duration: int) -> None:
        self._emit(
            AlarmType.RESTORE,
            Priority.POWER,
            t,
            meter=meter,
            meters=(meter,),
            duration_s=duration,
            interruption=self._classify(duration),
        )

    def _absorbed(self, meter: str, start: datetime, end: datetime) -> bool:
        margin = timedelta(seconds=self.settings.dcu_absorb_margin_s)
        failed = self._dcu_failed
        if (
            failed is not None
            and start >= failed.event_time - margin
            and meter in self._last_gasp_meters
        ):
            # The DCU's outage is still open, so it ends after ``end``: an interruption that
            # began inside it is inside it, like one checked against a closed outage below.
            return True
        return any(
            meter in o.meters and o.start - margin <= start and end <= o.end + margin
            for o in self._dcu_outages
        )

    def _is_transformer(self, n: int) -> bool:
        s = self.settings
        if n < 2:
            return False
        if n >= s.transformer_min_meters:
            return True
        population = len(self._meters)
        return population > 0 and n / population >= s.transformer_min_fraction

    def _qualify(self, now: datetime) -> None:
        s = self.settings
        delay = timedelta(seconds=s.qualification_delay_s)
        pending = [
            (m, st)
            for m, st in ((m, self._meters[m]) for m in self._active)
            if st.power is _Power.PENDING and not st.flapping
        ]
        if not any(st.down_heard is not None and now >= st.down_heard + delay for _, st in pending):
            return
        pending.sort(key=lambda p: (p[1].down_time, p[0]))
        window = timedelta(seconds=s.correlation_window_s)
        clusters: list[list[tuple[str, _Meter]]] = []
        for m, st in pending:
            assert st.down_time is not None
            if clusters:
                first_time = clusters[-1][0][1].down_time
                assert first_time is not None
                if st.down_time - first_time <= window:
                    clusters[-1].append((m, st))
                    continue
            clusters.append([(m, st)])
        for cluster in clusters:
            due = [
                (m, st)
                for m, st in cluster
                if st.down_heard is not None and now >= st.down_heard + delay
            ]
            if not due:
                continue
            if self._is_transformer(len(cluster)):
                key = self._next_incident
                self._next_incident += 1
                members = {m: st.down_time for m, st in cluster if st.down_time is not None}
                first = min(members.values())
                self._incidents[key] = _Incident(first_down=first, members=members)
                for _, st in cluster:
                    st.power = _Power.OUT
                    st.incident = key
                self._emit(
                    AlarmType.TRANSFORMER_OUTAGE,
                    Priority.POWER,
                    first,
                    meters=tuple(sorted(members)),
                    count=len(members),
                )
            else:
                for m, st in due:
                    assert st.down_time is not None
                    st.power = _Power.OUT
                    self._emit(AlarmType.OUTAGE, Priority.POWER, st.down_time, meter=m, meters=(m,))

    def _incident_member_up(
        self, key: int, meter: str, t: datetime, duration: int, now: datetime
    ) -> None:
        inc = self._incidents[key]
        inc.restored[meter] = (t, duration)
        if inc.first_restore_heard is None:
            inc.first_restore_heard = now
        if len(inc.restored) == len(inc.members):
            self._close_incident(key)

    def _close_incident(self, key: int) -> None:
        inc = self._incidents.pop(key)
        restored = sorted(inc.restored)
        for m in inc.members:
            if m not in inc.restored:
                st = self._meters[m]
                if st.incident == key:
                    st.incident = None  # stays OUT on its own; its up gives a restore
        last_up = max(inc.restored[m][0] for m in restored)
        self._emit(
            AlarmType.TRANSFORMER_RESTORE,
            Priority.POWER,
            last_up,
            meters=tuple(restored),
            durations_s=tuple(inc.restored[m][1] for m in restored),
            duration_s=_secs(last_up - inc.first_down),
            count=len(restored),
        )

    # ------------------------------------------------------------------ timers

    def _advance(self, now: datetime) -> None:
        s = self.settings
        stable = timedelta(seconds=s.flap_stable_s)
        for m in sorted(self._active):
            st = self._meters[m]
            if st.flapping and st.last_heard is not None and now - st.last_heard >= stable:
                log.info("meter %s stable again", m)
                st.flapping = False
                st.transitions.clear()
        self._qualify(now)
        wait = timedelta(seconds=s.restore_correlation_s)
        for key, inc in list(self._incidents.items()):
            if inc.first_restore_heard is not None and now - inc.first_restore_heard >= wait:
                self._close_incident(key)
        period = timedelta(seconds=s.summary_period_s)
        for m in sorted(self._active):
            st = self._meters[m]
            if st.momentary is not None and now - st.momentary.opened >= period:
                self._flush_summary(m, st)
            if st.power is not _Power.PENDING and st.momentary is None and not st.flapping:
                self._active.discard(m)

    def _flush_summary(self, meter: str, st: _Meter) -> None:
        summary, st.momentary = st.momentary, None
        assert summary is not None
        self._emit(
            AlarmType.MOMENTARY,
            Priority.SUMMARY,
            summary.first_event,
            meter=meter,
            meters=(meter,),
            count=summary.count,
            duration_s=summary.total_s,
            window_s=round(self.settings.summary_period_s),
        )

    # ------------------------------------------------------------------ DCU

    def _on_dcu_fail(self, ev: DcuPowerFail) -> None:
        if self._dcu_failed is not None:
            log.debug("DCU power fail while already failed (duplicate)")
            return
        self._dcu_failed = ev
        powered = tuple(sorted(m for m, st in self._meters.items() if st.power is _Power.UP))
        self._last_gasp_meters = powered
        self._drafts.append(
            _Draft(
                AlarmType.LAST_GASP,
                Priority.LAST_GASP,
                ev.event_time,
                meters=powered,
                count=len(powered),
                test=ev.test or self.settings.test,
            )
        )
        for m in sorted(self._active):
            st = self._meters[m]
            if st.momentary is not None:
                self._flush_summary(m, st)

    def _on_dcu_restored(self, ev: DcuPowerRestored) -> None:
        failed = self._dcu_failed
        if failed is not None:
            start, meters, test = failed.event_time, self._last_gasp_meters, failed.test
        elif ev.outage_start is not None:
            start, meters, test = ev.outage_start, tuple(sorted(ev.meters)), False
        else:
            log.debug("DCU power restored without a known failure; nothing to report")
            return
        self._dcu_failed = None
        self._last_gasp_meters = ()
        self._dcu_outages.append(_DcuOutage(start, ev.event_time, frozenset(meters)))
        duration = _secs(ev.event_time - start)
        self._drafts.append(
            _Draft(
                AlarmType.RESTORE,
                Priority.POWER,
                ev.event_time,
                meters=meters,
                duration_s=duration,
                count=len(meters),
                interruption=self._classify(duration),
                test=test or self.settings.test,
                about_dcu=True,
            )
        )

    # ------------------------------------------------------------------ comm, phases, events

    def _on_comm_lost(self, meter: str, now: datetime) -> None:
        st = self._meter(meter)
        if (st.power is not _Power.UP or self._dcu_failed is not None) and not st.comm_alarmed:
            # Polls that fail while the meter (or the DCU) has no supply are explained by the
            # outage; they do not count towards a comm loss after the power returns.
            st.comm_failures, st.comm_since = 0, None
            return
        st.comm_failures += 1
        if st.comm_since is None:
            st.comm_since = now
        if st.comm_alarmed or st.comm_failures <= self.settings.comm_loss_cycles:
            return
        if st.power is not _Power.UP or self._dcu_failed is not None:
            return  # an outage explains the silence
        st.comm_alarmed = True
        self._emit(
            AlarmType.COMM_LOSS,
            Priority.EVENT,
            st.comm_since,
            meter=meter,
            meters=(meter,),
            count=st.comm_failures,
        )

    def _on_comm_restored(self, meter: str, now: datetime) -> None:
        st = self._meter(meter)
        if st.comm_alarmed and st.comm_since is not None:
            self._emit(
                AlarmType.COMM_RESTORE,
                Priority.EVENT,
                now,
                meter=meter,
                meters=(meter,),
                duration_s=_secs(now - st.comm_since),
                count=st.comm_failures,
            )
        st.comm_failures, st.comm_since, st.comm_alarmed = 0, None, False

    def _on_phase_loss(self, ev: PhaseLoss) -> None:
        st = self._meter(ev.meter)
        if ev.phase in st.phases_lost:
            return
        st.phases_lost[ev.phase] = ev.event_time
        self._emit(
            AlarmType.PHASE_LOSS,
            Priority.POWER,
            ev.event_time,
            meter=ev.meter,
            meters=(ev.meter,),
            phase=ev.phase,
        )

    def _on_phase_restore(self, ev: PhaseRestore) -> None:
        st = self._meter(ev.meter)
        since = st.phases_lost.pop(ev.phase, None)
        if since is None:
            return
        self._emit(
            AlarmType.PHASE_RESTORE,
            Priority.POWER,
            ev.event_time,
            meter=ev.meter,
            meters=(ev.meter,),
            phase=ev.phase,
            duration_s=_secs(ev.event_time - since),
        )

    def _on_clock_adjusted(self, ev: ClockAdjusted) -> None:
        st = self._meter(ev.meter)
        if st.last_transition is not None and ev.event_time < st.last_transition:
            # The meter clock went back: later transitions carry times before the last one we
            # accepted. Reopen exactly the span the clock moved back, or they would be dropped
            # as stale; older re-reads stay stale.
            st.last_transition = ev.event_time
        self._forward(AlarmType.CLOCK_ADJUSTED, ev.meter, ev.event_time, code=ev.code)

    def _forward(
        self,
        type_: AlarmType,
        meter: str,
        t: datetime,
        *,
        code: int | None,
        phase: str | None = None,
    ) -> None:
        self._meter(meter)
        self._emit(type_, Priority.EVENT, t, meter=meter, meters=(meter,), code=code, phase=phase)

    # ------------------------------------------------------------------ output

    def _finish(self, now: datetime) -> list[AlarmMessage]:
        drafts, self._drafts = self._drafts, []
        drafts.sort(key=lambda d: d.priority)  # stable: keeps causal order inside a priority
        out: list[AlarmMessage] = []
        for draft in drafts:
            for piece, part, parts in self._split(draft, now):
                ident = alarm_id(
                    self.dcu,
                    piece.type,
                    piece.meters,
                    piece.event_time,
                    piece.code,
                    about_dcu=piece.about_dcu,
                )
                if ident in self._emitted:
                    log.debug("alarm %s %s already emitted; dropped", piece.type.value, ident)
                    continue
                self._emitted[ident] = None
                while len(self._emitted) > self.settings.remembered_ids:
                    self._emitted.popitem(last=False)
                out.append(self._message(piece, now, ident, self._sequence(), (part, parts)))
        return out

    def _message(
        self, d: _Draft, now: datetime, ident: str, seq: int, part: tuple[int | None, int | None]
    ) -> AlarmMessage:
        return AlarmMessage(
            type=d.type,
            dcu=self.dcu,
            event_time=d.event_time,
            detected_time=now,
            id=ident,
            seq=seq,
            priority=d.priority,
            meter=d.meter,
            meters=d.meters,
            phase=d.phase,
            duration_s=d.duration_s,
            count=d.count,
            test=d.test,
            code=d.code,
            interruption=d.interruption,
            durations_s=d.durations_s,
            window_s=d.window_s,
            part=part[0],
            parts=part[1],
        )

    def _split(self, d: _Draft, now: datetime) -> list[tuple[_Draft, int | None, int | None]]:
        """Split a draft whose encoding would exceed ``max_message_bytes`` by its meter list."""
        bound = self.settings.max_message_bytes
        probe = self._message(d, now, "0" * 32, 2**53, (99999, 99999))
        if len(probe.to_json()) <= bound or len(d.meters) <= 1:
            return [(d, None, None)]
        bare = replace(d, meters=(), durations_s=())
        empty = self._message(bare, now, "0" * 32, 2**53, (99999, 99999))
        budget = bound - len(empty.to_json()) - 32  # brackets of a non-empty durations list
        chunks: list[tuple[int, int]] = []
        start, used = 0, 0
        for i, m in enumerate(d.meters):
            cost = len(m.encode()) + 3  # quotes and comma
            if d.durations_s:
                cost += len(str(d.durations_s[i])) + 1
            if i > start and used + cost > budget:
                chunks.append((start, i))
                start, used = i, 0
            used += cost
        chunks.append((start, len(d.meters)))
        n = len(chunks)
        return [
            (
                replace(
                    d,
                    meters=d.meters[a:b],
                    durations_s=d.durations_s[a:b] if d.durations_s else (),
                ),
                k + 1,
                n,
            )
            for k, (a, b) in enumerate(chunks)
        ]
