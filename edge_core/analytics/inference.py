"""The learned detector on the edge: load an ONNX model directory, score feature batches.

Theory of operation
-------------------
A model directory holds ``model.onnx`` and ``model-card.json``. Loading validates the card
(format, feature-spec version equal to :data:`FEATURE_SPEC_VERSION`, lengths), checks the
SHA-256 of the ONNX file against the card (a truncated or corrupted download is refused before
onnxruntime sees it) and creates one onnxruntime session with one intra-op thread (a DCU has few
cores and the alarm path must keep one). Every failure is a :class:`ModelError`.

The model does not take the raw feature vector: :class:`ModelInputs` projects the 96-point shape
onto the card's principal components, adds the shape's reconstruction residual and the scalar
features, then standardises (all numpy, float32). Scores are "higher = more anomalous".

:class:`ModelManager` owns the current model. ``update(path)`` loads the new directory *first*
and swaps only if it validated; a bad model leaves the previous one in service. The swap is a
single reference assignment under a lock, so a scorer holding the old model finishes with it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_core.analytics.features import (
    FEATURE_NAMES,
    FEATURE_SPEC_VERSION,
    INTERVALS_PER_DAY,
    N_FEATURES,
    FeatureBatch,
)
from edge_core.errors import ConfigError, ModelError
from edge_core.training.card import CARD_FILE, ModelCard

__all__ = ["MODEL_SCALARS", "AnomalyModel", "ModelInputs", "ModelManager", "model_input_names"]

_log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]


#: Scalar features the model sees. Left out: log_total_kwh (the absolute level differs between
#: meters and says nothing by itself), night_share and reverse_share (their deltas against the
#: meter's own baseline carry the signal; raw, PV and non-PV meters differ) and the fallback flag.
MODEL_SCALARS = (
    "log_ratio_weekday",
    "log_ratio_14d",
    "night_share_delta",
    "load_factor",
    "zero_fraction",
    "max_step",
    "reverse_share_delta",
    "log_ratio_peak",
)
_SCALAR_IDX = np.array([FEATURE_NAMES.index(n) for n in MODEL_SCALARS])


def model_input_names(n_components: int) -> tuple[str, ...]:
    return (*tuple(f"shape_pc{i}" for i in range(n_components)), "shape_residual", *MODEL_SCALARS)


@dataclass(frozen=True, slots=True, eq=False)
class ModelInputs:
    """Feature vector (N, N_FEATURES) -> model input (N, k + 1 + scalars), standardised."""

    shape_mean: FloatArray  # (96,)
    components: FloatArray  # (k, 96), orthonormal rows
    mean: FloatArray  # (k + 1 + scalars,)
    scale: FloatArray

    @classmethod
    def from_card(cls, card: ModelCard) -> ModelInputs:
        comps = np.asarray(card.shape_components, dtype=np.float32).reshape(
            len(card.shape_components), -1
        )
        return cls(
            shape_mean=np.asarray(card.shape_mean, dtype=np.float32),
            components=comps,
            mean=np.asarray(card.scaler_mean, dtype=np.float32),
            scale=np.asarray(card.scaler_scale, dtype=np.float32),
        )

    @staticmethod
    def raw(x: FloatArray, shape_mean: FloatArray, components: FloatArray) -> FloatArray:
        """Unstandardised model inputs: PCs of the shape, its residual norm, scalars."""
        shape = x[:, :INTERVALS_PER_DAY] - shape_mean
        pcs = shape @ components.T
        resid = shape - pcs @ components
        res_norm = np.sqrt((resid * resid).sum(axis=1, keepdims=True)) * 100.0
        return np.concatenate([pcs, res_norm, x[:, _SCALAR_IDX]], axis=1).astype(
            np.float32
        )

    def apply(self, x: FloatArray) -> FloatArray:
        x = np.asarray(x, dtype=np.float32).reshape(-1, N_FEATURES)
        raw = self.raw(x, self.shape_mean, self.components)
        return ((raw - self.mean) / self.scale).astype(np.float32)


class AnomalyModel:
    """A loaded model: ``score(features) -> scores`` (float64, higher = more anomalous)."""

    def __init__(self, path: Path, card: ModelCard, session: Any, load_seconds: float) -> None:
        self.path = path
        self.card = card
        self._session = session
        self._input = session.get_inputs()[0].name
        self._inputs = ModelInputs.from_card(card)
        self.load_seconds = load_seconds

    @property
    def version(self) -> str:
        return self.card.model_version

    @property
    def threshold(self) -> float:
        return self.card.threshold

    @classmethod
    def load(cls, path: str | Path) -> AnomalyModel:
        """Validate and load a model directory. Raises :class:`ModelError`."""
        t0 = time.perf_counter()
        directory = Path(path)
        card = ModelCard.read(directory / CARD_FILE)
        if card.feature_spec_version != FEATURE_SPEC_VERSION:
            raise ModelError(
                f"model {card.model_version} needs feature spec {card.feature_spec_version}, "
                f"this edge computes {FEATURE_SPEC_VERSION}"
            )
        if tuple(card.feature_names) != FEATURE_NAMES:
            raise ModelError("model card feature_names differ from this edge's feature spec")
        if len(card.shape_mean) != INTERVALS_PER_DAY:
            raise ModelError("model card shape_mean must have 96 values")
        if tuple(card.model_input_names) != model_input_names(len(card.shape_components)):
            raise ModelError("model card model_input_names do not match the projection")
        try:
            blob = (directory / card.onnx_file).read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read {directory / card.onnx_file}: {exc}") from exc
        digest = hashlib.sha256(blob).hexdigest()
        if digest != card.onnx_sha256:
            raise ModelError(f"{card.onnx_file} digest {digest[:12]} does not match the card")
        try:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            session = ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])
        except ImportError as exc:
            raise ModelError("onnxruntime is not installed (edge-ml extra)") from exc
        except Exception as exc:  # onnxruntime raises its own untyped errors: one boundary
            raise ModelError(f"onnxruntime refused {card.onnx_file}: {exc}") from exc
        outputs = {o.name for o in session.get_outputs()}
        if card.output_name not in outputs:
            raise ModelError(f"model has no output {card.output_name!r} (has {sorted(outputs)})")
        width = session.get_inputs()[0].shape[-1]
        if isinstance(width, int) and width != len(card.model_input_names):
            raise ModelError(f"model input width {width} != {len(card.model_input_names)}")
        model = cls(directory, card, session, time.perf_counter() - t0)
        _log.info("loaded anomaly model %s from %s in %.1f ms", model.version, directory,
                  model.load_seconds * 1e3)
        return model

    def score_inputs(self, z: FloatArray) -> npt.NDArray[np.float64]:
        """Score already-standardised model inputs (N, k)."""
        if len(z) == 0:
            return np.zeros(0, dtype=np.float64)
        try:
            out = np.asarray(self._session.run([self.card.output_name], {self._input: z})[0])
        except Exception as exc:  # the onnxruntime boundary
            raise ModelError(f"onnxruntime failed to score: {exc}") from exc
        if self.card.score_kind == "neg_decision":
            return -out.reshape(-1).astype(np.float64)
        out = out.reshape(z.shape)  # skl2onnx flattens MLPRegressor outputs to (N * k, 1)
        return np.asarray(((out.astype(np.float64) - z) ** 2).mean(axis=1), dtype=np.float64)

    def score(self, features: FeatureBatch | FloatArray) -> npt.NDArray[np.float64]:
        """Scores of a batch (N,); rows a FeatureBatch marks as not scorable come back NaN."""
        if isinstance(features, FeatureBatch):
            scores = np.full(len(features.reasons), np.nan, dtype=np.float64)
            valid = features.valid
            if valid.any():
                scores[valid] = self.score_inputs(self._inputs.apply(features.x[valid]))
            return scores
        return self.score_inputs(self._inputs.apply(features))

    def explain(self, x_row: FloatArray, top: int = 3) -> list[dict[str, float | str]]:
        """The scalar features furthest from the fleet's normal median, in units of its spread."""
        scalars = MODEL_SCALARS
        ref = np.asarray(self.card.reference_median, dtype=np.float64)[_SCALAR_IDX]
        offset = len(self.card.model_input_names) - len(scalars)
        spread = np.asarray(self.card.scaler_scale, dtype=np.float64)[offset:]
        vals = np.asarray(x_row, dtype=np.float64)[_SCALAR_IDX]
        dev = np.abs(vals - ref) / np.maximum(spread, 1e-9)
        order = np.argsort(-dev, kind="mergesort")[:top]
        return [
            {"feature": scalars[i], "value": round(float(vals[i]), 4),
             "baseline": round(float(ref[i]), 4), "deviation": round(float(dev[i]), 2)}
            for i in order
        ]


