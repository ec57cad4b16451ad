"""Readings, spools and decoding shared by the uplink tests."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from edge_core.batch import decode_batch
from edge_core.model import DataClass, Reading
from edge_core.spool.store import Spool

T0 = 1_700_000_000 - 1_700_000_000 % 86400

OBIS = {
    DataClass.DAILY: "1.0.1.8.0.255",
    DataClass.INTERVAL: "1.0.1.8.0.255",
    DataClass.DIAGNOSTIC: "1.0.32.7.0.255",
    DataClass.ALARM: "0.0.99.98.0.255",
    DataClass.ON_DEMAND: "1.0.2.8.0.255",
}


def readings(
    data_class: DataClass, *, meters: int, per_meter: int, period: int = 900, start: int = T0
) -> list[Reading]:
    """Cumulative-register-like readings; distinct keys per class (meter name carries it)."""
    out = []
    for m in range(meters):
        value = 10_000 * (m + 1)
        for i in range(per_meter):
            value += (i * 7 + m) % 13
            out.append(
                Reading(
                    f"{data_class.name.lower()}-{m:04d}",
                    OBIS[data_class],
                    start + i * period,
                    value,
                    scaler=0,
                    unit=30,
                    data_class=data_class,
                )
            )
    return out


def open_spool(tmp: Path, name: str = "spool.db") -> Spool:
    return Spool.open(tmp / name)


def keys_of(payloads: Iterable[bytes]) -> list[tuple[str, str, int]]:
    """Every reading key in a sequence of batch payloads (duplicates kept)."""
    out = []
    for payload in payloads:
        out.extend(r.key for r in decode_batch(payload).readings)
    return out
