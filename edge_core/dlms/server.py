"""The server (meter) side of one DLMS/COSEM association, sans-I/O.

Theory of operation
-------------------
:class:`ServerConnection` answers one request APDU with one response APDU (``receive_apdu``
returns the bytes to send). The objects live behind the :class:`CosemModel` protocol: the
connection asks it for an attribute and encodes whatever it returns.

States (literal table ``_TRANSITIONS``): IDLE until an AARQ is accepted, then ASSOCIATED;
while a long answer is being sent block by block the connection stays ASSOCIATED and keeps the
remaining raw bytes (a new GET-normal or with-list abandons them). RLRQ goes back to IDLE.

Robustness rule: nothing a client sends makes ``receive_apdu`` raise. Undecodable or
unsupported APDUs get an exception-response; GET while not associated gets
exception-response (service-not-allowed); an unknown object gets data-access-result
object-undefined (4); a model that raises anything else gets hardware-fault (1) and a log line.

HLS-GMAC (``security`` given, docs/dlms-security.md): an AARQ must carry LN-with-ciphering,
mechanism 5, the client's system title, its challenge CtoS and a glo-initiate-request that
deciphers under our keys; anything else gets a rejecting AARE. The accepted AARE carries our
system title, StoC and a glo-initiate-response, and the connection waits in AUTHENTICATING
for the ciphered reply_to_HLS_authentication: a verified f(StoC) is answered with our
f(CtoS) and the association is usable; a wrong one with action-result other-reason (250),
back to IDLE. In the association, every request must be ciphered (a plain one gets
exception-response service-not-allowed) and every answer is protected with the same
context; a request that fails its tag or replays a counter gets a plain exception-response
and is not served. Each AARQ starts a new context from ``security()`` (fresh peer counter
window, counters granted by the factory).

Block transfer: when block transfer with GET was negotiated and the encoded answer exceeds the
smaller of the client's max receive PDU size and the server's own, the encoded result (the
Data, or for with-list the count and Get-Data-Results) is cut into raw-data blocks that each
fit that size.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from edge_core.dlms.apdu import (
    AARE,
    AARQ,
    RLRE,
    RLRQ,
    AccessSelection,
    ActionRequestNormal,
    ActionResponseNormal,
    ActionResult,
    ApplicationContext,
    AssociationResult,
    AttributeDescriptor,
    AuthMechanism,
    ConfirmedServiceError,
    Conformance,
    DataAccessResult,
    DataNotification,
    ExceptionResponse,
    GetRequestNext,
    GetRequestNormal,
    GetRequestWithList,
    GetResponseNormal,
    GetResponseWithDatablock,
    GetResponseWithList,
    GetResult,
    InitiateRequest,
    InitiateResponse,
    MethodDescriptor,
    SetRequestNormal,
    SetRequestWithDatablock,
    SetRequestWithFirstDatablock,
    SetResponseNormal,
    decode_apdu,
)
from edge_core.dlms.axdr import Data, encode_data, encode_length
from edge_core.dlms.security import (
    GENERAL_GLO_CIPHERING,
    AuthenticationTagError,
    HlsReplyRequest,
    HlsReplyResponse,
    SecurityContext,
    is_ciphered_tag,
    make_challenge,
)
from edge_core.errors import (
    AmiError,
    DataAccessError,
    DecodeError,
    ProtocolError,
    UnknownObjectError,
)

__all__ = [
    "SERVER_CONFORMANCE",
    "CosemModel",
    "ServerConnection",
    "ServerState",
    "WritableCosemModel",
]

logger = logging.getLogger(__name__)

SERVER_CONFORMANCE = (
    Conformance.BLOCK_TRANSFER_WITH_GET
    | Conformance.MULTIPLE_REFERENCES
    | Conformance.GET
    | Conformance.SELECTIVE_ACCESS
    | Conformance.ATTRIBUTE0_WITH_GET
    | Conformance.PRIORITY_MGMT
    | Conformance.SET
    | Conformance.ACTION
)
"""What the server side offers: GET (with-list, selective access, blocks), SET and ACTION
normal. A model without ``set``/``action`` answers them read-write-denied."""

# exception-response codes
_STATE_NOT_ALLOWED = 1
_STATE_UNKNOWN = 2
_SERVICE_NOT_POSSIBLE = 1
_SERVICE_NOT_SUPPORTED = 2
_SERVICE_OTHER = 3

# AARE diagnostics (acse-service-user)
_DIAG_NONE = 0
_DIAG_CONTEXT_NOT_SUPPORTED = 2
_DIAG_MECHANISM_NOT_RECOGNISED = 11
_DIAG_AUTHENTICATION_REQUIRED = 12
_DIAG_AUTHENTICATION_FAILURE = 13
_DIAG_HLS_AUTHENTICATION_REQUIRED = 14
_ACTION_OTHER_REASON = 250

# Overhead of GET-response-with-datablock around its raw-data: tag, choice, invoke id,
# last-block, block number (4), choice, and a length of up to 3 bytes.
_BLOCK_OVERHEAD = 12


class CosemModel(Protocol):
    """The object model a server exposes. Raise UnknownObjectError for an unknown object,
    DataAccessError(code=...) for any other refusal."""

    def get(self, descriptor: AttributeDescriptor, access: AccessSelection | None) -> Data:
        """The value of one attribute (with selective access if given)."""


class WritableCosemModel(CosemModel, Protocol):
    """A model that also accepts SET and ACTION (optional: checked with ``getattr``)."""

    def set(
        self, descriptor: AttributeDescriptor, access: AccessSelection | None, value: Data
    ) -> None:
        """Write one attribute; raise like ``get`` to refuse."""

    def action(self, method: MethodDescriptor, parameters: Data | None) -> Data | None:
        """Invoke one method; the optional return data. Raise like ``get`` to refuse."""


class ServerState(enum.Enum):
    IDLE = "IDLE"
    AUTHENTICATING = "AUTHENTICATING"
    ASSOCIATED = "ASSOCIATED"


class _Input(enum.Enum):
    AARQ_ACCEPTED = "AARQ accepted"
    AARQ_CHALLENGED = "AARQ accepted, HLS challenge sent"
    AARQ_REJECTED = "AARQ rejected"
    HLS_PASSED = "client's f(StoC) verified"
    HLS_FAILED = "client's f(StoC) wrong"
    RLRQ = "RLRQ"


_TRANSITIONS: dict[tuple[ServerState, _Input], ServerState] = {
    (ServerState.IDLE, _Input.AARQ_ACCEPTED): ServerState.ASSOCIATED,
    (ServerState.IDLE, _Input.AARQ_REJECTED): ServerState.IDLE,
    # A second AARQ on a live association replaces it (meters behave so after a client restart).
    (ServerState.ASSOCIATED, _Input.AARQ_ACCEPTED): ServerState.ASSOCIATED,
    (ServerState.ASSOCIATED, _Input.AARQ_REJECTED): ServerState.IDLE,
    (ServerState.ASSOCIATED, _Input.RLRQ): ServerState.IDLE,
    (ServerState.IDLE, _Input.RLRQ): ServerState.IDLE,
    (ServerState.IDLE, _Input.AARQ_CHALLENGED): ServerState.AUTHENTICATING,
    (ServerState.ASSOCIATED, _Input.AARQ_CHALLENGED): ServerState.AUTHENTICATING,
    (ServerState.AUTHENTICATING, _Input.AARQ_CHALLENGED): ServerState.AUTHENTICATING,
    (ServerState.AUTHENTICATING, _Input.AARQ_REJECTED): ServerState.IDLE,
    (ServerState.AUTHENTICATING, _Input.HLS_PASSED): ServerState.ASSOCIATED,
    (ServerState.AUTHENTICATING, _Input.HLS_FAILED): ServerState.IDLE,
    (ServerState.AUTHENTICATING, _Input.RLRQ): ServerState.IDLE,
}


@dataclass
class _LongGet:
    raw: bytes
    sent: int  # bytes of raw already sent
    block: int  # number of the last block sent
    chunk: int  # raw bytes per block


class ServerConnection:
    """One association from the meter side; ``receive_apdu`` never raises."""

    def __init__(
        self,
        model: CosemModel,
        *,
        max_pdu_size: int = 1024,
        password: bytes | None = None,
        conformance: Conformance = SERVER_CONFORMANCE,
        name: str = "",
        security: Callable[[], SecurityContext] | None = None,
        challenge: Callable[[], bytes] = make_challenge,
    ) -> None:
        if max_pdu_size < _BLOCK_OVERHEAD + 16:
            raise ValueError(f"max_pdu_size {max_pdu_size} too small")
        self.model = model
        self.max_pdu_size = max_pdu_size
        self.password = password
        self.offered = conformance
        self.name = name
        self.state = ServerState.IDLE
        self.conformance = Conformance(0)
        self.client_max_pdu_size = 0
        self._long: _LongGet | None = None
        self.security = security
        self._make_challenge = challenge
        self.context: SecurityContext | None = None
        self._ctos = b""
        self._stoc = b""

    def _move(self, what: _Input) -> None:
        self.state = _TRANSITIONS[(self.state, what)]

    def receive_apdu(self, raw: bytes) -> bytes | None:
        """The answer to one request APDU (None: nothing to answer)."""
        if self.security is None:
            return self._answer(raw)
        ctx = self.context
        raw = bytes(raw)
        if raw and is_ciphered_tag(raw[0]):
            if ctx is None or self.state == ServerState.IDLE:
                return ExceptionResponse(_STATE_NOT_ALLOWED, _SERVICE_NOT_POSSIBLE).to_bytes()
            try:
                plain = ctx.unprotect(raw)
            except ProtocolError as exc:
                logger.info("%s: ciphered request refused (%s)", self.name, exc)
                return ExceptionResponse(_STATE_UNKNOWN, _SERVICE_OTHER).to_bytes()
            if self.state == ServerState.AUTHENTICATING:
                answer: bytes | None = self._on_hls_reply(plain)
            else:
                answer = self._answer(plain)
            if answer is None or self.context is not ctx:
                return answer
            # Answer in the style asked: general-glo-ciphering to general-glo-ciphering.
            ctx.general_glo = raw[0] == GENERAL_GLO_CIPHERING
            try:
                return ctx.protect(answer)
            except ProtocolError as exc:
                logger.warning("%s: cannot protect the answer (%s)", self.name, exc)
                return ExceptionResponse(_STATE_UNKNOWN, _SERVICE_OTHER).to_bytes()
        if raw[:1] not in (bytes((AARQ.TAG,)), bytes((RLRQ.TAG,))):
            # In an HLS-GMAC meter only ACSE travels in clear.
            return ExceptionResponse(_STATE_NOT_ALLOWED, _SERVICE_NOT_POSSIBLE).to_bytes()
        return self._answer(raw)

    def _answer(self, raw: bytes) -> bytes | None:
        try:
            apdu = decode_apdu(raw)
        except ProtocolError as exc:
            logger.info("%s: undecodable request (%s)", self.name, exc)
            return ExceptionResponse(_STATE_UNKNOWN, _SERVICE_OTHER).to_bytes()
        try:
            return self._dispatch(apdu)
        except Exception:  # the robustness rule: log, answer, keep serving
            logger.exception("%s: failure answering %s", self.name, type(apdu).__name__)
            return ExceptionResponse(_STATE_UNKNOWN, _SERVICE_OTHER).to_bytes()

    def _dispatch(self, apdu: object) -> bytes | None:
        if isinstance(apdu, AARQ):
            return self._on_aarq(apdu)
        if isinstance(apdu, RLRQ):
            self._move(_Input.RLRQ)
            self._long = None
            self.context = None
            return RLRE(0).to_bytes()
        if self.state == ServerState.AUTHENTICATING:
            return ExceptionResponse(_STATE_NOT_ALLOWED, _SERVICE_NOT_POSSIBLE).to_bytes()
        if isinstance(apdu, GetRequestNormal | GetRequestNext | GetRequestWithList):
            if self.state != ServerState.ASSOCIATED:
                return ExceptionResponse(_STATE_NOT_ALLOWED, _SERVICE_NOT_POSSIBLE).to_bytes()
            if isinstance(apdu, GetRequestNext):
                return self._on_next(apdu)
            self._long = None
            if isinstance(apdu, GetRequestNormal):
                result = self._get(apdu.descriptor, apdu.access)
                whole = GetResponseNormal(result, apdu.invoke_id, apdu.flags).to_bytes()
                if len(whole) <= self.send_limit or not self._blocks_allowed:
                    return whole
                return self._start_long(whole[4:], apdu.invoke_id, apdu.flags)
            if not self.conformance & Conformance.MULTIPLE_REFERENCES:
                return ExceptionResponse(_STATE_NOT_ALLOWED, _SERVICE_NOT_SUPPORTED).to_bytes()
            results = tuple(self._get(d, a) for d, a in apdu.items)
            whole = GetResponseWithList(results, apdu.invoke_id, apdu.flags).to_bytes()
            if len(whole) <= self.send_limit or not self._blocks_allowed:
                return whole
            raw = encode_length(len(results)) + b"".join(_result_bytes(r) for r in results)
            return self._start_long(raw, apdu.invoke_id, apdu.flags)
        if isinstance(
            apdu, SetRequestNormal | SetRequestWithFirstDatablock | SetRequestWithDatablock
        ):
            if self.state != ServerState.ASSOCIATED:
                return ExceptionResponse(_STATE_NOT_ALLOWED, _SERVICE_NOT_POSSIBLE).to_bytes()
            if not self.conformance & Conformance.SET:
                return ExceptionResponse(_STATE_NOT_ALLOWED, _SERVICE_NOT_SUPPORTED).to_bytes()
            if not isinstance(apdu, SetRequestNormal):
                # SET in blocks is decoded but not served: refuse it cleanly.
                return ExceptionResponse(_STATE_UNKNOWN, _SERVICE_NOT_SUPPORTED).to_bytes()
            code = self._set(apdu.descriptor, apdu.access, apdu.value)
            return SetResponseNormal(code, apdu.invoke_id, apdu.flags).to_bytes()
        if isinstance(apdu, ActionRequestNormal):
            if self.state != ServerState.ASSOCIATED and not self._pre_association_action(apdu):
                return ExceptionResponse(_STATE_NOT_ALLOWED, _SERVICE_NOT_POSSIBLE).to_bytes()
            if self.state == ServerState.ASSOCIATED and not self.conformance & Conformance.ACTION:
                return ExceptionResponse(_STATE_NOT_ALLOWED, _SERVICE_NOT_SUPPORTED).to_bytes()
            return self._action(apdu).to_bytes()
        if isinstance(apdu, DataNotification):
            return None
        return ExceptionResponse(_STATE_UNKNOWN, _SERVICE_NOT_SUPPORTED).to_bytes()

    def _pre_association_action(self, apdu: ActionRequestNormal) -> bool:
        """Actions allowed before the association is complete (HLS pass 3, see security)."""
        return False

    def _set(
        self, descriptor: AttributeDescriptor, access: AccessSelection | None, value: Data
    ) -> DataAccessResult | int:
        setter = getattr(self.model, "set", None)
        if setter is None:
            return DataAccessResult.READ_WRITE_DENIED
        try:
            setter(descriptor, access, value)
        except UnknownObjectError:
            return DataAccessResult.OBJECT_UNDEFINED
        except DataAccessError as exc:
            return exc.code if exc.code is not None else DataAccessResult.OTHER_REASON
        except AmiError as exc:
            logger.info("%s: SET %s refused: %s", self.name, descriptor.obis, exc)
            return DataAccessResult.OTHER_REASON
        except Exception:
            logger.exception("%s: model failed on SET %s", self.name, descriptor.obis)
            return DataAccessResult.HARDWARE_FAULT
        return DataAccessResult.SUCCESS

    def _action(self, apdu: ActionRequestNormal) -> ActionResponseNormal:
        invoker = getattr(self.model, "action", None)
        method = apdu.method

        def answer(code: int, data: Data | None = None) -> ActionResponseNormal:
            return ActionResponseNormal(code, data, apdu.invoke_id, apdu.flags)

        if invoker is None:
            return answer(ActionResult.READ_WRITE_DENIED)
        try:
            ret = invoker(method, apdu.parameters)
        except UnknownObjectError:
            return answer(ActionResult.OBJECT_UNDEFINED)
        except DataAccessError as exc:
            return answer(exc.code if exc.code is not None else ActionResult.OTHER_REASON)
        except AmiError as exc:
            logger.info("%s: ACTION %s/%d refused: %s", self.name, method.obis, method.method, exc)
            return answer(ActionResult.OTHER_REASON)
        except Exception:
            logger.exception("%s: model failed on ACTION %s", self.name, method.obis)
            return answer(ActionResult.HARDWARE_FAULT)
        return answer(ActionResult.SUCCESS, ret)

    @property
    def send_limit(self) -> int:
        """Largest APDU sent in one piece (bytes): the smaller of both sides' PDU sizes."""
        return min(self.client_max_pdu_size, self.max_pdu_size)

    @property
    def _blocks_allowed(self) -> bool:
        return bool(self.conformance & Conformance.BLOCK_TRANSFER_WITH_GET)

    # ------------------------------------------------------------------ association

    def _on_aarq(self, aarq: AARQ) -> bytes:
        def reject(diagnostic: int, info: InitiateResponse | ConfirmedServiceError | None) -> bytes:
            self._move(_Input.AARQ_REJECTED)
            self._long = None
            return AARE(
                AssociationResult.REJECTED_PERMANENT,
                diagnostic,
                info,
                application_context=aarq.application_context,
            ).to_bytes()

        if self.security is not None:
            return self._on_hls_aarq(aarq, reject)
        if aarq.application_context != ApplicationContext.LOGICAL_NAME:
            return reject(_DIAG_CONTEXT_NOT_SUPPORTED, None)
        if self.password is not None:
            if aarq.mechanism is None:
                return reject(_DIAG_AUTHENTICATION_REQUIRED, None)
            if aarq.mechanism != AuthMechanism.LOW:
                return reject(_DIAG_MECHANISM_NOT_RECOGNISED, None)
            if aarq.authentication_value != self.password:
                return reject(_DIAG_AUTHENTICATION_FAILURE, None)
        elif aarq.mechanism not in (None, AuthMechanism.LOWEST):
            return reject(_DIAG_MECHANISM_NOT_RECOGNISED, None)
        initiate = aarq.user_information
        if not isinstance(initiate, InitiateRequest):
            # A glo-initiate-request, but this meter has no keys.
            return reject(_DIAG_CONTEXT_NOT_SUPPORTED, None)
        refused = self._negotiate(initiate)
        if refused is not None:
            return reject(_DIAG_NONE, refused)
        self._move(_Input.AARQ_ACCEPTED)
        return AARE(
            AssociationResult.ACCEPTED,
            _DIAG_NONE,
            InitiateResponse(self.conformance, self.max_pdu_size),
            mechanism=aarq.mechanism,
        ).to_bytes()

    def _negotiate(self, initiate: InitiateRequest) -> ConfirmedServiceError | None:
        """Adopt the client's proposal, or the initiate error that refuses it."""
        if initiate.dlms_version < 6:
            # initiate error, class initiate (6), dlms-version-too-low (1)
            return ConfirmedServiceError(1, 6, 1)
        if initiate.max_receive_pdu_size and initiate.max_receive_pdu_size < _BLOCK_OVERHEAD + 16:
            # pdu-size-too-short (3)
            return ConfirmedServiceError(1, 6, 3)
        self.conformance = self.offered & initiate.conformance
        # 0 in the InitiateRequest means "no limit" per the Green Book.
        self.client_max_pdu_size = initiate.max_receive_pdu_size or 0xFFFF
        self._long = None
        return None

    def _on_hls_aarq(
        self,
        aarq: AARQ,
        reject: Callable[[int, InitiateResponse | ConfirmedServiceError | None], bytes],
    ) -> bytes:
        assert self.security is not None
        self.context = None
        if aarq.application_context != ApplicationContext.LOGICAL_NAME_CIPHERING:
            return reject(_DIAG_CONTEXT_NOT_SUPPORTED, None)
        if aarq.mechanism is None:
            return reject(_DIAG_AUTHENTICATION_REQUIRED, None)
        if aarq.mechanism != AuthMechanism.HIGH_GMAC:
            return reject(_DIAG_MECHANISM_NOT_RECOGNISED, None)
        ctos = aarq.authentication_value
        if aarq.calling_ap_title is None or ctos is None or not 8 <= len(ctos) <= 64:
            return reject(_DIAG_AUTHENTICATION_FAILURE, None)
        ctx = self.security()
        try:
            ctx.learn_peer_system_title(aarq.calling_ap_title)
            info = aarq.user_information
            if not isinstance(info, bytes):
                return reject(_DIAG_AUTHENTICATION_FAILURE, None)
            initiate = InitiateRequest.from_bytes(ctx.unprotect(info))
        except DecodeError as exc:
            logger.info("%s: AARQ refused: %s", self.name, exc)
            return reject(_DIAG_AUTHENTICATION_FAILURE, None)
        refused = self._negotiate(initiate)
        if refused is not None:
            return reject(_DIAG_NONE, refused)
        self._ctos = ctos
        self._stoc = self._make_challenge()
        fields = ctx.association_fields(self._stoc)
        info_out = ctx.protect(InitiateResponse(self.conformance, self.max_pdu_size).to_bytes())
        self.context = ctx
        self._move(_Input.AARQ_CHALLENGED)
        return AARE(
            AssociationResult.ACCEPTED,
            _DIAG_HLS_AUTHENTICATION_REQUIRED,
            info_out,
            application_context=fields.application_context,
            mechanism=fields.mechanism,
            authentication_value=fields.authentication_value,
            responding_ap_title=fields.ap_title,
        ).to_bytes()

    def _on_hls_reply(self, plain: bytes) -> bytes:
        """Pass 3/4 of HLS-GMAC: check the client's f(StoC), answer with our f(CtoS)."""
        ctx = self.context
        assert ctx is not None
        try:
            call = HlsReplyRequest.from_bytes(plain)
        except DecodeError as exc:
            logger.info("%s: expected reply_to_HLS_authentication (%s)", self.name, exc)
            return ExceptionResponse(_STATE_NOT_ALLOWED, _SERVICE_NOT_POSSIBLE).to_bytes()
        try:
            ctx.verify_hls_response(self._stoc, call.response)
        except (AuthenticationTagError, DecodeError) as exc:
            logger.info("%s: client failed HLS-GMAC authentication (%s)", self.name, exc)
            self._move(_Input.HLS_FAILED)
            return HlsReplyResponse(call.invoke, _ACTION_OTHER_REASON).to_bytes()
        self._move(_Input.HLS_PASSED)
        return HlsReplyResponse(call.invoke, 0, ctx.hls_response(self._ctos)).to_bytes()

    # ------------------------------------------------------------------ GET

    def _get(self, descriptor: AttributeDescriptor, access: AccessSelection | None) -> GetResult:
        try:
            return self.model.get(descriptor, access)
        except UnknownObjectError:
            return DataAccessResult.OBJECT_UNDEFINED
        except DataAccessError as exc:
            return exc.code if exc.code is not None else DataAccessResult.OTHER_REASON
        except AmiError as exc:
            logger.info("%s: GET %s refused: %s", self.name, descriptor.obis, exc)
            return DataAccessResult.OTHER_REASON
        except Exception:
            logger.exception("%s: model failed on GET %s", self.name, descriptor.obis)
            return DataAccessResult.HARDWARE_FAULT

    def _start_long(self, raw: bytes, invoke_id: int, flags: int) -> bytes:
        chunk = self.send_limit - _BLOCK_OVERHEAD
        self._long = _LongGet(raw, 0, 0, chunk)
        return self._send_block(invoke_id, flags)

    def _send_block(self, invoke_id: int, flags: int) -> bytes:
        long = self._long
        assert long is not None
        piece = long.raw[long.sent : long.sent + long.chunk]
        long.sent += len(piece)
        long.block += 1
        last = long.sent >= len(long.raw)
        block = GetResponseWithDatablock(last, long.block, piece, invoke_id, flags).to_bytes()
        if last:
            self._long = None
        return block

    def _on_next(self, req: GetRequestNext) -> bytes:
        long = self._long
        if long is None:
            return GetResponseWithDatablock(
                True, req.block_number, DataAccessResult.NO_LONG_GET_IN_PROGRESS, req.invoke_id
            ).to_bytes()
        if req.block_number != long.block:
            self._long = None
            return GetResponseWithDatablock(
                True, req.block_number, DataAccessResult.DATA_BLOCK_NUMBER_INVALID, req.invoke_id
            ).to_bytes()
        return self._send_block(req.invoke_id, req.flags)


def _result_bytes(result: GetResult) -> bytes:
    if isinstance(result, Data):
        return b"\x00" + encode_data(result)
    return bytes((1, int(result)))
