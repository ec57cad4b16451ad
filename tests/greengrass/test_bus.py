"""GreengrassBus against the nucleus stand-in, in process, over the real awsiotsdk client."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest
from awsiot.greengrasscoreipc import model

from edge_core.bus.base import Bus
from edge_core.bus.greengrass import GreengrassBus
from edge_core.errors import (
    BusUnavailableError,
    ConfigError,
    PayloadTooLargeError,
    PublishError,
    SecretError,
)
from tests.greengrass.nucleus import NucleusStandIn


async def eventually(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not pred():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


def run_with_bus(
    nucleus: NucleusStandIn,
    body: Callable[[GreengrassBus], Awaitable[None]],
    setup: Callable[[GreengrassBus], None] | None = None,
    **kw: Any,
) -> None:
    async def main() -> None:
        bus = GreengrassBus(socket_path=nucleus.socket_path, auth_token=nucleus.svcuid, **kw)
        if setup is not None:
            setup(bus)
        await bus.start()
        try:
            await body(bus)
        finally:
            await bus.close()

    asyncio.run(main())


def test_bus_satisfies_protocol() -> None:
    assert isinstance(GreengrassBus(socket_path="x", auth_token="y"), Bus)


def test_publish_qos1_reaches_nucleus(nucleus: NucleusStandIn) -> None:
    async def body(bus: GreengrassBus) -> None:
        await bus.publish("dt/ami/dcu-1/interval", b"\x00\x01batch", qos=1)
        await bus.publish("dt/ami/dcu-1/health", b"{}", qos=0)

    run_with_bus(nucleus, body)
    assert nucleus.published == [
        ("dt/ami/dcu-1/interval", b"\x00\x01batch", "1"),
        ("dt/ami/dcu-1/health", b"{}", "0"),
    ]


def test_unauthorized_publish_maps_to_publish_error(nucleus: NucleusStandIn) -> None:
    nucleus.policy = {
        "aws.greengrass.ipc.mqttproxy": {
            "p1": {
                "operations": ["aws.greengrass#PublishToIoTCore"],
                "resources": ["dt/ami/dcu-1/*"],
            }
        }
    }

    async def body(bus: GreengrassBus) -> None:
        await bus.publish("dt/ami/dcu-1/daily", b"ok")
        with pytest.raises(PublishError, match="not authorized") as info:
            await bus.publish("dt/ami/other-dcu/daily", b"no")
        assert isinstance(info.value.__cause__, model.UnauthorizedError)
        assert info.value.topic == "dt/ami/other-dcu/daily"

    run_with_bus(nucleus, body)
    assert [t for t, _, _ in nucleus.published] == ["dt/ami/dcu-1/daily"]


def test_too_large_payload_checked_before_sending(nucleus: NucleusStandIn) -> None:
    async def body(bus: GreengrassBus) -> None:
        with pytest.raises(PayloadTooLargeError):
            await bus.publish("dt/ami/dcu-1/interval", b"x" * 131072)
        await bus.publish("t", b"x" * (131072 - 1))

    run_with_bus(nucleus, body)
    assert len(nucleus.ops("PublishToIoTCore")) == 1


def test_too_large_payload_refused_by_nucleus(nucleus: NucleusStandIn) -> None:
    async def body(bus: GreengrassBus) -> None:
        with pytest.raises(PayloadTooLargeError) as info:
            await bus.publish("dt/ami/dcu-1/interval", b"x" * 131073)
        assert isinstance(info.value.__cause__, model.InvalidArgumentsError)

    run_with_bus(nucleus, body, max_message_size=None)
    assert nucleus.published == []
    assert len(nucleus.ops("PublishToIoTCore")) == 1


def test_offline_refuses_qos0_but_queues_qos1(nucleus: NucleusStandIn) -> None:
    nucleus.offline = True

    async def body(bus: GreengrassBus) -> None:
        with pytest.raises(PublishError, match="offline") as info:
            await bus.publish("dt/ami/dcu-1/health", b"{}", qos=0)
        assert isinstance(info.value.__cause__, model.ServiceError)
        await bus.publish("alarm/ami/dcu-1/power", b"{}", qos=1)
        nucleus.spooler_full = True
        with pytest.raises(PublishError, match="full"):
            await bus.publish("dt/ami/dcu-1/interval", b"batch", qos=1)

    run_with_bus(nucleus, body)
    assert [t for t, _, _ in nucleus.published] == ["alarm/ami/dcu-1/power"]


def test_cloud_subscription_delivers_on_the_loop(nucleus: NucleusStandIn) -> None:
    got: list[tuple[str, bytes]] = []

    async def body(bus: GreengrassBus) -> None:
        loop = asyncio.get_running_loop()
        threads: list[bool] = []

        async def handler(topic: str, payload: bytes) -> None:
            threads.append(asyncio.get_running_loop() is loop)
            got.append((topic, payload))

        sub = await bus.subscribe("cmd/ami/dcu-1/read/req", handler)
        assert (
            await asyncio.to_thread(nucleus.push_iot_message, "cmd/ami/dcu-1/read/req", b'{"id":1}')
            == 1
        )
        await eventually(lambda: len(got) == 1)
        assert threads == [True]
        await sub.close()
        await eventually(lambda: nucleus.subscribers("SubscribeToIoTCore") == 0)

    run_with_bus(nucleus, body)
    assert got == [("cmd/ami/dcu-1/read/req", b'{"id":1}')]
    assert nucleus.ops("SubscribeToIoTCore") == [
        {"topicName": "cmd/ami/dcu-1/read/req", "qos": "1"}
    ]


def test_local_publish_subscribe_roundtrip(nucleus: NucleusStandIn) -> None:
    got: list[tuple[str, bytes]] = []

    async def body(bus: GreengrassBus) -> None:
        await bus.subscribe_local("ami/local/readings", lambda t, p: got.append((t, p)))
        await bus.publish_local("ami/local/readings", b"\x01\x02")
        await eventually(lambda: len(got) == 1)

    run_with_bus(nucleus, body)
    assert got == [("ami/local/readings", b"\x01\x02")]


def _validator(config: Mapping[str, Any]) -> None:
    value = config.get("uplink", {}).get("maxBatchBytes", "0")
    if not str(value).isdigit() or int(value) > 131072:
        raise ConfigError("must be an integer <= 131072", path="uplink.maxBatchBytes")


def test_configuration_change_reaches_callbacks(nucleus: NucleusStandIn) -> None:
    seen: list[Mapping[str, Any]] = []

    async def body(bus: GreengrassBus) -> None:
        assert bus.get_config()["uplink"] == {"maxBatchBytes": "120000"}
        bus.on_config_change(seen.append)
        new = {"thing": "dcu-1", "uplink": {"maxBatchBytes": "64000"}}
        await asyncio.to_thread(nucleus.update_configuration, new)
        await eventually(lambda: len(seen) == 1)
        assert bus.get_config()["uplink"]["maxBatchBytes"] == "64000"

    run_with_bus(nucleus, body, setup=lambda b: b.set_config_validator(_validator))
    assert seen[0]["uplink"]["maxBatchBytes"] == "64000"


def test_validation_accepts_and_rejects_with_message(nucleus: NucleusStandIn) -> None:
    async def body(bus: GreengrassBus) -> None:
        good = {"uplink": {"maxBatchBytes": "100000"}}
        bad = {"uplink": {"maxBatchBytes": "999999"}}
        ok = await asyncio.to_thread(nucleus.request_validation, good)
        no = await asyncio.to_thread(nucleus.request_validation, bad)
        assert ok["status"] == "ACCEPTED"
        assert no["status"] == "REJECTED"
        assert "uplink.maxBatchBytes" in no["message"]

    run_with_bus(nucleus, body, setup=lambda b: b.set_config_validator(_validator))


def test_validator_installed_after_start_subscribes(nucleus: NucleusStandIn) -> None:
    async def body(bus: GreengrassBus) -> None:
        bus.set_config_validator(_validator)
        await eventually(
            lambda: nucleus.subscribers("SubscribeToValidateConfigurationUpdates") == 1
        )
        report = await asyncio.to_thread(
            nucleus.request_validation, {"uplink": {"maxBatchBytes": "x"}}
        )
        assert report["status"] == "REJECTED"

    run_with_bus(nucleus, body)


def test_update_gate_defers_then_acknowledges(nucleus: NucleusStandIn) -> None:
    busy = [True]

    async def body(bus: GreengrassBus) -> None:
        first = await asyncio.to_thread(nucleus.pre_update)
        busy[0] = False
        second = await asyncio.to_thread(nucleus.pre_update)
        assert first["recheckAfterMs"] == 30000
        assert second["recheckAfterMs"] == 0

    run_with_bus(nucleus, body, setup=lambda b: b.set_update_gate(lambda: 30.0 if busy[0] else 0))


def test_report_state(nucleus: NucleusStandIn) -> None:
    async def body(bus: GreengrassBus) -> None:
        await bus.report_state("RUNNING")

    run_with_bus(nucleus, body)
    assert nucleus.states == ["RUNNING"]


def test_secrets_binary_string_missing_and_never_logged(
    nucleus: NucleusStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def body(bus: GreengrassBus) -> None:
        assert await bus.get_secret("arn:dlms-key") == b"\x01" * 16
        assert await bus.get_secret("arn:text") == b"s3cr3t"
        with pytest.raises(SecretError, match="arn:missing"):
            await bus.get_secret("arn:missing")
        nucleus.policy = {
            "aws.greengrass.SecretManager": {
                "s": {
                    "operations": ["aws.greengrass#GetSecretValue"],
                    "resources": ["arn:dlms-key"],
                }
            }
        }
        with pytest.raises(SecretError, match="not authorized"):
            await bus.get_secret("arn:text")

    run_with_bus(nucleus, body)
    assert "s3cr3t" not in caplog.text


def test_reconnects_and_reestablishes_subscriptions(nucleus: NucleusStandIn) -> None:
    got: list[bytes] = []

    async def body(bus: GreengrassBus) -> None:
        await bus.subscribe("cmd/ami/dcu-1/read/req", lambda t, p: got.append(p))
        await asyncio.to_thread(nucleus.disconnect_all)
        await eventually(
            lambda: (
                nucleus.connections_accepted == 2
                and nucleus.subscribers("SubscribeToIoTCore") == 1
                and bus.connected
            )
        )
        assert await asyncio.to_thread(nucleus.push_iot_message, "cmd/ami/dcu-1/read/req", b"r")
        await eventually(lambda: got == [b"r"])
        await bus.publish("dt/ami/dcu-1/health", b"{}")

    run_with_bus(nucleus, body)
    assert nucleus.published[-1][0] == "dt/ami/dcu-1/health"
    assert len(nucleus.ops("SubscribeToConfigurationUpdate")) == 2


def test_bad_token_and_missing_socket_are_unavailable(nucleus: NucleusStandIn) -> None:
    async def main() -> None:
        with pytest.raises(BusUnavailableError):
            await GreengrassBus(
                socket_path=nucleus.socket_path, auth_token="wrong", timeout=3
            ).start()
        with pytest.raises(BusUnavailableError):
            await GreengrassBus(socket_path=nucleus.socket_path + ".absent", auth_token="x").start()

    asyncio.run(main())


def test_from_environment_requires_greengrass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SVCUID", raising=False)
    with pytest.raises(ConfigError, match="SVCUID"):
        GreengrassBus.from_environment()
