"""Scripted scenarios: exact alarm sequences out of the outage engine."""

from __future__ import annotations

from datetime import timedelta

import pytest

from edge_core.alarms import (
    AlarmSettings,
    ClockAdjusted,
    CounterSequence,
    DataNotValid,
    DcuPowerFail,
    DcuPowerRestored,
    MeterCommLost,
    MeterCommRestored,
    MeterPowerDown,
    MeterPowerUp,
    OutageEngine,
    PhaseLoss,
    Priority,
    TamperEvent,
    event_log_to_events,
    power_failure_log_to_events,
)
from edge_core.errors import ConfigError

from .harness import DCU, T0, Harness, kinds

at = Harness.at


def down(meter: str, s: float, source: str = "push") -> MeterPowerDown:
    return MeterPowerDown(meter, at(s), source=source)  # type: ignore[arg-type]


def up(meter: str, s: float) -> MeterPowerUp:
    return MeterPowerUp(meter, at(s))


# --------------------------------------------------------------------------- single meter


def test_outage_past_qualification_then_restore_with_duration() -> None:
    h = Harness()
    assert h.feed(0, down("m1", 0)) == []
    assert h.tick(29) == []
    [outage] = h.tick(30)
    assert outage.type.value == "outage"
    assert (outage.meter, outage.meters, outage.event_time) == ("m1", ("m1",), at(0))
    assert outage.priority == Priority.POWER
    assert outage.detected_time == at(30)
    assert h.tick(3000) == []
    [restore] = h.feed(3600, up("m1", 3600))
    assert restore.type.value == "restore"
    assert (restore.meter, restore.duration_s, restore.interruption) == ("m1", 3600, "sustained")
    assert restore.event_time == at(3600)
    assert h.tick(10_000) == []
    assert kinds(h.out) == ["outage", "restore"]


def test_blink_shorter_than_qualification_becomes_one_momentary_summary() -> None:
    h = Harness()
    assert h.feed(0, down("m1", 0)) == []
    assert h.feed(4, up("m1", 4)) == []
    assert h.feed(100, down("m1", 100)) == []
    assert h.feed(107, up("m1", 107)) == []
    assert h.tick(4 + 899) == []  # the summary opened when the first blink ended (heard at 4)
    [summary] = h.tick(4 + 900)
    assert summary.type.value == "momentary"
    assert (summary.meter, summary.count, summary.duration_s) == ("m1", 2, 11)
    assert summary.event_time == at(0)
    assert summary.window_s == 900
    assert summary.priority == Priority.SUMMARY
    assert h.tick(5000) == []
    assert kinds(h.out) == ["momentary"]


def test_qualified_outage_restored_within_momentary_threshold_is_classified_momentary() -> None:
    """The qualification delay gates the outage alarm (the OMS hears within 30 s); a restore
    inside the momentary threshold classifies the interruption as momentary in the restore and
    does not add a momentary summary."""
    h = Harness()
    h.feed(0, down("m1", 0))
    assert kinds(h.tick(30)) == ["outage"]
    [restore] = h.feed(120, up("m1", 120))
    assert (restore.duration_s, restore.interruption) == (120, "momentary")
    assert h.tick(5000) == []
    assert kinds(h.out) == ["outage", "restore"]


def test_en50160_threshold_is_configurable() -> None:
    h = Harness(AlarmSettings(momentary_threshold_s=180))
    h.feed(0, down("m1", 0))
    h.tick(30)
    [restore] = h.feed(200, up("m1", 200))
    assert restore.interruption == "sustained"


def test_old_long_interruption_from_the_log_is_reported_whole() -> None:
    h = Harness()
    msgs = h.feed(5000, *event_log_to_events([("m1", 1, at(0)), ("m1", 2, at(1200))]))
    assert kinds(msgs) == ["outage", "restore"]
    assert msgs[0].event_time == at(0)
    assert msgs[1].duration_s == 1200


def test_power_failure_log_entries_are_reconstructed_once() -> None:
    h = Harness()
    entries = [(at(100), 20), (at(7200), 3600)]
    msgs = h.feed(8000, *power_failure_log_to_events("m1", entries))
    assert kinds(msgs) == ["outage", "restore"]
    assert (msgs[0].event_time, msgs[1].duration_s) == (at(3600), 3600)
    # Reading the same log again changes nothing.
    assert h.feed(8100, *power_failure_log_to_events("m1", entries)) == []
    [summary] = h.tick(8000 + 900)
    assert (summary.type.value, summary.count, summary.duration_s) == ("momentary", 1, 20)
    assert summary.event_time == at(80)


# --------------------------------------------------------------------------- phases


