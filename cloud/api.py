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
* On-demand reads (``POST /v1/reads``): the API resolves the meter's concentrator (the
  registry record in force now, else the thing whose batches last carried the meter), stores
  the request as pending with a deadline, then publishes the command on
  ``cmd/ami/{thing}/read/req`` through ``publisher`` (the local stack's MQTT connection, or the
  IoT data plane in AWS). The ``ami_read_responses`` rule completes it by correlation id
  (:mod:`cloud.events`). ``GET /v1/reads/{id}`` turns a pending request past its deadline into
  ``timeout`` (persisted; a later answer is then dropped). A failed publish marks the request
  ``error`` and answers 503.
* The dashboard (``/``, ``/static/...``) is static package data, served without the key; the
  page itself asks for the key and sends it with every API call.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from typing import Any

from cloud.storage.base import EventRecord, ReadRequestRecord, Stores
from edge_core.errors import AmiError, ApiError, ConfigError

__all__ = [
    "DEFAULT_READ_TIMEOUT_S",
    "MAX_RANGE_S",
    "ApiApp",
    "Publisher",
    "Response",
    "handle",
    "iso",
    "parse_iso",
]

log = logging.getLogger(__name__)

MAX_RANGE_S = 31 * 86400  # longest interval query (seconds)
_METER = re.compile(r"^[^\x00-\x1f\x7f/]+$")  # batch meter ids are any UTF-8 without '/'
_METER_MAX_BYTES = 255
_OBIS = re.compile(r"^\d{1,3}[.-]\d{1,3}[.:]\d{1,3}\.\d{1,3}\.\d{1,3}(?:[.*]\d{1,3})?$")

Response = dict[str, Any]
Publisher = Callable[[str, bytes], None]  # (topic, payload); returns once sent, raises AmiError

ENERGY_IMPORT = "1.0.1.8.0.255"  # +A, the fleet table's register
DEFAULT_READ_TIMEOUT_S = 60
MAX_READ_TIMEOUT_S = 300
MAX_OBIS_PER_READ = 64  # the edge refuses more (edge_core.runtime.commands)
DEFAULT_WINDOW_S = 7 * 86400  # timelines without from/to: the last 7 days
MAX_LIMIT = 5000
_READ_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_THING = re.compile(r"^[A-Za-z0-9_:-]{1,128}$")  # AWS IoT thing names
_READ_FIELDS = frozenset({"meter", "obis", "profile", "timeout_s"})
_STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


def iso(t: int) -> str:
    """Epoch seconds -> ``YYYY-MM-DDTHH:MM:SSZ`` (four-digit year, also before year 1000)."""
    d = datetime.fromtimestamp(t, tz=timezone.utc)
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}Z"


_MIN_T = int(datetime(1, 1, 1, tzinfo=timezone.utc).timestamp())  # what iso() can render
_MAX_T = int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc).timestamp())


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
    try:
        t = int(dt.timestamp())
    except (OverflowError, ValueError) as exc:
        raise ApiError(f"{name} is out of range", status=400, details="invalid_parameter") from exc
    if not _MIN_T <= t <= _MAX_T:  # e.g. 0001-01-01T00:00+14:00 is in year 0 in UTC
        raise ApiError(f"{name} is out of range", status=400, details="invalid_parameter")
    return t


def _json(status: int, body: Any) -> Response:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body, separators=(",", ":")),
    }


def _error(status: int, code: str, message: str) -> Response:
    return _json(status, {"error": {"code": code, "message": message}})


def _bad(message: str, code: str = "invalid_parameter") -> ApiError:
    return ApiError(message, status=400, details=code)


_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    501: "not_implemented",
    503: "unavailable",
}


@dataclass(frozen=True, slots=True)
class _Route:
    """``handler(app, path params, query)``, or with ``body`` also the request body (str|None).
    A request with a query parameter outside ``query`` is refused (400 ``unknown_parameter``):
    a misspelt parameter must not silently fall back to a default."""

    method: str
    pattern: re.Pattern[str]
    handler: Callable[..., Response]
    auth: bool = True
    body: bool = False
    query: frozenset[str] | None = None  # the query parameters it takes; None: any


