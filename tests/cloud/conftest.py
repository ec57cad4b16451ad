"""Fixtures of the cloud tests: local stores in a temporary directory and batch builders."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from cloud.storage.base import MeterRecord, Stores
from cloud.storage.local import open_local_stores
from edge_core.batch import Batch, encode_batch, new_batch_id
from edge_core.model import DataClass, Reading

T0 = 1_709_251_200  # 2024-03-01T00:00:00Z
ENERGY = "1.0.1.8.0.255"
VOLTAGE = "1.0.32.7.0.255"


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    s, db = open_local_stores(tmp_path / "data")
    yield s
    db.close()


def readings(
    meter: str,
    obis: str,
    start: int,
    count: int,
    *,
    step: int = 900,
    base: int = 1000,
    inc: int = 7,
    scaler: int = 0,
    unit: int = 30,
) -> list[Reading]:
    return [
        Reading(meter, obis, start + i * step, base + i * inc, scaler, unit, 0, DataClass.INTERVAL)
        for i in range(count)
    ]


def batch_bytes(
    rs: Sequence[Reading],
    *,
    thing: str = "dcu-1",
    batch_id: bytes | None = None,
    data_class: DataClass = DataClass.INTERVAL,
) -> tuple[bytes, bytes]:
    """(encoded batch, batch id)."""
    bid = batch_id or new_batch_id()
    return encode_batch(Batch(bid, thing, data_class, T0 + 86400, tuple(rs))), bid


def registry_records() -> list[MeterRecord]:
    """m-ct: CT 200/5 = 40 until T0 + 12 h, then CT 400/5 = 80; PT 100 throughout."""
    return [
        MeterRecord("m-ct", "dcu-1", 40.0, 100.0, 0, T0 + 43200, "C1"),
        MeterRecord("m-ct", "dcu-1", 80.0, 100.0, T0 + 43200, None, "C1"),
        MeterRecord("m-direct", "dcu-1", 1.0, 1.0, 0, None, "R1"),
    ]


@pytest.fixture(scope="module")
def api_stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    """Module-scoped stores (hypothesis tests must not use function-scoped fixtures)."""
    s, db = open_local_stores(tmp_path_factory.mktemp("api") / "data")
    s.registry.upsert(registry_records())
    yield s
    db.close()
