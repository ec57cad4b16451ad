"""The REST API: one code path, written as API Gateway Lambda-proxy handlers.

``ApiApp.handle(event)`` takes an API Gateway (REST, proxy integration) event and returns
``{"statusCode", "headers", "body"}``. In AWS the API Gateway ``/{proxy+}`` resource forwards
every request here; locally :mod:`cloud.http` turns HTTP requests into the same events.

Theory of operation
-------------------
* Routes are a table of (method, path pattern, handler); new endpoints (billing determinants,
  on-demand reads) are new rows, nothing else changes.
* Every handler validates its input and raises :class:`~edge_core.errors.ApiError` with a 4xx
  status; the dispatcher turns it into ``{"error": {"code", "message"}}``. Bad input never
  produces a 5xx. Only an unexpected failure of a backend answers 500 (and is logged).
* Auth: when ``api_key`` is set, every ``/v1`` request must carry it in ``x-api-key``
  (401 otherwise). ``/healthz`` and ``/openapi.yaml`` are open. In AWS, API Gateway checks the
  key first (``ApiKeyRequired``) and the function is configured without one.
* Times in responses are ISO 8601 UTC (``2024-03-01T00:15:00Z``) plus epoch seconds.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from typing import Any

from cloud.storage.base import Stores
from edge_core.errors import AmiError, ApiError

__all__ = ["MAX_RANGE_S", "ApiApp", "Response", "handle", "iso", "parse_iso"]

log = logging.getLogger(__name__)

MAX_RANGE_S = 31 * 86400  # longest interval query (seconds)
_METER = re.compile(r"^[^\x00-\x1f\x7f/]+$")  # batch meter ids are any UTF-8 without '/'
_METER_MAX_BYTES = 255
_OBIS = re.compile(r"^\d{1,3}[.-]\d{1,3}[.:]\d{1,3}\.\d{1,3}\.\d{1,3}(?:[.*]\d{1,3})?$")

Response = dict[str, Any]


def iso(t: int) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str, name: str) -> int:
    """ISO 8601 -> epoch seconds (naive = UTC); ApiError 400 ``invalid_parameter``."""
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise ApiError(
            f"{name} must be an ISO 8601 time", status=400, details="invalid_parameter"
        ) from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp())


def _json(status: int, body: Any) -> Response:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body, separators=(",", ":")),
    }


def _error(status: int, code: str, message: str) -> Response:
    return _json(status, {"error": {"code": code, "message": message}})


_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[[ApiApp, Mapping[str, str], Mapping[str, str]], Response]
    auth: bool = True


class ApiApp:
    """The API over a set of stores. ``api_key`` None disables the local key check."""

    def __init__(self, stores: Stores, *, api_key: str | None = None) -> None:
        self.stores = stores
        self.api_key = api_key

    def handle(self, event: Mapping[str, Any], context: Any = None) -> Response:
        method = str(event.get("httpMethod") or "GET").upper()
        path = str(event.get("path") or "/")
        headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        query = {str(k): str(v) for k, v in (event.get("queryStringParameters") or {}).items()}
        allowed: list[str] = []
        for route in _ROUTES:
            m = route.pattern.fullmatch(path)
            if m is None:
                continue
            if route.method != method:
                allowed.append(route.method)
                continue
            if (
                route.auth
                and self.api_key is not None
                and not hmac.compare_digest(
                    headers.get("x-api-key", "").encode(), self.api_key.encode()
                )
            ):
                return _error(401, "unauthorized", "missing or wrong x-api-key")
            try:
                return route.handler(self, m.groupdict(), query)
            except ApiError as exc:
                code = (
                    exc.details
                    if isinstance(exc.details, str)
                    else _CODES.get(exc.status, "bad_request")
                )
                return _error(exc.status, code, str(exc))
            except AmiError:
                log.exception("backend failure on %s %s", method, path)
                return _error(500, "internal", "internal error")
        if allowed:
            return _error(405, "method_not_allowed", f"{method} not allowed on {path}")
        return _error(404, "not_found", f"no route {path}")

    # -- handlers ---------------------------------------------------------------------------

    def _known_meter(self, meter: str) -> None:
        if not _METER.match(meter) or len(meter.encode("utf-8", "replace")) > _METER_MAX_BYTES:
            raise ApiError("invalid meter id", status=400, details="invalid_parameter")
        if not (
            self.stores.registry.records(meter)
            or self.stores.latest.get(meter)
            or self.stores.intervals.has_meter(meter)
        ):
            raise ApiError(f"unknown meter {meter}", status=404, details="unknown_meter")

    def healthz(self, params: Mapping[str, str], query: Mapping[str, str]) -> Response:
        return _json(200, {"status": "ok"})

    def openapi(self, params: Mapping[str, str], query: Mapping[str, str]) -> Response:
        text = resources.files("cloud").joinpath("openapi.yaml").read_text(encoding="utf-8")
        return {"statusCode": 200, "headers": {"Content-Type": "application/yaml"}, "body": text}

    def latest(self, params: Mapping[str, str], query: Mapping[str, str]) -> Response:
        meter = params["meter"]
        self._known_meter(meter)
        reads = self.stores.latest.get(meter)
        channels = {
            ch: {
                "capture_time": iso(r.capture_time),
                "epoch": r.capture_time,
                "value": r.value,
                "unit": r.unit,
            }
            for ch, r in sorted(reads.items())
        }
        return _json(200, {"meter": meter, "channels": channels})

    def intervals(self, params: Mapping[str, str], query: Mapping[str, str]) -> Response:
        meter = params["meter"]
        for name in ("from", "to"):
            if not query.get(name):
                raise ApiError(
                    f"query parameter {name!r} is required", status=400, details="missing_parameter"
                )
        start = parse_iso(query["from"], "from")
        end = parse_iso(query["to"], "to")
        if end <= start:
            raise ApiError("'to' must be after 'from'", status=400, details="invalid_range")
        if end - start > MAX_RANGE_S:
            raise ApiError(
                f"range longer than {MAX_RANGE_S // 86400} days",
                status=400,
                details="range_too_large",
            )
        channel = query.get("channel") or None
        if channel is not None and not _OBIS.match(channel):
            raise ApiError(
                "channel must be an OBIS code like 1.0.1.8.0.255",
                status=400,
                details="invalid_parameter",
            )
        self._known_meter(meter)
        rows = self.stores.intervals.query(meter, start, end, channel)
        return _json(
            200,
            {
                "meter": meter,
                "from": iso(start),
                "to": iso(end),
                "channel": channel,
                "rows": [
                    {
                        "channel": r.channel,
                        "capture_time": iso(r.capture_time),
                        "epoch": r.capture_time,
                        "value": r.value,
                        "unit": r.unit,
                        "status": r.status,
                    }
                    for r in rows
                ],
            },
        )

    def outages(self, params: Mapping[str, str], query: Mapping[str, str]) -> Response:
        state = query.get("state", "current")
        if state not in ("current", "past"):
            raise ApiError(
                "state must be 'current' or 'past'", status=400, details="invalid_parameter"
            )
        items = self.stores.outages.list(state)  # type: ignore[arg-type]
        return _json(
            200,
            {
                "state": state,
                "outages": [
                    {
                        "key": o.key,
                        "thing": o.thing,
                        "kind": o.kind,
                        "start": iso(o.start),
                        "end": None if o.end is None else iso(o.end),
                        "duration_s": o.duration,
                    }
                    for o in items
                ],
            },
        )


_ROUTES: tuple[_Route, ...] = (
    _Route("GET", re.compile(r"/healthz"), ApiApp.healthz, auth=False),
    _Route("GET", re.compile(r"/openapi\.yaml"), ApiApp.openapi, auth=False),
    _Route("GET", re.compile(r"/v1/meters/(?P<meter>[^/]+)/latest"), ApiApp.latest),
    _Route("GET", re.compile(r"/v1/meters/(?P<meter>[^/]+)/intervals"), ApiApp.intervals),
    _Route("GET", re.compile(r"/v1/outages"), ApiApp.outages),
)


def handle(event: Mapping[str, Any], context: Any = None) -> Response:
    """The Lambda-proxy entry point with stores from the environment (see cloud.lambda_handlers)."""
    from cloud.lambda_handlers import api  # noqa: PLC0415 - lambda_handlers imports this module

    return api(dict(event), context)
