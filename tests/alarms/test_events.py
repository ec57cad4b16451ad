"""Conversion of meter logs into engine inputs."""

from __future__ import annotations

from datetime import datetime

import pytest

from edge_core.alarms import (
    ClockAdjusted,
    DataNotValid,
    MeterEvent,
    MeterPowerDown,
    MeterPowerUp,
    PhaseLoss,
    PhaseRestore,
    TamperEvent,
    event_log_to_events,
    power_failure_log_to_events,
    profile_status_to_events,
)

from .harness import T0

# IDIS code -> (event class, kind or None, phase or None)
TABLE = [
    (1, MeterPowerDown, None, None),
    (2, MeterPowerUp, None, None),
    (4, ClockAdjusted, None, None),
    (5, ClockAdjusted, None, None),
    (40, TamperEvent, None, None),
    (45, TamperEvent, None, None),
    (46, MeterEvent, "security", None),
    (49, MeterEvent, "security", None),
    (50, MeterEvent, "security", None),
    (60, MeterEvent, "disconnect", None),
    (64, MeterEvent, "disconnect", None),
    (76, MeterEvent, "under_voltage", "L1"),
    (78, MeterEvent, "under_voltage", "L3"),
    (79, MeterEvent, "over_voltage", "L1"),
    (81, MeterEvent, "over_voltage", "L3"),
    (82, PhaseLoss, None, "L1"),
    (83, PhaseLoss, None, "L2"),
    (84, PhaseLoss, None, "L3"),
    (85, PhaseRestore, None, "L1"),
    (86, PhaseRestore, None, "L2"),
    (87, PhaseRestore, None, "L3"),
    (47, MeterEvent, "meter_event", None),
    (255, MeterEvent, "meter_event", None),
]


@pytest.mark.parametrize(("code", "cls", "kind", "phase"), TABLE)
def test_idis_codes(code: int, cls: type, kind: str | None, phase: str | None) -> None:
    [ev] = event_log_to_events([("m1", code, T0)])
    assert type(ev) is cls
    assert ev.meter == "m1"  # type: ignore[union-attr]
    assert ev.event_time == T0  # type: ignore[union-attr]
    if kind is not None:
        assert ev.kind == kind  # type: ignore[union-attr]
    assert getattr(ev, "phase", None) == phase
    if cls is MeterPowerDown:
        assert ev.source == "event_log"  # type: ignore[union-attr]


def test_power_failure_log_entries() -> None:
    [ev] = power_failure_log_to_events("m1", [(T0, 42)])
    assert ev == MeterPowerUp("m1", T0, duration_s=42, source="event_log")


def test_profile_status_bits() -> None:
    assert profile_status_to_events("m1", T0, 0x80) == []
    assert profile_status_to_events("m1", T0, 0x24) == [
        ClockAdjusted("m1", T0),
        DataNotValid("m1", T0),
    ]


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="UTC offset"):
        MeterPowerDown("m1", datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="phase"):
        PhaseLoss("m1", "L4", T0)