def test_phase_loss_and_restore_from_event_log_codes() -> None:
    h = Harness()
    [loss] = h.feed(10, *event_log_to_events([("m1", 82, at(5))]))
    assert (loss.type.value, loss.phase, loss.meter, loss.event_time) == (
        "phase_loss",
        "L1",
        "m1",
        at(5),
    )
    assert h.feed(11, PhaseLoss("m1", "L1", at(5))) == []  # same loss again
    [restore] = h.feed(100, *event_log_to_events([("m1", 85, at(65))]))
    assert (restore.type.value, restore.phase, restore.duration_s) == ("phase_restore", "L1", 60)
    assert h.feed(101, *event_log_to_events([("m1", 85, at(65))])) == []
    assert kinds(h.out) == ["phase_loss", "phase_restore"]


# --------------------------------------------------------------------------- transformer


def _transformer_down(h: Harness, meters: list[str]) -> None:
    for i, m in enumerate(meters):
        s = i * 9.5 / len(meters)  # 30 meters within 10 s
        assert h.feed(s, down(m, s)) == []


def test_whole_transformer_gives_one_outage_and_one_restore() -> None:
    population = [f"m{i:03d}" for i in range(100)]
    out = population[:30]
    h = Harness(meters=population)
    _transformer_down(h, out)
    assert h.tick(29) == []
    [outage] = h.tick(30)
    assert outage.type.value == "transformer_outage"
    assert outage.meters == tuple(sorted(out))
    assert (outage.meter, outage.count, outage.event_time) == (None, 30, at(0))
    assert h.tick(60) == []
    for i, m in enumerate(out):
        msgs = h.feed(600 + i * 0.2, up(m, 600 + i * 0.2))
        if i < len(out) - 1:
            assert msgs == []
    [restore] = msgs
    assert restore.type.value == "transformer_restore"
    assert restore.meters == tuple(sorted(out))
    down_at = {m: i * 9.5 / 30 for i, m in enumerate(out)}
    up_at = {m: 600 + i * 0.2 for i, m in enumerate(out)}
    assert restore.durations_s == tuple(round(up_at[m] - down_at[m]) for m in sorted(out))
    assert restore.duration_s == round(up_at[out[-1]])
    assert h.tick(10_000) == []
    assert kinds(h.out) == ["transformer_outage", "transformer_restore"]


def test_transformer_restore_with_a_straggler_splits_it_out() -> None:
    population = [f"m{i:03d}" for i in range(10)]
    h = Harness(meters=population)
    _transformer_down(h, population[:6])
    assert kinds(h.tick(30)) == ["transformer_outage"]
    for m in population[:5]:
        assert h.feed(600, up(m, 600)) == []
    assert h.tick(659) == []
    [partial] = h.tick(660)
    assert partial.type.value == "transformer_restore"
    assert partial.meters == tuple(population[:5])
    [alone] = h.feed(2000, up(population[5], 2000))
    assert (alone.type.value, alone.meter) == ("restore", population[5])


def test_few_meters_down_together_stay_individual_outages() -> None:
    population = [f"m{i:03d}" for i in range(100)]
    h = Harness(meters=population)
    _transformer_down(h, population[:3])
    msgs = h.tick(40)
    assert kinds(msgs) == ["outage"] * 3
    assert [m.meter for m in msgs] == population[:3]


def test_fraction_rule_on_a_small_dcu() -> None:
    h = Harness(meters=["a", "b", "c", "d"])
    h.feed(0, down("a", 0), down("b", 1))
    [msg] = h.tick(30)
    assert (msg.type.value, msg.meters) == ("transformer_outage", ("a", "b"))


# --------------------------------------------------------------------------- flapping


def test_flapping_gives_one_summary_then_quiet_until_stable() -> None:
    h = Harness()
    for k in range(5):  # 10 transitions in 5 minutes
        h.feed(k * 60, down("m1", k * 60))
        h.feed(k * 60 + 5, up("m1", k * 60 + 5))
    assert kinds(h.out) == ["flapping"]
    flap = h.out[0]
    assert (flap.meter, flap.count, flap.event_time, flap.window_s) == ("m1", 9, at(0), 300)
    assert h.tick(5000) == []  # the blinks are in the flapping count, not in a momentary
    # Stable again: a new outage is reported normally.
    h.feed(6000, down("m1", 6000))
    assert kinds(h.tick(6030)) == ["outage"]
    assert kinds(h.feed(6100, up("m1", 6100))) == ["restore"]
    assert kinds(h.out) == ["flapping", "outage", "restore"]


def test_flapping_meter_left_down_qualifies_once_stable() -> None:
    h = Harness()
    for k in range(5):
        h.feed(k * 60, down("m1", k * 60))
        h.feed(k * 60 + 5, up("m1", k * 60 + 5))
    h.feed(300, down("m1", 300))
    assert h.tick(300 + 599) == []
    [outage] = h.tick(300 + 600)
    assert (outage.type.value, outage.event_time) == ("outage", at(300))
    [restore] = h.feed(1000, up("m1", 1000))
    assert restore.duration_s == 700


