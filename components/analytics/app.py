"""The analytics app: finds the model delivered by com.amiedge.AnomalyModel and checks it.

The model is an artifact of its own component, so a new model is a new version of
com.amiedge.AnomalyModel and restarts only this process. The recipe passes the artifact folder in
``AMI_MODEL_DIR`` ({com.amiedge.AnomalyModel:artifacts:path}); ``model_dir`` in the
configuration overrides it. Inference (edge_core.analytics) plugs in at :meth:`AnalyticsApp.start`.

Configuration keys: ``thing_name`` (default: AWS_IOT_THING_NAME), ``model_dir``,
``input_topic`` (local topic of day windows from the concentrator), ``threshold`` (empty: the
model card's), ``max_batch_windows`` (windows scored per inference call), ``log_level`` (read by
the entry point from AMI_LOG_LEVEL).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components._main import with_thing_name
from edge_core.bus.base import Bus
from edge_core.errors import ConfigError, ModelError
from edge_core.model import Topics

__all__ = ["COMPONENT", "AnalyticsApp", "AnalyticsConfig"]

log = logging.getLogger(__name__)

COMPONENT = "com.amiedge.Analytics"
ENV_MODEL_DIR = "AMI_MODEL_DIR"
_KEYS = ("thing_name", "model_dir", "input_topic", "threshold", "max_batch_windows", "log_level")


@dataclass(frozen=True, slots=True)
class AnalyticsConfig:
    thing_name: str
    model_dir: str
    input_topic: str = "ami/local/day-windows"
    threshold: float | None = None
    max_batch_windows: int = 4096

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> AnalyticsConfig:
        data = with_thing_name(mapping)
        unknown = sorted(set(data) - set(_KEYS))
        if unknown:
            raise ConfigError(f"unknown key(s) {', '.join(unknown)}", path="<root>")
        thing = str(data.get("thing_name") or "")
        try:
            Topics(thing)
        except ValueError as exc:
            raise ConfigError(str(exc), path="thing_name") from exc
        model_dir = str(data.get("model_dir") or os.environ.get(ENV_MODEL_DIR, ""))
        if not model_dir:
            raise ConfigError(f"no model_dir and {ENV_MODEL_DIR} unset", path="model_dir")
        raw_threshold = str(data.get("threshold", "") or "")
        try:
            threshold = float(raw_threshold) if raw_threshold else None
            batch = int(str(data.get("max_batch_windows", "4096")))
        except ValueError as exc:
            raise ConfigError(f"not a number: {exc}", path="threshold/max_batch_windows") from exc
        if not 1 <= batch <= 1_000_000:
            raise ConfigError(f"{batch} is outside [1, 1000000]", path="max_batch_windows")
        topic = str(data.get("input_topic", "ami/local/day-windows"))
        if not topic or "#" in topic or "+" in topic:
            raise ConfigError("a plain local topic is required", path="input_topic")
        return cls(thing, model_dir, topic, threshold, batch)


def check_model(model_dir: str) -> str:
    """Read the model card and verify the ONNX file's digest; returns the model version."""
    from edge_core.training.card import CARD_FILE, ModelCard  # noqa: PLC0415 - at start only

    card = ModelCard.read(Path(model_dir) / CARD_FILE)
    onnx = Path(model_dir) / card.onnx_file
    try:
        digest = hashlib.sha256(onnx.read_bytes()).hexdigest()
    except OSError as exc:
        raise ModelError(f"cannot read {onnx}: {exc.strerror}") from exc
    if digest != card.onnx_sha256:
        raise ModelError(f"{onnx} does not match the digest in its model card")
    return card.model_version


class AnalyticsApp:
    """The com.amiedge.Analytics application object (see module doc)."""

    def __init__(self) -> None:
        self.config: AnalyticsConfig | None = None
        self.model_version = ""
        self._bus: Bus | None = None

    def validate_config(self, mapping: Mapping[str, Any]) -> None:
        AnalyticsConfig.from_mapping(mapping)

    def apply_config(self, mapping: Mapping[str, Any]) -> None:
        self.config = AnalyticsConfig.from_mapping(mapping)

    def update_gate(self) -> float:
        return 0.0  # analytics holds no state worth deferring an update for

    async def start(self, bus: Bus) -> None:
        self._bus = bus
        self.config = AnalyticsConfig.from_mapping(bus.get_config())
        self.model_version = check_model(self.config.model_dir)
        log.info("anomaly model %s ready in %s", self.model_version, self.config.model_dir)

    async def stop(self) -> None:
        self._bus = None
