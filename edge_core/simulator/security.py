"""HLS-GMAC keys of simulated meters (``serve_meters(security=...)``).

Every simulated meter shares the same two suite-0 keys (a test bench, not a key policy) and
has its own system title: ``system_title`` with its last four bytes plus the meter index
(meter 0 has ``system_title`` itself). A meter's invocation counter lives in memory for the
simulator's lifetime and only grows: each association gets the next ``counters_per_association``
counters, so a client sees strictly greater counters from one association to the next, as
from a real meter that persists its counter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from edge_core.dlms.security import (
    MAX_INVOCATION_COUNTER,
    SYSTEM_TITLE_LENGTH,
    CounterRange,
    Secret,
    SecurityContext,
)
from edge_core.errors import ConfigError

__all__ = ["DEFAULT_METER_TITLE", "MeterSecurity"]

DEFAULT_METER_TITLE = bytes.fromhex("414d490000000001")
"""``AMI`` + 00000001: the first simulated meter's system title unless told otherwise."""


@dataclass(slots=True)
class MeterSecurity:
    """Keys and system titles of the simulated meters (see the module docstring)."""

    encryption_key: Secret
    authentication_key: Secret
    system_title: bytes = DEFAULT_METER_TITLE
    counters_per_association: int = 1 << 16
    _next: dict[int, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if len(self.system_title) != SYSTEM_TITLE_LENGTH:
            raise ConfigError("meter system title must be 8 bytes", path="system_title")

    def title_for(self, index: int) -> bytes:
        """Meter ``index``'s system title."""
        low = (int.from_bytes(self.system_title[4:], "big") + index) & 0xFFFF_FFFF
        return self.system_title[:4] + low.to_bytes(4, "big")

    def context_factory(self, index: int) -> Callable[[], SecurityContext]:
        """The ``security`` factory of meter ``index``'s ServerConnection."""

        def new_context() -> SecurityContext:
            start = self._next.get(index, 0)
            stop = min(start + self.counters_per_association, MAX_INVOCATION_COUNTER + 1)
            self._next[index] = stop
            ctx = SecurityContext(
                self.title_for(index), self.encryption_key, self.authentication_key
            )
            ctx.grant(CounterRange(start, stop))
            return ctx

        return new_context