class ModelManager:
    """Holds the model in service and hot-swaps it when a new directory validates."""

    CONFIG_KEY = "modelDir"

    def __init__(self, model: AnomalyModel | None = None) -> None:
        self._lock = threading.Lock()
        self._model = model
        self.rejected: list[tuple[str, str]] = []  # (path, reason) of refused updates

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelManager:
        """Build from component configuration (``{"modelDir": "/greengrass/.../model"}``)."""
        path = config.get(cls.CONFIG_KEY)
        if not isinstance(path, str) or not path:
            raise ConfigError("model directory not configured", path=cls.CONFIG_KEY)
        manager = cls()
        manager.update(path)
        return manager

    @property
    def model(self) -> AnomalyModel | None:
        with self._lock:
            return self._model

    def require(self) -> AnomalyModel:
        model = self.model
        if model is None:
            raise ModelError("no anomaly model loaded")
        return model

    def update(self, path: str | Path) -> AnomalyModel:
        """Load ``path``; swap it in if valid, else keep the current model and re-raise."""
        try:
            new = AnomalyModel.load(path)
        except ModelError as exc:
            with self._lock:
                self.rejected.append((str(path), str(exc)))
                kept = self._model.version if self._model else None
            _log.warning("model at %s refused (%s); keeping %s", path, exc, kept)
            raise
        with self._lock:
            old, self._model = self._model, new
        _log.info("anomaly model swapped: %s -> %s", old.version if old else None, new.version)
        return new
