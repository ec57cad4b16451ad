"""MqttSettings: URL and mapping parsing, symmetric to_mapping, errors naming the key."""

from __future__ import annotations

import pytest

from edge_core.bus.settings import MqttSettings
from edge_core.config import MqttConfig
from edge_core.errors import ConfigError


@pytest.mark.parametrize(
    ("url", "host", "port", "tls"),
    [
        ("mqtt://127.0.0.1:1999", "127.0.0.1", 1999, False),
        ("mqtt://localhost", "localhost", 1883, False),
        ("tcp://broker.local:2000/", "broker.local", 2000, False),
    ],
)
def test_from_url_plain(url: str, host: str, port: int, tls: bool) -> None:
    s = MqttSettings.from_url(url)
    assert (s.host, s.port, s.tls) == (host, port, tls)


def test_from_url_tls_needs_cert_and_key() -> None:
    with pytest.raises(ConfigError) as err:
        MqttSettings.from_url("mqtts://abc-ats.iot.eu-west-1.amazonaws.com")
    assert err.value.path == "cert_path"
    s = MqttSettings.from_url(
        "mqtts://abc-ats.iot.eu-west-1.amazonaws.com", cert_path="c.pem", key_path="k.pem"
    )
    assert (s.port, s.tls) == (8883, True)
    assert s.url == "mqtts://abc-ats.iot.eu-west-1.amazonaws.com:8883"


@pytest.mark.parametrize(
    "url", ["http://x:1", "mqtt://x:99999", "mqtt://x:1/path", "mqtt://x:1?q=1", "mqtt://:1"]
)
def test_from_url_rejects(url: str) -> None:
    with pytest.raises(ConfigError):
        MqttSettings.from_url(url)


def test_mapping_round_trip_and_string_numbers() -> None:
    s = MqttSettings.from_mapping(
        {"url": "mqtt://h:1234", "publish_timeout_s": "2.5", "keep_alive_s": "20", "tls": "false"}
    )
    assert s.publish_timeout_s == 2.5
    assert s.keep_alive_s == 20
    assert MqttSettings.from_mapping(s.to_mapping()) == s


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"host": "h", "port": 1, "bogus": 1}, "bogus"),
        ({"host": "h"}, "port"),
        ({"host": "h", "port": "x"}, "port"),
        ({"host": "h", "port": 1, "keep_alive_s": 1.5}, "keep_alive_s"),
        ({"host": "h", "port": 1, "tls": "maybe"}, "tls"),
        ({"host": "h", "port": 1, "publish_timeout_s": 0}, "publish_timeout_s"),
        ({"host": "h", "port": 1, "reconnect_min_s": 10, "reconnect_max_s": 5}, "reconnect_min_s"),
        ({"host": "h", "port": 1, "client_id": 5}, "client_id"),
        ({"host": "h", "port": True}, "port"),
    ],
)
def test_mapping_errors_name_the_key(data: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as err:
        MqttSettings.from_mapping(data)
    assert err.value.path == path


def test_from_edge_config() -> None:
    s = MqttSettings.from_config(MqttConfig(url="mqtt://127.0.0.1:2883"), start_timeout_s=1.0)
    assert (s.host, s.port, s.tls, s.client_id, s.start_timeout_s) == (
        "127.0.0.1",
        2883,
        False,
        None,
        1.0,
    )
    tls = MqttSettings.from_config(
        MqttConfig(
            url="mqtts://x.iot.eu-west-1.amazonaws.com",
            client_id="dcu1",
            cert_file="c.pem",
            key_file="k.pem",
            ca_file="ca.pem",
        )
    )
    assert (tls.port, tls.client_id, tls.ca_path) == (8883, "dcu1", "ca.pem")
