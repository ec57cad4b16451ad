"""Each component with a Run step, started as Greengrass would, against the nucleus stand-in.

The subprocess uses the real, unmodified awsiotsdk client over the stand-in's socket: it
connects, reports RUNNING, publishes, takes a configuration change, answers validation requests,
defers then accepts an update, and exits cleanly on SIGTERM.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_core.build import ROOT, render_template
from tests.greengrass.nucleus import NucleusStandIn, substitute

THING = "dcu-test-1"


def recipe(name: str) -> dict[str, Any]:
    values = {
        "COMPONENT_NAME": name,
        "COMPONENT_VERSION": "1.0.0",
        "BUCKET": "b",
        "ARTIFACT_PREFIX": "",
        "REGION": "eu-west-1",
        "ACCOUNT": "123456789012",
        "SECRET_PREFIX": "ami-edge/dlms/",
        "WHEEL": "w.whl",
    }
    text = render_template((ROOT / "recipes" / f"{name}.yaml").read_text(), values)
    return dict(yaml.safe_load(text))


class Component:
    def __init__(
        self, name: str, module: str, workdir: Path, socket_path: str, env: dict[str, str]
    ):
        r = recipe(name)
        conf = r["ComponentConfiguration"]
        policy = substitute(conf["accessControl"], {"iot:thingName": THING})
        self.nucleus = NucleusStandIn(
            socket_path, component=name, configuration=conf["DefaultConfiguration"], policy=policy
        ).start()
        self.log = workdir / "component.log"
        full_env = {**os.environ, **self.nucleus.environment(), **env}
        full_env |= {"AWS_IOT_THING_NAME": THING, "PYTHONPATH": str(ROOT)}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", module],
                cwd=workdir,
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, pred: Callable[[], bool], what: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if self.proc.poll() is not None:
                pytest.fail(
                    f"component exited ({self.proc.returncode}) before {what}:\n{self.text()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}:\n{self.text()}")
            time.sleep(0.02)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.nucleus.stop()


@pytest.fixture
def component_factory(socket_dir: Path, tmp_path: Path) -> Iterator[Callable[..., Component]]:
    started: list[Component] = []

    def start(name: str, module: str, env: dict[str, str] | None = None) -> Component:
        c = Component(name, module, tmp_path, str(socket_dir / "ipc.sock"), env or {})
        started.append(c)
        return c

    yield start
    for c in started:
        c.close()


def configuration_round(
    c: Component,
    change: Callable[[dict[str, Any]], None],
    break_it: Callable[[dict[str, Any]], None],
    bad_key: str,
) -> None:
    n = c.nucleus
    reads = len(n.ops("GetConfiguration"))
    new = copy.deepcopy(n.configuration)
    change(new)
    assert n.request_validation(new)["status"] == "ACCEPTED"
    n.update_configuration(new)
    c.wait(lambda: len(n.ops("GetConfiguration")) > reads, "GetConfiguration after an update")
    bad = copy.deepcopy(new)
    break_it(bad)
    report = n.request_validation(bad)
    assert report["status"] == "REJECTED"
    assert bad_key in report["message"]


def stop(c: Component) -> str:
    c.proc.send_signal(signal.SIGTERM)
    assert c.proc.wait(15) == 0, c.text()
    return c.text()


@pytest.mark.slow
def test_concentrator_lifecycle(
    component_factory: Callable[..., Component], tmp_path: Path
) -> None:
    c = component_factory("com.amiedge.Concentrator", "components.concentrator")
    n = c.nucleus
    c.wait(lambda: "RUNNING" in n.states, "RUNNING")
    health = [p for t, p, q in n.published if t == f"dt/ami/{THING}/health"]
    assert health
    assert json.loads(health[0])["event"] == "started"
    assert (tmp_path / "spool.db").is_file()

    def set_read(cfg: dict[str, Any]) -> None:
        cfg["schedule"]["profile_read_s"] = "600"

    def break_read(cfg: dict[str, Any]) -> None:
        cfg["schedule"]["profile_read_s"] = "0"

    configuration_round(c, set_read, break_read, "schedule.profile_read_s")

    # Hold updates through configuration, see a deferral, release, see the acknowledgement.
    held = copy.deepcopy(n.configuration)
    held["greengrass"]["defer_updates"] = "true"
    held["greengrass"]["update_recheck_s"] = "120"
    n.update_configuration(held)
    c.wait(lambda: n.pre_update()["recheckAfterMs"] == 120_000, "a deferral")
    released = copy.deepcopy(held)
    released["greengrass"]["defer_updates"] = "false"
    n.update_configuration(released)
    c.wait(lambda: n.pre_update()["recheckAfterMs"] == 0, "an acknowledgement")

    text = stop(c)
    assert "spool closed" in text
    assert not (tmp_path / "spool.db-wal").exists()
    assert [t for t, _, _ in n.published].count(f"dt/ami/{THING}/health") == 2
    assert n.states == ["RUNNING"]


@pytest.mark.slow
def test_analytics_lifecycle(
    component_factory: Callable[..., Component], trained_model: Path
) -> None:
    c = component_factory(
        "com.amiedge.Analytics", "components.analytics", {"AMI_MODEL_DIR": str(trained_model)}
    )
    n = c.nucleus
    c.wait(lambda: "RUNNING" in n.states, "RUNNING")
    assert "anomaly model tiny-v1 ready" in c.text()

    def set_batch(cfg: dict[str, Any]) -> None:
        cfg["max_batch_windows"] = "1024"

    def break_batch(cfg: dict[str, Any]) -> None:
        cfg["max_batch_windows"] = "0"

    configuration_round(c, set_batch, break_batch, "max_batch_windows")
    assert n.pre_update()["recheckAfterMs"] == 0
    stop(c)


@pytest.mark.slow
def test_analytics_without_model_reports_errored(
    component_factory: Callable[..., Component], tmp_path: Path
) -> None:
    c = component_factory(
        "com.amiedge.Analytics", "components.analytics", {"AMI_MODEL_DIR": str(tmp_path / "absent")}
    )
    assert c.proc.wait(20) == 1
    assert c.nucleus.states == ["ERRORED"]
    assert "ModelError" in c.text()
