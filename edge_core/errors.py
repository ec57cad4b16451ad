"""The one exception tree of ami-edge.

Every error raised by the edge library and the cloud package derives from :class:`AmiError`.
Foreign exceptions (socket/serial ``OSError``, ``sqlite3.Error``, ``awscrt``/``awsiot`` errors,
``onnxruntime`` and ``boto3`` errors) are mapped to these at exactly one boundary per
dependency, chained with ``raise ... from exc``.

::

    AmiError
    ├── ConfigError                  bad configuration (file, Greengrass deployment, CLI)
    ├── ProtocolError                bytes that do not follow DLMS/COSEM (carry the offending data)
    │   ├── FrameError               HDLC / wrapper framing: bad flag, length, address
    │   │   └── ChecksumError        HDLC HCS/FCS mismatch
    │   ├── DecodeError              A-XDR / APDU content that cannot be decoded
    │   └── EncodeError              a value that cannot be put on the wire
    ├── MeterError                   a meter answered, but not with what was asked (meter, obis)
    │   ├── AssociationError         AARE rejected, authentication failed
    │   ├── DataAccessError          GET/SET/ACTION result code other than success
    │   ├── UnknownObjectError       OBIS code the meter (or simulator) does not have
    │   └── ServiceError             exception-response / confirmed-service-error
    ├── TransportError               the link failed (meter)
    │   ├── MeterUnreachableError    connect refused / port missing
    │   └── MeterTimeoutError        no answer within the request timeout
    ├── SpoolError                   the durable spool
    │   ├── SpoolCorruptError        file damaged; salvage was attempted (see .salvaged_to)
    │   └── SpoolFullError           quota reached and nothing lower-priority to evict
    ├── BatchFormatError             a batch that does not follow docs/batch-format.md
    ├── BusError                     talking to the environment (Greengrass IPC or MQTT)
    │   ├── BusUnavailableError      not connected (yet); retry later
    │   ├── PublishError             publish refused or not acknowledged in time
    │   │   └── PayloadTooLargeError over the 128 KB IoT Core limit
    │   └── SecretError              secret missing or not readable
    ├── ModelError                   anomaly model missing, invalid or wrong feature spec
    └── ApiError                     a bad request to the cloud REST API (carries HTTP status)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AmiError",
    "ApiError",
    "AssociationError",
    "BatchFormatError",
    "BusError",
    "BusUnavailableError",
    "ChecksumError",
    "ConfigError",
    "DataAccessError",
    "DecodeError",
    "EncodeError",
    "FrameError",
    "MeterError",
    "MeterTimeoutError",
    "MeterUnreachableError",
    "ModelError",
    "PayloadTooLargeError",
    "ProtocolError",
    "PublishError",
    "SecretError",
    "ServiceError",
    "SpoolCorruptError",
    "SpoolError",
    "SpoolFullError",
    "TransportError",
    "UnknownObjectError",
]


class AmiError(Exception):
    """Base of every ami-edge error."""


class ConfigError(AmiError):
    """A configuration value is missing, of the wrong type or out of range.

    ``path`` names the offending key (``"meters[3].port"``).
    """

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class ProtocolError(AmiError):
    """Received bytes that do not follow the protocol. ``data`` holds the offending bytes."""

    def __init__(self, message: str, *, data: bytes = b"") -> None:
        super().__init__(message)
        self.data = bytes(data)


class FrameError(ProtocolError):
    """An HDLC or wrapper frame is malformed (flag, length, address, control field)."""


class ChecksumError(FrameError):
    """An HDLC header (HCS) or frame (FCS) check sequence does not match."""


class DecodeError(ProtocolError):
    """A-XDR data or an APDU could not be decoded."""


class EncodeError(ProtocolError):
    """A value cannot be encoded (out of range for its DLMS type)."""


class MeterError(AmiError):
    """The meter answered, but not with what was asked.

    ``meter`` names the meter (id or address), ``obis`` the object, ``code`` the DLMS
    result/diagnostic code when there is one.
    """

    def __init__(
        self, message: str, *, meter: str = "", obis: str = "", code: int | None = None
    ) -> None:
        where = " ".join(p for p in (f"meter={meter}" if meter else "", obis) if p)
        super().__init__(f"{message} ({where})" if where else message)
        self.meter = meter
        self.obis = obis
        self.code = code


class AssociationError(MeterError):
    """The application association was rejected (AARE result or diagnostic not accepted)."""


class DataAccessError(MeterError):
    """A GET/SET/ACTION returned a data-access-result other than success (``code``)."""


class UnknownObjectError(MeterError):
    """The OBIS code is not in the meter's object list."""


class ServiceError(MeterError):
    """The meter sent an exception-response or confirmed-service-error."""


class TransportError(AmiError):
    """The link to a meter failed. ``meter`` names the meter or URL."""

    def __init__(self, message: str, *, meter: str = "") -> None:
        super().__init__(f"{message} (meter={meter})" if meter else message)
        self.meter = meter


class MeterUnreachableError(TransportError):
    """Could not connect (refused, no route, device missing)."""


class MeterTimeoutError(TransportError):
    """No (complete) answer within the request timeout."""


class SpoolError(AmiError):
    """The durable spool failed."""


class SpoolCorruptError(SpoolError):
    """The spool file is damaged. Readable rows were salvaged into ``salvaged_to`` (if set)
    and the damaged file kept at ``kept_at``."""

    def __init__(self, message: str, *, salvaged_to: str = "", kept_at: str = "") -> None:
        super().__init__(message)
        self.salvaged_to = salvaged_to
        self.kept_at = kept_at


class SpoolFullError(SpoolError):
    """The disk quota is reached and there is nothing of lower priority left to evict."""


class BatchFormatError(AmiError):
    """A batch does not follow the byte format of docs/batch-format.md."""


class BusError(AmiError):
    """Talking to the environment (Greengrass IPC or MQTT) failed."""


class BusUnavailableError(BusError):
    """The bus is not connected; the caller should retry later."""


class PublishError(BusError):
    """A publish was refused or not acknowledged within its timeout. ``topic`` names it."""

    def __init__(self, message: str, *, topic: str = "") -> None:
        super().__init__(f"{message} (topic={topic})" if topic else message)
        self.topic = topic


class PayloadTooLargeError(PublishError):
    """Topic plus payload exceed the 128 KB IoT Core message limit."""


class SecretError(BusError):
    """A secret is missing or cannot be read. The secret's value never appears in the message."""


class ModelError(AmiError):
    """The anomaly model is missing, invalid, or built for another feature-spec version."""


class ApiError(AmiError):
    """A bad request to the cloud REST API; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, *, status: int = 400, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.details = details