class ApiApp:
    """The API over a set of stores. ``api_key`` None disables the local key check.

    ``publisher`` sends read commands (None: ``POST /v1/reads`` answers 501); ``clock`` gives
    epoch seconds (deadlines, default time windows); anomalies of the last
    ``anomaly_window_s`` seconds count as open in the fleet table.
    """

    def __init__(
        self,
        stores: Stores,
        *,
        api_key: str | None = None,
        publisher: Publisher | None = None,
        clock: Callable[[], float] = time.time,
        anomaly_window_s: int = DEFAULT_WINDOW_S,
        billing: Any = None,
    ) -> None:
        self.billing = billing  # cloud.billing.service.LocalBilling (None: 501)
        self.stores = stores
        self.api_key = api_key
        self.publisher = publisher
        self.clock = clock
        self.anomaly_window_s = anomaly_window_s

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
            if route.query is not None and not set(query) <= route.query:
                unknown = sorted(set(query) - route.query)
                return _error(
                    400,
                    "unknown_parameter",
                    f"unknown query parameter(s) {unknown}; allowed: {sorted(route.query)}",
                )
            try:
                if route.body:
                    return route.handler(self, m.groupdict(), query, _body(event))
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
            resp = _error(405, "method_not_allowed", f"{method} not allowed on {path}")
            resp["headers"]["Allow"] = ", ".join(sorted(set(allowed)))
            return resp
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

    # -- on-demand reads --------------------------------------------------------------------

    def _need(self, store: Any, what: str) -> Any:
        if store is None:
            raise ApiError(f"{what} are not available in this deployment", status=501)
        return store

    def _thing_of(self, meter: str) -> str:
        """The concentrator that reads ``meter``: registry record in force now (else the newest
        record), else the thing whose batches last carried it; 404 when neither knows."""
        now = int(self.clock())
        records = self.stores.registry.records(meter)
        for rec in records:
            if rec.dcu and rec.covers(now):
                return rec.dcu
        seen = self.stores.fleet.get(meter) if self.stores.fleet is not None else None
        if seen is not None and seen.thing:
            return seen.thing
        for rec in reversed(records):
            if rec.dcu:
                return rec.dcu
        raise ApiError(
            f"unknown meter {meter} (no concentrator known for it)",
            status=404,
            details="unknown_meter",
        )

    @staticmethod
    def _parse_read_body(body: str | None) -> dict[str, Any]:
        if not body:
            raise _bad("request body must be a JSON object", "invalid_body")
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise _bad(f"request body is not JSON: {exc}", "invalid_body") from exc
        if not isinstance(doc, dict):
            raise _bad("request body must be a JSON object", "invalid_body")
        unknown = sorted(set(doc) - _READ_FIELDS)
        if unknown:
            raise _bad(
                f"unknown field(s) {unknown}; allowed: {sorted(_READ_FIELDS)}", "invalid_body"
            )
        return doc

    def create_read(
        self, params: Mapping[str, str], query: Mapping[str, str], body: str | None
    ) -> Response:
        reads = self._need(self.stores.reads, "on-demand reads")
        doc = self._parse_read_body(body)
        meter = doc.get("meter")
        if not isinstance(meter, str) or not meter:
            raise _bad("meter is required (a string)", "invalid_body")
        if not _METER.match(meter) or len(meter.encode("utf-8", "replace")) > _METER_MAX_BYTES:
            raise _bad("invalid meter id", "invalid_body")
        command: dict[str, Any] = {"v": 1, "id": "", "meter": meter}
        obis = doc.get("obis")
        if "obis" in doc:
            if (
                not isinstance(obis, list)
                or len(obis) > MAX_OBIS_PER_READ
                or not all(isinstance(o, str) and _OBIS.match(o) for o in obis)
            ):
                raise _bad(
                    f"obis must be a list of at most {MAX_OBIS_PER_READ} OBIS codes "
                    "like 1.0.1.8.0.255",
                    "invalid_body",
                )
            if obis:
                command["obis"] = list(obis)
        profile = doc.get("profile")
        if "profile" in doc:
            if not isinstance(profile, dict) or set(profile) != {"from", "to"}:
                raise _bad("profile must be an object with from and to", "invalid_body")
            if not all(isinstance(profile[k], str) for k in ("from", "to")):
                raise _bad("profile.from and profile.to must be ISO 8601 strings", "invalid_body")
            start = parse_iso(profile["from"], "profile.from")
            end = parse_iso(profile["to"], "profile.to")
            if end <= start:
                raise _bad("profile.to must be after profile.from", "invalid_range")
            if end - start > MAX_RANGE_S:
                raise _bad(f"profile longer than {MAX_RANGE_S // 86400} days", "range_too_large")
            command["profile"] = {"from": _iso_offset(start), "to": _iso_offset(end)}
        timeout = doc.get("timeout_s", DEFAULT_READ_TIMEOUT_S)
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or not 1 <= timeout <= MAX_READ_TIMEOUT_S
        ):
            raise _bad(f"timeout_s must be a number from 1 to {MAX_READ_TIMEOUT_S}", "invalid_body")
        thing = self._thing_of(meter)
        rid = str(uuid.uuid4())
        command["id"] = rid
        now = int(self.clock())
        rec = ReadRequestRecord(
            id=rid,
            meter=meter,
            thing=thing,
            created=now,
            deadline=now + math.ceil(timeout),
            status="pending",
            request=command,
        )
        if self.publisher is None:
            raise ApiError("this deployment cannot send commands to the edge", status=501)
        reads.create(rec)
        topic = f"cmd/ami/{thing}/read/req"
        try:
            self.publisher(topic, json.dumps(command, separators=(",", ":")).encode())
        except AmiError as exc:
            log.warning("read %s: publish on %s failed: %s", rid, topic, exc)
            reads.complete(
                rid,
                "error",
                {"status": "error", "error": {"type": "PublishFailed", "message": str(exc)}},
                now,
            )
            raise ApiError(
                "the command could not be sent to the edge", status=503, details="publish_failed"
            ) from exc
        log.info("read %s of %s sent to %s", rid, meter, thing)
        location = f"/v1/reads/{rid}"
        resp = _json(202, {"id": rid, "status": "pending", "location": location})
        resp["headers"]["Location"] = location
        return resp

    def get_read(self, params: Mapping[str, str], query: Mapping[str, str]) -> Response:
        reads = self._need(self.stores.reads, "on-demand reads")
        rid = params["rid"]
        if not _READ_ID.match(rid):
            raise _bad("invalid read id")
        rec = reads.get(rid)
        if rec is None:
            raise ApiError(f"no read {rid}", status=404, details="unknown_read")
        now = int(self.clock())
        if rec.status == "pending" and now > rec.deadline:
            reads.complete(rid, "timeout", None, now)
            rec = reads.get(rid) or rec
        out: dict[str, Any] = {
            "id": rec.id,
            "meter": rec.meter,
            "thing": rec.thing,
            "status": rec.status,
            "created": iso(rec.created),
            "deadline": iso(rec.deadline),
            "completed": None if rec.completed is None else iso(rec.completed),
            "request": rec.request,
            "response": rec.response,
        }
        err = (rec.response or {}).get("error")
        out["error"] = err if isinstance(err, dict) else None
        return _json(200, out)

    # -- dashboard data ---------------------------------------------------------------------

    def _window(self, query: Mapping[str, str]) -> tuple[int, int]:
        """(from, to) of a timeline query, at most 31 days. Defaults: to = now (at most 31 days
        after an explicit from), from = to - 7 days."""
        # present but empty is invalid, absent takes the default
        start = parse_iso(query["from"], "from") if "from" in query else None
        if "to" in query:
            end = parse_iso(query["to"], "to")
        else:  # now, but no further than the longest range after an explicit start
            end = int(self.clock()) + 1
            if start is not None:
                end = min(end, start + MAX_RANGE_S)
        if start is None:
            start = end - DEFAULT_WINDOW_S
        start, end = max(start, _MIN_T), min(end, _MAX_T)  # defaults near year 1 or 9999
        if end <= start:
            raise _bad("'to' must be after 'from'", "invalid_range")
        if end - start > MAX_RANGE_S:
            raise _bad(f"range longer than {MAX_RANGE_S // 86400} days", "range_too_large")
        return start, end

    @staticmethod
    def _limit(query: Mapping[str, str], default: int = 1000) -> int:
        raw = query.get("limit")
        if raw is None:
            return default
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            raise _bad(f"limit must be an integer from 1 to {MAX_LIMIT}")
        return int(raw)

    def _meter_filter(self, query: Mapping[str, str]) -> str | None:
        meter = query.get("meter")
        if meter is not None and (
            not _METER.match(meter) or len(meter.encode("utf-8", "replace")) > _METER_MAX_BYTES
        ):
            raise _bad("invalid meter id")
        return meter

    def billing_determinants(self, params: Mapping[str, str], query: Mapping[str, str]) -> Response:
        """Determinants per meter for one billing cycle, in pages of meters.

        The cycle is ``from``/``to`` (ISO 8601, on the 15-minute grid), or a billing-cycle group
        given by its ``read_day`` (1..31) and the ``month`` (YYYY-MM) whose read date ends it.
        ``meters`` is a comma-separated list (default: every meter with data in the cycle).
        """
        from cloud.billing.sql import iter_pages
        from cloud.billing.tou import BillingCycle, CycleGroup

        if self.billing is None:
            return _error(501, "not_implemented", "billing is not configured in this deployment")
        tariff = self.billing.tariff
        try:
            if "read_day" in query or "month" in query:
                if "from" in query or "to" in query:
                    raise _bad("give either from/to or read_day/month")
                day, month = query.get("read_day", ""), query.get("month", "")
                if not day.isdigit() or not re.fullmatch(r"\d{4}-\d{2}", month):
                    raise _bad("read_day must be 1..31 and month YYYY-MM")
                year, mon = int(month[:4]), int(month[5:])
                if not 1 <= mon <= 12 or not 2000 <= year <= 2100:
                    raise _bad("month out of range")
                cycle = CycleGroup(f"day{int(day)}", int(day)).cycle(year, mon, tariff)
            else:
                start, end = self._window(query)
                cycle = BillingCycle(start, end, label="custom")
        except ConfigError as exc:
            raise _bad(str(exc)) from exc
        if cycle.end - cycle.start > 62 * 86400:
            raise _bad("a billing cycle is at most 62 days", "range_too_large")
        meters = None
        if query.get("meters"):
            meters = sorted({m.strip() for m in query["meters"].split(",") if m.strip()})
            if not meters or len(meters) > MAX_LIMIT or not all(_METER.match(m) for m in meters):
                raise _bad(f"meters must be 1 to {MAX_LIMIT} valid meter ids")
        page, size = self._page(query)
        if meters is None:  # every meter the cloud knows: the fleet seen and the registry
            seen = {e.meter for e in self.stores.fleet.list()} if self.stores.fleet else set()
            meters = sorted(seen | set(self.stores.registry.meters()))
        pages = list(iter_pages(meters, size))
        if page > max(1, len(pages)):
            raise _bad("page beyond the last page")
        chosen = pages[page - 1] if pages else []
        dets = self.billing.determinants(chosen, cycle) if chosen else []
        return _json(
            200,
            {
                "cycle": {"start": iso(cycle.start), "end": iso(cycle.end), "label": cycle.label},
                "tariff": tariff.name,
                "page": page,
                "pages": max(1, len(pages)),
                "determinants": [d.to_dict() for d in dets],
            },
        )

    @staticmethod
    def _page(query: Mapping[str, str]) -> tuple[int, int]:
        raw_page, raw_size = query.get("page", "1"), query.get("page_size", "200")
        if not raw_page.isdigit() or not raw_size.isdigit():
            raise _bad("page and page_size must be positive integers")
        page, size = int(raw_page), int(raw_size)
        if not 1 <= page <= 100_000 or not 1 <= size <= 1000:
            raise _bad("page must be 1..100000 and page_size 1..1000")
        return page, size

    def fleet(self, params: Mapping[str, str], query: Mapping[str, str]) -> Response:
        seen = {e.meter: e for e in (self.stores.fleet.list() if self.stores.fleet else [])}
        meters = sorted(set(seen) | set(self.stores.registry.meters()))
        now = int(self.clock())
        open_anomalies = (
            self.stores.events.counts("anomaly", now - self.anomaly_window_s)
            if self.stores.events is not None
            else {}
        )
        outages = {o.key: o for o in reversed(self.stores.outages.list("current"))}
        items = []
        for meter in meters:
            entry = seen.get(meter)
            thing = entry.thing if entry is not None else ""
            if not thing:
                recs = self.stores.registry.records(meter)
                thing = next((r.dcu for r in recs if r.covers(now)), recs[-1].dcu if recs else "")
            energy = self.stores.latest.get(meter).get(ENERGY_IMPORT)
            outage = outages.get(meter)
            items.append(
                {
                    "meter": meter,
                    "thing": thing,
                    "last_read": None if entry is None else iso(entry.last_read),
                    "last_read_epoch": None if entry is None else entry.last_read,
                    "energy_import": None
                    if energy is None
                    else {
                        "value": energy.value,
                        "unit": energy.unit,
                        "capture_time": iso(energy.capture_time),
                    },
                    "outage": None
                    if outage is None
                    else {"kind": outage.kind, "start": iso(outage.start)},
                    "open_anomalies": open_anomalies.get(meter, 0),
                }
            )
        return _json(
            200,
            {
                "meters": items,
                "anomaly_window_s": self.anomaly_window_s,
                "generated": iso(now),
            },
        )

    @staticmethod
    def _event(rec: EventRecord) -> dict[str, Any]:
        return {
            "id": rec.id,
            "kind": rec.kind,
            "type": rec.type,
            "thing": rec.thing,
            "meter": rec.meter or None,
            "time": iso(rec.time),
            "epoch": rec.time,
            "message": rec.doc,
        }

    def alarms(self, params: Mapping[str, str], query: Mapping[str, str]) -> Response:
        events = self._need(self.stores.events, "alarm timelines")
        start, end = self._window(query)
        kind = query.get("kind", "all")
        if kind not in ("all", "alarm", "event"):
            raise _bad("kind must be 'all', 'alarm' or 'event'")
        kinds = ["alarm", "event"] if kind == "all" else [kind]
        recs = events.list(
            kinds, start, end, meter=self._meter_filter(query), limit=self._limit(query)
        )
        return _json(
            200,
            {"from": iso(start), "to": iso(end), "alarms": [self._event(r) for r in recs]},
        )

    def anomalies(self, params: Mapping[str, str], query: Mapping[str, str]) -> Response:
        events = self._need(self.stores.events, "anomalies")
        start, end = self._window(query)
        recs = events.list(
            ["anomaly"], start, end, meter=self._meter_filter(query), limit=self._limit(query)
        )
        items = []
        for r in recs:
            d = r.doc
            items.append(
                {
                    "id": r.id,
                    "thing": r.thing,
                    "meter": r.meter,
                    "kind": r.type,
                    "source": d.get("source"),
                    "score": r.score,
                    "threshold": d.get("threshold"),
                    "model_version": d.get("model_version"),
                    "day": d.get("day"),
                    "reason": d.get("reason", ""),
                    "time": iso(r.time),
                    "epoch": r.time,
                }
            )
        return _json(200, {"from": iso(start), "to": iso(end), "anomalies": items})

    def dcu_health(self, params: Mapping[str, str], query: Mapping[str, str]) -> Response:
        health = self._need(self.stores.health, "health reports")
        thing = params["thing"]
        if not _THING.match(thing):
            raise _bad("invalid thing name")
        start, end = self._window(query)
        latest = health.latest(thing)
        if latest is None:
            raise ApiError(f"no health report from {thing}", status=404, details="unknown_dcu")
        history = []
        for rep in health.history(thing, start, end, self._limit(query, 2000)):
            d = rep.doc
            lat = _sub(d, "latency")
            bulk, alarm = _sub(lat, "bulk"), _sub(lat, "alarm")
            history.append(
                {
                    "time": iso(rep.time),
                    "epoch": rep.time,
                    "connected": _opt(d.get("connected"), bool),
                    "backlog_readings": _opt(d.get("backlog_readings"), int),
                    "backlog_messages": _opt(d.get("backlog_messages"), int),
                    "backlog_age_s": _opt(d.get("backlog_age_s"), float),
                    "publish_errors": _opt(d.get("publish_errors"), int),
                    "bulk_p50_ms": _opt(bulk.get("p50_ms"), float),
                    "bulk_p99_ms": _opt(bulk.get("p99_ms"), float),
                    "alarm_p50_ms": _opt(alarm.get("p50_ms"), float),
                    "alarm_p99_ms": _opt(alarm.get("p99_ms"), float),
                }
            )
        return _json(
            200,
            {
                "thing": thing,
                "latest": {"time": iso(latest.time), "epoch": latest.time, "report": latest.doc},
                "from": iso(start),
                "to": iso(end),
                "history": history,
            },
        )

    # -- dashboard page ---------------------------------------------------------------------

    def dashboard(self, params: Mapping[str, str], query: Mapping[str, str]) -> Response:
        name = params.get("name") or "index.html"
        ctype = _STATIC.get(name)
        if ctype is None:
            raise ApiError(f"no file {name}", status=404)
        text = resources.files("cloud").joinpath("dashboard", name).read_text(encoding="utf-8")
        return {
            "statusCode": 200,
            "headers": {"Content-Type": ctype, "Cache-Control": "no-cache"},
            "body": text,
        }


