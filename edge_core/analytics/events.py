"""Anomaly events: the small JSON published on ``dt/ami/{thing}/anomaly``.

One event per anomalous window (model) or per finding (rules). The JSON Schema is
``anomaly_event.schema.json`` beside this module (:func:`schema_path`). Events are built by
:func:`score_windows`, which runs the whole edge path for a batch of day windows: baselines from
the meter's history, features, model scores, events for scores above the card's threshold, and
the skip reason of every window that could not be scored.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_core.analytics.detectors import Finding
from edge_core.analytics.features import DayWindow, StatsHistory, build_features
from edge_core.analytics.inference import AnomalyModel

__all__ = ["AnomalyEvent", "ScoreReport", "event_from_finding", "schema_path", "score_windows"]

EVENT_VERSION = 1


def schema_path() -> Path:
    return Path(__file__).with_name("anomaly_event.schema.json")


@dataclass(frozen=True, slots=True)
class AnomalyEvent:
    """One anomaly. Energies in Wh; times UTC epoch s."""

    meter: str
    day: str
    window_start: int
    window_end: int
    source: str  # "model" | "rule"
    kind: str
    score: float
    threshold: float
    model_version: str
    reason: str = ""
    contributions: tuple[dict[str, Any], ...] = ()
    daily_total_wh: float | None = None
    baseline_total_wh: float | None = None
    imputed: bool = False

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "v": EVENT_VERSION,
            "meter": self.meter,
            "day": self.day,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "source": self.source,
            "kind": self.kind,
            "score": self.score,
            "threshold": self.threshold,
            "model_version": self.model_version,
        }
        if self.reason:
            d["reason"] = self.reason
        if self.contributions:
            d["contributions"] = [dict(c) for c in self.contributions]
        if self.daily_total_wh is not None:
            d["daily_total_wh"] = self.daily_total_wh
            d["baseline_total_wh"] = self.baseline_total_wh
        if self.imputed:
            d["imputed"] = True
        return d

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AnomalyEvent:
        return cls(
            meter=d["meter"], day=d["day"], window_start=int(d["window_start"]),
            window_end=int(d.get("window_end", d["window_start"])), source=d["source"],
            kind=d["kind"], score=float(d["score"]), threshold=float(d["threshold"]),
            model_version=d["model_version"], reason=d.get("reason", ""),
            contributions=tuple(d.get("contributions", ())),
            daily_total_wh=d.get("daily_total_wh"), baseline_total_wh=d.get("baseline_total_wh"),
            imputed=bool(d.get("imputed", False)),
        )

    @classmethod
    def from_json(cls, data: bytes) -> AnomalyEvent:
        return cls.from_dict(json.loads(data))


def event_from_finding(finding: Finding, day: str) -> AnomalyEvent:
    """A deterministic finding as an event (score = value, model_version = "rules")."""
    return AnomalyEvent(
        meter=finding.meter, day=day, window_start=finding.start, window_end=finding.end,
        source="rule", kind=finding.kind, score=finding.value, threshold=finding.threshold,
        model_version="rules", reason=finding.reason,
    )


@dataclass(frozen=True, slots=True)
class ScoreReport:
    """Outcome for a batch: scores (NaN where skipped), events, and (meter, day, reason) skips."""

    scores: np.ndarray
    events: tuple[AnomalyEvent, ...]
    skipped: tuple[tuple[str, str, str], ...] = field(default=())


def score_windows(
    model: AnomalyModel, windows: Sequence[DayWindow], history: StatsHistory, *,
    record: bool = True, threshold: float | None = None,
) -> ScoreReport:
    """Score day windows against ``history`` and emit events above the model's threshold
    (or ``threshold`` when given: a site override of the card's value).

    With ``record`` the windows are added to the history afterwards (so tomorrow's baseline
    includes today). Windows without enough history are skipped with ``"no_history"``.
    """
    limit = model.threshold if threshold is None else float(threshold)
    if not windows:
        return ScoreReport(np.zeros(0), ())
    base = history.baselines_for(windows)
    fb = build_features(np.stack([w.energy for w in windows]),
                        np.stack([w.export for w in windows]), base)
    scores = model.score(fb)
    events = []
    skipped = []
    for i, w in enumerate(windows):
        reason = fb.reasons[i]
        if reason is not None:
            skipped.append((w.meter, w.day, reason))
            continue
        s = float(scores[i])
        if s > limit:
            bt = float(base.weekday_total[i])
            if math.isnan(bt):
                bt = float(base.total_14d[i])
            events.append(AnomalyEvent(
                meter=w.meter, day=w.day, window_start=w.start,
                window_end=w.start + w.source_intervals * 900, source="model", kind="learned",
                score=s, threshold=limit, model_version=model.version,
                contributions=tuple(model.explain(fb.x[i])),
                daily_total_wh=float(fb.stats.total[i]),
                baseline_total_wh=None if math.isnan(bt) else bt,
                imputed=bool(fb.imputed[i]),
            ))
    if record:
        history.add(windows)
    return ScoreReport(scores, tuple(events), tuple(skipped))
