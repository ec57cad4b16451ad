"""The bus: the one small interface through which the edge talks to its environment.

Implementations: :mod:`edge_core.bus.memory` (unit tests), :mod:`edge_core.bus.mqtt` (direct MQTT:
mTLS to IoT Core or plain TCP to a local broker) and :mod:`edge_core.bus.greengrass`
(Greengrass v2 IPC; the only module that imports ``awsiot.greengrasscoreipc``).
"""

from edge_core.bus.base import Bus, ConfigValidator, MessageHandler, Subscription, UpdateGate

__all__ = ["Bus", "ConfigValidator", "MessageHandler", "Subscription", "UpdateGate"]
