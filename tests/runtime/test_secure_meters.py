"""The running concentrator reads meters that demand low-level security (password) and
HLS-GMAC (suite 0), with the secrets coming through the bus, and never logs them."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_core.bus.memory import MemoryBus
from edge_core.config import EdgeConfig
from edge_core.dlms.security import Secret
from edge_core.model import DataClass
from edge_core.runtime.app import EdgeApp
from edge_core.simulator import serve_meters
from edge_core.simulator.security import MeterSecurity

EK = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
AK = bytes.fromhex("d0d1d2d3d4d5d6d7d8d9dadbdcdddedf")
PASSWORD = b"s3cret-pw"


async def _read_both(tmp: Path) -> tuple[dict[str, int], EdgeApp]:
    start = (datetime.now(UTC) - timedelta(days=2)).date()
    low = await serve_meters(1, "127.0.0.1", 0, 3, start, password=PASSWORD)
    hls = await serve_meters(
        1,
        "127.0.0.1",
        0,
        4,
        start,
        security=MeterSecurity(Secret(EK, label="ek"), Secret(AK, label="ak")),
    )
    config = EdgeConfig.from_mapping(
        {
            "thing_name": "dcu-sec-1",
            "meters": [
                {
                    "id": "LOW1",
                    "url": low.url(0),
                    "auth": {"level": "low", "password_secret": "meters/low1/password"},
                },
                {
                    "id": "HLS1",
                    "url": hls.url(0),
                    "auth": {
                        "level": "hls-gmac",
                        "auth_key_secret": "dlms/ak",
                        "cipher_key_secret": "dlms/ek",
                        "system_title": "4d4d4d0000bc614e",
                    },
                },
            ],
            "schedule": {"profile_read_s": 86400},
            "spool": {"path": str(tmp / "spool.db")},
        }
    )
    bus = MemoryBus(
        secrets={"meters/low1/password": PASSWORD, "dlms/ak": AK.hex(), "dlms/ek": EK.hex()}
    )
    await bus.start()
    app = EdgeApp(config, bus, initial_backfill_s=3 * 3600)
    await app.start()
    stored: dict[str, int] = {}
    try:
        assert app.acquisition is not None
        for meter in config.meters:
            stored[meter.id] = await app.acquisition.read_once(meter)
        # A second poll reuses the cached security and strictly higher invocation counters.
        for meter in config.meters:
            await app.acquisition.read_once(meter)
        worker, spool = app._owner()
        for mid in stored:
            assert await worker.call(spool.last_capture, mid, "1.0.1.8.0.255", DataClass.INTERVAL)
    finally:
        await app.stop()
        await bus.close()
        await low.close()
        await hls.close()
    return stored, app


def test_password_and_hls_gmac_meters_are_read_and_keys_stay_out_of_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    stored, app = asyncio.run(_read_both(tmp_path))
    assert stored["LOW1"] >= 12 * 4  # three hours of 15-min rows, four channels
    assert stored["HLS1"] >= 12 * 4
    assert app.acquisition is not None
    assert app.acquisition.stats.totals()["failures"] == 0
    text = caplog.text.lower()
    for secret in (EK.hex(), AK.hex(), PASSWORD.decode().lower()):
        assert secret not in text
    assert list((tmp_path / "ic-counters").iterdir())  # counters persisted beside the spool
