"""Builders of small hand-computable fleets for the billing tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

from cloud.billing.tou import Tariff
from cloud.billing.vee import Capture

TARIFF = Tariff.from_dict(
    {
        "name": "tou3",
        "timezone": "Europe/Amsterdam",
        "default": "offpeak",
        "periods": [
            {"name": "peak", "days": "weekday", "from": "07:00", "to": "21:00"},
            {"name": "shoulder", "days": "weekend", "from": "09:00", "to": "17:00"},
        ],
        "holidays": ["2024-04-01"],
    }
)


def utc(*args: int) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp())


def cumulative(
    start: int,
    incs: Sequence[float],
    *,
    base: float = 1000.0,
    mult: float = 1.0,
    status: dict[int, int] | None = None,
    drop: set[int] | frozenset[int] = frozenset(),
) -> list[Capture]:
    """Captures at start, start+900, ... of a register rising by ``incs`` (secondary Wh),
    scaled by ``mult``; ``drop`` leaves out capture indices, ``status`` sets their status."""
    out = []
    acc = base
    for i in range(len(incs) + 1):
        if i:
            acc += incs[i - 1]
        if i in drop:
            continue
        st = (status or {}).get(i, 0)
        out.append(Capture(start + 900 * i, acc * mult, st, mult))
    return out
