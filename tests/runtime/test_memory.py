"""glibc malloc tuning at runtime start (edge_core/runtime/memory.py)."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
from edge_core.runtime.memory import tune_malloc
print(json.dumps(tune_malloc()))
"""


def _probe(env: dict[str, str]) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout
    return dict(json.loads(out))


def test_tune_malloc_applies_both_settings_and_respects_the_environment() -> None:
    import ctypes.util
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    applied = _probe(base)
    if ctypes.util.find_library("c") is None or not applied:
        # only glibc has mallopt; elsewhere the function must simply do nothing
        assert applied == {}
        return
    assert applied == {"MALLOC_MMAP_THRESHOLD_": 131072, "MALLOC_ARENA_MAX": 2}
    # what the recipe's environment set is left as the operator chose it
    assert _probe({**base, "MALLOC_ARENA_MAX": "4"}) == {"MALLOC_MMAP_THRESHOLD_": 131072}
