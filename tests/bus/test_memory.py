"""MemoryBus and LocalHub: recording, injected failures, config, secrets, local pub/sub."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any

import pytest

from edge_core.bus.base import Bus
from edge_core.bus.memory import LocalHub, MemoryBus, topic_matches, validate_filter
from edge_core.errors import (
    BusError,
    BusUnavailableError,
    ConfigError,
    PayloadTooLargeError,
    PublishError,
    SecretError,
)


@pytest.mark.parametrize(
    ("flt", "topic", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/b", "a/c", False),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("#", "a/b", True),
        ("+/+/x", "dt/ami/x", True),
        ("+", "$SYS", False),
        ("#", "$aws/things", False),
        ("$aws/#", "$aws/things", True),
        ("a/b", "a/b/c", False),
        ("a/b/c", "a/b", False),
    ],
)
def test_topic_matches(flt: str, topic: str, expected: bool) -> None:
    assert topic_matches(flt, topic) is expected


@pytest.mark.parametrize("flt", ["", "a/#/b", "a/b#", "a/+b", "a+/b"])
def test_validate_filter_rejects(flt: str) -> None:
    with pytest.raises(BusError):
        validate_filter(flt)


def test_memory_bus_is_a_bus() -> None:
    assert isinstance(MemoryBus(), Bus)


def test_publish_records_and_failures() -> None:
    async def main() -> None:
        bus = MemoryBus()
        with pytest.raises(BusUnavailableError):
            await bus.publish("t/1", b"x")
        await bus.start()
        await bus.publish("t/1", b"a")
        bus.fail_next(2)
        for _ in range(2):
            with pytest.raises(PublishError):
                await bus.publish("t/2", b"b")
        bus.fail_next(1, BusUnavailableError)
        with pytest.raises(BusUnavailableError):
            await bus.publish("t/2", b"b")
        await bus.publish("t/3", b"c", qos=0)
        assert [(p.topic, p.payload, p.qos) for p in bus.published] == [
            ("t/1", b"a", 1),
            ("t/3", b"c", 0),
        ]
        assert bus.attempts == 6
        with pytest.raises(PayloadTooLargeError):
            await bus.publish("t/big", bytes(128 * 1024))
        await bus.publish("t", bytes(128 * 1024 - 1))
        with pytest.raises(PublishError):
            await bus.publish("t", b"", qos=2)
        await bus.close()

    asyncio.run(main())


def test_hold_and_release_order() -> None:
    async def main() -> None:
        bus = MemoryBus()
        await bus.start()
        bus.hold()
        task = asyncio.create_task(bus.publish("t/held", b"1"))
        await asyncio.sleep(0)
        assert bus.published == []
        bus.release()
        await task
        assert bus.topics() == ["t/held"]

    asyncio.run(main())


def test_config_propose_validate_and_callbacks() -> None:
    seen: list[Mapping[str, Any]] = []

    def validator(cfg: Mapping[str, Any]) -> None:
        if cfg.get("interval", 0) <= 0:
            raise ConfigError("must be positive", path="interval")

    def broken(cfg: Mapping[str, Any]) -> None:
        raise KeyError("x")

    bus = MemoryBus(config={"interval": 900})
    bus.on_config_change(seen.append)
    bus.set_config_validator(validator)
    with pytest.raises(ConfigError):
        bus.propose_config({"interval": 0})
    assert bus.get_config() == {"interval": 900}
    assert seen == []
    bus.propose_config({"interval": 60})
    assert bus.get_config() == {"interval": 60}
    assert seen == [{"interval": 60}]
    bus.set_config_validator(broken)
    with pytest.raises(ConfigError):
        bus.propose_config({"interval": 1})


def test_update_gate_state_and_secrets() -> None:
    async def main() -> None:
        bus = MemoryBus(secrets={"hls_key": "00112233", "raw": b"\x01"})
        assert bus.ask_update() == 0.0
        bus.set_update_gate(lambda: 30.0)
        assert bus.ask_update() == 30.0
        await bus.report_state("RUNNING")
        assert bus.state == "RUNNING"
        assert await bus.get_secret("hls_key") == b"00112233"
        assert await bus.get_secret("raw") == b"\x01"
        with pytest.raises(SecretError):
            await bus.get_secret("missing")

    asyncio.run(main())


def test_inject_cloud_messages_sync_and_async_handlers() -> None:
    async def main() -> None:
        bus = MemoryBus()
        got: list[tuple[str, bytes]] = []

        async def async_handler(topic: str, payload: bytes) -> None:
            got.append(("async:" + topic, payload))

        sub = await bus.subscribe("cmd/ami/+/read/req", lambda t, p: got.append((t, p)))
        await bus.subscribe("cmd/#", async_handler)
        assert await bus.inject("cmd/ami/dcu1/read/req", b"{}") == 2
        await sub.close()
        assert await bus.inject("cmd/ami/dcu1/read/req", b"2") == 1
        assert await bus.inject("dt/x", b"") == 0
        assert got == [
            ("cmd/ami/dcu1/read/req", b"{}"),
            ("async:cmd/ami/dcu1/read/req", b"{}"),
            ("async:cmd/ami/dcu1/read/req", b"2"),
        ]

    asyncio.run(main())


def test_local_hub_same_loop_and_other_thread() -> None:
    hub = LocalHub()
    got: list[tuple[str, bytes, int]] = []

    async def main() -> None:
        bus_a = MemoryBus(local_hub=hub)
        bus_b = MemoryBus(local_hub=hub)
        done = asyncio.Event()

        def handler(topic: str, payload: bytes) -> None:
            got.append((topic, payload, threading.get_ident()))
            if len(got) == 2:
                done.set()

        async def failing(topic: str, payload: bytes) -> None:
            raise RuntimeError("a failing handler does not stop the others")

        await bus_b.subscribe_local("local/+/power", handler)
        await bus_b.subscribe_local("local/#", failing)
        await bus_a.publish_local("local/m1/power", b"1")
        other = threading.Thread(target=hub.publish, args=("local/m2/power", b"2"))
        other.start()
        other.join(5)
        await asyncio.wait_for(done.wait(), 5)
        await bus_b.close()
        await bus_a.publish_local("local/m3/power", b"3")
        await asyncio.sleep(0)

    asyncio.run(main())
    assert sorted(t for t, _, _ in got) == ["local/m1/power", "local/m2/power"]
    assert len({ident for _, _, ident in got}) == 1
    assert got[0][2] == threading.get_ident()
