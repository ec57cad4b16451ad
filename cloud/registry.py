"""The meter registry: instrument-transformer ratios by validity period, and channel scaling.

A meter behind current transformers (CT) and voltage transformers (PT/VT) measures secondary
quantities; the primary value is the secondary value times the ratios. Which ratio applies
depends on the quantity, from the OBIS C group (IEC 62056-6-1; C 21-40 / 41-60 / 61-80 are the
per-phase copies of C 1-20):

* energy and power (C 1-10, 15-20: active, reactive, apparent, quadrants): CT x PT
* current (C 11 and its phase copies, neutral 91): CT
* voltage (C 12 and its phase copies, neutral 92): PT
* everything else (power factor, frequency, counters, non-electricity): 1

Ratios are looked up **by capture time**, so a CT change in the middle of a billing cycle scales
each interval with the ratio that was installed when it was captured.

Registry files are JSON (a list, or ``{"meters": [...]}``) or CSV with the header
``meter,dcu,ct_ratio,pt_ratio,valid_from,valid_to,tariff``; times are epoch seconds or ISO 8601
(UTC when no offset is given).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cloud.storage.base import MeterRecord, Registry
from edge_core.errors import ConfigError

__all__ = [
    "RatioLookup",
    "channel_multiplier",
    "load_registry_file",
    "parse_registry",
    "parse_time",
    "unit_name",
]

_UNITS = {
    1: "a",
    2: "mo",
    3: "wk",
    4: "d",
    5: "h",
    6: "min",
    7: "s",
    8: "deg",
    9: "degC",
    27: "W",
    28: "VA",
    29: "var",
    30: "Wh",
    31: "VAh",
    32: "varh",
    33: "A",
    34: "C",
    35: "V",
    44: "Hz",
    56: "%",
    255: "",
}


def unit_name(code: int) -> str:
    """The symbol of a DLMS unit code (``30`` -> ``"Wh"``); unknown codes as ``unit:<n>``."""
    return _UNITS.get(code, f"unit:{code}")


_OBIS_SPLIT = re.compile(r"[^0-9]+")


def channel_multiplier(obis: str, ct: float, pt: float) -> float:
    """The factor turning a secondary value of channel ``obis`` into a primary value."""
    parts = [p for p in _OBIS_SPLIT.split(obis) if p]
    if len(parts) < 3 or parts[0] != "1":
        return 1.0
    c = int(parts[2])
    if c in (91,):
        return ct
    if c in (92,):
        return pt
    if not 1 <= c <= 80:
        return 1.0
    base = (c - 1) % 20 + 1
    if base <= 10 or base >= 15:
        return ct * pt
    if base == 11:
        return ct
    if base == 12:
        return pt
    return 1.0


def parse_time(value: Any, *, path: str = "") -> int:
    """Epoch seconds from an int/float or an ISO 8601 string (naive = UTC)."""
    if isinstance(value, bool):
        raise ConfigError("a time cannot be a boolean", path=path)
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"not an ISO 8601 time: {text!r}", path=path) from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp())


def _record(d: Mapping[str, Any], path: str) -> MeterRecord:
    if not d.get("meter"):
        raise ConfigError("meter id missing", path=path)
    try:
        vt = d.get("valid_to")
        rec = MeterRecord(
            meter=str(d["meter"]),
            dcu=str(d.get("dcu") or ""),
            ct_ratio=float(d.get("ct_ratio") or 1.0),
            pt_ratio=float(d.get("pt_ratio") or 1.0),
            valid_from=parse_time(d.get("valid_from") or 0, path=f"{path}.valid_from"),
            valid_to=None if vt in (None, "") else parse_time(vt, path=f"{path}.valid_to"),
            tariff=str(d.get("tariff") or ""),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc), path=path) from exc
    if rec.ct_ratio <= 0 or rec.pt_ratio <= 0:
        raise ConfigError("ratios must be positive", path=path)
    if rec.valid_to is not None and rec.valid_to <= rec.valid_from:
        raise ConfigError("valid_to must be after valid_from", path=path)
    return rec


def parse_registry(text: str, fmt: str) -> list[MeterRecord]:
    """Parse registry text; ``fmt`` is ``"json"`` or ``"csv"``. Overlapping periods of one
    meter are rejected."""
    if fmt == "json":
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"registry is not JSON: {exc}") from exc
        items = doc.get("meters") if isinstance(doc, dict) else doc
        if not isinstance(items, list):
            raise ConfigError("registry JSON must be a list or {'meters': [...]}")
        records = [_record(d, f"meters[{i}]") for i, d in enumerate(items)]
    elif fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        records = [_record(d, f"line {i + 2}") for i, d in enumerate(reader)]
    else:
        raise ConfigError(f"unknown registry format {fmt!r}")
    by_meter: dict[str, list[MeterRecord]] = {}
    for r in records:
        by_meter.setdefault(r.meter, []).append(r)
    for meter, recs in by_meter.items():
        recs.sort(key=lambda r: r.valid_from)
        for a, b in itertools.pairwise(recs):
            if a.valid_to is None or a.valid_to > b.valid_from:
                raise ConfigError(f"overlapping validity periods for meter {meter}")
    return records


def load_registry_file(path: Path | str) -> list[MeterRecord]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read registry: {exc}", path=str(p)) from exc
    return parse_registry(text, "csv" if p.suffix.lower() == ".csv" else "json")


class RatioLookup:
    """Per-meter ratio lookup by capture time, cached for the life of one batch."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._cache: dict[str, list[MeterRecord]] = {}

    def known(self, meter: str) -> bool:
        return bool(self._records(meter))

    def _records(self, meter: str) -> list[MeterRecord]:
        recs = self._cache.get(meter)
        if recs is None:
            recs = self._cache[meter] = self.registry.records(meter)
        return recs

    def ratios(self, meter: str, t: int) -> tuple[float, float]:
        """(CT, PT) in force at capture time ``t``; (1, 1) outside any period."""
        for r in self._records(meter):
            if r.covers(t):
                return r.ct_ratio, r.pt_ratio
        return 1.0, 1.0

    def periods(self, meter: str) -> Iterable[MeterRecord]:
        return tuple(self._records(meter))
