"""Train, export, verify and evaluate the anomaly model (workstation / CI only).

Pipeline (deterministic for a seed):

1. simulate a training fleet (seed) and a held-out evaluation fleet (seed + 1);
2. build features with the edge's own feature code (:mod:`edge_core.analytics.features`), drop
   windows without history; fit on the *normal* windows of 80 % of the training meters,
   calibrate the threshold on the normal windows of the other 20 % for the target false-positive
   rate;
3. for each model family, fit with scikit-learn, export the raw estimator (no Pipeline: the
   standardisation is done in numpy from the card's scaler, which avoids the shape flattening
   skl2onnx showed for MLPRegressor inside a Pipeline), check the onnxruntime scores against
   scikit-learn (max abs diff <= 1e-4, else ModelError), evaluate AUC per anomaly kind and
   precision at an inspection budget on the evaluation fleet;
4. keep the family with the better worst-kind AUC (ties: mean AUC), write ``model.onnx`` and
   ``model-card.json``.

Scores are "higher = more anomalous" for every family: ``-decision_function`` for the
IsolationForest, mean squared reconstruction error (standardised features) for the autoencoder.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import platform
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_core.analytics.features import (
    FEATURE_NAMES,
    FEATURE_SPEC_VERSION,
    INTERVALS_PER_DAY,
    FeatureBatch,
    baselines_from_matrix,
    build_features,
    daily_stats,
)
from edge_core.analytics.inference import ModelInputs, model_input_names
from edge_core.errors import ModelError
from edge_core.training.card import CARD_FILE, MODEL_FILE, ModelCard
from edge_core.training.fleet import KINDS, Fleet, simulate_fleet

__all__ = [
    "FAMILIES",
    "TrainResult",
    "auc",
    "fleet_features",
    "precision_at_k",
    "train_model",
]

_log = logging.getLogger(__name__)

FAMILIES = ("isolation_forest", "mlp_autoencoder", "one_class_svm")
ONNX_TOLERANCE = 1e-4
_GAMMA = 0.25  # RBF gamma x n_inputs; swept 0.25-2 on seed 7, 0.25 had the best worst-kind AUC


def auc(pos: npt.NDArray[np.floating[Any]], neg: npt.NDArray[np.floating[Any]]) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half); NaN if a side is empty."""
    pos = np.asarray(pos, dtype=np.float64)
    neg = np.asarray(neg, dtype=np.float64)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    allv = np.concatenate([pos, neg])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(len(allv), dtype=np.float64)
    sorted_v = allv[order]
    # average ranks of ties
    _, first, counts = np.unique(sorted_v, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    r_pos = ranks[: len(pos)].sum()
    return float((r_pos - len(pos) * (len(pos) + 1) / 2.0) / (len(pos) * len(neg)))


def precision_at_k(scores: npt.NDArray[np.floating[Any]], is_anomaly: npt.NDArray[np.bool_],
                   k: int) -> float:
    """Share of true anomalies among the ``k`` highest scores (the inspection budget)."""
    k = max(1, min(k, len(scores)))
    top = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")[:k]
    return float(np.asarray(is_anomaly)[top].mean())


def fleet_features(fleet: Fleet) -> tuple[FeatureBatch, npt.NDArray[np.int8], npt.NDArray[np.int_]]:
    """Features of every meter-day of a fleet; returns (batch, labels, meter index) flattened."""
    e = fleet.energy.reshape(-1, 96)
    x = fleet.export.reshape(-1, 96)
    st = daily_stats(e, x)
    base = baselines_from_matrix(st, fleet.n_meters, fleet.n_days)
    batch = build_features(e, x, base)
    meters = np.repeat(np.arange(fleet.n_meters), fleet.n_days)
    return batch, fleet.labels.reshape(-1), meters


def evaluate(scores: npt.NDArray[np.floating[Any]], labels: npt.NDArray[np.int8],
             budget: float) -> dict[str, Any]:
    """AUC per anomaly kind (kind vs normal windows) and precision at the inspection budget."""
    normal = scores[labels == 0]
    per_kind = {}
    for code, name in enumerate(KINDS):
        if code == 0:
            continue
        pos = scores[labels == code]
        if len(pos):
            per_kind[name] = round(auc(pos, normal), 4)
    k = max(1, round(budget * len(scores)))
    aucs = [v for v in per_kind.values() if not np.isnan(v)]
    return {
        "auc_per_kind": per_kind,
        "auc_min": round(min(aucs), 4) if aucs else float("nan"),
        "auc_mean": round(float(np.mean(aucs)), 4) if aucs else float("nan"),
        "auc_all": round(auc(scores[labels != 0], normal), 4),
        "inspection_budget": budget,
        "k": k,
        "precision_at_k": round(precision_at_k(scores, labels != 0, k), 4),
        "windows": len(scores),
        "anomalous_windows": int((labels != 0).sum()),
    }


@dataclass(frozen=True, slots=True)
class _Fitted:
    family: str
    estimator: Any
    onnx_bytes: bytes
    output_name: str
    score_kind: str


def _fit(family: str, xs: npt.NDArray[np.float32], seed: int, n_estimators: int) -> Any:
    if family == "isolation_forest":
        from sklearn.ensemble import IsolationForest

        return IsolationForest(n_estimators=n_estimators, random_state=seed).fit(xs)
    if family == "mlp_autoencoder":
        from sklearn.neural_network import MLPRegressor

        est = MLPRegressor(hidden_layer_sizes=(48, 12, 48), activation="relu", alpha=1e-4,
                           batch_size=256, learning_rate_init=2e-3, max_iter=60,
                           early_stopping=False, random_state=seed, tol=1e-5)
        import warnings

        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(xs, xs)
        return est
    if family == "one_class_svm":
        from sklearn.svm import OneClassSVM

        # kernel methods scale with n^2: fit on a seeded subsample
        rng = np.random.default_rng(seed)
        sub = xs[rng.permutation(len(xs))[:4000]]
        return OneClassSVM(kernel="rbf", gamma=_GAMMA / xs.shape[1], nu=0.02).fit(sub)
    raise ModelError(f"unknown model family {family!r}")


def _sk_scores(family: str, est: Any, xs: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    if family in ("isolation_forest", "one_class_svm"):
        return np.asarray(-est.decision_function(xs), dtype=np.float64)
    rec = est.predict(xs)
    return np.asarray(((rec - xs) ** 2).mean(axis=1), dtype=np.float64)


def _export(family: str, est: Any, n_inputs: int) -> tuple[bytes, str, str]:
    """ONNX bytes of the raw estimator, the output to read, and the score kind."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    onx = convert_sklearn(
        est,
        initial_types=[("inputs", FloatTensorType([None, n_inputs]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    outputs = [o.name for o in onx.graph.output]
    if family in ("isolation_forest", "one_class_svm"):
        # outputs: label, scores (= decision_function)
        return onx.SerializeToString(), outputs[-1], "neg_decision"
    return onx.SerializeToString(), outputs[0], "reconstruction_mse"


def onnx_scores(onnx_bytes: bytes, output: str, score_kind: str,
                xs: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Score standardised features with onnxruntime (the same maths as the edge)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    out = sess.run([output], {sess.get_inputs()[0].name: xs})[0]
    out = np.asarray(out)
    if score_kind == "neg_decision":
        return -out.reshape(-1).astype(np.float64)
    if out.shape != xs.shape and out.size == xs.size:
        # skl2onnx emits the MLPRegressor output flattened to (N * F, 1); restore (N, F).
        out = out.reshape(xs.shape)
    if out.shape != xs.shape:
        raise ModelError(f"autoencoder output shape {out.shape} != input {xs.shape}")
    return np.asarray(((out.astype(np.float64) - xs) ** 2).mean(axis=1), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class TrainResult:
    out_dir: Path
    card: ModelCard
    seconds: float


def _package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("numpy", "scikit-learn", "skl2onnx", "onnx", "onnxruntime", "ami-edge"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def train_model(
    out_dir: str | Path,
    *,
    meters: int = 400,
    days: int = 120,
    seed: int = 7,
    families: tuple[str, ...] = FAMILIES,
    target_fpr: float = 0.01,
    budget: float = 0.02,
    model_version: str | None = None,
    n_components: int = 4,
    n_estimators: int = 100,
    created: dt.datetime | None = None,
) -> TrainResult:
    """Train every family in ``families``, keep the better one, write the artifact to ``out_dir``.

    ``meters``/``days`` size the training fleet; the evaluation fleet has the same size and the
    seed ``seed + 1``. Raises :class:`ModelError` if an ONNX export does not reproduce
    scikit-learn's scores.
    """
    t0 = time.perf_counter()
    train_fleet = simulate_fleet(meters, days, seed)
    eval_fleet = simulate_fleet(meters, days, seed + 1)
    fb, labels, midx = fleet_features(train_fleet)
    ok = fb.valid
    rng = np.random.default_rng(seed)
    calib_meters = rng.random(meters) < 0.2
    fit_rows = ok & (labels == 0) & ~calib_meters[midx]
    cal_rows = ok & (labels == 0) & calib_meters[midx]
    if fit_rows.sum() < 50 or cal_rows.sum() < 10:
        raise ModelError(f"fleet too small to train: {int(fit_rows.sum())} fit windows, "
                         f"{int(cal_rows.sum())} calibration windows")
    x_fit = fb.x[fit_rows]
    # PCA of the normalised shape (numpy SVD): the model sees n_components coordinates and the
    # residual norm instead of 96 noisy columns, which would drown the level features.
    shapes = x_fit[:, :INTERVALS_PER_DAY].astype(np.float64)
    shape_mean = shapes.mean(axis=0)
    _, _, vt = np.linalg.svd(shapes - shape_mean, full_matrices=False)
    components = vt[:n_components].astype(np.float32)
    shape_mean32 = shape_mean.astype(np.float32)
    raw_fit = ModelInputs.raw(x_fit, shape_mean32, components)
    mean = raw_fit.mean(axis=0).astype(np.float32)
    scale = raw_fit.std(axis=0).astype(np.float32)
    scale = np.where(scale < 1e-6, 1.0, scale).astype(np.float32)
    inputs = ModelInputs(shape_mean32, components, mean, scale)
    std = inputs.apply
    n_inputs = raw_fit.shape[1]

    efb, elabels, _ = fleet_features(eval_fleet)
    ev = efb.valid
    xe = std(efb.x[ev])
    le = elabels[ev]

    results: dict[str, dict[str, Any]] = {}
    fitted: dict[str, _Fitted] = {}
    for fam in families:
        tf = time.perf_counter()
        est = _fit(fam, std(x_fit), seed, n_estimators)
        onnx_bytes, out_name, kind = _export(fam, est, n_inputs)
        sk = _sk_scores(fam, est, xe)
        ox = onnx_scores(onnx_bytes, out_name, kind, xe)
        diff = float(np.max(np.abs(sk - ox))) if len(sk) else 0.0
        if not diff <= ONNX_TOLERANCE:
            raise ModelError(f"{fam}: onnxruntime scores differ from scikit-learn by {diff:.3g}")
        cal = onnx_scores(onnx_bytes, out_name, kind, std(fb.x[cal_rows]))
        threshold = float(np.quantile(cal, 1.0 - target_fpr))
        metrics = evaluate(ox, le, budget)
        metrics["onnx_vs_sklearn_max_abs_diff"] = diff
        metrics["threshold"] = threshold
        metrics["eval_fpr_at_threshold"] = round(float((ox[le == 0] > threshold).mean()), 4)
        metrics["eval_recall_at_threshold"] = round(float((ox[le != 0] > threshold).mean()), 4)
        metrics["fit_seconds"] = round(time.perf_counter() - tf, 2)
        metrics["onnx_bytes"] = len(onnx_bytes)
        results[fam] = metrics
        fitted[fam] = _Fitted(fam, est, onnx_bytes, out_name, kind)
        _log.info("%s: auc_min %.3f auc_mean %.3f p@k %.3f", fam, metrics["auc_min"],
                  metrics["auc_mean"], metrics["precision_at_k"])

    best = max(families, key=lambda f: (results[f]["auc_min"], results[f]["auc_mean"]))
    chosen = fitted[best]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MODEL_FILE).write_bytes(chosen.onnx_bytes)
    sha = hashlib.sha256(chosen.onnx_bytes).hexdigest()
    created = created or dt.datetime.now(dt.timezone.utc)
    normal_x = fb.x[fit_rows]
    card = ModelCard(
        model_version=model_version or f"{best}-s{seed}-{sha[:8]}",
        feature_spec_version=FEATURE_SPEC_VERSION,
        feature_names=FEATURE_NAMES,
        model_family=best,
        onnx_file=MODEL_FILE,
        onnx_sha256=sha,
        output_name=chosen.output_name,
        score_kind=chosen.score_kind,
        model_input_names=model_input_names(n_components),
        shape_mean=tuple(float(v) for v in shape_mean32),
        shape_components=tuple(tuple(float(v) for v in row) for row in components),
        scaler_mean=tuple(float(v) for v in mean),
        scaler_scale=tuple(float(v) for v in scale),
        reference_median=tuple(float(v) for v in np.median(normal_x, axis=0)),
        threshold=results[best]["threshold"],
        target_fpr=target_fpr,
        training_data={
            "train_fleet": train_fleet.describe(),
            "eval_fleet": eval_fleet.describe(),
            "fit_windows": int(fit_rows.sum()),
            "calibration_windows": int(cal_rows.sum()),
            "fit_on": "normal windows with >= 7 days of history of 80% of the training meters",
            "threshold_from": f"{1 - target_fpr:.3f} quantile of calibration scores",
            "seed": seed,
        },
        metrics=results,
        selected_by="highest minimum AUC over anomaly kinds, then mean AUC",
        created=created.isoformat(timespec="seconds"),
        packages=_package_versions(),
    )
    card.write(out / CARD_FILE)
    return TrainResult(out, card, time.perf_counter() - t0)
