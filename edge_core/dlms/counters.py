"""Invocation counters that survive restarts, per (meter, key id).

Theory of operation
-------------------
AES-GCM must never see the same (key, system title, invocation counter) twice, and a meter
refuses a counter it has already seen. The store keeps, for every (meter, key id), one number:
``reserved_until``, the first counter that has certainly never been handed out. Every counter
below it may have been used.

:meth:`CounterStore.reserve` hands out ``reserved_until .. reserved_until + n`` only *after*
the new ``reserved_until + n`` is on disk (write a temporary file, fsync it, rename it over the
old one, fsync the directory). A crash at any point therefore loses at most the unused rest of
a reservation, and never makes a counter available twice: after a restart the next
reservation starts beyond anything that could have been used. The price is a gap of up to
``reserve_ahead`` counters per restart, which the 2**32 range absorbs.

The key itself is never stored: ``key_id`` is a name for the key (for example the secret
reference and its version). A new key gets a new key id and starts at 0. A file that cannot
be read is an error, never a silent restart at 0 (which would reuse counters); the operator
fixes or removes it (see docs/dlms-security.md).

One process owns a store directory (the edge runtime); within it the store is thread-safe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path

from edge_core.dlms.security import (
    MAX_INVOCATION_COUNTER,
    CounterRange,
    InvocationCounterExhaustedError,
    SecurityContext,
)
from edge_core.errors import AmiError, ConfigError

__all__ = ["CounterStore", "CounterStoreError", "ensure_counters"]

logger = logging.getLogger(__name__)

_FORMAT = 1
_LIMIT = MAX_INVOCATION_COUNTER + 1


class CounterStoreError(AmiError):
    """The invocation counter store cannot be read or written. ``path`` names the file."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(f"{message} ({path})" if path else message)
        self.path = path


class CounterStore:
    """Durable invocation counters in ``directory`` (created if missing).

    ``reserve_ahead`` is how many counters one :meth:`reserve` hands out by default: one
    fsync'ed write per that many protected APDUs, and at most that many counters skipped
    per restart.
    """

    def __init__(self, directory: str | Path, *, reserve_ahead: int = 1024) -> None:
        if reserve_ahead < 1:
            raise ConfigError("must be at least 1", path="reserve_ahead")
        self.directory = Path(directory)
        self.reserve_ahead = reserve_ahead
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], int] = {}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CounterStoreError(f"cannot create store: {exc}", path=str(directory)) from exc

    def path_for(self, meter: str, key_id: str) -> Path:
        """The file of (meter, key id): a hash of both, so any meter name is a safe name."""
        digest = hashlib.sha256(f"{meter}\0{key_id}".encode()).hexdigest()[:32]
        return self.directory / f"ic-{digest}.json"

    def reserved_until(self, meter: str, key_id: str) -> int:
        """The first counter never handed out for (meter, key id); 0 for a new pair."""
        with self._lock:
            return self._load(meter, key_id)

    def reserve(self, meter: str, key_id: str, count: int | None = None) -> CounterRange:
        """Durably reserve the next ``count`` counters (default ``reserve_ahead``); fewer at
        the very end of the range. Raises InvocationCounterExhaustedError when none is left
        (the key must be changed), CounterStoreError when the disk fails."""
        n = self.reserve_ahead if count is None else count
        if n < 1:
            raise CounterStoreError(f"cannot reserve {n} counters")
        with self._lock:
            start = self._load(meter, key_id)
            if start >= _LIMIT:
                raise InvocationCounterExhaustedError(
                    f"invocation counters of meter {meter} key {key_id} exhausted: rekey"
                )
            stop = min(start + n, _LIMIT)
            self._store(meter, key_id, stop)
            logger.debug(
                "reserved invocation counters %d..%d for %s/%s", start, stop, meter, key_id
            )
            return CounterRange(start, stop)

    def raise_floor(self, meter: str, key_id: str, at_least: int) -> None:
        """Make sure no counter below ``at_least`` is ever handed out (a meter reported a
        higher counter, or counters were used by another system). Never lowers."""
        if not 0 <= at_least <= _LIMIT:
            raise CounterStoreError(f"counter floor {at_least} out of range")
        with self._lock:
            if self._load(meter, key_id) < at_least:
                self._store(meter, key_id, at_least)

    # -- files

    def _load(self, meter: str, key_id: str) -> int:
        cached = self._cache.get((meter, key_id))
        if cached is not None:
            return cached
        path = self.path_for(meter, key_id)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            value = 0
        except OSError as exc:
            raise CounterStoreError(f"cannot read counter file: {exc}", path=str(path)) from exc
        else:
            value = _parse(raw, meter, key_id, path)
        self._cache[meter, key_id] = value
        return value

    def _store(self, meter: str, key_id: str, value: int) -> None:
        path = self.path_for(meter, key_id)
        doc = {"format": _FORMAT, "meter": meter, "key_id": key_id, "reserved_until": value}
        data = (json.dumps(doc, sort_keys=True) + "\n").encode()
        try:
            _atomic_write(path, data)
        except OSError as exc:
            # The cache keeps the old value: nothing beyond what is on disk is handed out.
            raise CounterStoreError(f"cannot write counter file: {exc}", path=str(path)) from exc
        self._cache[meter, key_id] = value


def _parse(raw: bytes, meter: str, key_id: str, path: Path) -> int:
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise CounterStoreError("counter file is not JSON", path=str(path)) from exc
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise CounterStoreError("counter file has an unknown format", path=str(path))
    if doc.get("meter") != meter or doc.get("key_id") != key_id:
        raise CounterStoreError("counter file belongs to another meter or key", path=str(path))
    value = doc.get("reserved_until")
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _LIMIT:
        raise CounterStoreError("counter file holds no valid counter", path=str(path))
    return value


def _atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` so that a crash leaves either the old or the new file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def ensure_counters(
    context: SecurityContext, store: CounterStore, meter: str, key_id: str, *, minimum: int = 1
) -> None:
    """Grant ``context`` a fresh durable reservation when fewer than ``minimum`` counters are
    left. Call it before every ``protect`` / ``hls_response`` (it costs a dict lookup unless
    a reservation is due)."""
    if context.counters_left < minimum:
        context.grant(store.reserve(meter, key_id, max(minimum, store.reserve_ahead)))
