"""Training of the anomaly model: simulated fleets, scikit-learn fitting, ONNX export, model card.

Runs on a workstation or in CI with the ``train`` extra (scikit-learn, skl2onnx); never on a
concentrator. Only :mod:`edge_core.training.card` is imported by the edge (standard library only);
this package imports nothing heavy at import time.
"""

from __future__ import annotations

__all__: list[str] = []
