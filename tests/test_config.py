"""The typed configuration: good input parses, bad input names the offending key."""

from __future__ import annotations

import json

import pytest

from edge_core.config import EdgeConfig, load_config_file
from edge_core.errors import ConfigError

GOOD = {
    "thing_name": "dcu-0001",
    "timezone": "Europe/Amsterdam",
    "meters": [
        {"id": "MTR1", "url": "tcp://127.0.0.1:4061"},
        {"id": "MTR2", "url": "serial:///dev/ttyUSB0", "baud": "9600", "server": 1, "physical": 17},
    ],
    # Greengrass keeps numbers in DefaultConfiguration as strings.
    "schedule": {"profile_read_s": "3600", "set_clock": "true"},
    "spool": {"path": "/tmp/x.db", "quota_mb": 64},
}


def test_good_config_parses_with_types() -> None:
    cfg = EdgeConfig.from_mapping(GOOD)
    assert cfg.thing_name == "dcu-0001"
    assert [m.transport for m in cfg.meters] == ["wrapper", "hdlc"]
    assert cfg.meters[1].bus == "serial:///dev/ttyUSB0"  # serial meters share their port's bus
    assert cfg.schedule.profile_read_s == 3600
    assert cfg.schedule.set_clock is True
    assert cfg.spool.quota_mb == 64
    assert cfg.uplink.max_publish_per_s <= 100  # IoT Core's per-connection limit


@pytest.mark.parametrize(
    ("patch", "path"),
    [
        ({"thing_name": "dcu/1"}, "thing_name"),
        ({"bogus": 1}, "<root>"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"meters": [{"id": "A", "url": "http://x"}]}, "meters[0].url"),
        (
            {"meters": [{"id": "A", "url": "serial:///dev/x", "transport": "wrapper"}]},
            "meters[0].transport",
        ),
        (
            {"meters": [{"id": "A", "url": "tcp://h:1"}, {"id": "A", "url": "tcp://h:2"}]},
            "meters[1].id",
        ),
        ({"meters": [{"id": "A", "url": "tcp://h:1", "client": 300}]}, "meters[0].client"),
        ({"meters": [{"id": "A", "url": "tcp://h:1", "auth": {"level": "low"}}]}, "meters[0].auth"),
        ({"meters": [{"id": "A", "url": "tcp://h:1", "timeout_s": "soon"}]}, "meters[0].timeout_s"),
        ({"schedule": {"set_clock": "maybe"}}, "schedule.set_clock"),
        ({"uplink": {"max_publish_per_s": 500}}, "uplink.max_publish_per_s"),
        ({"mqtt": {"url": "mqtts://x.iot.eu-west-1.amazonaws.com:8883"}}, "mqtt"),
        ({"meters": "not a list"}, "meters"),
    ],
)
def test_bad_config_names_the_key(patch: dict, path: str) -> None:
    with pytest.raises(ConfigError) as info:
        EdgeConfig.from_mapping({**GOOD, **patch})
    assert info.value.path == path


def test_config_file_errors_are_typed(tmp_path) -> None:
    good = tmp_path / "edge.json"
    good.write_text(json.dumps(GOOD))
    assert load_config_file(good).thing_name == "dcu-0001"
    bad = tmp_path / "edge.yaml"
    bad.write_text("thing_name: [unclosed")
    with pytest.raises(ConfigError, match="not valid yaml"):
        load_config_file(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config_file(tmp_path / "missing.json")
