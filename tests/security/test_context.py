"""SecurityContext: protect/unprotect between a client and a server, counters and replay."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_core.dlms.security import (
    AUTHENTICATED_ENCRYPTED,
    AUTHENTICATION_ONLY,
    ENCRYPTION_ONLY,
    MAX_INVOCATION_COUNTER,
    AuthenticationTagError,
    CounterRange,
    GeneralGloCiphering,
    GloCiphered,
    InvocationCounterExhaustedError,
    ReplayError,
    Secret,
    SecurityContext,
    SecurityControl,
    decode_ciphered,
    protected_tag_for,
)
from edge_core.errors import DecodeError, EncodeError

from .strategies import plain_apdus

EK = Secret(bytes.fromhex("000102030405060708090a0b0c0d0e0f"), label="ek")
AK = Secret(bytes.fromhex("d0d1d2d3d4d5d6d7d8d9dadbdcdddedf"), label="ak")
CLIENT = bytes.fromhex("4d4d4d0000bc614e")
METER = bytes.fromhex("4d4d4d0000000001")


def pair(
    policy: SecurityControl = AUTHENTICATED_ENCRYPTED, *, start: int = 0
) -> tuple[SecurityContext, SecurityContext]:
    client = SecurityContext(CLIENT, EK, AK, peer_system_title=METER, policy=policy)
    meter = SecurityContext(METER, EK, AK, peer_system_title=CLIENT, policy=policy)
    client.grant(CounterRange(start, start + 1000))
    meter.grant(CounterRange(start, start + 1000))
    return client, meter


@settings(max_examples=60, deadline=None)
@given(
    st.lists(plain_apdus, min_size=1, max_size=8),
    st.sampled_from([SecurityControl(True, True), AUTHENTICATION_ONLY, ENCRYPTION_ONLY]),
    st.booleans(),
)
def test_round_trip_both_directions(
    apdus: list[bytes], policy: SecurityControl, general: bool
) -> None:
    client, meter = pair(policy)
    client.general_glo = general
    for apdu in apdus:
        ciphered = client.protect(apdu)
        env = decode_ciphered(ciphered)
        tag = protected_tag_for(apdu[0])
        if tag is None or general:
            assert isinstance(env, GeneralGloCiphering)
            assert env.system_title == CLIENT
        else:
            assert isinstance(env, GloCiphered)
            assert env.tag == tag
        assert env.security_control == policy
        assert meter.unprotect(ciphered) == apdu
        assert client.unprotect(meter.protect(apdu)) == apdu


def test_counters_are_consumed_in_order_and_never_reused() -> None:
    client, _ = pair()
    seen = [decode_ciphered(client.protect(b"\xc0\x01\xc1")).invocation_counter for _ in range(5)]
    assert seen == [0, 1, 2, 3, 4]
    assert client.next_invocation_counter == 5
    with pytest.raises(EncodeError):
        client.grant(CounterRange(3, 10))  # backwards
    client.grant(CounterRange(500, 501))
    assert decode_ciphered(client.protect(b"\xc0")).invocation_counter == 500
    with pytest.raises(InvocationCounterExhaustedError):
        client.protect(b"\xc0")
    assert client.counters_left == 0


def test_no_counter_no_protect() -> None:
    ctx = SecurityContext(CLIENT, EK, AK)
    with pytest.raises(InvocationCounterExhaustedError):
        ctx.protect(b"\xc0\x01")
    with pytest.raises(InvocationCounterExhaustedError):
        ctx.hls_response(b"12345678")


def test_counter_never_wraps() -> None:
    ctx = SecurityContext(CLIENT, EK, AK, peer_system_title=METER)
    ctx.grant(CounterRange(MAX_INVOCATION_COUNTER, MAX_INVOCATION_COUNTER + 1))
    assert decode_ciphered(ctx.protect(b"\xc0")).invocation_counter == MAX_INVOCATION_COUNTER
    with pytest.raises(InvocationCounterExhaustedError):
        ctx.protect(b"\xc0")
    with pytest.raises(EncodeError):
        CounterRange(0, MAX_INVOCATION_COUNTER + 2)


def test_first_counter_zero_accepted_then_strictly_greater() -> None:
    client, meter = pair()
    first = meter.protect(b"\xc4\x01\xc1\x00\x09\x00")
    assert decode_ciphered(first).invocation_counter == 0
    assert client.last_peer_counter is None
    client.unprotect(first)
    assert client.last_peer_counter == 0
    with pytest.raises(ReplayError) as info:
        client.unprotect(first)
    assert (info.value.received, info.value.last) == (0, 0)
    second = meter.protect(b"\xc4\x01\xc1\x00\x09\x00")
    client.unprotect(second)
    with pytest.raises(ReplayError):
        client.unprotect(first)


def test_replay_of_older_message_after_newer() -> None:
    client, meter = pair()
    old = meter.protect(b"\xc4\x01")
    new = meter.protect(b"\xc4\x02")
    client.unprotect(new)
    with pytest.raises(ReplayError):
        client.unprotect(old)


def test_forged_counter_does_not_move_replay_window() -> None:
    client, meter = pair()
    good = meter.protect(b"\xc4\x01")
    env = GloCiphered.from_bytes(good)
    forged = GloCiphered(env.tag, env.security_control, 0xFFFFFFF0, env.ciphered).to_bytes()
    with pytest.raises(AuthenticationTagError):
        client.unprotect(forged)
    assert client.last_peer_counter is None
    assert client.unprotect(good) == b"\xc4\x01"


@settings(max_examples=40, deadline=None)
@given(plain_apdus, st.data())
def test_every_single_bit_flip_is_a_typed_error(apdu: bytes, data: st.DataObject) -> None:
    client, meter = pair()
    ciphered = bytearray(client.protect(apdu))
    bit = data.draw(st.integers(min_value=0, max_value=len(ciphered) * 8 - 1))
    ciphered[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(DecodeError):  # AuthenticationTagError, ReplayError or malformed
        meter.unprotect(bytes(ciphered))
    assert meter.last_peer_counter is None


def test_every_bit_flip_exhaustively_on_one_apdu() -> None:
    client, meter = pair()
    ciphered = client.protect(bytes.fromhex("c0010000080000010000ff0200"))
    for bit in range(len(ciphered) * 8):
        tampered = bytearray(ciphered)
        tampered[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(DecodeError):
            meter.unprotect(bytes(tampered))
    assert meter.unprotect(ciphered)[0] == 0xC0


def test_weaker_protection_than_policy_is_refused() -> None:
    _, meter = pair()
    weak_client, _ = pair(ENCRYPTION_ONLY, start=100)
    with pytest.raises(DecodeError, match="weaker"):
        meter.unprotect(weak_client.protect(b"\xc0\x01"))
    auth_only, _ = pair(AUTHENTICATION_ONLY, start=100)
    with pytest.raises(DecodeError, match="weaker"):
        meter.unprotect(auth_only.protect(b"\xc0\x01"))


def test_peer_title_rules() -> None:
    ctx = SecurityContext(CLIENT, EK, AK)
    other = SecurityContext(METER, EK, AK)
    other.grant(CounterRange(0, 10))
    with pytest.raises(DecodeError, match="peer system title"):
        ctx.unprotect(other.protect(b"\xc4\x01"))  # glo- tag: title must be known
    # general-glo-ciphering carries the title: a push listener learns it.
    other.general_glo = True
    assert ctx.unprotect(other.protect(b"\x0f\x00\x00\x00\x01\x00\x00"))[0] == 0x0F
    assert ctx.peer_system_title == METER
    stranger = SecurityContext(bytes(8), EK, AK, general_glo=True)
    stranger.grant(CounterRange(50, 60))
    with pytest.raises(DecodeError, match="system title"):
        ctx.unprotect(stranger.protect(b"\x0f"))
    with pytest.raises(DecodeError):
        ctx.learn_peer_system_title(b"short")
    ctx.learn_peer_system_title(bytes(8))
    assert ctx.last_peer_counter is None  # another device: replay state starts over


def test_unsupported_envelopes() -> None:
    client, meter = pair()
    env = GloCiphered.from_bytes(client.protect(b"\xc0\x01"))
    ded = GloCiphered(0xD0, env.security_control, env.invocation_counter, env.ciphered)
    with pytest.raises(DecodeError, match="dedicated"):
        meter.unprotect(ded.to_bytes())
    bcast = GloCiphered(env.tag, SecurityControl(True, True, broadcast_key=True), 1, env.ciphered)
    with pytest.raises(DecodeError, match="broadcast"):
        meter.unprotect(bcast.to_bytes())
    with pytest.raises(DecodeError):
        meter.unprotect(b"\xc0\x01\x00")  # not ciphered at all


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(EncodeError):
        SecurityContext(CLIENT[:4], EK, AK)
    with pytest.raises(EncodeError):
        SecurityContext(CLIENT, Secret(b"0" * 15), AK)
    with pytest.raises(EncodeError):
        SecurityContext(CLIENT, EK, AK, policy=SecurityControl(False, False))


def test_repr_shows_state_not_keys() -> None:
    client, _ = pair()
    text = repr(client) + str(client)
    for key in (EK, AK):
        assert key.reveal().hex() not in text
        assert str(key.reveal()) not in text
    assert CLIENT.hex() in text