def _body(event: Mapping[str, Any]) -> str | None:
    """The request body as text (API Gateway base64-encodes binary bodies)."""
    body = event.get("body")
    if body is None or not event.get("isBase64Encoded"):
        return None if body is None else str(body)
    try:
        return base64.b64decode(str(body)).decode("utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad("request body is not UTF-8 JSON", "invalid_body") from exc


def _iso_offset(t: int) -> str:
    """ISO 8601 with an explicit UTC offset (the edge refuses naive times)."""
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat()


def _sub(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """``doc[key]`` when it is an object, else an empty one (reports are edge-supplied JSON)."""
    value = doc.get(key)
    return value if isinstance(value, Mapping) else {}


def _opt(value: Any, kind: type) -> Any:
    """``value`` as ``kind`` when it is a number/bool of that sort, else None."""
    if value is None or (isinstance(value, bool) and kind is not bool):
        return None
    if kind is bool:
        return value if isinstance(value, bool) else None
    if isinstance(value, int | float) and math.isfinite(value):
        return kind(value)
    return None


_NONE: frozenset[str] = frozenset()

_ROUTES: tuple[_Route, ...] = (
    _Route("GET", re.compile(r"/healthz"), ApiApp.healthz, auth=False, query=_NONE),
    _Route("GET", re.compile(r"/openapi\.yaml"), ApiApp.openapi, auth=False),
    _Route("GET", re.compile(r"/v1/meters/(?P<meter>[^/]+)/latest"), ApiApp.latest, query=_NONE),
    _Route(
        "GET",
        re.compile(r"/v1/meters/(?P<meter>[^/]+)/intervals"),
        ApiApp.intervals,
        query=frozenset({"from", "to", "channel"}),
    ),
    _Route("GET", re.compile(r"/v1/outages"), ApiApp.outages, query=frozenset({"state"})),
    _Route("POST", re.compile(r"/v1/reads"), ApiApp.create_read, body=True, query=_NONE),
    _Route("GET", re.compile(r"/v1/reads/(?P<rid>[^/]+)"), ApiApp.get_read, query=_NONE),
    _Route("GET", re.compile(r"/v1/fleet"), ApiApp.fleet, query=_NONE),
    _Route(
        "GET",
        re.compile(r"/v1/alarms"),
        ApiApp.alarms,
        query=frozenset({"from", "to", "kind", "meter", "limit"}),
    ),
    _Route(
        "GET",
        re.compile(r"/v1/anomalies"),
        ApiApp.anomalies,
        query=frozenset({"from", "to", "meter", "limit"}),
    ),
    _Route(
        "GET",
        re.compile(r"/v1/dcus/(?P<thing>[^/]+)/health"),
        ApiApp.dcu_health,
        query=frozenset({"from", "to", "limit"}),
    ),
    _Route(
        "GET",
        re.compile(r"/v1/billing/determinants"),
        ApiApp.billing_determinants,
        query=frozenset({"from", "to", "read_day", "month", "meters", "page", "page_size"}),
    ),
    _Route("GET", re.compile(r"/"), ApiApp.dashboard, auth=False),
    _Route("GET", re.compile(r"/static/(?P<name>[^/]+)"), ApiApp.dashboard, auth=False),
)


def handle(event: Mapping[str, Any], context: Any = None) -> Response:
    """The Lambda-proxy entry point with stores from the environment (see cloud.lambda_handlers)."""
    from cloud.lambda_handlers import api

    return api(dict(event), context)
