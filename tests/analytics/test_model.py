from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil

import jsonschema
import numpy as np
import pytest

from edge_core.analytics.detectors import Finding
from edge_core.analytics.events import AnomalyEvent, event_from_finding, schema_path, score_windows
from edge_core.analytics.features import DayWindow, StatsHistory
from edge_core.analytics.inference import AnomalyModel, ModelManager
from edge_core.errors import ConfigError, ModelError
from edge_core.training.card import CARD_FILE, MODEL_FILE, ModelCard
from edge_core.training.fleet import KINDS, simulate_fleet
from edge_core.training.train import auc, fleet_features, train_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    result = train_model(out, meters=80, days=56, seed=3,
                         families=("isolation_forest", "one_class_svm"))
    return out, result


def test_training_writes_a_valid_card_and_onnx_matches_sklearn(trained):
    out, result = trained
    card = ModelCard.read(out / CARD_FILE)
    assert card == result.card
    assert set(card.metrics) == {"isolation_forest", "one_class_svm"}
    assert card.model_family in card.metrics
    for m in card.metrics.values():
        assert m["onnx_vs_sklearn_max_abs_diff"] <= 1e-4
    assert card.training_data["seed"] == 3
    assert card.packages["scikit-learn"] != "absent"
    assert (out / MODEL_FILE).stat().st_size > 0


def test_model_ranks_injected_anomalies_above_normal(trained):
    out, _ = trained
    model = AnomalyModel.load(out)
    fleet = simulate_fleet(80, 56, seed=11)
    fb, labels, _ = fleet_features(fleet)
    scores = model.score(fb)
    ok = fb.valid
    assert np.isnan(scores[~ok]).all()
    assert np.isfinite(scores[ok]).all()
    s, lab = scores[ok], labels[ok]
    assert (lab != 0).sum() > 20
    assert auc(s[lab != 0], s[lab == 0]) > 0.75


def test_training_is_reproducible(tmp_path):
    a = train_model(tmp_path / "a", meters=30, days=45, seed=5, families=("one_class_svm",))
    b = train_model(tmp_path / "b", meters=30, days=45, seed=5, families=("one_class_svm",))
    assert a.card.threshold == b.card.threshold
    assert a.card.scaler_mean == b.card.scaler_mean
    def drop_time(m):
        return {f: {k: v for k, v in d.items() if k != "fit_seconds"} for f, d in m.items()}

    assert drop_time(a.card.metrics) == drop_time(b.card.metrics)
    fb, _, _ = fleet_features(simulate_fleet(10, 45, seed=9))
    sa = AnomalyModel.load(tmp_path / "a").score(fb)
    sb = AnomalyModel.load(tmp_path / "b").score(fb)
    np.testing.assert_array_equal(sa, sb)


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_manager_keeps_old_model_on_wrong_spec_and_corruption(trained, tmp_path):
    out, _ = trained
    manager = ModelManager.from_config({"modelDir": str(out)})
    first = manager.require()

    wrong = _copy(out, tmp_path / "wrong")
    card = json.loads((wrong / CARD_FILE).read_text())
    card["feature_spec_version"] += 1
    (wrong / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelError, match="feature spec"):
        manager.update(wrong)
    assert manager.model is first

    corrupt = _copy(out, tmp_path / "corrupt")
    blob = bytearray((corrupt / MODEL_FILE).read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (corrupt / MODEL_FILE).write_bytes(bytes(blob))
    with pytest.raises(ModelError, match="digest"):
        manager.update(corrupt)
    assert manager.model is first

    garbage = _copy(out, tmp_path / "garbage")  # digest matches but bytes are not ONNX
    (garbage / MODEL_FILE).write_bytes(b"not a model")
    card = json.loads((garbage / CARD_FILE).read_text())
    card["onnx_sha256"] = hashlib.sha256(b"not a model").hexdigest()
    (garbage / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelError, match="onnxruntime"):
        manager.update(garbage)
    assert manager.model is first
    assert len(manager.rejected) == 3

    newer = _copy(out, tmp_path / "newer")
    swapped = manager.update(newer)
    assert manager.model is swapped
    assert swapped is not first


def test_manager_config_errors(tmp_path):
    with pytest.raises(ConfigError):
        ModelManager.from_config({})
    with pytest.raises(ModelError):
        ModelManager.from_config({"modelDir": str(tmp_path / "absent")})
    with pytest.raises(ModelError, match="no anomaly model"):
        ModelManager().require()


def _windows(fleet, m, days, meter="M7"):
    out = []
    for d in days:
        day = fleet.start + dt.timedelta(days=int(d))
        out.append(DayWindow(meter, day.isoformat(), 1_700_000_000 + int(d) * 86400,
                             fleet.energy[m, d].copy(), fleet.export[m, d].copy(),
                             np.zeros(96, np.uint8)))
    return out


def test_events_validate_against_schema(trained):
    out, _ = trained
    model = AnomalyModel.load(out)
    schema = json.loads(schema_path().read_text())
    validator = jsonschema.Draft202012Validator(schema)
    fleet = simulate_fleet(3, 40, seed=4, anomaly_rate=0.0)
    hist = StatsHistory()
    first = score_windows(model, _windows(fleet, 0, range(30)), hist)
    assert first.skipped[0][2] == "no_history"
    day = _windows(fleet, 0, [30])[0]
    zeroed = DayWindow(day.meter, day.day, day.start, day.energy * 0.0, day.export, day.status)
    report = score_windows(model, [zeroed], hist)
    assert report.skipped == ()
    assert len(report.events) == 1
    ev = report.events[0]
    doc = json.loads(ev.to_json())
    validator.validate(doc)
    assert doc["score"] > doc["threshold"]
    assert doc["contributions"]
    assert doc["baseline_total_wh"] > 0
    assert AnomalyEvent.from_json(ev.to_json()) == ev
    rule = event_from_finding(Finding("spike", "M7", 10, 910, 5000.0, 3450.0, "too big"), day.day)
    validator.validate(rule.to_dict())
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**doc, "source": "guess"})


def test_kinds_are_labelled_in_simulated_fleet():
    fleet = simulate_fleet(200, 60, seed=1)
    present = {KINDS[k] for k in np.unique(fleet.labels)}
    assert "normal" in present
    assert len(present) >= 6
    assert (fleet.labels[:, :28] == 0).all()
