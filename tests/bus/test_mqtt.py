"""MqttBus against a real Mosquitto: round trips, acks, limits, outages, config and secrets."""

from __future__ import annotations

import asyncio
import datetime
import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge_core.broker import LocalBroker, free_port
from edge_core.bus.base import Bus
from edge_core.bus.memory import LocalHub
from edge_core.bus.mqtt import MqttBus
from edge_core.bus.settings import MqttSettings
from edge_core.errors import (
    BusError,
    BusUnavailableError,
    ConfigError,
    PayloadTooLargeError,
    PublishError,
    SecretError,
)

pytestmark = pytest.mark.broker


def _settings(url: str, **kw: Any) -> MqttSettings:
    return MqttSettings.from_url(url, start_timeout_s=5.0, publish_timeout_s=5.0, **kw)


class Inbox:
    """Collects messages on the loop; ``wait_for(n)`` returns once n have arrived."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []
        self.threads: set[int] = set()
        self._changed = asyncio.Event()

    def __call__(self, topic: str, payload: bytes) -> None:
        self.items.append((topic, payload))
        self.threads.add(threading.get_ident())
        self._changed.set()

    async def wait_for(self, n: int, timeout: float = 5.0) -> list[tuple[str, bytes]]:
        async def until() -> None:
            while len(self.items) < n:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), timeout)
        return self.items


def test_round_trip_qos1_and_qos0(broker: Any) -> None:
    threads_before = threading.active_count()

    async def main() -> None:
        pub = MqttBus(_settings(broker.url))
        sub = MqttBus(_settings(broker.url))
        assert isinstance(pub, Bus)
        assert pub.client_id != sub.client_id
        await pub.start()
        await sub.start()
        inbox = Inbox()
        await sub.subscribe("dt/ami/+/interval", inbox)
        await pub.publish("dt/ami/dcu1/interval", b"\x00\x01batch", qos=1)
        await pub.publish("dt/ami/dcu2/interval", b"q0", qos=0)
        await pub.publish("dt/ami/dcu2/daily", b"not matched")
        items = await inbox.wait_for(2)
        assert sorted(items) == [
            ("dt/ami/dcu1/interval", b"\x00\x01batch"),
            ("dt/ami/dcu2/interval", b"q0"),
        ]
        assert inbox.threads == {threading.get_ident()}
        await pub.close()
        await sub.close()
        await pub.close()  # idempotent

    asyncio.run(main())
    assert threading.active_count() == threads_before


def test_async_handler_multiple_handlers_and_unsubscribe(broker: Any) -> None:
    async def main() -> None:
        bus = MqttBus(_settings(broker.url))
        await bus.start()
        first, second = Inbox(), Inbox()
        got_async: list[bytes] = []

        async def async_handler(topic: str, payload: bytes) -> None:
            await asyncio.sleep(0)
            got_async.append(payload)

        s1 = await bus.subscribe("cmd/ami/dcu9/read/req", first)
        await bus.subscribe("cmd/ami/dcu9/read/req", second)
        await bus.subscribe("cmd/ami/dcu9/#", async_handler)
        await bus.publish("cmd/ami/dcu9/read/req", b"1")
        await first.wait_for(1)
        await second.wait_for(1)
        await s1.close()
        await bus.publish("cmd/ami/dcu9/read/req", b"2")
        await second.wait_for(2)
        await asyncio.sleep(0.1)
        assert [p for _, p in first.items] == [b"1"]
        assert sorted(got_async) == [b"1", b"2"]
        await bus.close()

    asyncio.run(main())


def test_payload_too_large_is_refused_before_sending(broker: Any) -> None:
    async def main() -> None:
        bus = MqttBus(_settings(broker.url))
        await bus.start()
        topic = "dt/ami/dcu1/interval"
        with pytest.raises(PayloadTooLargeError):
            await bus.publish(topic, bytes(128 * 1024 - len(topic) + 1))
        await bus.publish(topic, bytes(128 * 1024 - len(topic)))  # exactly the limit
        with pytest.raises(PublishError):
            await bus.publish("dt/+/x", b"")
        with pytest.raises(PublishError):
            await bus.publish(topic, b"", qos=2)
        await bus.close()

    asyncio.run(main())


def test_not_started_or_broker_down_at_start() -> None:
    async def main() -> None:
        bus = MqttBus(
            MqttSettings.from_url(
                f"mqtt://127.0.0.1:{free_port()}", start_timeout_s=0.5, connect_timeout_s=0.5
            )
        )
        with pytest.raises(BusUnavailableError):
            await bus.publish("t", b"x")
        with pytest.raises(BusUnavailableError):
            await bus.wait_connected(0.1)
        with pytest.raises(BusUnavailableError):
            await bus.start()
        assert not bus.connected
        with pytest.raises(BusUnavailableError):
            await bus.publish("t", b"x")
        with pytest.raises(BusUnavailableError):
            await bus.subscribe("t", lambda t, p: None)
        await bus.close()

    asyncio.run(main())


def test_start_waits_for_a_broker_that_comes_up_late(tmp_path: Path) -> None:
    late = LocalBroker(workdir=tmp_path)

    async def main() -> None:
        bus = MqttBus(MqttSettings.from_url(late.url, start_timeout_s=15.0))
        starting = asyncio.create_task(bus.start())
        await asyncio.sleep(0.3)
        assert not starting.done()
        await asyncio.to_thread(late.start)
        await asyncio.wait_for(starting, 20)
        assert bus.connected
        await bus.publish("t/late", b"ok")
        await bus.close()

    try:
        asyncio.run(main())
    finally:
        late.close()


def test_broker_restart_reconnects_resubscribes_and_publishes_resume(fresh_broker: Any) -> None:
    b, local = fresh_broker

    async def main() -> None:
        bus = MqttBus(_settings(b.url, reconnect_max_s=2, keep_alive_s=5, ping_timeout_s=1))
        peer = MqttBus(_settings(b.url, reconnect_max_s=2, keep_alive_s=5, ping_timeout_s=1))
        await bus.start()
        await peer.start()
        inbox = Inbox()
        await bus.subscribe("cmd/ami/dcu1/#", inbox)
        await peer.publish("cmd/ami/dcu1/read/req", b"before")
        await inbox.wait_for(1)

        await asyncio.to_thread(local.stop)
        for _ in range(100):
            if not bus.connected:
                break
            await asyncio.sleep(0.05)
        assert not bus.connected
        with pytest.raises((BusUnavailableError, PublishError)):
            await bus.publish("dt/ami/dcu1/interval", b"during")

        await asyncio.to_thread(local.start)
        await bus.wait_connected(20)
        await peer.wait_connected(20)
        assert bus.interruptions >= 1
        assert bus.resumptions >= 1
        # The subscription came back: a command published after the restart arrives.
        for attempt in range(50):
            await peer.publish("cmd/ami/dcu1/read/req", b"after-%d" % attempt)
            try:
                await inbox.wait_for(2, timeout=0.2)
                break
            except asyncio.TimeoutError:
                continue
        assert inbox.items[1][1].startswith(b"after")
        await bus.publish("dt/ami/dcu1/interval", b"resumed")
        await bus.close()
        await peer.close()

    asyncio.run(main())


def test_tls_connection_can_be_built(tmp_path: Path) -> None:
    """Only construction is checked: the mTLS handshake needs AWS IoT Core."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dcu-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    settings = MqttSettings.from_url(
        "mqtts://example-ats.iot.eu-west-1.amazonaws.com",
        cert_path=str(cert_path),
        key_path=str(key_path),
        ca_path=str(cert_path),
        client_id="dcu-test",
    )
    bus = MqttBus(settings)
    assert bus.client_id == "dcu-test"
    conn = bus.build_connection()
    assert conn.port == 8883
    assert conn.client.tls_ctx is not None
    missing = MqttSettings.from_url(
        "mqtts://example-ats.iot.eu-west-1.amazonaws.com",
        cert_path=str(tmp_path / "none.pem"),
        key_path=str(key_path),
    )
    with pytest.raises(BusError):
        MqttBus(missing).build_connection()


