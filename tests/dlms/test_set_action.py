"""SET and ACTION APDUs: hex vectors both directions, the tolerant ACTION-response decode,
client/server round trips and the typed errors."""

from __future__ import annotations

import pytest

from edge_core.dlms.apdu import (
    ActionRequestNormal,
    ActionResponseNormal,
    ActionResult,
    AttributeDescriptor,
    DataAccessResult,
    MethodDescriptor,
    SetRequestNormal,
    SetRequestWithDatablock,
    SetRequestWithFirstDatablock,
    SetResponseDatablock,
    SetResponseLastDatablock,
    SetResponseNormal,
    decode_apdu,
)
from edge_core.dlms.axdr import Data
from edge_core.dlms.client import ActionCompleted, ClientConnection, SetCompleted, check_action
from edge_core.dlms.obis import Obis
from edge_core.dlms.server import ServerConnection
from edge_core.errors import DataAccessError, DecodeError, ProtocolError, UnknownObjectError

CLOCK = Obis(0, 0, 1, 0, 0, 255)
HLS = Obis(0, 0, 40, 0, 0, 255)
DT = bytes.fromhex("07EA0B1A040A050000FFC400")  # 2026-11-26 Thu 10:05:00, deviation -60

VECTORS = [
    (
        SetRequestNormal(AttributeDescriptor(8, CLOCK, 2), Data.octet_string(DT), invoke_id=1),
        "c101c1000800000100 00ff0200 090c" + DT.hex(),
    ),
    (SetResponseNormal(DataAccessResult.SUCCESS, invoke_id=1), "c501c100"),
    (SetResponseNormal(DataAccessResult.READ_WRITE_DENIED, invoke_id=2), "c501c203"),
    (
        SetRequestWithFirstDatablock(
            AttributeDescriptor(1, Obis(0, 0, 96, 1, 0, 255), 2), False, 1, b"\x09\x02"
        ),
        "c102c1 0001 0000600100ff 02 00 00 00000001 02 0902",
    ),
    (SetRequestWithDatablock(True, 2, b"ab", invoke_id=3), "c103c3 01 00000002 02 6162"),
    (SetResponseDatablock(1), "c502c1 00000001"),
    (SetResponseLastDatablock(DataAccessResult.SUCCESS, 2), "c503c1 00 00000002"),
    (
        ActionRequestNormal(MethodDescriptor(15, HLS, 1), Data.octet_string(b"\x10" * 17)),
        "c301c1 000f 0000280000ff 01 01 0911" + "10" * 17,
    ),
    (
        ActionRequestNormal(MethodDescriptor(7, Obis(1, 0, 99, 1, 0, 255), 1)),
        "c301c1 0007 0100630100ff 01 00",
    ),
    (ActionResponseNormal(ActionResult.SUCCESS), "c701c1 00 00"),
    (ActionResponseNormal(ActionResult.OTHER_REASON, invoke_id=1), "c701c1 fa 00"),
    (
        ActionResponseNormal(ActionResult.SUCCESS, Data.octet_string(b"\x01\x02")),
        "c701c1 00 01 00 09020102",
    ),
    (
        ActionResponseNormal(ActionResult.SUCCESS, DataAccessResult.OBJECT_UNAVAILABLE),
        "c701c1 00 01 01 0b",
    ),
]


@pytest.mark.parametrize(("apdu", "hexstr"), VECTORS)
def test_vectors_both_directions(apdu: object, hexstr: str) -> None:
    raw = bytes.fromhex(hexstr.replace(" ", ""))
    assert apdu.to_bytes() == raw  # type: ignore[attr-defined]
    assert decode_apdu(raw) == apdu


def test_action_response_without_the_optional_data_byte() -> None:
    # FIELD-NOTES: some meters end the ACTION response after the result.
    got = decode_apdu(bytes.fromhex("c701c100"))
    assert isinstance(got, ActionResponseNormal)
    assert got.result == ActionResult.SUCCESS
    assert got.return_parameters is None
    assert got.presence_byte is False
    assert got.to_bytes() == bytes.fromhex("c701c100")


