"""docs/configuration.md cannot drift from the configuration dataclasses.

Every field of EdgeConfig (recursively: meters, auth, schedule, spool, uplink, mqtt, alarms,
powerfail), of the concentrator's GreengrassSettings and of the analytics AnalyticsConfig
(with its meters) must have a row ``| `key` | type | `default` | ...`` in the doc, with the
dataclass default; every row must name a field. The example YAML must parse.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.analytics.app import _KEYS as ANALYTICS_KEYS
from components.analytics.app import AnalyticsConfig
from components.concentrator.app import GreengrassSettings, parse_config
from edge_core.config import EdgeConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
REQUIRED = object()
_ROW = re.compile(r"^\| `([A-Za-z0-9_.\[\]]+)` \| [^|]+ \| ([^|]+) \|", re.M)


def _dataclass_in(tp: Any) -> tuple[type | None, bool]:
    """The dataclass inside an annotation (``X``, ``X | None``, ``tuple[X, ...]``) and whether
    it is a list of them."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return tp, False
    args = typing.get_args(tp)
    for arg in args:
        found, _ = _dataclass_in(arg)
        if found is not None:
            return found, typing.get_origin(tp) in (tuple, list)
    return None, False


def _fields(cls: type, prefix: str = "") -> dict[str, Any]:
    """Flattened key path -> default (REQUIRED when the field has none)."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        nested, is_list = _dataclass_in(hints[f.name])
        key = prefix + f.name
        if nested is not None:
            out.update(_fields(nested, key + ("[]." if is_list else ".")))
            if is_list:
                out[key] = []
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = REQUIRED
        out[key] = list(default) if isinstance(default, tuple) else default
    return out


def _doc_rows(part: str) -> dict[str, Any]:
    text = DOC.read_text(encoding="utf-8")
    split = text.index("## Analytics")
    section = text[:split] if part == "concentrator" else text[split:]
    rows: dict[str, Any] = {}
    for key, raw_cell in _ROW.findall(section):
        cell = raw_cell.strip()
        if cell == "required":
            value: Any = REQUIRED
        else:
            m = re.fullmatch(r"`(.*)`", cell)
            assert m, f"default of {key} is not in backticks: {cell!r}"
            value = yaml.safe_load(m.group(1))
        assert key not in rows, f"{key} documented twice"
        rows[key] = value
    return rows


def _concentrator_fields() -> dict[str, Any]:
    out = _fields(EdgeConfig)
    out.update(_fields(GreengrassSettings, "greengrass."))
    return out


@pytest.mark.parametrize(
    ("part", "expected"),
    [("concentrator", _concentrator_fields), ("analytics", lambda: _fields(AnalyticsConfig))],
)
def test_every_field_is_documented_with_its_default(part: str, expected: Any) -> None:
    fields = expected()
    rows = _doc_rows(part)
    missing = sorted(set(fields) - set(rows))
    assert not missing, f"undocumented {part} keys: {missing}"
    for key, default in fields.items():
        assert rows[key] == default, f"{key}: doc says {rows[key]!r}, code says {default!r}"


@pytest.mark.parametrize("part", ["concentrator", "analytics"])
def test_every_documented_key_exists(part: str) -> None:
    if part == "concentrator":
        known = set(_concentrator_fields())
    else:
        known = set(_fields(AnalyticsConfig)) | set(ANALYTICS_KEYS)
    stale = sorted(set(_doc_rows(part)) - known)
    assert not stale, f"documented {part} keys the code does not have: {stale}"


def test_analytics_keys_accepted_by_the_parser_are_documented() -> None:
    assert set(ANALYTICS_KEYS) <= set(_doc_rows("analytics"))


def test_the_example_parses_and_means_what_it_says() -> None:
    text = DOC.read_text(encoding="utf-8")
    (example,) = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    config, gg = parse_config(yaml.safe_load(example))
    assert config.thing_name == "dcu-0042"
    serial = [m for m in config.meters if m.url.startswith("serial:")]
    assert {m.transport for m in serial} == {"hdlc"}
    assert len({m.bus for m in serial}) == 1  # one bus: read one after the other
    assert next(m for m in config.meters if m.id == "TCP0003").transport == "wrapper"
    assert config.powerfail is not None
    assert gg.defer_updates is False


def test_defaults_of_derived_keys_are_as_documented() -> None:
    """transport and bus depend on the URL scheme; the doc says how."""
    cfg = EdgeConfig.from_mapping(
        {
            "thing_name": "t",
            "meters": [{"id": "a", "url": "tcp://h:1"}, {"id": "b", "url": "serial:///dev/ttyS1"}],
        }
    )
    tcp, serial = cfg.meters
    assert (tcp.transport, tcp.bus) == ("wrapper", "")
    assert (serial.transport, serial.bus) == ("hdlc", "serial:///dev/ttyS1")


def test_rejection_message_quoted_in_utilities_is_the_parsers() -> None:
    from edge_core.errors import ConfigError

    text = (DOC.parent / "utilities.md").read_text(encoding="utf-8")
    quoted = re.search(r"naming the key, for example\n\n```\n(.*?)\n```", text, flags=re.S)
    assert quoted, "utilities.md no longer quotes a rejection"
    meters = [{"id": f"m{i}", "url": "tcp://h:1"} for i in range(3)]
    meters.append({"id": "m3", "url": "http://h:1"})
    with pytest.raises(ConfigError) as caught:
        EdgeConfig.from_mapping({"thing_name": "t", "meters": meters})
    assert str(caught.value) == quoted.group(1)
