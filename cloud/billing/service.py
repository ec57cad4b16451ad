"""Billing determinants behind the REST API: one object the API asks, per deployment.

Locally the lake is the object store's directory (``<root>/lake/intervals/...``): the service
first compacts whatever intervals are not in the lake yet, then answers from DuckDB. In AWS the
same SQL runs on Athena over the Glue table; that path is not wired to the API here (see
docs/billing.md).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from cloud.billing.determinants import Determinants
from cloud.billing.sql import LakeSource, determinants_for
from cloud.billing.tou import BillingCycle, Tariff

__all__ = ["DEFAULT_TARIFF", "LocalBilling"]

# A plain two-period tariff: peak on weekdays 07:00-23:00 local, off-peak otherwise.
DEFAULT_TARIFF = {
    "name": "two-rate",
    "timezone": "UTC",
    "default": "offpeak",
    "periods": [{"name": "peak", "days": "weekday", "from": "07:00", "to": "23:00"}],
}


class LocalBilling:
    """Determinants from the local lake. ``before_query`` brings the lake up to date (the
    local stack compacts new intervals into it)."""

    def __init__(
        self,
        objects_root: Path | str,
        tariff: Tariff | None = None,
        *,
        before_query: Callable[[], object] | None = None,
    ) -> None:
        self.root = Path(objects_root)
        self.tariff = tariff or Tariff.from_dict(DEFAULT_TARIFF)
        self._before = before_query
        self._lock = threading.Lock()  # one DuckDB query at a time on a small host

    def determinants(self, meters: Sequence[str] | None, cycle: BillingCycle) -> list[Determinants]:
        with self._lock:
            if self._before is not None:
                self._before()
            if not any((self.root / "lake").rglob("*.parquet")):
                return []
            with LakeSource(self.root) as source:
                return determinants_for(meters, cycle, self.tariff, source)
