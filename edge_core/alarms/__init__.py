"""Alarms: last gasp, outages, restores and meter events of one concentrator.

:class:`OutageEngine` (pure logic, injected clock) turns meter and DCU power events into
:class:`AlarmMessage` objects with a priority; the runtime persists them to the spool's alarm
class and the uplink's alarm lane sends them first. :class:`PowerFailMonitor` watches the DCU's
own power-fail input. Nothing here imports numpy, onnxruntime or the analytics package.
See docs/alarms.md.
"""

from edge_core.alarms.engine import AlarmSettings, OutageEngine
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
    event_log_to_events,
    power_failure_log_to_events,
    profile_status_to_events,
)
from edge_core.alarms.messages import (
    AlarmMessage,
    AlarmType,
    CounterSequence,
    Priority,
    SequenceProvider,
    alarm_id,
    load_schema,
)
from edge_core.alarms.powerfail import PowerFailMonitor, PowerFailSettings

__all__ = [
    "AlarmMessage",
    "AlarmSettings",
    "AlarmType",
    "ClockAdjusted",
    "CounterSequence",
    "DataNotValid",
    "DcuPowerFail",
    "DcuPowerRestored",
    "Event",
    "MeterCommLost",
    "MeterCommRestored",
    "MeterEvent",
    "MeterPowerDown",
    "MeterPowerUp",
    "OutageEngine",
    "PhaseLoss",
    "PhaseRestore",
    "PowerFailMonitor",
    "PowerFailSettings",
    "Priority",
    "SequenceProvider",
    "TamperEvent",
    "alarm_id",
    "event_log_to_events",
    "load_schema",
    "power_failure_log_to_events",
    "profile_status_to_events",
]
