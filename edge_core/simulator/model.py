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

from edge_core.dlms.apdu import AccessSelection, AttributeDescriptor, RangeDescriptor
from edge_core.dlms.axdr import Data
from edge_core.dlms.cosem import CaptureObject, CosemDateTime, ScalerUnit, Unit
from edge_core.dlms.obis import Obis
from edge_core.errors import DataAccessError, DecodeError, UnknownObjectError
from edge_core.simulator.load import INTERVAL_S, INTERVALS_PER_DAY, MeterLoad

__all__ = [
    "CLOCK",
    "DAILY_PROFILE",
    "LOAD_PROFILE",
    "LOGICAL_DEVICE_NAME",
    "PROFILE_STATUS",
    "SimulatedMeter",
]

logger = logging.getLogger(__name__)

CLOCK = Obis(0, 0, 1, 0, 0, 255)
LOGICAL_DEVICE_NAME = Obis(0, 0, 42, 0, 0, 255)
PROFILE_STATUS = Obis(0, 0, 96, 10, 1, 255)
LOAD_PROFILE = Obis(1, 0, 99, 1, 0, 255)
DAILY_PROFILE = Obis(1, 0, 99, 2, 0, 255)

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
        for j in range(have, k):
            n = self._n0 + j
            e = self.load.interval(n)
            values = (e.import_wh, e.export_wh, e.q_import_varh, e.q_export_varh)
            for ch, v in enumerate(values):
                cum[ch].append(cum[ch][-1] + v)
            rate = _rate(n)
            for r in range(1, 5):
                ch = 3 + r
                cum[ch].append(cum[ch][-1] + (e.import_wh if r == rate else 0))
            self._status.append(e.status)

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
                a, LOGICAL_DEVICE_NAME, Data.octet_string(b"AMI" + self.serial.encode())
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
            now = datetime.fromtimestamp(self._now_s(), self.tz)
            return CosemDateTime.from_datetime(now).to_data()
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
        return self.load.interval(self._n0 + k).status

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
