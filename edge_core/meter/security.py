"""HLS-GMAC settings of the reading side: keys, our system title and durable counters.

:class:`ReaderSecurity` is what :class:`~edge_core.meter.reader.MeterReader`,
:func:`~edge_core.meter.reader.read_meter` and ``ami-edge read --auth hls-gmac`` take. It
holds the two suite-0 keys as :class:`~edge_core.dlms.security.Secret` (never shown by
``repr``), the client system title and the :class:`~edge_core.dlms.counters.CounterStore`
that hands out invocation counters. Each association gets a fresh
:class:`~edge_core.dlms.security.SecurityContext` (:meth:`ReaderSecurity.new_context`) fed by
:meth:`ReaderSecurity.refill`, which reserves counters on disk before they are used, so a
second read (or a restarted process) always sends counters strictly above the first's.

The runtime resolves configuration references with :func:`resolve_reader_security`::

    security = await resolve_reader_security(
        bus.get_secret,
        auth_key_secret=cfg.auth.auth_key_secret,
        cipher_key_secret=cfg.auth.cipher_key_secret,
        system_title=cfg.auth.system_title,
        store=counter_store,            # one CounterStore per process (state directory)
    )
    await read_meter(url, ..., security=security, meter_id=cfg.id)

The counter series is keyed by ``"<cipher_key_secret>#<EK fingerprint>"``: a rotated key
(same reference, new value) starts a new series at 0, as docs/dlms-security.md explains.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from edge_core.dlms.counters import CounterStore, ensure_counters
from edge_core.dlms.security import (
    KEY_LENGTH,
    SYSTEM_TITLE_LENGTH,
    Secret,
    SecurityContext,
)
from edge_core.errors import ConfigError

__all__ = ["ReaderSecurity", "key_from_hex", "parse_system_title", "resolve_reader_security"]


def parse_system_title(text: str, *, path: str = "system_title") -> bytes:
    """8 bytes from 16 hex digits (ConfigError naming ``path`` otherwise)."""
    try:
        title = bytes.fromhex(text)
    except ValueError as exc:
        raise ConfigError(f"system title is not hex: {text!r}", path=path) from exc
    if len(title) != SYSTEM_TITLE_LENGTH:
        raise ConfigError(
            f"system title must be {SYSTEM_TITLE_LENGTH} bytes (16 hex digits)", path=path
        )
    return title


def key_from_hex(text: str, *, label: str) -> Secret:
    """A suite-0 key from 32 hex digits; ConfigError naming ``label`` only (never the text)."""
    key = Secret.from_hex(text, label=label)
    if len(key) != KEY_LENGTH:
        raise ConfigError(f"a key is {KEY_LENGTH} bytes (32 hex digits)", path=label)
    return key


@dataclass(frozen=True, slots=True)
class ReaderSecurity:
    """HLS-GMAC (security suite 0, policy authenticated encryption) for reading meters.

    ``system_title`` is the client's (8 bytes); the meter's comes from each AARE.
    ``key_label`` names the encryption key in the counter store (the secret reference; never
    the key). ``challenge_length`` is the CtoS length in bytes (8..64)."""

    system_title: bytes
    encryption_key: Secret
    authentication_key: Secret
    store: CounterStore
    key_label: str = "ek"
    challenge_length: int = 16

    def __post_init__(self) -> None:
        if len(self.system_title) != SYSTEM_TITLE_LENGTH:
            raise ConfigError("client system title must be 8 bytes", path="system_title")
        if not 8 <= self.challenge_length <= 64:
            raise ConfigError("challenge length must be 8..64 bytes", path="challenge_length")

    @property
    def key_id(self) -> str:
        """The counter series name: the key's label and fingerprint, never the key."""
        return f"{self.key_label}#{self.encryption_key.fingerprint()}"

    def new_context(self) -> SecurityContext:
        """A fresh context for one association (no counters yet: see :meth:`refill`)."""
        return SecurityContext(self.system_title, self.encryption_key, self.authentication_key)

    def refill(self, context: SecurityContext, meter: str) -> Callable[[int], None]:
        """The ``refill(n)`` callback of :class:`~edge_core.dlms.client.ClientConnection`:
        grants ``context`` durable counters for ``meter`` when fewer than ``n`` are left."""
        store, key_id = self.store, self.key_id

        def refill(n: int) -> None:
            ensure_counters(context, store, meter, key_id, minimum=n)

        return refill

    @classmethod
    def from_hex(
        cls,
        *,
        system_title: str,
        auth_key: str,
        cipher_key: str,
        counter_dir: str | Path,
        key_label: str = "cli",
    ) -> ReaderSecurity:
        """From command-line hex strings (``ami-edge read --auth hls-gmac``)."""
        return cls(
            parse_system_title(system_title),
            key_from_hex(cipher_key, label="cipher_key"),
            key_from_hex(auth_key, label="auth_key"),
            CounterStore(counter_dir),
            key_label=key_label,
        )


async def resolve_reader_security(
    get_secret: Callable[[str], Awaitable[bytes]],
    *,
    auth_key_secret: str,
    cipher_key_secret: str,
    system_title: str,
    store: CounterStore,
) -> ReaderSecurity:
    """Resolve a meter's ``auth`` secret references (``bus.get_secret``) into a
    :class:`ReaderSecurity`. Raises ConfigError naming the secret id (never its value)."""
    ek = Secret.from_secret_value(await get_secret(cipher_key_secret), label=cipher_key_secret)
    ak = Secret.from_secret_value(await get_secret(auth_key_secret), label=auth_key_secret)
    return ReaderSecurity(
        parse_system_title(system_title), ek, ak, store, key_label=cipher_key_secret
    )