@pytest.mark.parametrize(
    "hexstr",
    [
        "c701c10002",
        "c701c1000102",
        "c301c1000f0000280000ff0102",
        "c101c1",
        "c109c1",
        "c501",
        "c701c1",
    ],
)
def test_malformed_set_action_raise_decode_error(hexstr: str) -> None:
    with pytest.raises(DecodeError):
        decode_apdu(bytes.fromhex(hexstr))


class Model:
    def __init__(self) -> None:
        self.written: list[Data] = []

    def get(self, descriptor, access):  # type: ignore[no-untyped-def]
        raise UnknownObjectError("none", obis=str(descriptor.obis))

    def set(self, descriptor, access, value):  # type: ignore[no-untyped-def]
        if descriptor.obis != CLOCK:
            raise UnknownObjectError("none", obis=str(descriptor.obis))
        if descriptor.attribute != 2:
            raise DataAccessError("ro", code=3)
        self.written.append(value)

    def action(self, method, parameters):  # type: ignore[no-untyped-def]
        if method.method == 2:
            return Data.unsigned(7)
        if method.method == 3:
            raise DataAccessError("no", code=ActionResult.TEMPORARY_FAILURE)
        return None


def _pair(model: object) -> tuple[ClientConnection, ServerConnection]:
    client = ClientConnection(meter="m")
    server = ServerConnection(model, name="m")  # type: ignore[arg-type]
    answer = server.receive_apdu(client.associate())
    assert answer is not None
    client.receive_apdu(answer)
    return client, server


def test_client_server_set_and_action() -> None:
    model = Model()
    client, server = _pair(model)
    ev = client.receive_apdu(
        server.receive_apdu(client.set(AttributeDescriptor(8, CLOCK, 2), Data.octet_string(DT)))
    )  # type: ignore[arg-type]
    assert isinstance(ev, SetCompleted)
    assert ev.result == DataAccessResult.SUCCESS
    assert model.written == [Data.octet_string(DT)]
    ev = client.receive_apdu(
        server.receive_apdu(client.set(AttributeDescriptor(8, CLOCK, 3), Data.long(0)))
    )  # type: ignore[arg-type]
    assert isinstance(ev, SetCompleted)
    assert ev.result == DataAccessResult.READ_WRITE_DENIED
    ev = client.receive_apdu(server.receive_apdu(client.action(MethodDescriptor(7, CLOCK, 2))))  # type: ignore[arg-type]
    assert isinstance(ev, ActionCompleted)
    assert check_action(ev, "m") == Data.unsigned(7)
    ev = client.receive_apdu(server.receive_apdu(client.action(MethodDescriptor(7, CLOCK, 1))))  # type: ignore[arg-type]
    assert isinstance(ev, ActionCompleted)
    assert check_action(ev) is None
    ev = client.receive_apdu(server.receive_apdu(client.action(MethodDescriptor(7, CLOCK, 3))))  # type: ignore[arg-type]
    assert isinstance(ev, ActionCompleted)
    with pytest.raises(DataAccessError) as info:
        check_action(ev, "m")
    assert info.value.meter == "m"
    assert info.value.obis == str(CLOCK)
    assert info.value.code == 2


def test_server_without_set_denies_and_client_refuses_mismatched_answer() -> None:
    class ReadOnly:
        def get(self, descriptor, access):  # type: ignore[no-untyped-def]
            return Data.unsigned(1)

    client, server = _pair(ReadOnly())
    ev = client.receive_apdu(
        server.receive_apdu(client.set(AttributeDescriptor(1, CLOCK, 2), Data.unsigned(2)))
    )  # type: ignore[arg-type]
    assert isinstance(ev, SetCompleted)
    assert ev.result == DataAccessResult.READ_WRITE_DENIED
    client.action(MethodDescriptor(1, CLOCK, 1))
    with pytest.raises(ProtocolError):
        client.receive_apdu(SetResponseNormal(0, invoke_id=client._invoke_id).to_bytes())


def test_set_before_association_is_refused() -> None:
    server = ServerConnection(Model(), name="m")  # type: ignore[arg-type]
    answer = server.receive_apdu(
        SetRequestNormal(AttributeDescriptor(8, CLOCK, 2), Data.unsigned(1)).to_bytes()
    )
    assert answer is not None
    assert answer[0] == 0xD8
