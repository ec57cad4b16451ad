"""A simulated IDIS-style electricity meter: its COSEM object model.

Objects (class id, OBIS):

* clock (8) 0.0.1.0.0.255 — time (2), time_zone (3, minutes), status (4); UTC, deviation 0
* logical device name (1) 0.0.42.0.0.255 — octet-string ``b"AMI" + serial``
* profile status (1) 0.0.96.10.1.255 — the IDIS status byte of the current interval
* energy registers (3) +A 1.0.1.8.0.255, -A 1.0.2.8.0.255 (Wh), +R 1.0.3.8.0.255,
  -R 1.0.4.8.0.255 (varh), TOU import rates 1.0.1.8.1..4.255 (Wh); scaler 0
* voltages (3) 1.0.32/52/72.7.0.255 (V, scaler -1); currents 1.0.31/51/71.7.0.255 (A, -2)
* load profile (7) 1.0.99.1.0.255: clock, status, +A, -A, +R, -R every 900 s
* daily profile (7) 1.0.99.2.0.255: clock, status, +A, -A every 86400 s
* event logs (7): standard 0.0.99.98.0.255, fraud detection 0.0.99.98.1.255, power quality
  0.0.99.98.4.255 (clock, event code 0.0.96.11.{0,1,4}.255), power failure 1.0.99.97.0.255
  (end time, duration 0.0.96.7.19.255 in s, double-long-unsigned); event code objects (1)
* alarm register (1) 0.0.97.98.0.255 (bit 0 last gasp, bit 8 fraud attempt)

Scripting (see :mod:`edge_core.simulator.script`): ``outage``, ``phase_loss``, ``tamper``,
``set_clock_offset`` (drift), ``set_consumption_factor`` (theft, CT/PT mistakes) and
``inject_fault`` (link drop / corrupt / delay). The clock can be set by SET of attribute 2
(codes 4/5 logged); drift shows in the clock attribute only (profile and log rows keep the true
capture times). The load model's own short outages (2 % of days) also appear in the standard
and power-failure logs.

Theory of operation: interval ``n`` is the 900 s slot starting at ``n * 900`` s after the
epoch (UTC). A register at the boundary of interval ``n`` holds ``start value + sum of the
energies of intervals before n`` (prefix sums kept per channel, extended lazily), so
profile captures never decrease. A register read "now" adds the elapsed part of the current
interval, hence is >= the last capture. The profile buffer holds one row per boundary from
the ``start`` date up to the last boundary not after ``clock()``; the time source is
injectable for tests and accelerated demos.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone

from edge_core.dlms.apdu import (
    AccessSelection,
    AttributeDescriptor,
    DataNotification,
    MethodDescriptor,
    RangeDescriptor,
)
from edge_core.dlms.axdr import Data
from edge_core.dlms.cosem import CaptureObject, CosemDateTime, ScalerUnit, Unit
from edge_core.dlms.obis import Obis
from edge_core.errors import ConfigError, DataAccessError, DecodeError, UnknownObjectError
from edge_core.simulator.load import INTERVAL_S, INTERVALS_PER_DAY, MeterLoad
from edge_core.simulator.script import (
    ALARM_FRAUD,
    ALARM_LAST_GASP,
    ALARM_POWER_UP,
    CLOCK_ADJUSTED_NEW,
    CLOCK_ADJUSTED_OLD,
    FRAUD_EVENT_LOG,
    MISSING_VOLTAGE,
    POWER_DOWN,
    POWER_FAILURE_LOG,
    POWER_QUALITY_LOG,
    POWER_UP,
    STANDARD_EVENT_LOG,
    TAMPER_CODES,
    VOLTAGE_NORMAL,
    EventEntry,
    LinkFault,
    Outage,
    PendingPush,
    Script,
    epoch_s,
)

__all__ = [
    "ALARM_REGISTER",
    "CLOCK",
    "DAILY_PROFILE",
    "EVENT_LOGS",
    "LOAD_PROFILE",
    "LOGICAL_DEVICE_NAME",
    "PROFILE_STATUS",
    "PUSH_SETUP",
    "SimulatedMeter",
]

logger = logging.getLogger(__name__)

CLOCK = Obis(0, 0, 1, 0, 0, 255)
LOGICAL_DEVICE_NAME = Obis(0, 0, 42, 0, 0, 255)
PROFILE_STATUS = Obis(0, 0, 96, 10, 1, 255)
LOAD_PROFILE = Obis(1, 0, 99, 1, 0, 255)
DAILY_PROFILE = Obis(1, 0, 99, 2, 0, 255)
ALARM_REGISTER = Obis(0, 0, 97, 98, 0, 255)
PUSH_SETUP = Obis(0, 4, 25, 9, 0, 255)
POWER_FAILURE_DURATION = Obis(0, 0, 96, 7, 19, 255)
EVENT_LOGS = {
    STANDARD_EVENT_LOG: Obis(0, 0, 96, 11, 0, 255),
    FRAUD_EVENT_LOG: Obis(0, 0, 96, 11, 1, 255),
    POWER_QUALITY_LOG: Obis(0, 0, 96, 11, 4, 255),
    POWER_FAILURE_LOG: POWER_FAILURE_DURATION,
}
"""Event log -> the object captured beside the clock (event code, or duration in s)."""

_IMPORT = Obis(1, 0, 1, 8, 0, 255)
_EXPORT = Obis(1, 0, 2, 8, 0, 255)
_Q_IMPORT = Obis(1, 0, 3, 8, 0, 255)
_Q_EXPORT = Obis(1, 0, 4, 8, 0, 255)
# channel index -> register; rates 1..4 are channels 4..7
_ENERGY = (
    _IMPORT,
    _EXPORT,
    _Q_IMPORT,
    _Q_EXPORT,
    *tuple(Obis(1, 0, 1, 8, r, 255) for r in (1, 2, 3, 4)),
)
_ENERGY_UNITS = (Unit.WATT_HOUR, Unit.WATT_HOUR, Unit.VAR_HOUR, Unit.VAR_HOUR) + (
    Unit.WATT_HOUR,
) * 4
_VOLTAGES = tuple(Obis(1, 0, c, 7, 0, 255) for c in (32, 52, 72))
_CURRENTS = tuple(Obis(1, 0, c, 7, 0, 255) for c in (31, 51, 71))

_CLOCK_COL = CaptureObject(8, CLOCK, 2, 0)
_STATUS_COL = CaptureObject(1, PROFILE_STATUS, 2, 0)
_PROFILES = {
    LOAD_PROFILE: (
        INTERVAL_S,
        (_CLOCK_COL, _STATUS_COL, *tuple(CaptureObject(3, o) for o in _ENERGY[:4])),
    ),
    DAILY_PROFILE: (
        86400,
        (_CLOCK_COL, _STATUS_COL, *tuple(CaptureObject(3, o) for o in _ENERGY[:2])),
    ),
}


def _rate(n: int) -> int:
    """TOU rate (1..4) of interval n: 1 night 23-07, 2 weekday day 07-17, 3 weekday
    evening 17-23, 4 weekend day."""
    day, slot = divmod(n, INTERVALS_PER_DAY)
    hour = slot // 4
    if hour >= 23 or hour < 7:
        return 1
    if (day + 3) % 7 >= 5:
        return 4
    return 2 if hour < 17 else 3


class SimulatedMeter:
    """One meter's object model (implements :class:`edge_core.dlms.server.CosemModel`)."""

    def __init__(
        self,
        index: int,
        *,
        seed: int = 1,
        start: date,
        clock: Callable[[], datetime] | None = None,
        null_clocks: bool | None = None,
        utc_offset_min: int = 0,
    ) -> None:
        self.index = index
        self.seed = seed
        self.serial = f"SIM{seed % 100:02d}{index + 1:06d}"
        self.start = start
        self.clock = clock or (lambda: datetime.now(UTC))
        # The meter presents times in local time with this fixed offset (deviation = -offset);
        # intervals stay aligned on UTC multiples of 900 s.
        self.tz = UTC if utc_offset_min == 0 else timezone(timedelta(minutes=utc_offset_min))
        # Odd meters compress profile rows: clock sent as null-data after the first row.
        self.null_clocks = index % 2 == 1 if null_clocks is None else null_clocks
        self.load = MeterLoad(seed, index)
        start_dt = datetime(start.year, start.month, start.day, tzinfo=UTC)
        self._n0 = int(start_dt.timestamp()) // INTERVAL_S
        # prefix sums: _cum[ch][k] = register of channel ch at the boundary of interval n0 + k
        offsets = (self.load.start_wh, self.load.start_wh // 20, self.load.start_wh // 4, 5000)
        rate_off = tuple(self.load.start_wh // 4 for _ in range(4))
        self._cum: list[list[int]] = [[v] for v in offsets + rate_off]
        self._status: list[int] = []
        self.script = Script()
        self.clock_offset_s = 0.0
        self.alarm_bits = 0
        self._objects = self._build_objects()

    @property
    def meter_id(self) -> str:
        return self.serial

    # ------------------------------------------------------------------ energy

    def _now_s(self) -> float:
        now = self.clock()
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        return now.timestamp()

    def _extend(self, k: int) -> None:
        """Make prefix sums available up to boundary k (relative to the start)."""
        cum = self._cum
        have = len(cum[0]) - 1
        script = self.script
        scripted = bool(script.outages or script.factors)
        for j in range(have, k):
            n = self._n0 + j
            e = self.load.interval(n)
            values: tuple[int, ...] = (e.import_wh, e.export_wh, e.q_import_varh, e.q_export_varh)
            status = e.status
            if scripted:
                t0 = n * INTERVAL_S
                powered = script.powered_fraction(t0, t0 + INTERVAL_S)
                scale = script.factor(t0) * powered
                if powered < 1.0:
                    status |= 0x80
                values = tuple(round(v * scale) for v in values)
            for ch, v in enumerate(values):
                cum[ch].append(cum[ch][-1] + v)
            rate = _rate(n)
            for r in range(1, 5):
                ch = 3 + r
                cum[ch].append(cum[ch][-1] + (values[0] if r == rate else 0))
            self._status.append(status)

    def _invalidate_from(self, t_s: float) -> None:
        """Forget prefix sums from the interval containing ``t_s`` on (a script changed)."""
        k = max(0, math.floor(t_s / INTERVAL_S) - self._n0)
        if len(self._cum[0]) - 1 > k:
            for ch in self._cum:
                del ch[k + 1 :]
            del self._status[k:]

    # ------------------------------------------------------------------ scripting

    def outage(
        self, start: datetime | float, end: datetime | float, *, last_gasp: bool = False
    ) -> None:
        """No supply in [start, end): silent meter, power down/up (1/2) in the standard log,
        (end, duration) in the power-failure log, status bit 7 and less energy on the
        intervals it touches; ``last_gasp`` queues an alarm push (bit 0) at ``start`` and a
        power-up alarm push (bit 1) at ``end``, as meters configured to push on power return do."""
        s0, s1 = epoch_s(start), epoch_s(end)
        if s1 <= s0:
            raise ConfigError("an outage ends after it starts")
        self.script.outages.append(Outage(s0, s1))
        self.script.log(STANDARD_EVENT_LOG, EventEntry(s0, POWER_DOWN))
        self.script.log(STANDARD_EVENT_LOG, EventEntry(s1, POWER_UP))
        self.script.log(POWER_FAILURE_LOG, EventEntry(s1, POWER_UP, round(s1 - s0)))
        if last_gasp:
            self.script.pushes.append(PendingPush(s0, ALARM_LAST_GASP))
            self.script.pushes.append(PendingPush(s1, ALARM_POWER_UP))
        self._invalidate_from(s0)

    def phase_loss(self, phase: int, start: datetime | float, end: datetime | float) -> None:
        """Phase ``phase`` (1..3) has no voltage in [start, end): codes 82-84 then 85-87 in the
        power-quality log; that phase's voltage reads 0 meanwhile."""
        if phase not in (1, 2, 3):
            raise ConfigError(f"phase is 1, 2 or 3, not {phase}")
        s0, s1 = epoch_s(start), epoch_s(end)
        self.script.phase_losses.append((phase, s0, s1))
        self.script.log(POWER_QUALITY_LOG, EventEntry(s0, MISSING_VOLTAGE[phase - 1]))
        self.script.log(POWER_QUALITY_LOG, EventEntry(s1, VOLTAGE_NORMAL[phase - 1]))

    def tamper(
        self,
        at: datetime | float,
        kind: str = "terminal_cover",
        *,
        end: datetime | float | None = None,
        push: bool = False,
    ) -> None:
        """A tamper in the fraud log: ``kind`` terminal_cover (40/41), magnetic (42/43) or
        meter_cover (44/45); the closing code at ``end`` if given; ``push`` queues an alarm
        push with bit 8 (fraud attempt)."""
        codes = TAMPER_CODES.get(kind)
        if codes is None:
            raise ConfigError(f"unknown tamper {kind!r} ({', '.join(TAMPER_CODES)})")
        t0 = epoch_s(at)
        self.script.log(FRAUD_EVENT_LOG, EventEntry(t0, codes[0]))
        if end is not None:
            self.script.log(FRAUD_EVENT_LOG, EventEntry(epoch_s(end), codes[1]))
        if push:
            self.script.pushes.append(PendingPush(t0, ALARM_FRAUD))

    def set_clock_offset(self, offset_s: float) -> None:
        """Clock drift: the meter's clock reads true time + ``offset_s`` seconds."""
        self.clock_offset_s = float(offset_s)

    def set_consumption_factor(self, from_time: datetime | float, factor: float) -> None:
        """Scale every energy channel of intervals starting at or after ``from_time`` (theft:
        0.5, a CT/PT mistake: 2.0). Registers and profile stay consistent (prefix sums)."""
        if factor < 0:
            raise ConfigError("a consumption factor is not negative")
        t = epoch_s(from_time)
        self.script.factors.append((t, float(factor)))
        self.script.factors.sort()
        self._invalidate_from(t)

    def inject_fault(self, kind: str, *, count: int = 1, delay_s: float = 0.0) -> None:
        """The next ``count`` answers on the link are dropped, corrupted (one byte flipped) or
        delayed by ``delay_s`` s."""
        for _ in range(count):
            self.script.faults.append(LinkFault(kind, delay_s))

    def is_down(self) -> bool:
        """True while a scripted outage is in progress (the meter answers nothing)."""
        return self.script.is_down(self._now_s())

    def meter_time(self) -> datetime:
        """The meter's own clock (true time + drift), in its time zone."""
        return datetime.fromtimestamp(self._now_s() + self.clock_offset_s, self.tz)

    def notification(self, alarm_bits: int, time_s: float | None = None) -> DataNotification:
        """The IDIS alarm push: (push setup name, logical device name, alarm register)."""
        t = self._now_s() if time_s is None else time_s
        stamp = CosemDateTime.from_datetime(
            datetime.fromtimestamp(t + self.clock_offset_s, self.tz)
        )
        body = Data.structure(
            (
                Data.octet_string(PUSH_SETUP.to_bytes()),
                Data.octet_string(self.logical_device_name),
                Data.double_long_unsigned(alarm_bits & 0xFFFFFFFF),
            )
        )
        return DataNotification(body, int(t) & 0x00FFFFFF, stamp)

    def due_pushes(self) -> list[PendingPush]:
        """Pushes whose time has come (each handed out once); sets the alarm register."""
        due = self.script.due_pushes(self._now_s())
        for p in due:
            self.alarm_bits |= p.alarm_bits
        return due

    @property
    def logical_device_name(self) -> bytes:
        return b"AMI" + self.serial.encode()

    def _boundary_now(self) -> tuple[int, float]:
        """(last boundary k not after now, elapsed fraction of the current interval)."""
        rel = self._now_s() / INTERVAL_S - self._n0
        if rel < 0:
            return -1, 0.0
        k = math.floor(rel)
        return k, rel - k

    def register_now(self, channel: int) -> int:
        """The register of ``channel`` now (boundary value plus the elapsed fraction)."""
        k, frac = self._boundary_now()
        if k < 0:
            return self._cum[channel][0]
        self._extend(k + 1)
        base = self._cum[channel][k]
        return base + int((self._cum[channel][k + 1] - base) * frac)

    # ------------------------------------------------------------------ objects

    def _build_objects(
        self,
    ) -> dict[tuple[Obis, int], Callable[[int, AccessSelection | None], Data]]:
        objs: dict[tuple[Obis, int], Callable[[int, AccessSelection | None], Data]] = {
            (CLOCK, 8): self._clock_attr,
            (LOGICAL_DEVICE_NAME, 1): lambda a, _: self._data_attr(
                a, LOGICAL_DEVICE_NAME, Data.octet_string(self.logical_device_name)
            ),
            (ALARM_REGISTER, 1): lambda a, _: self._data_attr(
                a, ALARM_REGISTER, Data.double_long_unsigned(self.alarm_bits)
            ),
            (PROFILE_STATUS, 1): lambda a, _: self._data_attr(
                a, PROFILE_STATUS, Data.unsigned(self._current_status())
            ),
        }
        for ch, (obis, unit) in enumerate(zip(_ENERGY, _ENERGY_UNITS, strict=True)):
            objs[(obis, 3)] = self._register(obis, ScalerUnit(0, unit), ch)
        for phase, obis in enumerate(_VOLTAGES):
            objs[(obis, 3)] = self._instant(obis, ScalerUnit(-1, Unit.VOLT), phase, volts=True)
        for phase, obis in enumerate(_CURRENTS):
            objs[(obis, 3)] = self._instant(obis, ScalerUnit(-2, Unit.AMPERE), phase, volts=False)
        for obis in _PROFILES:
            objs[(obis, 7)] = self._profile_attr(obis)
        for log, code_obis in EVENT_LOGS.items():
            objs[(log, 7)] = self._log_attr(log)
            objs[(code_obis, 1)] = self._last_code_attr(log, code_obis)
        return objs

    def get(self, descriptor: AttributeDescriptor, access: AccessSelection | None) -> Data:
        handler = self._objects.get((descriptor.obis, descriptor.class_id))
        if handler is None:
            if any(o == descriptor.obis for o, _ in self._objects):
                raise DataAccessError("class mismatch", obis=str(descriptor.obis), code=9)
            raise UnknownObjectError("no such object", meter=self.serial, obis=str(descriptor.obis))
        if access is not None and not (descriptor.class_id == 7 and descriptor.attribute == 2):
            raise DataAccessError("selective access not supported here", code=13)
        return handler(descriptor.attribute, access)

    @staticmethod
    def _undefined(obis: Obis, attribute: int) -> DataAccessError:
        return DataAccessError(f"attribute {attribute} not readable", obis=str(obis), code=3)

    def _data_attr(self, attribute: int, obis: Obis, value: Data) -> Data:
        if attribute == 1:
            return Data.octet_string(obis.to_bytes())
        if attribute == 2:
            return value
        raise self._undefined(obis, attribute)

    def _clock_attr(self, attribute: int, _access: AccessSelection | None) -> Data:
        if attribute == 1:
            return Data.octet_string(CLOCK.to_bytes())
        if attribute == 2:
            return CosemDateTime.from_datetime(self.meter_time()).to_data()
        if attribute == 3:
            offset = self.tz.utcoffset(None) or timedelta(0)
            return Data.long(-int(offset.total_seconds() // 60))
        if attribute == 4:
            return Data.unsigned(0)
        raise self._undefined(CLOCK, attribute)

    def _current_status(self) -> int:
        k, _ = self._boundary_now()
        if k < 0:
            return 0
        self._extend(k + 1)
        return self._status[k]

    def _register(
        self, obis: Obis, su: ScalerUnit, channel: int
    ) -> Callable[[int, AccessSelection | None], Data]:
        def attr(attribute: int, _access: AccessSelection | None) -> Data:
            if attribute == 1:
                return Data.octet_string(obis.to_bytes())
            if attribute == 2:
                return Data.double_long_unsigned(self.register_now(channel) % 2**32)
            if attribute == 3:
                return su.to_data()
            raise self._undefined(obis, attribute)

        return attr

    def _instant(
        self, obis: Obis, su: ScalerUnit, phase: int, *, volts: bool
    ) -> Callable[[int, AccessSelection | None], Data]:
        def attr(attribute: int, _access: AccessSelection | None) -> Data:
            if attribute == 1:
                return Data.octet_string(obis.to_bytes())
            if attribute == 3:
                return su.to_data()
            if attribute != 2:
                raise self._undefined(obis, attribute)
            k, _ = self._boundary_now()
            n = self._n0 + max(k, 0)
            e = self.load.interval(n)
            if volts:
                if self.script.phase_down(phase + 1, self._now_s()):
                    return Data.long_unsigned(0)
                jitter = self.load.interval(n).power_w % 37
                return Data.long_unsigned(0 if e.status else int(2300 - 40 + jitter + 8 * phase))
            amps = abs(e.power_w) / 230.0 / 3.0
            return Data.long_unsigned(min(int(amps * 100), 0xFFFF))

        return attr

    # ------------------------------------------------------------------ profiles

    def _profile_attr(self, obis: Obis) -> Callable[[int, AccessSelection | None], Data]:
        period, columns = _PROFILES[obis]
        step = period // INTERVAL_S

        def attr(attribute: int, access: AccessSelection | None) -> Data:
            if attribute == 1:
                return Data.octet_string(obis.to_bytes())
            if attribute == 2:
                return self._buffer(step, columns, access)
            if attribute == 3:
                return Data.array(c.to_data() for c in columns)
            if attribute == 4:
                return Data.double_long_unsigned(period)
            if attribute == 5:
                return Data.enum(1)  # sort method: FIFO
            if attribute == 7:
                return Data.double_long_unsigned(self._rows_available(step))
            if attribute == 8:
                return Data.double_long_unsigned(0xFFFFFFFF)
            raise self._undefined(obis, attribute)

        return attr

    def _rows_available(self, step: int) -> int:
        k, _ = self._boundary_now()
        return 0 if k < 0 else k // step + 1

    def _buffer(
        self, step: int, columns: tuple[CaptureObject, ...], access: AccessSelection | None
    ) -> Data:
        k_now, _ = self._boundary_now()
        first, last = 0, k_now // step if k_now >= 0 else -1
        selected = columns
        if access is not None:
            if access.selector != 1:
                raise DataAccessError(f"selector {access.selector} not supported", code=13)
            try:
                rng = RangeDescriptor.from_access(access)
                lo = rng.from_value.to_datetime().timestamp()
                hi = rng.to_value.to_datetime().timestamp()
            except DecodeError as exc:
                raise DataAccessError(f"bad range descriptor: {exc}", code=13) from exc
            if rng.restricting_object.obis != CLOCK:
                raise DataAccessError("range restricted by other than the clock", code=13)
            base = self._n0 * INTERVAL_S
            first = max(first, math.ceil((lo - base) / (INTERVAL_S * step)))
            last = min(last, math.floor((hi - base) / (INTERVAL_S * step)))
            if rng.selected_values:
                wanted = {(c.class_id, c.obis, c.attribute) for c in rng.selected_values}
                selected = tuple(c for c in columns if (c.class_id, c.obis, c.attribute) in wanted)
                if len(selected) != len(rng.selected_values):
                    raise DataAccessError("selected value not captured", code=13)
        if last < first:
            return Data.array(())
        self._extend(last * step)
        rows = []
        for row in range(first, last + 1):
            k = row * step
            cells = []
            for col in selected:
                if col is _CLOCK_COL:
                    if self.null_clocks and row != first:
                        cells.append(Data.null())
                    else:
                        t = datetime.fromtimestamp((self._n0 + k) * INTERVAL_S, self.tz)
                        cells.append(CosemDateTime.from_datetime(t).to_data())
                elif col is _STATUS_COL:
                    status = self._status[k - 1] if k > 0 else 0
                    cells.append(Data.unsigned(status))
                else:
                    ch = _ENERGY.index(col.obis)
                    cells.append(Data.double_long_unsigned(self._cum[ch][k] % 2**32))
            rows.append(Data.structure(cells))
        return Data.array(rows)

    # ------------------------------------------------------------------ SET, ACTION

    def set(
        self, descriptor: AttributeDescriptor, access: AccessSelection | None, value: Data
    ) -> None:
        """Writable: clock time (8, attribute 2; logs codes 4 and 5) and the alarm register
        (1, attribute 2: the DCU resets it). Anything else: read-write-denied."""
        obis = descriptor.obis
        if (obis, descriptor.class_id) not in self._objects:
            raise UnknownObjectError("no such object", meter=self.serial, obis=str(obis))
        if obis == CLOCK and descriptor.class_id == 8 and descriptor.attribute == 2:
            try:
                new = CosemDateTime.from_data(value).to_datetime()
            except (DecodeError, ValueError) as exc:
                raise DataAccessError(f"not a date-time: {exc}", obis=str(obis), code=12) from exc
            now = self._now_s()
            self.script.log(STANDARD_EVENT_LOG, EventEntry(now, CLOCK_ADJUSTED_OLD))
            self.clock_offset_s = new.timestamp() - now
            self.script.log(STANDARD_EVENT_LOG, EventEntry(now, CLOCK_ADJUSTED_NEW))
            logger.info("%s: clock set, offset now %.1f s", self.serial, self.clock_offset_s)
            return
        if obis == ALARM_REGISTER and descriptor.attribute == 2:
            if not isinstance(value.value, int) or isinstance(value.value, bool):
                raise DataAccessError("alarm register is an integer", obis=str(obis), code=12)
            self.alarm_bits = value.value & 0xFFFFFFFF
            return
        raise DataAccessError(
            f"attribute {descriptor.attribute} not writable", obis=str(obis), code=3
        )

    def action(self, method: MethodDescriptor, parameters: Data | None) -> Data | None:
        """Methods: profile reset (7, method 1) clears nothing here but is accepted; every
        other method is read-write-denied (there is no disconnector)."""
        if (method.obis, method.class_id) not in self._objects:
            raise UnknownObjectError("no such object", meter=self.serial, obis=str(method.obis))
        if method.class_id == 7 and method.method == 1:
            return None
        raise DataAccessError(f"method {method.method} denied", obis=str(method.obis), code=3)

    # ------------------------------------------------------------------ event logs

    def _log_attr(self, log: Obis) -> Callable[[int, AccessSelection | None], Data]:
        columns = (_CLOCK_COL, CaptureObject(1, EVENT_LOGS[log], 2, 0))

        def attr(attribute: int, access: AccessSelection | None) -> Data:
            if attribute == 1:
                return Data.octet_string(log.to_bytes())
            if attribute == 2:
                return self._log_buffer(log, access)
            if attribute == 3:
                return Data.array(c.to_data() for c in columns)
            if attribute == 4:
                return Data.double_long_unsigned(0)  # asynchronous capture
            if attribute == 5:
                return Data.enum(1)
            if attribute == 7:
                return Data.double_long_unsigned(len(self.log_entries(log, 0, self._now_s())))
            if attribute == 8:
                return Data.double_long_unsigned(500)
            raise self._undefined(log, attribute)

        return attr

    def _last_code_attr(
        self, log: Obis, obis: Obis
    ) -> Callable[[int, AccessSelection | None], Data]:
        def attr(attribute: int, _access: AccessSelection | None) -> Data:
            rows = self.log_entries(log, 0, self._now_s())
            last = rows[-1] if rows else None
            if log == POWER_FAILURE_LOG:
                value = Data.double_long_unsigned(last.duration_s or 0 if last else 0)
            else:
                value = Data.long_unsigned(last.code if last else 0)
            return self._data_attr(attribute, obis, value)

        return attr

    def _natural_outages(self, lo: float, hi: float) -> list[Outage]:
        """The load model's own outages (whole flagged intervals) overlapping [lo, hi]."""
        out = []
        first_day = max(self._n0 * INTERVAL_S, lo) // 86400
        for day in range(int(first_day), int(hi // 86400) + 1):
            first, count = self.load._outage(day)
            if count:
                t0 = (day * INTERVALS_PER_DAY + first) * INTERVAL_S + 17.0
                t1 = (day * INTERVALS_PER_DAY + first + count) * INTERVAL_S - 23.0
                out.append(Outage(t0, t1))
        return out

    def log_entries(self, log: Obis, lo: float, hi: float) -> list[EventEntry]:
        """Rows of an event log with lo <= time <= hi (epoch s), never after now."""
        hi = min(hi, self._now_s())
        rows = self.script.entries(log, lo, hi)
        if log in (STANDARD_EVENT_LOG, POWER_FAILURE_LOG):
            start = self._n0 * INTERVAL_S
            natural: list[EventEntry] = []
            for o in self._natural_outages(max(lo - 86400, start), hi):
                if log == STANDARD_EVENT_LOG:
                    natural += [EventEntry(o.start_s, POWER_DOWN), EventEntry(o.end_s, POWER_UP)]
                else:
                    natural.append(EventEntry(o.end_s, POWER_UP, round(o.end_s - o.start_s)))
            if natural:
                rows = sorted(rows + [e for e in natural if lo <= e.time_s <= hi])
        return rows

    def _log_buffer(self, log: Obis, access: AccessSelection | None) -> Data:
        lo, hi = float(self._n0 * INTERVAL_S), self._now_s()
        if access is not None:
            if access.selector != 1:
                raise DataAccessError(f"selector {access.selector} not supported", code=13)
            try:
                rng = RangeDescriptor.from_access(access)
                lo = max(lo, rng.from_value.to_datetime().timestamp())
                hi = min(hi, rng.to_value.to_datetime().timestamp())
            except DecodeError as exc:
                raise DataAccessError(f"bad range descriptor: {exc}", code=13) from exc
        rows = []
        for e in self.log_entries(log, lo, hi):
            t = datetime.fromtimestamp(int(e.time_s), self.tz)
            second = (
                Data.double_long_unsigned(e.duration_s or 0)
                if log == POWER_FAILURE_LOG
                else Data.long_unsigned(e.code)
            )
            rows.append(Data.structure((CosemDateTime.from_datetime(t).to_data(), second)))
        return Data.array(rows)
