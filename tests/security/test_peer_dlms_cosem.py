"""Cross-check against dlms-cosem 21.3.2's security helpers (test-only peer; never imported
by edge_core). Skips with the reason when the library or its API is not the expected one."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_core.dlms.security import (
    AUTHENTICATED_ENCRYPTED,
    Secret,
    decrypt,
    encrypt,
    gmac,
    hls_gmac_response,
)

from .strategies import challenges, counters, keys, system_titles

pytestmark = pytest.mark.peer


def _peer() -> Any:
    mod = pytest.importorskip("dlms_cosem.security", reason="dlms-cosem is not installed")
    for name, params in (
        (
            "encrypt",
            [
                "security_control",
                "system_title",
                "invocation_counter",
                "key",
                "plain_text",
                "auth_key",
            ],
        ),
        (
            "decrypt",
            [
                "security_control",
                "system_title",
                "invocation_counter",
                "key",
                "cipher_text",
                "auth_key",
            ],
        ),
        (
            "gmac",
            [
                "security_control",
                "system_title",
                "invocation_counter",
                "key",
                "auth_key",
                "challenge",
            ],
        ),
    ):
        fn = getattr(mod, name, None)
        if fn is None or list(inspect.signature(fn).parameters) != params:
            pytest.skip(f"dlms_cosem.security.{name} does not have the 21.3.2 signature")
    return mod


@settings(max_examples=60, deadline=None)
@given(system_titles, counters, keys, keys, st.binary(max_size=300))
def test_encrypt_matches_peer(title: bytes, ic: int, ek: Secret, ak: Secret, plain: bytes) -> None:
    peer = _peer()
    sc = peer.SecurityControlField(security_suite=0, authenticated=True, encrypted=True)
    theirs = peer.encrypt(sc, title, ic, ek.reveal(), plain, ak.reveal())
    ours = encrypt(
        AUTHENTICATED_ENCRYPTED, title, ic, plain, encryption_key=ek, authentication_key=ak
    )
    assert ours == theirs
    assert peer.decrypt(sc, title, ic, ek.reveal(), ours, ak.reveal()) == plain
    assert (
        decrypt(
            AUTHENTICATED_ENCRYPTED, title, ic, theirs, encryption_key=ek, authentication_key=ak
        )
        == plain
    )


@settings(max_examples=60, deadline=None)
@given(system_titles, counters, keys, keys, challenges)
def test_gmac_and_hls_response_match_peer(
    title: bytes, ic: int, ek: Secret, ak: Secret, challenge: bytes
) -> None:
    peer = _peer()
    sc = peer.SecurityControlField(security_suite=0, authenticated=True)
    theirs = peer.gmac(sc, title, ic, ek.reveal(), ak.reveal(), challenge)
    assert gmac(title, ic, challenge, encryption_key=ek, authentication_key=ak) == theirs
    f = hls_gmac_response(title, ic, challenge, encryption_key=ek, authentication_key=ak)
    assert f == sc.to_bytes() + ic.to_bytes(4, "big") + theirs
