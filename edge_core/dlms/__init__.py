"""The project's own DLMS/COSEM stack, sans-I/O (bytes and events in, bytes and events out).

Modules: :mod:`.axdr` (A-XDR data), :mod:`.obis`, :mod:`.cosem` (units, scaler-unit,
date-time, capture objects), :mod:`.apdu` (ACSE and xDLMS APDUs), :mod:`.client` and
:mod:`.server` (one association each), :mod:`.wrapper` (IEC 62056-47 framing) and
:mod:`.hdlc` (IEC 62056-46). Transports that move these bytes live in
:mod:`edge_core.transport`.
"""

from edge_core.dlms.axdr import Data, DataType, decode_data, encode_data
from edge_core.dlms.client import ClientConnection, ClientState
from edge_core.dlms.cosem import CaptureObject, CosemDateTime, RegisterValue, ScalerUnit, Unit
from edge_core.dlms.obis import Obis
from edge_core.dlms.server import CosemModel, ServerConnection

__all__ = [
    "CaptureObject",
    "ClientConnection",
    "ClientState",
    "CosemDateTime",
    "CosemModel",
    "Data",
    "DataType",
    "Obis",
    "RegisterValue",
    "ScalerUnit",
    "ServerConnection",
    "Unit",
    "decode_data",
    "encode_data",
]
