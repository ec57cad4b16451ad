"""schemathesis over cloud/openapi.yaml against the running local stack (bounded run).

Every operation gets up to 25 generated requests (positive and negative), sent to the local
stack's HTTP server with the API key, against a database holding a small fleet (golden batches,
alarms, anomalies, health). Checked: no 5xx, status codes and content types documented, bodies
conforming to the response schemas, invalid input refused.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings

from cloud.local import run_local_stack

from .dashboard_data import fleet_messages

KEY = "k-schema"
SPEC = Path(__file__).resolve().parents[2] / "cloud" / "openapi.yaml"

schema = schemathesis.openapi.from_path(SPEC)


class _StackThread:
    """The local stack on an event loop of its own thread (schemathesis calls are blocking)."""

    def __init__(self, broker: Any, data_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="schema-stack")
        self.thread.start()
        self.stack: Any = None
        self.stack = self.run(
            run_local_stack(broker.host, broker.port, data_dir, 0, KEY, compact_every_s=0)
        )
        for topic, payload in fleet_messages(int(time.time())):
            self.run(self.stack.on_message(topic, payload))

    def run(self, coro: Any) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout=60)

    def close(self) -> None:
        try:
            if self.stack is not None:
                self.run(self.stack.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()


@pytest.fixture(scope="module")
def api_url(broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    st = _StackThread(broker, tmp_path_factory.mktemp("schemathesis") / "cloud")
    try:
        yield st.stack.api_url
    finally:
        st.close()


@pytest.mark.broker
@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_openapi(case: Any, api_url: str) -> None:
    case.call_and_validate(
        base_url=api_url,
        headers={"x-api-key": KEY},
        timeout=10,
        # Cross-parameter rules (to after from, at most 31 days; profile likewise) cannot be
        # written in OpenAPI 3.0, so a schema-valid request may rightly get 400.
        excluded_checks=[schemathesis.checks.positive_data_acceptance],
    )
