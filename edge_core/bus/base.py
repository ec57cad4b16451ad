"""The bus contract.

Theory of operation
-------------------
* ``publish`` returns only once the message is acknowledged: a PUBACK from the broker for QoS 1
  over direct MQTT, or the nucleus' response to PublishToIoTCore over Greengrass IPC, which means
  *queued by the nucleus*, not *received by IoT Core*. Callers design for at-least-once delivery
  with idempotent batch ids. Every publish has a timeout; failure raises
  :class:`~edge_core.errors.PublishError` (never returns False).
* Handlers for cloud and local subscriptions run on the event loop that called ``subscribe``;
  implementations whose SDK calls back on foreign threads hand messages over with
  ``loop.call_soon_threadsafe`` only.
* Configuration is a JSON-like mapping. ``on_config_change`` callbacks receive the new, already
  validated mapping. ``set_config_validator`` installs the function that vets a proposed
  configuration before a deployment lands (it raises ConfigError to reject).
* ``set_update_gate`` installs a callable asked before a component update: it returns 0 to accept
  or the number of seconds to defer (an alarm or a batch in flight).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = ["Bus", "ConfigValidator", "MessageHandler", "Subscription", "UpdateGate"]

MessageHandler = Callable[[str, bytes], Awaitable[None] | None]
ConfigValidator = Callable[[Mapping[str, Any]], None]
UpdateGate = Callable[[], float]


class Subscription(Protocol):
    async def close(self) -> None: ...


@runtime_checkable
class Bus(Protocol):
    """What a component needs from its environment."""

    async def start(self) -> None:
        """Connect. Raises BusUnavailableError if the environment cannot be reached."""

    async def close(self) -> None:
        """Disconnect and release every subscription; idempotent."""

    async def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Publish to the cloud; returns once acknowledged (see module doc)."""

    async def subscribe(self, topic_filter: str, handler: MessageHandler) -> Subscription:
        """Subscribe to cloud topics (commands)."""

    async def publish_local(self, topic: str, payload: bytes) -> None:
        """Publish to other components on the same device."""

    async def subscribe_local(self, topic: str, handler: MessageHandler) -> Subscription:
        """Subscribe to local messages from other components."""

    def get_config(self) -> Mapping[str, Any]:
        """The component's current configuration."""

    def on_config_change(self, callback: Callable[[Mapping[str, Any]], None]) -> None:
        """Be told of validated configuration changes."""

    def set_config_validator(self, validator: ConfigValidator) -> None:
        """Vet proposed configurations before they land (raise ConfigError to reject)."""

    def set_update_gate(self, gate: UpdateGate) -> None:
        """Be asked before a component update (return seconds to defer, 0 to accept)."""

    async def report_state(self, state: str) -> None:
        """Report the component state (RUNNING, ERRORED)."""

    async def get_secret(self, secret_id: str) -> bytes:
        """Read a secret's value. Raises SecretError; the value is never logged."""
