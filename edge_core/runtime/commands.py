"""On-demand (off-cycle) reads: cloud -> ``cmd/ami/{thing}/read/req`` -> meter -> ``.../read/res``.

Request (JSON, UTF-8)::

    {"v": 1, "id": "<correlation id>", "meter": "MTR00001",
     "obis": ["1.0.1.8.0.255", ...],                      # optional; default: energy registers
     "profile": {"from": "<ISO-8601>", "to": "<ISO-8601>"}}  # optional; load profile by range

Response: ``{"v": 1, "id", "meter", "status": "ok"|"error", "read_at", "clock", "registers",
"load_profile", "error": {"type", "message"}}``. A request that cannot be parsed is answered
with ``status: "error"`` and ``error.type: "BadCommand"`` when it carries an id, and counted
and logged otherwise. Responses travel in the ON_DEMAND class, ahead of bulk data.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge_core.config import EdgeConfig, MeterConfig
from edge_core.dlms.obis import Obis
from edge_core.errors import AmiError

__all__ = ["BadCommandError", "CommandHandler", "ReadRequest"]

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 8192
MAX_OBIS_PER_REQUEST = 64


class BadCommandError(AmiError):
    """A command that does not follow the request schema."""

    def __init__(self, message: str, *, request_id: str = "") -> None:
        super().__init__(message)
        self.request_id = request_id


@dataclass(frozen=True, slots=True)
class ReadRequest:
    id: str
    meter: str
    obis: tuple[str, ...]
    profile: tuple[datetime, datetime] | None

    @classmethod
    def from_json(cls, payload: bytes) -> ReadRequest:
        if len(payload) > MAX_REQUEST_BYTES:
            raise BadCommandError(f"request over {MAX_REQUEST_BYTES} bytes")
        try:
            data = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadCommandError(f"not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise BadCommandError("request must be a JSON object")
        rid = data.get("id")
        if not isinstance(rid, str) or not 0 < len(rid) <= 128:
            raise BadCommandError("id must be a string of 1 to 128 characters")
        try:
            if data.get("v", 1) != 1:
                raise BadCommandError(f"unsupported version {data.get('v')!r}")
            meter = data.get("meter")
            if not isinstance(meter, str) or not meter:
                raise BadCommandError("meter is required")
            raw_obis = data.get("obis") or []
            if not isinstance(raw_obis, list) or len(raw_obis) > MAX_OBIS_PER_REQUEST:
                raise BadCommandError(
                    f"obis must be a list of at most {MAX_OBIS_PER_REQUEST} codes"
                )
            obis = []
            for code in raw_obis:
                if not isinstance(code, str):
                    raise BadCommandError(f"bad OBIS code {code!r}")
                try:
                    obis.append(str(Obis.parse(code)))
                except ValueError as exc:
                    raise BadCommandError(f"bad OBIS code {code!r}: {exc}") from exc
            profile = None
            if data.get("profile") is not None:
                p = data["profile"]
                if not isinstance(p, dict):
                    raise BadCommandError("profile must be an object with from and to")
                try:
                    start = datetime.fromisoformat(p["from"])
                    end = datetime.fromisoformat(p["to"])
                except (KeyError, TypeError, ValueError) as exc:
                    raise BadCommandError("profile.from and profile.to must be ISO-8601") from exc
                if start.tzinfo is None or end.tzinfo is None:
                    raise BadCommandError("profile times need a UTC offset")
                if end <= start:
                    raise BadCommandError("profile.to must be after profile.from")
                profile = (start, end)
        except BadCommandError as exc:
            raise BadCommandError(str(exc), request_id=rid) from None
        return cls(id=rid, meter=meter, obis=tuple(obis), profile=profile)


ReadFn = Callable[[MeterConfig, ReadRequest], Awaitable[Mapping[str, Any]]]
RespondFn = Callable[[bytes], Awaitable[None]]


class CommandHandler:
    """Turns read requests into meter reads and responses. ``read`` does the meter work and
    returns the JSON-ready body of a successful answer; ``respond`` persists and sends."""

    def __init__(
        self, config: EdgeConfig, read: ReadFn, respond: RespondFn, clock_iso: Callable[[], str]
    ) -> None:
        self._meters = {m.id: m for m in config.meters}
        self._read = read
        self._respond = respond
        self._now = clock_iso
        self.bad_commands = 0
        self.answered = 0

    async def handle(self, topic: str, payload: bytes) -> None:
        try:
            req = ReadRequest.from_json(payload)
        except BadCommandError as exc:
            self.bad_commands += 1
            log.warning("bad read request on %s: %s", topic, exc)
            if exc.request_id:
                await self._send(exc.request_id, "", error=("BadCommand", str(exc)))
            return
        meter = self._meters.get(req.meter)
        if meter is None:
            await self._send(
                req.id,
                req.meter,
                error=("UnknownMeter", f"no meter {req.meter!r} on this concentrator"),
            )
            return
        try:
            body = await self._read(meter, req)
        except AmiError as exc:
            await self._send(req.id, req.meter, error=(type(exc).__name__, str(exc)))
            return
        await self._send(req.id, req.meter, body=body)

    async def _send(
        self,
        rid: str,
        meter: str,
        *,
        body: Mapping[str, Any] | None = None,
        error: tuple[str, str] | None = None,
    ) -> None:
        msg: dict[str, Any] = {"v": 1, "id": rid, "meter": meter, "read_at": self._now()}
        if error is not None:
            msg["status"] = "error"
            msg["error"] = {"type": error[0], "message": error[1]}
        else:
            msg["status"] = "ok"
            msg.update(body or {})
        await self._respond(json.dumps(msg, separators=(",", ":")).encode())
        self.answered += 1
