"""Fixtures: a nucleus stand-in on a Unix socket (short path: sun_path holds 108 bytes)."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_core.build import BuildOptions, BuildResult, build
from tests.greengrass.nucleus import NucleusStandIn


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="gg-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def nucleus(socket_dir: Path) -> Iterator[NucleusStandIn]:
    n = NucleusStandIn(
        str(socket_dir / "ipc.sock"),
        component="com.amiedge.Test",
        configuration={"thing": "dcu-1", "uplink": {"maxBatchBytes": "120000"}},
        secrets={"arn:dlms-key": b"\x01" * 16, "arn:text": "s3cr3t"},
    )
    n.start()
    yield n
    n.stop()


def make_model_dir(path: Path) -> Path:
    """A model folder whose card is valid and whose digest matches (the ONNX bytes are not a
    real model: nothing here runs inference)."""
    path.mkdir(parents=True, exist_ok=True)
    onnx = b"not-a-real-onnx-model-for-packaging-tests"
    (path / "model.onnx").write_bytes(onnx)
    card = {
        "format": "ami-edge-model-card/1",
        "model_version": "test-1",
        "feature_spec_version": 1,
        "feature_names": ["a", "b"],
        "model_family": "isolation_forest",
        "onnx_file": "model.onnx",
        "onnx_sha256": hashlib.sha256(onnx).hexdigest(),
        "output_name": "score",
        "score_kind": "neg_decision",
        "model_input_names": ["x"],
        "shape_mean": [0.0],
        "shape_components": [[1.0]],
        "scaler_mean": [0.0],
        "scaler_scale": [1.0],
        "reference_median": [0.0, 0.0],
        "threshold": 0.5,
        "target_fpr": 0.01,
    }
    (path / "model-card.json").write_text(json.dumps(card), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BuildResult]:
    """One full `ami-edge build` (wheel included) shared by the packaging tests."""
    base = tmp_path_factory.mktemp("ggbuild")
    model = make_model_dir(base / "model")
    out = base / "greengrass-build"
    result = build(
        BuildOptions(
            out=out,
            model_dir=model,
            bucket="my-bucket",
            region="eu-west-1",
            account="123456789012",
            version="1.2.3",
            model_version="1.0.4",
        )
    )
    return out, result


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, tiny trained model (model_version "tiny-v1"), trained once per session; the
    analytics component loads and runs it."""
    from tests.analytics.conftest import session_tiny_model

    return session_tiny_model(tmp_path_factory)
