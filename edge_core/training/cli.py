"""``ami-edge model train``: train the anomaly model and write model.onnx + model-card.json."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    model = subparsers.add_parser("model", help="anomaly model tooling (needs the train extra)")
    sub = model.add_subparsers(dest="model_command", metavar="ACTION")
    train = sub.add_parser("train", help="train on a simulated fleet, export ONNX + model card")
    train.add_argument("--out", required=True, help="output directory (created)")
    train.add_argument("--meters", type=int, default=400, help="meters in the training fleet")
    train.add_argument("--days", type=int, default=120, help="days per meter (> 35)")
    train.add_argument("--seed", type=int, default=7, help="seed (same seed, same model)")
    train.add_argument("--version", default=None, help="model_version for the card")
    train.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from edge_core.errors import ConfigError

    if args.meters < 10 or args.days < 36:
        raise ConfigError("need at least 10 meters and 36 days", path="--meters/--days")
    from edge_core.training.train import train_model

    result = train_model(args.out, meters=args.meters, days=args.days, seed=args.seed,
                         model_version=args.version)
    card = result.card
    summary = {
        "out": str(result.out_dir),
        "model_version": card.model_version,
        "model_family": card.model_family,
        "threshold": card.threshold,
        "metrics": {f: {k: m[k] for k in ("auc_min", "auc_mean", "precision_at_k")}
                    for f, m in card.metrics.items()},
        "seconds": round(result.seconds, 2),
    }
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    return 0
