"""Handlers of the JSON documents the dashboard and on-demand reads need.

One entry point, :meth:`DocumentIngestor.handle`, takes the document a rule selected (the
message plus ``topic``, ``thing`` and ``received_ms``, see :data:`cloud.rules.RULES`) and
dispatches on the topic:

* ``dt/ami/{thing}/health``: the uplink's health snapshot (``edge_core.health``) -> health store,
  keyed by (thing, report time), so a redelivered report overwrites itself;
* ``dt/ami/{thing}/anomaly``: an anomaly event (``anomaly_event.schema.json``) -> event store,
  kind ``anomaly``; the event has no id, so the id is a digest of what identifies it (thing,
  meter, source, kind, window start, model version) and a redelivery is stored once;
* ``dt/ami/{thing}/events``: a meter event (the alarm message schema of docs/alarms.md) ->
  event store, kind ``event``, by its id;
* ``cmd/ami/{thing}/read/res``: an on-demand read response -> the request with that id moves
  from pending to done (edge ``status`` ok) or error. A response for an unknown id, or for a
  request no longer pending (timed out, or a duplicate), is logged and dropped.

Alarms (``alarm/ami/+/#``) are recorded on the timeline by :func:`record_alarm`, which the
outage handler (:meth:`cloud.ingest.Ingestor.handle_alarm`) calls, so every alarm type is on
the timeline even when it does not change the outage table. Test messages (``test: true``) are
not recorded.

Malformed documents are logged and ignored (the raw copy is in the bucket by
``ami_raw_documents``); they never raise, like the batch ingest.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from cloud.registry import parse_time
from cloud.storage.base import EventRecord, HealthReport, Stores
from edge_core.errors import ConfigError

__all__ = ["RULE_FIELDS", "DocumentIngestor", "record_alarm"]

log = logging.getLogger(__name__)

RULE_FIELDS = ("topic", "received_ms")  # added by the rules' SELECT, not part of the message


def _clean(event: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in RULE_FIELDS}


def _event_time(event: Mapping[str, Any], clock: Callable[[], float]) -> int:
    for name in ("event_time", "time", "detected_time"):
        if event.get(name) is not None:
            return parse_time(event[name], path=name)
    if event.get("received_ms") is not None:
        return int(event["received_ms"]) // 1000
    return int(clock())


def record_alarm(
    stores: Stores,
    event: Mapping[str, Any],
    *,
    kind: str = "alarm",
    clock: Callable[[], float] = time.time,
) -> bool:
    """Put an alarm message (or a meter event, ``kind="event"``) on the timeline.

    Returns True when it was newly stored; False for a duplicate id, a test message, a
    malformed one, or stores without an event store.
    """
    if stores.events is None or event.get("test") is True:
        return False
    try:
        t = _event_time(event, clock)
    except (ConfigError, TypeError, ValueError) as exc:
        log.warning("%s with a bad time ignored: %s", kind, exc)
        return False
    doc = _clean(event)
    rid = (
        str(event.get("id") or "")
        or hashlib.sha256(repr(sorted(doc.items())).encode()).hexdigest()[:32]
    )
    meter = event.get("meter")
    if not meter:
        meters = event.get("meters") or []
        meter = meters[0] if isinstance(meters, list) and len(meters) == 1 else ""
    return stores.events.put(
        EventRecord(
            id=f"{kind}:{rid}",
            kind=kind,
            thing=str(event.get("dcu") or event.get("thing") or ""),
            meter=str(meter or ""),
            time=t,
            type=str(event.get("type", "")).lower(),
            doc=doc,
        )
    )


class DocumentIngestor:
    """Health, anomaly, meter event and read response documents -> stores (module doc)."""

    def __init__(self, stores: Stores, *, clock: Callable[[], float] = time.time) -> None:
        self.stores = stores
        self.clock = clock

    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Dispatch on ``topic``; returns ``{"action": ...}`` (stored, duplicate, ignored...)."""
        topic = str(event.get("topic", ""))
        parts = topic.split("/")
        try:
            if len(parts) == 5 and parts[0] == "cmd" and parts[3:] == ["read", "res"]:
                return {"action": self.handle_read_response(event)}
            if len(parts) == 4 and parts[0] == "dt":
                if parts[3] == "health":
                    return {"action": self.handle_health(event)}
                if parts[3] == "anomaly":
                    return {"action": self.handle_anomaly(event)}
                if parts[3] == "events":
                    return {"action": self.handle_meter_event(event)}
        except (ConfigError, KeyError, TypeError, ValueError) as exc:
            log.warning("malformed document on %s ignored: %s", topic, exc)
            return {"action": "ignored"}
        log.warning("no document handler for topic %r", topic)
        return {"action": "ignored"}

    def handle_health(self, event: Mapping[str, Any]) -> str:
        if self.stores.health is None:
            return "ignored"
        thing = str(event.get("thing") or "")
        if not thing:
            return "ignored"
        raw_t = event.get("time")
        t = int(float(raw_t)) if raw_t is not None else _event_time(event, self.clock)
        self.stores.health.put(HealthReport(thing, t, _clean(event)))
        return "stored"

    def handle_anomaly(self, event: Mapping[str, Any]) -> str:
        if self.stores.events is None:
            return "ignored"
        doc = _clean(event)
        meter = str(doc["meter"])
        start = int(doc["window_start"])
        score = float(doc["score"])
        thing = str(event.get("thing") or "")
        ident = "|".join(
            [
                thing,
                meter,
                str(doc.get("source", "")),
                str(doc.get("kind", "")),
                str(start),
                str(doc.get("model_version", "")),
            ]
        )
        rid = hashlib.sha256(ident.encode()).hexdigest()[:32]
        stored = self.stores.events.put(
            EventRecord(
                id=f"anomaly:{rid}",
                kind="anomaly",
                thing=thing,
                meter=meter,
                time=start,
                type=str(doc.get("kind", "")),
                score=score,
                doc=doc,
            )
        )
        return "stored" if stored else "duplicate"

    def handle_meter_event(self, event: Mapping[str, Any]) -> str:
        if self.stores.events is None or event.get("test") is True:
            return "ignored"
        stored = record_alarm(self.stores, event, kind="event", clock=self.clock)
        return "stored" if stored else "duplicate"

    def handle_read_response(self, event: Mapping[str, Any]) -> str:
        if self.stores.reads is None:
            return "ignored"
        rid = str(event.get("id") or "")
        if not rid:
            log.warning("read response without id ignored")
            return "ignored"
        doc = _clean(event)
        doc.pop("thing", None)
        status = "done" if event.get("status") == "ok" else "error"
        if self.stores.reads.complete(rid, status, doc, int(self.clock())):
            return status
        log.info("read response %s is for no pending request (late, duplicate or unknown)", rid)
        return "ignored"
