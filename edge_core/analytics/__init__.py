"""Local anomaly detection: deterministic detectors, features and the learned ONNX detector.

Only numpy and onnxruntime (the ``edge-ml`` extra) are needed; onnxruntime is imported lazily
when a model is loaded. The alarm path never imports this package.
"""

from __future__ import annotations

__all__: list[str] = []
