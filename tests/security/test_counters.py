"""Durable invocation counters: reserve-ahead, atomic writes, crashes at any point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_core.dlms.counters import CounterStore, CounterStoreError, ensure_counters
from edge_core.dlms.security import (
    MAX_INVOCATION_COUNTER,
    CounterRange,
    InvocationCounterExhaustedError,
    Secret,
    SecurityContext,
    decode_ciphered,
)
from edge_core.errors import ConfigError

KEY = Secret(bytes(range(16)))


def test_new_pair_starts_at_zero_and_reservations_follow(tmp_path: Path) -> None:
    store = CounterStore(tmp_path, reserve_ahead=10)
    assert store.reserved_until("m1", "guek/v1") == 0
    assert store.reserve("m1", "guek/v1") == CounterRange(0, 10)
    assert store.reserve("m1", "guek/v1", 5) == CounterRange(10, 15)
    assert store.reserve("m1", "guek/v2") == CounterRange(0, 10)  # a new key starts over
    assert store.reserve("m2", "guek/v1") == CounterRange(0, 10)
    assert store.reserved_until("m1", "guek/v1") == 15


def test_reload_continues_after_the_reservation(tmp_path: Path) -> None:
    CounterStore(tmp_path, reserve_ahead=100).reserve("meter/1:a", "k")
    again = CounterStore(tmp_path, reserve_ahead=100)
    assert again.reserved_until("meter/1:a", "k") == 100
    assert again.reserve("meter/1:a", "k").start == 100


def test_crash_before_commit_never_reuses_a_counter(tmp_path: Path) -> None:
    store = CounterStore(tmp_path, reserve_ahead=50)
    ctx = SecurityContext(bytes(8), KEY, KEY, peer_system_title=bytes(8))
    used = []
    for _ in range(30):
        ensure_counters(ctx, store, "m", "k")
        used.append(decode_ciphered(ctx.protect(b"\xc0\x01")).invocation_counter)
    # Simulated crash: nothing closed, nothing committed; the process state is just dropped.
    del ctx, store
    reloaded = CounterStore(tmp_path, reserve_ahead=50)
    ctx = SecurityContext(bytes(8), KEY, KEY, peer_system_title=bytes(8))
    ensure_counters(ctx, reloaded, "m", "k")
    nxt = ctx.next_invocation_counter
    assert nxt is not None
    assert nxt > max(used)


def test_crash_between_temp_write_and_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CounterStore(tmp_path, reserve_ahead=10)
    first = store.reserve("m", "k")

    def crash(src: object, dst: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(CounterStoreError):
        store.reserve("m", "k")
    monkeypatch.undo()
    # The failed reservation handed nothing out; the next one starts after the first.
    again = CounterStore(tmp_path, reserve_ahead=10)
    assert again.reserve("m", "k").start == first.stop
    assert store.reserve("m", "k").start >= first.stop


def test_killed_process_leaves_a_safe_store(tmp_path: Path) -> None:
    code = (
        "import os, sys\n"
        "from edge_core.dlms.counters import CounterStore\n"
        "s = CounterStore(sys.argv[1], reserve_ahead=7)\n"
        "used = []\n"
        "for _ in range(3):\n"
        "    r = s.reserve('m', 'k')\n"
        "    used.extend(range(r.start, r.stop - 2))\n"
        "print(max(used), flush=True)\n"
        "os._exit(9)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 9, proc.stderr
    highest_used = int(proc.stdout)
    assert CounterStore(tmp_path).reserve("m", "k").start > highest_used


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.integers(1, 20), st.integers(0, 25), st.booleans()), min_size=1, max_size=12
    )
)
def test_no_counter_used_twice_across_any_crash_points(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[int, int, bool]]
) -> None:
    """Each step: reserve-ahead size, how many APDUs are sent, whether the process then dies."""
    directory = tmp_path_factory.mktemp("ic")
    used: list[int] = []
    ctx: SecurityContext | None = None
    store: CounterStore | None = None
    for ahead, sends, crash in steps:
        if ctx is None or store is None:
            store = CounterStore(directory, reserve_ahead=ahead)
            ctx = SecurityContext(bytes(8), KEY, KEY, peer_system_title=bytes(8))
        for _ in range(sends):
            ensure_counters(ctx, store, "m", "k")
            used.append(decode_ciphered(ctx.protect(b"\xc0")).invocation_counter)
        if crash:
            ctx = store = None
    assert len(used) == len(set(used))
    assert used == sorted(used)


def test_exhaustion_and_floor(tmp_path: Path) -> None:
    store = CounterStore(tmp_path, reserve_ahead=10)
    store.raise_floor("m", "k", MAX_INVOCATION_COUNTER - 2)
    store.raise_floor("m", "k", 5)  # never lowers
    assert store.reserve("m", "k") == CounterRange(
        MAX_INVOCATION_COUNTER - 2, MAX_INVOCATION_COUNTER + 1
    )
    with pytest.raises(InvocationCounterExhaustedError):
        store.reserve("m", "k")
    with pytest.raises(InvocationCounterExhaustedError):
        CounterStore(tmp_path).reserve("m", "k")


def test_files_hold_no_key_and_bad_files_are_errors(tmp_path: Path) -> None:
    store = CounterStore(tmp_path)
    store.reserve("m", "guek-ref/3")
    path = store.path_for("m", "guek-ref/3")
    doc = json.loads(path.read_text())
    assert doc == {"format": 1, "meter": "m", "key_id": "guek-ref/3", "reserved_until": 1024}
    assert KEY.reveal().hex() not in path.read_text()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind

    for bad in (
        b"{not json",
        b"[]",
        b'{"format": 1, "meter": "m", "key_id": "guek-ref/3"}',
        b'{"format": 1, "meter": "x", "key_id": "guek-ref/3", "reserved_until": 5}',
        b'{"format": 1, "meter": "m", "key_id": "guek-ref/3", "reserved_until": -1}',
        b'{"format": 1, "meter": "m", "key_id": "guek-ref/3", "reserved_until": true}',
    ):
        path.write_bytes(bad)
        with pytest.raises(CounterStoreError):
            CounterStore(tmp_path).reserve("m", "guek-ref/3")


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        CounterStore(tmp_path, reserve_ahead=0)
    store = CounterStore(tmp_path)
    with pytest.raises(CounterStoreError):
        store.reserve("m", "k", 0)
    with pytest.raises(CounterStoreError):
        store.raise_floor("m", "k", -1)
    (tmp_path / "file").write_text("")
    with pytest.raises(CounterStoreError):
        CounterStore(tmp_path / "file" / "sub")
