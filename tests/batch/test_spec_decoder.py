"""An independent minimal decoder written from docs/batch-format.md alone (both versions),
checked against decode_batch on the golden files and random batches."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings

from edge_core.batch import Batch, decode_batch, encode_batch

from .strategies import batches

GOLDEN = sorted((Path(__file__).resolve().parent.parent / "golden").glob("batch-*.bin"))


class Bad(Exception):
    pass


def spec_decode(msg: bytes) -> tuple[bytes, str, int, int, list[tuple]]:
    def varint(buf: bytes, i: int) -> tuple[int, int]:
        v = 0
        for k in range(10):
            b = buf[i + k]
            v |= (b & 0x7F) << (7 * k)
            if not b & 0x80:
                if (k and b == 0) or v >= 1 << 64:
                    raise Bad("varint")
                return v, i + k + 1
        raise Bad("varint too long")

    if msg[:4] != b"AMIB" or msg[4] not in (1, 2) or msg[5] & 0xFE:
        raise Bad("header")
    version = msg[4]
    bid, dc = msg[6:22], msg[22]
    created = int.from_bytes(msg[23:31], "big")
    n = msg[31]
    thing = msg[32 : 32 + n].decode()
    blen, i = varint(msg, 32 + n)
    body = zstandard.ZstdDecompressor().decompress(msg[i:]) if msg[5] & 1 else msg[i:]
    if len(body) != blen:
        raise Bad("length")
    blocks = []
    meters, p = varint(body, 0)
    for _ in range(meters):
        ml, p = varint(body, p)
        meter = body[p : p + ml].decode()
        p += ml
        nb, p = varint(body, p)
        for _ in range(nb):
            obis = ".".join(str(x) for x in body[p : p + 6])
            scaler = body[p + 6] - 256 if body[p + 6] > 127 else body[p + 6]
            unit = body[p + 7]
            count, p = varint(body, p + 8)
            t, p = varint(body, p)
            period, p = varint(body, p)
            times = [t]
            for _ in range(count - 1):
                if period:
                    d = period
                else:
                    d, p = varint(body, p)
                t += d
                times.append(t)
            status = []
            while len(status) < count:
                run, p = varint(body, p)
                status += [body[p]] * run
                p += 1
            blocks.append((meter, obis, scaler, unit, times, status))
    if version == 2:
        return bid, thing, dc, created, values_v2(body, p, blocks, varint)
    total = sum(len(b[4]) for b in blocks)
    heads, tails = body[p : p + total], body[p + total :]
    tp = 0
    out = []
    for meter, obis, scaler, unit, times, status in blocks:
        value = None
        for t, s in zip(times, status, strict=False):
            first = heads[0]
            heads = heads[1:]
            z, shift = first & 0x7F, 7
            more = first & 0x80
            while more:
                b = tails[tp]
                tp += 1
                z |= (b & 0x7F) << shift
                shift += 7
                more = b & 0x80
            d = (z >> 1) ^ -(z & 1)
            value = d if value is None else value + d
            value = (value + (1 << 63)) % (1 << 64) - (1 << 63)
            out.append((meter, obis, t, value, scaler, unit, s))
    if tp != len(tails):
        raise Bad("trailing")
    return bid, thing, dc, created, out


def values_v2(body: bytes, p: int, blocks: list[tuple], varint: Callable) -> list[tuple]:
    """Section 2.4, one bit at a time."""

    def wrap(v: int) -> int:
        return (v + (1 << 63)) % (1 << 64) - (1 << 63)

    def unzig(z: int) -> int:
        return (z >> 1) ^ -(z & 1)

    part, p = varint(body, p)
    modes = []
    for b in blocks:
        mode = body[p]
        p += 1
        ref = weight = None
        if mode & 3 == 2:
            ref, p = varint(body, p)
            ref += [x[0] for x in blocks].index(b[0])  # counted within the meter
            zw, p = varint(body, p)
            weight = unzig(zw)
        first, p = varint(body, p)
        modes.append((mode & 3, bool(mode & 4), ref, weight, unzig(first)))
    nparts = [-(-(len(b[4]) - 1) // part) for b in blocks]
    params = list(body[p : p + sum(nparts)])
    p += sum(nparts)
    ulen, p = varint(body, p)
    unary = "".join(f"{x:08b}" for x in body[p : p + ulen])
    p += ulen
    rlen, p = varint(body, p)
    rem = "".join(f"{x:08b}" for x in body[p : p + rlen])
    p += rlen
    ui = ri = 0
    residuals = []  # per block
    pi = 0
    for b, parts in zip(blocks, nparts, strict=True):
        res = []
        n = len(b[4]) - 1
        for j in range(parts):
            k = params[pi]
            pi += 1
            size = min(part, n - j * part)
            for _ in range(size):
                if k == 0xFF:
                    res.append(("u", 0))
                    continue
                q = 0
                while unary[ui] == "1":
                    q += 1
                    ui += 1
                ui += 1
                low = int(rem[ri : ri + k], 2) if k else 0
                ri += k
                res.append(("esc", k) if q == 32 else ("u", (q << k) | low))
        residuals.append(res)
    if set(unary[ui:]) - {"0"} or len(unary) - ui >= 8 or set(rem[ri:]) - {"0"}:
        raise Bad("padding")
    out_values = []
    diffs = []
    for (pred, unsigned, ref, weight, first), res in zip(modes, residuals, strict=True):
        rs = []
        for kind, coded in res:
            u = coded
            if kind == "esc":
                u, p = varint(body, p)
            rs.append(wrap(u) if unsigned else unzig(u))
        d = []
        for i, r in enumerate(rs):
            if pred == 0:
                d.append(r)
            elif pred == 1:
                d.append(wrap(r + (d[-1] if i else 0)))
            else:
                e = diffs[ref][i]
                d.append(wrap(r + (wrap(e * weight + 128) >> 8)))
        diffs.append(d)
        v = [first]
        for x in d:
            v.append(wrap(v[-1] + x))
        out_values.append(v)
    if p != len(body):
        raise Bad("trailing")
    out = []
    for (meter, obis, scaler, unit, times, status), vs in zip(blocks, out_values, strict=True):
        out += [
            (meter, obis, t, v, scaler, unit, s) for t, v, s in zip(times, vs, status, strict=True)
        ]
    return out


def as_tuple(b: Batch) -> tuple[bytes, str, int, int, list[tuple]]:
    return (
        b.batch_id,
        b.thing,
        int(b.data_class),
        b.created,
        [
            (r.meter, r.obis, r.capture_time, r.value, r.scaler, r.unit, r.status)
            for r in b.readings
        ],
    )


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_spec_decoder_agrees_on_golden_files(path: Path) -> None:
    payload = path.read_bytes()
    assert spec_decode(payload) == as_tuple(decode_batch(payload))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_spec_decoder_agrees_on_random_batches(batch: Batch) -> None:
    payload = encode_batch(batch)
    assert spec_decode(payload) == as_tuple(decode_batch(payload))