def test_restore_of_a_reported_outage_is_never_suppressed_by_flapping() -> None:
    h = Harness(AlarmSettings(flap_max_transitions=1))
    h.feed(0, down("m1", 0))
    assert kinds(h.tick(30)) == ["outage"]
    assert kinds(h.feed(40, up("m1", 40))) == ["restore", "flapping"]


# --------------------------------------------------------------------------- DCU power


def test_last_gasp_lists_powered_meters_and_goes_first() -> None:
    meters = [f"m{i}" for i in range(1, 8)]
    h = Harness(meters=meters)
    h.feed(0, down("m6", 0))
    h.tick(30)  # m6 out
    h.feed(40, down("m7", 40))
    h.feed(45, up("m7", 45))  # m7: an open momentary summary
    h.feed(50, down("m5", 50))  # m5 pending
    msgs = h.feed(60, TamperEvent("m1", 40, at(59)), DcuPowerFail(at(60)))
    assert kinds(msgs) == ["last_gasp", "momentary", "tamper"]
    gasp = msgs[0]
    assert gasp.priority == Priority.LAST_GASP == 0
    assert gasp.meters == ("m1", "m2", "m3", "m4", "m7")
    assert (gasp.meter, gasp.count, gasp.event_time, gasp.dcu) == (None, 5, at(60), DCU)
    assert gasp.seq < msgs[1].seq < msgs[2].seq
    assert h.feed(61, DcuPowerFail(at(61))) == []  # still failed: no second last gasp
    outage, restore = h.feed(95, DcuPowerRestored(at(95)))
    assert (outage.type.value, outage.meter) == ("outage", "m5")  # down before the DCU failed
    assert (restore.type.value, restore.meter, restore.meters) == ("restore", None, gasp.meters)
    assert (restore.duration_s, restore.interruption) == (35, "momentary")
    # Meters logged their own interruption inside the DCU outage: absorbed.
    log = event_log_to_events([("m1", 1, at(60)), ("m1", 2, at(94))])
    assert h.feed(200, *log) == []
    assert h.tick(5000) == []


def test_dcu_restore_after_reboot_uses_the_persisted_last_gasp() -> None:
    h = Harness()
    restore_ev = DcuPowerRestored(at(500), outage_start=at(0), meters=("b", "a"))
    [restore] = h.feed(500, restore_ev)
    assert (restore.meters, restore.duration_s, restore.interruption) == (
        ("a", "b"),
        500,
        "sustained",
    )
    assert h.feed(501, DcuPowerRestored(at(501))) == []


def test_last_gasp_of_a_large_dcu_is_split_under_the_size_bound() -> None:
    meters = [f"KFM{i:013d}" for i in range(1000)]
    h = Harness(meters=meters)
    msgs = h.feed(0, DcuPowerFail(at(0), test=True))
    assert len(msgs) > 1
    assert all(m.type.value == "last_gasp" and m.priority == 0 and m.test for m in msgs)
    assert [m.part for m in msgs] == list(range(1, len(msgs) + 1))
    assert {m.parts for m in msgs} == {len(msgs)}
    assert [x for m in msgs for x in m.meters] == meters
    assert all(len(m.to_json()) <= 2048 for m in msgs)
    assert len({m.id for m in msgs}) == len(msgs)
    # 1000 ids of 16 characters need about 19 kB: the parts are close to the bound.
    assert len(msgs) <= 12


def test_last_gasp_of_sixty_meters_fits_one_message() -> None:
    meters = [f"KFM{i:013d}" for i in range(60)]
    h = Harness(meters=meters)
    [gasp] = h.feed(0, DcuPowerFail(at(0)))
    assert gasp.part is None
    assert len(gasp.meters) == 60
    assert len(gasp.to_json()) < 2048


# --------------------------------------------------------------------------- duplicates


def test_push_and_event_log_of_the_same_outage_give_one_alarm() -> None:
    h = Harness()
    h.feed(0, down("m1", 0))
    assert kinds(h.tick(30)) == ["outage"]
    assert h.feed(40, *event_log_to_events([("m1", 1, at(0))])) == []
    assert kinds(h.feed(100, up("m1", 100))) == ["restore"]
    log = event_log_to_events([("m1", 1, at(0)), ("m1", 2, at(100))])
    assert h.feed(200, *log) == []
    assert kinds(h.out) == ["outage", "restore"]


def test_push_and_event_log_of_the_same_blink_count_once() -> None:
    h = Harness()
    h.feed(0, down("m1", 0))
    h.feed(3, up("m1", 3))
    h.feed(60, *event_log_to_events([("m1", 1, at(0)), ("m1", 2, at(3))]))
    [summary] = h.tick(903)
    assert summary.count == 1


