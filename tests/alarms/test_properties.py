"""Property tests: any script of power-downs and -ups per meter, with duplicates re-delivered
(push and event log), keeps the engine's promises.

``AMI_ALARM_PROPERTY_EXAMPLES`` (default 150) sets the number of examples, to hammer the engine
locally (e.g. 5000 with ``--hypothesis-seed=N``) while the suite stays bounded in time. Failures
found so far are replayed first as ``@example``s (and spelled out in test_regressions.py).
"""

from __future__ import annotations

import os
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edge_core.alarms import (
    AlarmSettings,
    DcuPowerFail,
    DcuPowerRestored,
    MeterPowerDown,
    MeterPowerUp,
)

from .harness import Harness, Heard
from .test_regressions import FOUND

OUTAGE_TYPES = {"outage", "transformer_outage"}
RESTORE_TYPES = {"restore", "transformer_restore"}
EXAMPLES = int(os.environ.get("AMI_ALARM_PROPERTY_EXAMPLES", "150"))


@st.composite
def scripts(draw: st.DrawFn) -> tuple[AlarmSettings, list[Heard], list[float], int]:
    n_meters = draw(st.integers(1, 7))
    cfg = AlarmSettings(
        transformer_min_meters=draw(st.integers(2, 6)),
        transformer_min_fraction=draw(st.sampled_from([0.3, 0.5, 1.0])),
        flap_max_transitions=draw(st.integers(2, 12)),
        momentary_threshold_s=draw(st.sampled_from([180.0, 300.0])),
    )
    heard: list[Heard] = []
    horizon = 0.0
    for i in range(n_meters):
        meter = f"m{i}"
        t = draw(st.floats(0, 60, allow_nan=False))
        for _ in range(draw(st.integers(0, 8))):
            t += draw(st.sampled_from([1.0, 5.0, 25.0, 40.0, 200.0, 1000.0]))
            t = round(t)
            lag_down = draw(st.sampled_from([0, 0, 0, 3, 120]))  # event-log reads come late
            down_heard = t + lag_down
            heard.append(Heard(down_heard, MeterPowerDown(meter, Harness.at(t))))
            if draw(st.booleans()):  # the same down also read from the event log
                heard.append(
                    Heard(
                        t + draw(st.integers(1, 400)),
                        MeterPowerDown(meter, Harness.at(t), source="event_log"),
                    )
                )
            t += draw(st.sampled_from([1.0, 10.0, 29.0, 31.0, 100.0, 299.0, 301.0, 3600.0]))
            t = round(t)
            # Each channel delivers one meter's events in order: the up after the down.
            up_heard = max(t, down_heard) + draw(st.sampled_from([0, 0, 2, 60]))
            heard.append(Heard(up_heard, MeterPowerUp(meter, Harness.at(t))))
            if draw(st.booleans()):
                heard.append(
                    Heard(
                        t + draw(st.integers(1, 400)),
                        MeterPowerUp(meter, Harness.at(t), source="event_log"),
                    )
                )
        horizon = max(horizon, t + 1000)
    if draw(st.booleans()):  # the DCU itself loses power somewhere in the script
        fail = round(draw(st.floats(0, horizon, allow_nan=False)))
        back = fail + draw(st.sampled_from([1, 20, 400, 5000]))
        heard.append(Heard(fail, DcuPowerFail(Harness.at(fail))))
        heard.append(Heard(back, DcuPowerRestored(Harness.at(back))))
    ticks = draw(st.lists(st.floats(0, horizon, allow_nan=False), max_size=20))
    return cfg, heard, ticks, n_meters


@pytest.mark.slow
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scripts())
@example(script=FOUND["out_out_up"])
@example(script=FOUND["out_never_restored"])
@example(script=FOUND["dcu_never_restored"])
def test_every_outage_gets_exactly_one_restore_and_no_id_repeats(
    script: tuple[AlarmSettings, list[Heard], list[float], int],
) -> None:
    cfg, heard, ticks, n_meters = script
    # Schema validation is left to the scripted tests (it would dominate the run time here);
    # the codec round trip, size bound and sequence order are still checked on every message.
    h = Harness(cfg, meters=[f"m{i}" for i in range(n_meters)], validate=False)
    # In DCU-time order (stable: per-meter order of equal times is kept), then far enough
    # ahead that every meter is up and every timer has run out.
    h.replay(heard, ticks)

    ids = [m.id for m in h.out]
    assert len(ids) == len(set(ids)), "an alarm was emitted twice"

    # Per meter, outages and restores alternate, starting with an outage, ending restored.
    history: dict[str, list[str]] = defaultdict(list)
    for m in h.out:
        kind = m.type.value
        if kind in OUTAGE_TYPES:
            for meter in m.meters:
                history[meter].append("out")
        elif (kind in RESTORE_TYPES and m.meter is not None) or kind == "transformer_restore":
            for meter in m.meters:
                history[meter].append("up")
    for meter, seq in history.items():
        assert seq[0::2] == ["out"] * len(seq[0::2]), (meter, seq)
        assert seq[1::2] == ["up"] * len(seq[1::2]), (meter, seq)
        assert len(seq) % 2 == 0, (meter, seq)

    # A last gasp is followed by exactly one DCU restore; each step's output is by priority.
    dcu = [
        m.type.value for m in h.out if m.meter is None and m.type.value in ("last_gasp", "restore")
    ]
    assert dcu in ([], ["last_gasp", "restore"])

    # Durations are never negative and restores carry one.
    for m in h.out:
        if m.type.value in RESTORE_TYPES:
            assert m.duration_s is not None
            assert m.duration_s >= 0
    assert h.engine.next_deadline() is None
