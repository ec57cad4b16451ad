"""Hypothesis strategies for readings and batches (shared by the batch and spool tests)."""

from __future__ import annotations

from hypothesis import strategies as st

from edge_core.batch import Batch
from edge_core.model import DataClass, Reading

INT64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
obis = st.tuples(*[st.integers(0, 255)] * 6).map(lambda t: ".".join(map(str, t)))
meter_ids = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12).filter(
    lambda s: len(s.encode()) <= 255
)
data_classes = st.sampled_from(list(DataClass))


@st.composite
def channel_readings(draw: st.DrawFn, meter: str, data_class: DataClass) -> list[Reading]:
    code = draw(obis)
    n = draw(st.integers(1, 30))
    start = draw(st.integers(0, 2_000_000_000))
    if draw(st.booleans()):
        period = draw(st.sampled_from([60, 900, 3600, 86400]))
        times = [start + k * period for k in range(n)]
        if n > 2 and draw(st.booleans()):  # a gap
            del times[draw(st.integers(1, n - 2))]
    else:
        times = sorted(set(draw(st.lists(st.integers(0, 1 << 40), min_size=1, max_size=n))))
    values = draw(
        st.one_of(
            st.lists(INT64, min_size=len(times), max_size=len(times)),
            st.lists(st.integers(0, 500), min_size=len(times), max_size=len(times)).map(
                lambda d: [sum(d[: i + 1]) + 10_000_000 for i in range(len(d))]
            ),
        )
    )
    scaler = draw(st.integers(-128, 127))
    unit = draw(st.integers(0, 255))
    statuses = draw(
        st.lists(
            st.sampled_from([0, 0, 0, 0x80, 0x20, 255]), min_size=len(times), max_size=len(times)
        )
    )
    return [
        Reading(meter, code, t, v, scaler, unit, s, data_class)
        for t, v, s in zip(times, values, statuses, strict=True)
    ]


@st.composite
def follower(draw: st.DrawFn, leader: list[Reading], code: str) -> list[Reading]:
    """A channel with the leader's capture times whose steps follow the leader's (scaled, with
    noise), as reactive energy follows active energy: what the cross-channel predictor of
    format version 2 is for. Extreme weights and values exercise its wrap-around."""
    ratio = draw(st.one_of(st.floats(-3.0, 3.0), st.sampled_from([1e6, -1e9, 2**40])))
    noise = draw(st.integers(0, 50))
    value = draw(st.one_of(st.integers(0, 1 << 30), INT64))
    out = []
    prev = leader[0].value
    for r in leader:
        step = r.value - prev
        prev = r.value
        jitter = draw(st.integers(-noise, noise))
        value = int(value + int(step * ratio) + jitter)
        value = (value + (1 << 63)) % (1 << 64) - (1 << 63)
        out.append(Reading(r.meter, code, r.capture_time, value, 0, 32, r.status, r.data_class))
    return out


@st.composite
def readings_of_class(draw: st.DrawFn, data_class: DataClass, max_meters: int = 6) -> list[Reading]:
    meters = draw(st.lists(meter_ids, min_size=1, max_size=max_meters, unique=True))
    out: list[Reading] = []
    for m in meters:
        seen: set[str] = set()
        for _ in range(draw(st.integers(1, 4))):
            chan = draw(channel_readings(m, data_class))
            if chan[0].obis in seen:
                continue
            seen.add(chan[0].obis)
            out.extend(chan)
            if len(chan) >= 4 and draw(st.booleans()):
                code = draw(obis)
                if code not in seen:
                    seen.add(code)
                    out.extend(draw(follower(chan, code)))
    return out


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    dc = draw(data_classes)
    return Batch(
        draw(st.binary(min_size=16, max_size=16)),
        draw(
            st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).filter(
                lambda s: len(s.encode()) <= 128
            )
        ),
        dc,
        draw(st.integers(0, (1 << 63) - 1)),
        tuple(draw(st.permutations(draw(readings_of_class(dc))))),
    )
