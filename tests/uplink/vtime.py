"""A virtual-time event loop: timers fire at once (time jumps ahead) when nothing is ready.

``loop.time()`` starts at 0 and only advances when the loop would otherwise sleep, by exactly
the time to the next timer; real I/O (the spool thread's hand-over) is still awaited for real
when no timer is pending. Pacing and backoff can then be asserted on counts per virtual second.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

from edge_core.uplink import SpoolWorker

T = TypeVar("T")

__all__ = ["CountingWorker", "VirtualTimeLoop", "run_virtual"]


class _Selector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    loop: VirtualTimeLoop

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None:
            return super().select(None)
        # While a thread works for the loop, time runs for real (the thread's hand-over wakes
        # the selector); otherwise nothing can happen before the next timer: jump to it.
        ready = super().select(timeout if self.loop.pending_threads else 0)
        if not ready and timeout > 0:
            self.loop.vtime += timeout
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        selector = _Selector()
        super().__init__(selector)
        selector.loop = self
        self.vtime = 0.0
        self.pending_threads = 0

    def time(self) -> float:
        return self.vtime


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


class CountingWorker(SpoolWorker):
    """A spool worker that tells a :class:`VirtualTimeLoop` while it works for it."""

    async def call(self, fn: Any, *args: Any, priority: int = SpoolWorker.BULK, **kw: Any) -> Any:
        loop = asyncio.get_running_loop()
        counting = isinstance(loop, VirtualTimeLoop)
        if counting:
            loop.pending_threads += 1
        try:
            return await super().call(fn, *args, priority=priority, **kw)
        finally:
            if counting:
                loop.pending_threads -= 1
