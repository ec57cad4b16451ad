"""Anomaly-detection benchmark: ``python -m bench.anomaly [--meters N] [--days D] [--model DIR]``.

Trains a model (or loads ``--model``), then on a held-out simulated fleet measures, each against
a baseline of the same run:

* batched throughput (features + onnxruntime) vs scikit-learn scoring the same estimator family
  (refit here with the card's seed when training) -- and onnxruntime alone;
* single-window latency (median of repeated one-window calls);
* model load time (target <= 100 ms) and RSS before/after importing onnxruntime and loading;
* AUC per kind and precision at the inspection budget vs a trivial detector: |z| of the daily
  total against the meter's trailing 14 days.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _zscore_baseline(fleet: Any) -> np.ndarray:
    tot = fleet.energy.sum(axis=2).astype(np.float64)  # (M, D)
    m, d = tot.shape
    out = np.zeros((m, d))
    for k in range(d):
        lo = max(0, k - 14)
        hist = tot[:, lo:k]
        if hist.shape[1] < 2:
            continue
        mu, sd = hist.mean(axis=1), hist.std(axis=1) + 1e-6
        out[:, k] = np.abs(tot[:, k] - mu) / sd
    return out.reshape(-1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.anomaly")
    ap.add_argument("--meters", type=int, default=300)
    ap.add_argument("--days", type=int, default=100)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--model", default=None, help="load this model directory instead of training")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    rss_start = _rss_mb()
    from edge_core.analytics.features import baselines_from_matrix, build_features, daily_stats
    from edge_core.training.fleet import simulate_fleet
    from edge_core.training.train import evaluate, fleet_features, train_model

    result: dict[str, Any] = {"bench": "anomaly", "meters": args.meters, "days": args.days}
    tmp = None
    if args.model:
        model_dir = Path(args.model)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="ami-anomaly-")
        model_dir = Path(tmp.name)
        t0 = time.perf_counter()
        train_model(model_dir, meters=args.meters, days=args.days, seed=args.seed)
        result["train_seconds"] = round(time.perf_counter() - t0, 2)

    rss_before_ort = _rss_mb()
    import onnxruntime  # noqa: F401 - imported to measure its resident memory

    rss_ort = _rss_mb()
    from edge_core.analytics.inference import AnomalyModel, ModelInputs

    loads = []
    for _ in range(max(1, args.repeat)):
        t0 = time.perf_counter()
        model = AnomalyModel.load(model_dir)
        loads.append(time.perf_counter() - t0)
    rss_model = _rss_mb()
    card = model.card

    fleet = simulate_fleet(args.meters, args.days, args.seed + 101)
    e = fleet.energy.reshape(-1, 96)
    x = fleet.export.reshape(-1, 96)
    n = len(e)

    def full_path() -> np.ndarray:
        st = daily_stats(e, x)
        fb = build_features(e, x, baselines_from_matrix(st, fleet.n_meters, fleet.n_days))
        return model.score(fb)

    best_full = min(_timed(full_path) for _ in range(args.repeat))
    fb, labels, _ = fleet_features(fleet)
    ok = fb.valid
    z = ModelInputs.from_card(card).apply(fb.x[ok])
    best_ort = min(_timed(lambda: model.score_inputs(z)) for _ in range(args.repeat))

    # scikit-learn baseline: the same family refit on the same standardised inputs
    from edge_core.training import train as tr

    sk_est = tr._fit(card.model_family, z[labels[ok] == 0], args.seed, 100)
    best_sk = min(_timed(lambda: tr._sk_scores(card.model_family, sk_est, z))
                  for _ in range(args.repeat))

    one = fb.x[ok][:1]
    lat = []
    for _ in range(200):
        t0 = time.perf_counter()
        model.score(one)
        lat.append(time.perf_counter() - t0)

    scores = model.score(fb)
    metrics = evaluate(scores[ok], labels[ok], 0.02)
    base_scores = _zscore_baseline(fleet)[ok]
    base_metrics = evaluate(base_scores, labels[ok], 0.02)

    wps_full = n / best_full
    wps_ort = len(z) / best_ort
    wps_sk = len(z) / best_sk
    result.update({
        "model_family": card.model_family,
        "model_version": card.model_version,
        "windows": n,
        "scored_windows": int(ok.sum()),
        "windows_per_s_batched": round(wps_full),
        "windows_per_s_onnx_only": round(wps_ort),
        "windows_per_s_sklearn_baseline": round(wps_sk),
        "ratio_batched_vs_sklearn": round(wps_full / wps_sk, 2),
        "target_windows_per_s": 50_000,
        "meets_throughput_target": wps_full >= 50_000,
        "single_window_latency_ms_p50": round(float(np.median(lat)) * 1e3, 3),
        "single_window_latency_ms_p99": round(float(np.quantile(lat, 0.99)) * 1e3, 3),
        "model_load_ms_first": round(loads[0] * 1e3, 1),
        "model_load_ms_best": round(min(loads) * 1e3, 1),
        "target_load_ms": 100,
        "meets_load_target": loads[0] * 1e3 <= 100,
        "rss_mb_start": round(rss_start, 1),
        "rss_mb_before_onnxruntime": round(rss_before_ort, 1),
        "rss_mb_onnxruntime_imported": round(rss_ort, 1),
        "rss_mb_model_loaded": round(rss_model, 1),
        "model": metrics,
        "baseline_daily_total_zscore": base_metrics,
        "auc_min_ratio_vs_baseline": round(
            metrics["auc_min"] / max(base_metrics["auc_min"], 1e-9), 2),
        "precision_at_k_ratio_vs_baseline": round(
            metrics["precision_at_k"] / max(base_metrics["precision_at_k"], 1e-9), 2),
        "meets_auc_target": metrics["auc_min"] >= 0.9,
        "card_metrics": {f: {k: m[k] for k in ("auc_min", "auc_mean", "precision_at_k")}
                         for f, m in card.metrics.items()},
    })
    print(json.dumps(result))
    if tmp is not None:
        tmp.cleanup()
    return 0


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    raise SystemExit(main())
