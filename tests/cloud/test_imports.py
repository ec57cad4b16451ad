"""Import hygiene: heavy or optional dependencies load only when used."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

_CHECK = """
import sys
sys.modules["boto3"] = None  # importing it would raise ImportError
sys.modules["botocore"] = None
import cloud.cli, cloud.api, cloud.ingest, cloud.local, cloud.rules, cloud.template
import cloud.storage.aws, cloud.lambda_handlers, cloud.http, cloud.registry
import edge_core.cli
edge_core.cli.build_parser()
heavy = sorted(m for m in ("pyarrow", "duckdb", "awscrt", "yaml") if m in sys.modules)
print(",".join(heavy))
"""


def test_cloud_imports_without_boto3_and_loads_no_heavy_module() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _CHECK],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    loaded = set(filter(None, out.stdout.strip().split(",")))
    assert not loaded & {"pyarrow", "duckdb"}
