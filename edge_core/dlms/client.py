"""The client side of one DLMS/COSEM application association, sans-I/O.

Theory of operation
-------------------
:class:`ClientConnection` turns intentions into request bytes (``associate``, ``get``,
``get_with_list``, ``release``) and answer bytes into events (``receive_apdu``). It never
touches a socket: a transport carries whole APDUs (wrapper or HDLC) and the caller loops
"send what the connection produced, feed what came back".

State lives in one place, the literal table ``_TRANSITIONS`` below: a (state, input) pair not
in the table is a :class:`ProtocolError` (the caller asked for something the association
cannot do now). One request is outstanding at a time; its invoke id (1..15, wrapping) must
come back in the answer.

Long answers arrive as GET-response-with-datablock. The connection keeps the raw-data of
every block, answers each non-last block with a :class:`BlockReceived` event that carries the
GET-next request to send, and decodes the concatenation once the last block is in. Because
some meters send blocks although block transfer was not negotiated, and append bytes after
the raw-data of the last block (FIELD-NOTES), blocks are accepted whatever was negotiated,
only the raw-data length is trusted, and the last-block flag ends the transfer.

HLS-GMAC (``security`` given, docs/dlms-security.md): the AARQ carries the client's system
title, mechanism 5, the challenge CtoS and a ciphered glo-initiate-request. An accepted AARE
must carry the meter's system title, mechanism 5, StoC and a glo-initiate-response; the
connection then enters AUTHENTICATING and answers with an :class:`AuthenticationRequired`
event holding the (ciphered) ACTION reply_to_HLS_authentication with f(StoC). Only when the
meter's answer carries a verified f(CtoS) is the association ASSOCIATED
(:class:`AssociationAccepted`). From then on every request is protected and every answer
must be ciphered (a plain exception-response or confirmed-service-error, which carry no data,
excepted). A ciphered answer that fails its tag or replays a counter ends the association
(state IDLE) and raises AuthenticationTagError / ReplayError naming the meter: the caller
reconnects. Invocation counters come from ``refill(n)``, called before every protection
with the number of counters needed; it must grant the context durable counters
(:func:`edge_core.dlms.counters.ensure_counters`).

Errors: an AARE other than accepted raises :class:`AssociationError` (state back to IDLE);
exception-response and confirmed-service-error raise :class:`ServiceError` (the association
stays usable); answers that do not fit the request raise :class:`ProtocolError`. Per-attribute
data-access results are data, returned in :class:`GetResults` — :func:`check_result` turns
one into :class:`DataAccessError` / :class:`UnknownObjectError` with the meter and OBIS.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

from edge_core.dlms.apdu import (
    AARE,
    AARQ,
    DEFAULT_FLAGS,
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
    SetResponseDatablock,
    SetResponseLastDatablock,
    SetResponseNormal,
    decode_apdu,
    decode_results,
)
from edge_core.dlms.axdr import Data, decode_data_at
from edge_core.dlms.security import (
    AuthenticationTagError,
    HlsReplyRequest,
    HlsReplyResponse,
    ReplayError,
    SecurityContext,
    is_ciphered_tag,
    make_challenge,
)
from edge_core.errors import (
    AssociationError,
    DataAccessError,
    DecodeError,
    ProtocolError,
    ServiceError,
    UnknownObjectError,
)

__all__ = [
    "DEFAULT_CONFORMANCE",
    "ActionCompleted",
    "AssociationAccepted",
    "AuthenticationRequired",
    "BlockReceived",
    "ClientConnection",
    "ClientEvent",
    "ClientState",
    "GetResults",
    "NotificationReceived",
    "ReleaseAccepted",
    "SetCompleted",
    "check_action",
    "check_result",
    "check_set",
]

logger = logging.getLogger(__name__)

DEFAULT_CONFORMANCE = (
    Conformance.PRIORITY_MGMT
    | Conformance.ATTRIBUTE0_WITH_GET
    | Conformance.BLOCK_TRANSFER_WITH_GET
    | Conformance.BLOCK_TRANSFER_WITH_SET
    | Conformance.BLOCK_TRANSFER_WITH_ACTION
    | Conformance.MULTIPLE_REFERENCES
    | Conformance.GET
    | Conformance.SET
    | Conformance.SELECTIVE_ACCESS
    | Conformance.EVENT_NOTIFICATION
    | Conformance.ACTION
)
"""0x007E1F: what this client proposes (it uses GET, with-list, selective access, blocks)."""


class ClientState(enum.Enum):
    IDLE = "IDLE"
    AWAITING_ASSOCIATION = "AWAITING_ASSOCIATION"
    AUTHENTICATING = "AUTHENTICATING"
    ASSOCIATED = "ASSOCIATED"
    AWAITING_RESPONSE = "AWAITING_RESPONSE"
    RELEASING = "RELEASING"


class _Input(enum.Enum):
    SEND_AARQ = "send AARQ"
    AARE_ACCEPTED = "AARE accepted"
    AARE_REJECTED = "AARE rejected"
    AARE_CHALLENGED = "AARE accepted, HLS challenge"
    HLS_PASSED = "meter's f(CtoS) verified"
    HLS_FAILED = "HLS-GMAC refused or failed"
    SEND_GET = "send GET"
    SEND_SET = "send SET"
    SEND_ACTION = "send ACTION"
    BLOCK = "datablock (more to come)"
    RESPONSE = "complete GET response"
    SERVICE_ERROR = "exception/confirmed-service-error"
    SEND_RLRQ = "send RLRQ"
    RLRE = "RLRE"
    ABORT = "abort (link lost)"


_S = ClientState
_I = _Input
# The whole state machine. Anything not listed is refused.
_TRANSITIONS: dict[tuple[ClientState, _Input], ClientState] = {
    (_S.IDLE, _I.SEND_AARQ): _S.AWAITING_ASSOCIATION,
    (_S.AWAITING_ASSOCIATION, _I.AARE_ACCEPTED): _S.ASSOCIATED,
    (_S.AWAITING_ASSOCIATION, _I.AARE_REJECTED): _S.IDLE,
    (_S.AWAITING_ASSOCIATION, _I.SERVICE_ERROR): _S.IDLE,
    (_S.AWAITING_ASSOCIATION, _I.AARE_CHALLENGED): _S.AUTHENTICATING,
    (_S.AUTHENTICATING, _I.HLS_PASSED): _S.ASSOCIATED,
    (_S.AUTHENTICATING, _I.HLS_FAILED): _S.IDLE,
    (_S.AUTHENTICATING, _I.SERVICE_ERROR): _S.IDLE,
    (_S.AUTHENTICATING, _I.ABORT): _S.IDLE,
    (_S.ASSOCIATED, _I.SEND_GET): _S.AWAITING_RESPONSE,
    (_S.ASSOCIATED, _I.SEND_SET): _S.AWAITING_RESPONSE,
    (_S.ASSOCIATED, _I.SEND_ACTION): _S.AWAITING_RESPONSE,
    (_S.AWAITING_RESPONSE, _I.BLOCK): _S.AWAITING_RESPONSE,
    (_S.AWAITING_RESPONSE, _I.RESPONSE): _S.ASSOCIATED,
    (_S.AWAITING_RESPONSE, _I.SERVICE_ERROR): _S.ASSOCIATED,
    (_S.ASSOCIATED, _I.SEND_RLRQ): _S.RELEASING,
    (_S.RELEASING, _I.RLRE): _S.IDLE,
    (_S.RELEASING, _I.SERVICE_ERROR): _S.IDLE,
    (_S.IDLE, _I.ABORT): _S.IDLE,
    (_S.AWAITING_ASSOCIATION, _I.ABORT): _S.IDLE,
    (_S.ASSOCIATED, _I.ABORT): _S.IDLE,
    (_S.AWAITING_RESPONSE, _I.ABORT): _S.IDLE,
    (_S.RELEASING, _I.ABORT): _S.IDLE,
}


@dataclass(frozen=True, slots=True)
class AssociationAccepted:
    """The meter accepted: negotiated conformance, its max receive PDU size (bytes)."""

    conformance: Conformance
    server_max_pdu_size: int


@dataclass(frozen=True, slots=True)
class AuthenticationRequired:
    """HLS-GMAC pass 3: the meter accepted the AARE with its challenge; send
    ``next_request`` (reply_to_HLS_authentication with f(StoC)) and feed its answer."""

    next_request: bytes


@dataclass(frozen=True, slots=True)
class GetResults:
    """The complete answer to one GET: one result per requested attribute, in order."""

    invoke_id: int
    descriptors: tuple[AttributeDescriptor, ...]
    results: tuple[GetResult, ...]
    blocks: int = 0


@dataclass(frozen=True, slots=True)
class BlockReceived:
    """A non-last datablock arrived; send ``next_request`` to get the following one."""

    block_number: int
    next_request: bytes


@dataclass(frozen=True, slots=True)
class ReleaseAccepted:
    reason: int | None


@dataclass(frozen=True, slots=True)
class NotificationReceived:
    """A DataNotification (push) arrived; it does not change the association state."""

    notification: DataNotification


@dataclass(frozen=True, slots=True)
class SetCompleted:
    """The answer to one SET: the data-access-result (0 = success)."""

    invoke_id: int
    descriptor: AttributeDescriptor
    result: DataAccessResult | int


@dataclass(frozen=True, slots=True)
class ActionCompleted:
    """The answer to one ACTION: the action result and the optional return parameters."""

    invoke_id: int
    method: MethodDescriptor
    result: ActionResult | int
    return_parameters: GetResult | None


ClientEvent = (
    AssociationAccepted
    | AuthenticationRequired
    | GetResults
    | BlockReceived
    | ReleaseAccepted
    | NotificationReceived
    | SetCompleted
    | ActionCompleted
)


def check_set(done: SetCompleted, meter: str = "") -> None:
    """Raise the typed error a SET result other than success stands for."""
    if int(done.result) != DataAccessResult.SUCCESS:
        check_result(done.result, done.descriptor, meter)


def check_action(done: ActionCompleted, meter: str = "") -> Data | None:
    """The return data of a successful ACTION (None if absent), else its typed error."""
    code = int(done.result)
    m = done.method
    if code != ActionResult.SUCCESS:
        name = ActionResult(code).name.lower() if code in ActionResult._value2member_map_ else code
        if code == ActionResult.OBJECT_UNDEFINED:
            raise UnknownObjectError(
                f"unknown object: the meter has no method {m.method} of {m.obis}",
                meter=meter,
                obis=str(m.obis),
                code=code,
            )
        raise DataAccessError(
            f"action-result {name} for method {m.method} (class {m.class_id})",
            meter=meter,
            obis=str(m.obis),
            code=code,
        )
    ret = done.return_parameters
    if ret is None or isinstance(ret, Data):
        return ret
    raise DataAccessError(
        f"method {m.method} succeeded but its return data is data-access-result {int(ret)}",
        meter=meter,
        obis=str(m.obis),
        code=int(ret),
    )


def check_result(result: GetResult, descriptor: AttributeDescriptor, meter: str = "") -> Data:
    """The data of a result, or the typed error its data-access-result stands for."""
    if isinstance(result, Data):
        return result
    code = int(result)
    obis = str(descriptor.obis)
    if code == DataAccessResult.OBJECT_UNDEFINED:
        raise UnknownObjectError(
            f"unknown object: the meter has no {obis} "
            f"(class {descriptor.class_id}, attribute {descriptor.attribute})",
            meter=meter,
            obis=obis,
            code=code,
        )
    name = (
        DataAccessResult(code).name.lower() if code in DataAccessResult._value2member_map_ else code
    )
    raise DataAccessError(
        f"data-access-result {name} for attribute {descriptor.attribute}",
        meter=meter,
        obis=obis,
        code=code,
    )


class ClientConnection:
    """One association from the client side. See the module docstring for the rules."""

    def __init__(
        self,
        *,
        max_pdu_size: int = 0xFFFF,
        conformance: Conformance = DEFAULT_CONFORMANCE,
        password: bytes | None = None,
        meter: str = "",
        security: SecurityContext | None = None,
        refill: Callable[[int], None] | None = None,
        challenge: Callable[[], bytes] = make_challenge,
    ) -> None:
        if security is not None and password is not None:
            raise ValueError("a password (LLS) and HLS-GMAC security exclude each other")
        self.state = ClientState.IDLE
        self.security = security
        self._refill = refill
        self._make_challenge = challenge
        self._ctos = b""
        self._ciphering = False
        self.meter = meter
        self.max_pdu_size = max_pdu_size
        self.proposed_conformance = conformance
        self.password = password
        self.conformance = Conformance(0)
        self.server_max_pdu_size = 0
        self._invoke_id = 0
        self._pending: tuple[AttributeDescriptor, ...] = ()
        self._pending_method: MethodDescriptor | None = None
        self._service = "GET"
        self._with_list = False
        self._blocks: list[bytes] = []
        self._last_block = 0

    # ------------------------------------------------------------------ transitions

    def _move(self, what: _Input) -> None:
        nxt = _TRANSITIONS.get((self.state, what))
        if nxt is None:
            raise ProtocolError(f"{what.value} is not possible in state {self.state.value}")
        logger.debug("association %s: %s -> %s", self.meter, self.state.value, nxt.value)
        self.state = nxt

    def abort(self) -> None:
        """Forget the association (the link was lost or reset)."""
        self._move(_I.ABORT)
        self._reset_request()

    def _reset_request(self) -> None:
        self._pending = ()
        self._pending_method = None
        self._blocks = []
        self._last_block = 0

    def _next_invoke_id(self) -> int:
        self._invoke_id = self._invoke_id % 15 + 1
        return self._invoke_id

    # ------------------------------------------------------------------ requests

    def associate(self) -> bytes:
        """The AARQ; with a password, low-level security (mechanism 1)."""
        self._move(_I.SEND_AARQ)
        initiate = InitiateRequest(self.proposed_conformance, self.max_pdu_size)
        if self.security is not None:
            return self._hls_aarq(initiate)
        if self.password is None:
            return AARQ(initiate).to_bytes()
        return AARQ(
            initiate, mechanism=AuthMechanism.LOW, authentication_value=self.password
        ).to_bytes()

    def _hls_aarq(self, initiate: InitiateRequest) -> bytes:
        ctx = self.security
        assert ctx is not None
        ctx.last_peer_counter = None  # a new association: the meter's counters start afresh
        self._ctos = self._make_challenge()
        fields = ctx.association_fields(self._ctos)
        self._ciphering = fields.application_context == ApplicationContext.LOGICAL_NAME_CIPHERING
        info: InitiateRequest | bytes = initiate
        if self._ciphering:
            self._counters(2)  # glo-initiate-request and f(StoC)
            info = ctx.protect(initiate.to_bytes())
        return AARQ(
            info,
            application_context=fields.application_context,
            mechanism=fields.mechanism,
            authentication_value=fields.authentication_value,
            calling_ap_title=fields.ap_title,
        ).to_bytes()

    def _counters(self, n: int) -> None:
        if self._refill is not None:
            self._refill(n)

    def _protect(self, apdu: bytes) -> bytes:
        """``apdu`` as it goes on the wire: ciphered in a ciphered association."""
        ctx = self.security
        if ctx is None or not self._ciphering:
            return apdu
        self._counters(1)
        return ctx.protect(apdu)

    def get(self, descriptor: AttributeDescriptor, access: AccessSelection | None = None) -> bytes:
        """GET-request-normal for one attribute (optionally with selective access)."""
        self._move(_I.SEND_GET)
        self._reset_request()
        self._pending = (descriptor,)
        self._with_list = False
        self._service = "GET"
        return self._protect(
            GetRequestNormal(descriptor, access, self._next_invoke_id()).to_bytes()
        )

    def get_with_list(
        self, items: list[tuple[AttributeDescriptor, AccessSelection | None]]
    ) -> bytes:
        """GET-request-with-list; the caller keeps it within ``server_max_pdu_size``."""
        if not items:
            raise ProtocolError("GET with-list needs at least one attribute")
        self._move(_I.SEND_GET)
        self._reset_request()
        self._pending = tuple(d for d, _ in items)
        self._with_list = True
        self._service = "GET"
        return self._protect(GetRequestWithList(tuple(items), self._next_invoke_id()).to_bytes())

    def set(
        self,
        descriptor: AttributeDescriptor,
        value: Data,
        access: AccessSelection | None = None,
    ) -> bytes:
        """SET-request-normal: write ``value`` to one attribute."""
        self._move(_I.SEND_SET)
        self._reset_request()
        self._pending = (descriptor,)
        self._service = "SET"
        return self._protect(
            SetRequestNormal(descriptor, value, access, self._next_invoke_id()).to_bytes()
        )

    def action(self, method: MethodDescriptor, parameters: Data | None = None) -> bytes:
        """ACTION-request-normal: invoke one method (``parameters`` None: none sent)."""
        self._move(_I.SEND_ACTION)
        self._reset_request()
        self._pending_method = method
        self._service = "ACTION"
        return self._protect(
            ActionRequestNormal(method, parameters, self._next_invoke_id()).to_bytes()
        )

    def release(self) -> bytes:
        self._move(_I.SEND_RLRQ)
        return RLRQ(0).to_bytes()

    # ------------------------------------------------------------------ answers

    def receive_apdu(self, raw: bytes) -> ClientEvent:
        """Consume one complete APDU; returns its event or raises (see the module docstring)."""
        if self.security is not None and self.state != ClientState.IDLE:
            raw = self._unprotect(raw)
        if self.state == ClientState.AUTHENTICATING:
            return self._on_hls_reply(raw)
        apdu = decode_apdu(raw)
        if isinstance(apdu, DataNotification):
            return NotificationReceived(apdu)
        if isinstance(apdu, ExceptionResponse | ConfirmedServiceError):
            self._move(_I.SERVICE_ERROR)
            self._reset_request()
            if isinstance(apdu, ExceptionResponse):
                raise ServiceError(
                    f"exception-response: state-error {apdu.state_error}, "
                    f"service-error {apdu.service_error}",
                    meter=self.meter,
                    code=apdu.service_error,
                )
            raise ServiceError(
                f"confirmed-service-error: service {apdu.service}, "
                f"class {apdu.error_class}, code {apdu.code}",
                meter=self.meter,
                code=apdu.code,
            )
        if isinstance(apdu, AARE):
            return self._on_aare(apdu)
        if isinstance(apdu, RLRE):
            self._move(_I.RLRE)
            return ReleaseAccepted(apdu.reason)
        if isinstance(apdu, GetResponseNormal | GetResponseWithList | GetResponseWithDatablock):
            if self.state != ClientState.AWAITING_RESPONSE:
                raise ProtocolError(f"GET response in state {self.state.value}", data=raw)
            if apdu.invoke_id != self._invoke_id:
                raise ProtocolError(
                    f"GET response invoke id {apdu.invoke_id}, expected {self._invoke_id}",
                    data=raw,
                )
            if isinstance(apdu, GetResponseWithDatablock):
                return self._on_block(apdu)
            if isinstance(apdu, GetResponseNormal):
                if self._with_list:
                    raise ProtocolError("normal GET response to a with-list request", data=raw)
                return self._finish((apdu.result,), 0)
            if not self._with_list:
                raise ProtocolError("with-list GET response to a normal request", data=raw)
            return self._finish(apdu.results, 0)
        if isinstance(
            apdu,
            SetResponseNormal
            | SetResponseLastDatablock
            | SetResponseDatablock
            | ActionResponseNormal,
        ):
            return self._on_set_or_action(apdu, raw)
        raise ProtocolError(f"unexpected {type(apdu).__name__} from the meter", data=raw)

    # Plain APDUs a ciphered association still accepts: ACSE, and the two error answers that
    # carry no data (a meter that cannot decipher a request answers in clear).
    _PLAIN_ALLOWED = frozenset(
        (AARE.TAG, RLRE.TAG, ExceptionResponse.TAG, ConfirmedServiceError.TAG)
    )

    def _unprotect(self, raw: bytes) -> bytes:
        ctx = self.security
        assert ctx is not None
        raw = bytes(raw)
        if not raw:
            return raw
        if not is_ciphered_tag(raw[0]):
            if self._ciphering and raw[0] not in self._PLAIN_ALLOWED:
                self._end("plain APDU in a ciphered association")
                raise ProtocolError(
                    f"meter {self.meter}: plain APDU 0x{raw[0]:02x} in a ciphered association",
                    data=raw,
                )
            return raw
        try:
            return ctx.unprotect(raw)
        except ReplayError as exc:
            self._end(str(exc))
            raise ReplayError(
                f"meter {self.meter}: {exc}", received=exc.received, last=exc.last
            ) from exc
        except AuthenticationTagError as exc:
            self._end(str(exc))
            raise AuthenticationTagError(f"meter {self.meter}: {exc}") from exc
        except DecodeError as exc:
            self._end(str(exc))
            raise DecodeError(f"meter {self.meter}: ciphered APDU refused: {exc}") from exc

    def _end(self, why: str) -> None:
        logger.warning("meter %s: association ended: %s", self.meter, why)
        self._move(_I.ABORT)
        self._reset_request()

    def _on_hls_reply(self, plain: bytes) -> AssociationAccepted:
        ctx = self.security
        assert ctx is not None
        if plain[:1] in (bytes((ExceptionResponse.TAG,)), bytes((ConfirmedServiceError.TAG,))):
            self._move(_I.HLS_FAILED)
            raise AssociationError(
                "meter answered reply_to_HLS_authentication with an error", meter=self.meter
            )
        try:
            reply = HlsReplyResponse.from_bytes(plain)
        except DecodeError as exc:
            self._move(_I.HLS_FAILED)
            raise AssociationError(
                f"bad answer to reply_to_HLS_authentication: {exc}", meter=self.meter
            ) from exc
        if reply.invoke & 0x0F != self._invoke_id:
            self._move(_I.HLS_FAILED)
            raise AssociationError(
                f"HLS answer invoke id {reply.invoke & 0x0F}, expected {self._invoke_id}",
                meter=self.meter,
            )
        if reply.result != 0 or reply.response is None:
            self._move(_I.HLS_FAILED)
            raise AssociationError(
                f"meter refused f(StoC) (action-result {reply.result})",
                meter=self.meter,
                code=reply.result,
            )
        try:
            ctx.verify_hls_response(self._ctos, reply.response)
        except DecodeError as exc:
            self._move(_I.HLS_FAILED)
            raise AssociationError(
                "meter failed HLS-GMAC authentication", meter=self.meter
            ) from exc
        self._move(_I.HLS_PASSED)
        return AssociationAccepted(self.conformance, self.server_max_pdu_size)

    def _on_set_or_action(
        self,
        apdu: SetResponseNormal
        | SetResponseLastDatablock
        | SetResponseDatablock
        | ActionResponseNormal,
        raw: bytes,
    ) -> SetCompleted | ActionCompleted:
        want = "ACTION" if isinstance(apdu, ActionResponseNormal) else "SET"
        if self.state != ClientState.AWAITING_RESPONSE or self._service != want:
            raise ProtocolError(
                f"{want} response in state {self.state.value} (awaiting {self._service})", data=raw
            )
        if apdu.invoke_id != self._invoke_id:
            raise ProtocolError(
                f"{want} response invoke id {apdu.invoke_id}, expected {self._invoke_id}", data=raw
            )
        if isinstance(apdu, SetResponseDatablock):
            # Only answers a SET sent in blocks, which this client never sends.
            self._move(_I.RESPONSE)
            self._reset_request()
            raise ProtocolError("SET-response-datablock to a normal SET", data=raw)
        self._move(_I.RESPONSE)
        if isinstance(apdu, ActionResponseNormal):
            method = self._pending_method
            assert method is not None
            self._reset_request()
            return ActionCompleted(self._invoke_id, method, apdu.result, apdu.return_parameters)
        descriptor = self._pending[0]
        self._reset_request()
        return SetCompleted(self._invoke_id, descriptor, apdu.result)

    def _on_aare(self, aare: AARE) -> AssociationAccepted | AuthenticationRequired:
        if self.state != ClientState.AWAITING_ASSOCIATION:
            raise ProtocolError(f"AARE in state {self.state.value}")
        if self.security is not None and aare.result == AssociationResult.ACCEPTED:
            return self._on_hls_aare(aare)
        info = aare.user_information
        if aare.result != AssociationResult.ACCEPTED or not isinstance(info, InitiateResponse):
            self._move(_I.AARE_REJECTED)
            detail = (
                f"; initiate error class {info.error_class} code {info.code}"
                if isinstance(info, ConfirmedServiceError)
                else ""
            )
            raise AssociationError(
                f"association rejected: result {aare.result}, diagnostic {aare.diagnostic}{detail}",
                meter=self.meter,
                code=aare.diagnostic,
            )
        self._move(_I.AARE_ACCEPTED)
        self.conformance = info.conformance
        self.server_max_pdu_size = info.max_receive_pdu_size
        return AssociationAccepted(info.conformance, info.max_receive_pdu_size)

    def _on_hls_aare(self, aare: AARE) -> AuthenticationRequired:
        ctx = self.security
        assert ctx is not None

        def fail(why: str) -> AssociationError:
            self._move(_I.AARE_REJECTED)
            return AssociationError(why, meter=self.meter, code=aare.diagnostic)

        if aare.mechanism != AuthMechanism.HIGH_GMAC:
            raise fail(f"AARE mechanism {aare.mechanism}, expected HLS-GMAC (5)")
        if aare.responding_ap_title is None or aare.authentication_value is None:
            raise fail("AARE without responding-AP-title or StoC")
        try:
            ctx.learn_peer_system_title(aare.responding_ap_title)
        except DecodeError as exc:
            raise fail(f"bad meter system title: {exc}") from exc
        info = aare.user_information
        if self._ciphering:
            if not isinstance(info, bytes):
                raise fail("plain user-information in a ciphered association")
            try:
                info = InitiateResponse.from_bytes(ctx.unprotect(info))
            except DecodeError as exc:
                raise fail(f"glo-initiate-response does not verify (wrong keys?): {exc}") from exc
        if not isinstance(info, InitiateResponse):
            raise fail("AARE without an initiate-response")
        self.conformance = info.conformance
        self.server_max_pdu_size = info.max_receive_pdu_size
        self._move(_I.AARE_CHALLENGED)
        self._counters(1)
        try:
            f_stoc = ctx.hls_response(aare.authentication_value)
        except ProtocolError as exc:
            self._move(_I.HLS_FAILED)
            raise AssociationError(f"cannot answer StoC: {exc}", meter=self.meter) from exc
        invoke = DEFAULT_FLAGS | self._next_invoke_id()
        request = self._protect(HlsReplyRequest(invoke, f_stoc).to_bytes())
        return AuthenticationRequired(request)

    def _on_block(self, block: GetResponseWithDatablock) -> ClientEvent:
        if block.trailing:
            logger.info(
                "meter %s: %d bytes after the raw-data of block %d ignored",
                self.meter,
                block.trailing,
                block.block_number,
            )
        if not isinstance(block.raw_data, bytes):
            # The meter aborted the long GET: every requested attribute failed with that code.
            return self._finish((block.raw_data,) * len(self._pending), len(self._blocks) + 1)
        if self._blocks and block.block_number != self._last_block + 1:
            self._move(_I.SERVICE_ERROR)
            self._reset_request()
            raise ProtocolError(f"datablock {block.block_number} after block {self._last_block}")
        self._blocks.append(block.raw_data)
        self._last_block = block.block_number
        if not block.last_block:
            self._move(_I.BLOCK)
            request = self._protect(GetRequestNext(block.block_number, self._invoke_id).to_bytes())
            return BlockReceived(block.block_number, request)
        raw = b"".join(self._blocks)
        count = len(self._blocks)
        try:
            if self._with_list:
                results = decode_results(raw)
            else:
                data, end = decode_data_at(raw, 0)
                if end != len(raw):
                    logger.info(
                        "meter %s: %d bytes after the reassembled data ignored",
                        self.meter,
                        len(raw) - end,
                    )
                results = (data,)
        except ProtocolError:
            self._move(_I.RESPONSE)
            self._reset_request()
            raise
        return self._finish(results, count)

    def _finish(self, results: tuple[GetResult, ...], blocks: int) -> GetResults:
        pending = self._pending
        if len(results) != len(pending):
            self._move(_I.RESPONSE)
            self._reset_request()
            raise ProtocolError(f"{len(results)} results for {len(pending)} requested attributes")
        self._move(_I.RESPONSE)
        self._reset_request()
        return GetResults(self._invoke_id, pending, tuple(results), blocks)
