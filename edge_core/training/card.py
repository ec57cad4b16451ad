"""The model card: the JSON file that travels with ``model.onnx`` (standard library only).

The edge reads it before it loads the model (:mod:`edge_core.analytics.inference`), so this
module must import nothing beyond the standard library: a concentrator has no scikit-learn.

Fields (``model-card.json``):

``format``                 ``"ami-edge-model-card/1"``
``model_version``          free text, shown in every anomaly event
``feature_spec_version``   must equal :data:`edge_core.analytics.features.FEATURE_SPEC_VERSION`
``feature_names``          order of the model's input columns
``model_family``           ``isolation_forest`` or ``mlp_autoencoder``
``onnx_file`` / ``onnx_sha256``   the artifact and its digest (a corrupted file is refused)
``output_name`` / ``score_kind``  which ONNX output to read and how to turn it into a score
``model_input_names``      the model's input columns: shape principal components, the shape
                           residual and the scalar features (see inference.ModelInputs)
``shape_mean`` / ``shape_components``  PCA of the 96-point normalised shape (numpy projection)
``scaler_mean`` / ``scaler_scale``  standardisation applied in numpy before the model
``reference_median``       median of every feature over normal training windows (explanations)
``threshold`` / ``target_fpr``  score above which a window is an anomaly, chosen for the FPR
``training_data``          fleet description, sizes and seed
``metrics``                per family: AUC per kind, precision at k, ONNX vs scikit-learn diff
``selected_by``, ``created`` (ISO 8601 UTC), ``packages`` (versions used to train)
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_core.errors import ModelError

__all__ = ["CARD_FILE", "CARD_FORMAT", "MODEL_FILE", "SCORE_KINDS", "ModelCard"]

CARD_FORMAT = "ami-edge-model-card/1"
CARD_FILE = "model-card.json"
MODEL_FILE = "model.onnx"
SCORE_KINDS = ("neg_decision", "reconstruction_mse")


@dataclass(frozen=True, slots=True)
class ModelCard:
    model_version: str
    feature_spec_version: int
    feature_names: tuple[str, ...]
    model_family: str
    onnx_file: str
    onnx_sha256: str
    output_name: str
    score_kind: str
    model_input_names: tuple[str, ...]
    shape_mean: tuple[float, ...]
    shape_components: tuple[tuple[float, ...], ...]
    scaler_mean: tuple[float, ...]
    scaler_scale: tuple[float, ...]
    reference_median: tuple[float, ...]
    threshold: float
    target_fpr: float
    training_data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    selected_by: str = ""
    created: str = ""
    packages: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d = {"format": CARD_FORMAT, **d}
        for k in ("feature_names", "model_input_names", "shape_mean", "scaler_mean",
                  "scaler_scale", "reference_median"):
            d[k] = list(d[k])
        d["shape_components"] = [list(row) for row in self.shape_components]
        return d

    @classmethod
    def from_dict(cls, d: Any) -> ModelCard:
        """Parse and validate; any problem is a :class:`ModelError` naming the field."""
        if not isinstance(d, dict):
            raise ModelError("model card is not a JSON object")
        if d.get("format") != CARD_FORMAT:
            raise ModelError(f"model card format {d.get('format')!r}, expected {CARD_FORMAT!r}")
        try:
            card = cls(
                model_version=str(d["model_version"]),
                feature_spec_version=int(d["feature_spec_version"]),
                feature_names=tuple(str(x) for x in d["feature_names"]),
                model_family=str(d["model_family"]),
                onnx_file=str(d["onnx_file"]),
                onnx_sha256=str(d["onnx_sha256"]),
                output_name=str(d["output_name"]),
                score_kind=str(d["score_kind"]),
                model_input_names=tuple(str(x) for x in d["model_input_names"]),
                shape_mean=tuple(float(x) for x in d["shape_mean"]),
                shape_components=tuple(
                    tuple(float(x) for x in row) for row in d["shape_components"]
                ),
                scaler_mean=tuple(float(x) for x in d["scaler_mean"]),
                scaler_scale=tuple(float(x) for x in d["scaler_scale"]),
                reference_median=tuple(float(x) for x in d["reference_median"]),
                threshold=float(d["threshold"]),
                target_fpr=float(d["target_fpr"]),
                training_data=dict(d.get("training_data", {})),
                metrics=dict(d.get("metrics", {})),
                selected_by=str(d.get("selected_by", "")),
                created=str(d.get("created", "")),
                packages={str(k): str(v) for k, v in dict(d.get("packages", {})).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"model card field missing or of the wrong type: {exc}") from exc
        n = len(card.feature_names)
        if len(card.reference_median) != n:
            raise ModelError("model card reference_median length differs from feature_names")
        k = len(card.model_input_names)
        if not len(card.scaler_mean) == len(card.scaler_scale) == k:
            raise ModelError("model card scaler lengths differ from model_input_names")
        width = len(card.shape_mean)
        if any(len(row) != width for row in card.shape_components):
            raise ModelError("model card shape_components rows differ from shape_mean length")
        if card.score_kind not in SCORE_KINDS:
            raise ModelError(f"unknown score_kind {card.score_kind!r}")
        if not math.isfinite(card.threshold):
            raise ModelError("model card threshold is not finite")
        if any(s <= 0 or not math.isfinite(s) for s in card.scaler_scale):
            raise ModelError("model card scaler_scale must be positive and finite")
        if "/" in card.onnx_file or "\\" in card.onnx_file or card.onnx_file.startswith("."):
            raise ModelError(f"onnx_file must be a plain file name, not {card.onnx_file!r}")
        return card

    @classmethod
    def read(cls, path: str | Path) -> ModelCard:
        try:
            text = Path(path).read_text(encoding="utf-8")
            data = json.loads(text)
        except OSError as exc:
            raise ModelError(f"cannot read model card {path}: {exc}") from exc
        except ValueError as exc:
            raise ModelError(f"model card {path} is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n",
                              encoding="utf-8")
