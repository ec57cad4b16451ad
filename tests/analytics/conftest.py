"""Shared fixtures of the analytics tests: one tiny trained model per session (a few seconds)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from collections.abc import Iterable
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from edge_core.analytics.features import EXPORT_OBIS, IMPORT_OBIS
from edge_core.batch import Batch, encode_batch, new_batch_id
from edge_core.model import DataClass, Reading
from edge_core.training.card import CARD_FILE, ModelCard
from edge_core.training.fleet import Fleet
from edge_core.training.train import train_model

__all__ = ["THING", "Feed", "copy_model", "session_tiny_model", "train_tiny"]

THING = "dcu-test"


def train_tiny(out: Path, version: str = "tiny-v1") -> Path:
    """Train the smallest useful model (isolation forest, 40 meters x 45 days) into ``out``."""
    train_model(out, meters=40, days=45, seed=3, families=("isolation_forest",),
                n_estimators=20, model_version=version)
    return out


class Feed:
    """Cumulative +A/-A captures of the fleet on one continuous 15-min timeline from local
    midnight of the first day; ``payload(d)`` holds captures ``96 d + 1 .. 96 (d + 1)`` (a local
    day, except around DST changes)."""

    def __init__(self, fleet: Fleet, tz: str = "UTC") -> None:
        self.fleet = fleet
        self.tz = ZoneInfo(tz)
        m = fleet.n_meters
        self.imp = np.cumsum(np.round(fleet.energy.reshape(m, -1)).astype(np.int64), axis=1)
        self.exp = np.cumsum(np.round(fleet.export.reshape(m, -1)).astype(np.int64), axis=1)
        first = fleet.start
        self.t0 = int(dt.datetime(first.year, first.month, first.day, tzinfo=self.tz).timestamp())

    def day_start(self, d: int) -> int:
        return self.t0 + d * 86400

    def readings(self, d: int, meters: Iterable[int] | None = None) -> list[Reading]:
        out = []
        for m in meters if meters is not None else range(self.fleet.n_meters):
            mid = self.fleet.meter_id(m)
            if d == 0:  # the capture opening the very first interval
                out += [Reading(mid, IMPORT_OBIS, self.t0, 1_000_000, 0, 30),
                        Reading(mid, EXPORT_OBIS, self.t0, 0, 0, 30)]
            for i in range(d * 96, (d + 1) * 96):
                t = self.t0 + (i + 1) * 900
                out.append(Reading(mid, IMPORT_OBIS, t, 1_000_000 + int(self.imp[m, i]), 0, 30))
                out.append(Reading(mid, EXPORT_OBIS, t, int(self.exp[m, i]), 0, 30))
        return out

    def payload(self, d: int, meters: Iterable[int] | None = None, thing: str = THING) -> bytes:
        return encode_batch(Batch(new_batch_id(), thing, DataClass.INTERVAL, 0,
                                  tuple(self.readings(d, meters))))


def copy_model(src: Path, dst: Path, version: str) -> Path:
    """A copy of a model directory under another model_version (the ONNX bytes are the same,
    so the card's digest still matches)."""
    shutil.copytree(src, dst)
    card = ModelCard.read(dst / CARD_FILE)
    dataclasses.replace(card, model_version=version).write(dst / CARD_FILE)
    return dst


_TRAINED: dict[str, Path] = {}


def session_tiny_model(factory: pytest.TempPathFactory) -> Path:
    """The tiny model "tiny-v1", trained once per test session whichever fixture asks first
    (tests/analytics and tests/greengrass share it). Copy it before changing anything."""
    if "v1" not in _TRAINED:
        _TRAINED["v1"] = train_tiny(factory.mktemp("tiny-model") / "v1")
    return _TRAINED["v1"]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return session_tiny_model(tmp_path_factory)