def test_forwarded_events_are_deduplicated() -> None:
    h = Harness()
    rows = [("m1", 40, at(1)), ("m1", 4, at(2)), ("m1", 49, at(3)), ("m1", 77, at(4))]
    msgs = h.feed(10, *event_log_to_events(rows), DataNotValid("m1", at(5)))
    assert kinds(msgs) == [
        "tamper",
        "clock_adjusted",
        "security",
        "under_voltage",
        "data_not_valid",
    ]
    assert [m.code for m in msgs] == [40, 4, 49, 77, None]
    assert msgs[3].phase == "L2"
    assert all(m.priority == Priority.EVENT for m in msgs)
    again = h.feed(20, *event_log_to_events(rows), DataNotValid("m1", at(5)))
    assert again == []
    # Same instant, another code: a different fact.
    assert kinds(h.feed(30, TamperEvent("m1", 41, at(1)))) == ["tamper"]
    assert kinds(h.feed(31, ClockAdjusted("m1", at(2), code=5))) == ["clock_adjusted"]


# --------------------------------------------------------------------------- comm loss


def test_comm_loss_after_m_cycles_and_restore() -> None:
    h = Harness(AlarmSettings(comm_loss_cycles=3))
    for k in range(3):
        assert h.feed(k * 900, MeterCommLost("m1")) == []
    [loss] = h.feed(2700, MeterCommLost("m1"))
    assert (loss.type.value, loss.meter, loss.count, loss.event_time) == (
        "comm_loss",
        "m1",
        4,
        at(0),
    )
    assert h.feed(3600, MeterCommLost("m1")) == []
    [back] = h.feed(4000, MeterCommRestored("m1"))
    assert (back.type.value, back.duration_s) == ("comm_restore", 4000)
    assert h.feed(4100, MeterCommRestored("m1")) == []
    assert kinds(h.out) == ["comm_loss", "comm_restore"]


def test_comm_loss_is_not_an_outage_and_is_explained_by_one() -> None:
    h = Harness()
    for k in range(10):
        h.feed(k, MeterCommLost("quiet"))
    assert kinds(h.out) == ["comm_loss"]
    h.feed(100, down("dark", 100))
    h.tick(130)
    for k in range(10):
        h.feed(200 + k, MeterCommLost("dark"))
    assert kinds(h.out) == ["comm_loss", "outage"]


# --------------------------------------------------------------------------- API


def test_priority_order_inside_one_step() -> None:
    h = Harness()
    h.feed(0, down("a", 0))
    h.feed(1, up("a", 1))
    h.feed(900, down("b", 900))
    msgs = h.tick(901 + 30)
    assert kinds(msgs) == ["outage", "momentary"]


def test_engine_reads_the_injected_clock_only() -> None:
    now = [T0]
    engine = OutageEngine(DCU, sequence=CounterSequence(), clock=lambda: now[0])
    engine.handle(MeterPowerDown("m1", T0))
    assert engine.next_deadline() == T0 + timedelta(seconds=30)
    now[0] = T0 + timedelta(seconds=30)
    assert kinds(engine.tick()) == ["outage"]
    bare = OutageEngine(DCU, sequence=CounterSequence())
    with pytest.raises(ConfigError):
        bare.tick()


def test_settings_from_mapping() -> None:
    s = AlarmSettings.from_mapping(
        {"qualification_delay_s": "45", "transformer_min_meters": "8", "test": "true"}
    )
    assert (s.qualification_delay_s, s.transformer_min_meters, s.test) == (45.0, 8, True)
    with pytest.raises(ConfigError, match=r"alarms\.nope"):
        AlarmSettings.from_mapping({"nope": 1})
    with pytest.raises(ConfigError, match="momentary_threshold_s"):
        AlarmSettings.from_mapping({"momentary_threshold_s": "-1"})
    with pytest.raises(ConfigError, match="flap_window_s"):
        AlarmSettings.from_mapping({"flap_window_s": "soon"})


def test_test_flag_marks_every_message() -> None:
    h = Harness(AlarmSettings(test=True))
    h.feed(0, down("m1", 0))
    h.tick(30)
    h.feed(40, up("m1", 40))
    assert [m.test for m in h.out] == [True, True]


def test_meter_clock_set_back_does_not_make_new_events_stale() -> None:
    h = Harness()
    h.feed(0, down("m1", 600))  # the meter clock runs 10 min ahead
    h.feed(5, up("m1", 605))
    assert h.feed(10, ClockAdjusted("m1", at(10), code=5)) == [h.out[-1]]
    assert h.out[-1].type.value == "clock_adjusted"
    h.feed(100, down("m1", 100))
    [outage] = h.tick(130)
    assert (outage.type.value, outage.event_time) == ("outage", at(100))