def test_config_file_reload_and_validator(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("thing: dcu1\ninterval_s: 900\n")
    bus = MqttBus(MqttSettings.from_url("mqtt://127.0.0.1:1", config_path=str(cfg)))
    assert bus.get_config() == {"thing": "dcu1", "interval_s": 900}
    seen: list[Mapping[str, Any]] = []
    bus.on_config_change(seen.append)

    def validator(c: Mapping[str, Any]) -> None:
        if c.get("interval_s", 0) <= 0:
            raise ConfigError("must be positive", path="interval_s")

    bus.set_config_validator(validator)
    cfg.write_text("thing: dcu1\ninterval_s: 0\n")
    with pytest.raises(ConfigError):
        bus.reload()
    assert bus.get_config()["interval_s"] == 900
    cfg.write_text("thing: dcu1\ninterval_s: 60\n")
    bus.reload()
    assert seen == [{"thing": "dcu1", "interval_s": 60}]
    bad = tmp_path / "c.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError):
        MqttBus(MqttSettings.from_url("mqtt://127.0.0.1:1", config_path=str(bad)))
    bad.write_text("{not json")
    with pytest.raises(ConfigError):
        MqttBus(MqttSettings.from_url("mqtt://127.0.0.1:1", config_path=str(bad)))
    with pytest.raises(ConfigError):
        MqttBus(MqttSettings.from_url("mqtt://127.0.0.1:1")).reload()


def test_secrets_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"hls-key": "from-file", "other": "o"}))
    bus = MqttBus(MqttSettings.from_url("mqtt://127.0.0.1:1", secrets_path=str(secrets)))

    async def main() -> None:
        assert await bus.get_secret("hls-key") == b"from-file"
        monkeypatch.setenv("AMI_SECRET_HLS_KEY", "from-env")
        assert await bus.get_secret("hls-key") == b"from-env"
        with pytest.raises(SecretError) as err:
            await bus.get_secret("absent")
        assert "from-file" not in str(err.value)
        nofile = MqttBus(MqttSettings.from_url("mqtt://127.0.0.1:1"))
        with pytest.raises(SecretError):
            await nofile.get_secret("other")

    asyncio.run(main())


def test_local_pub_sub_in_process_and_state() -> None:
    hub = LocalHub()
    a = MqttBus(MqttSettings.from_url("mqtt://127.0.0.1:1"), local_hub=hub)
    b = MqttBus(MqttSettings.from_url("mqtt://127.0.0.1:1"), local_hub=hub)

    async def main() -> None:
        inbox = Inbox()
        await b.subscribe_local("ami/local/alarm", inbox)
        await a.publish_local("ami/local/alarm", b"gasp")
        assert await inbox.wait_for(1) == [("ami/local/alarm", b"gasp")]
        await a.report_state("RUNNING")
        assert a.state == "RUNNING"
        a.set_update_gate(lambda: 5.0)
        assert a.ask_update() == 5.0
        await b.close()

    asyncio.run(main())
