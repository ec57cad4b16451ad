"""IoT rules as code: one definition per rule drives the template and the local evaluator.

Theory of operation
-------------------
:data:`RULES` is the single source of truth. :mod:`cloud.template` renders each rule into an
``AWS::IoT::TopicRule`` (always ``AwsIotSqlVersion`` 2016-03-23) with a role allowing exactly its
actions; :class:`RuleEngine` evaluates the same statements on messages arriving at a local broker
and returns the :class:`ActionInvocation` objects that the local runner (or a test) executes.

Rules (thing = topic level 3):

* ``ami_raw_batches``: binary batches on ``dt/ami/+/#`` (interval, daily, ondemand, diagnostic)
  land unchanged in the raw bucket at ``raw/thing=<thing>/date=YYYY-MM-DD/<uuid>.bin`` (the batch
  id is inside the binary payload, out of reach of IoT SQL; the ingest dedupes by it).
* ``ami_raw_documents``: the JSON documents of ``dt/ami/+/#`` (events, anomaly, health) land at
  ``.../<uuid>.json``.
* ``ami_ingest``: interval, daily and on-demand batches go base64-encoded to the ingest function
  (a Lambda action cannot take a binary payload as is).
* ``ami_alarms_oms``: every power alarm on ``alarm/ami/+/#`` goes to the ``oms`` queue and the
  alarm function (outage table).
* ``ami_documents``: health snapshots, anomaly events and meter events (``dt/ami/+/health``,
  ``anomaly``, ``events``) go to the documents function (:mod:`cloud.events`), which keeps what
  the dashboard shows.
* ``ami_read_responses``: on-demand read responses (``cmd/ami/+/read/res``) go to the documents
  function, which completes the pending request of the same correlation id.
* ``ami_events_revenue_protection``: tamper and security events (``dt/ami/+/events``, JSON, not
  test messages) go to the ``revenue-protection`` queue; they are archived by
  ``ami_raw_documents`` as well.

The local runner subscribes to the *covering* filters only (a filter contained in another one
is dropped) and runs every rule on every message, so a message is evaluated once even though
the rules' filters overlap; filters that overlap without one covering the other are refused.

The date in S3 keys is the arrival date (``timestamp()``), like IoT Core; capture dates live in
the Parquet partitions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from cloud.iotsql import (
    SQL_VERSION,
    Query,
    RuleEvaluationError,
    check_template,
    filter_covers,
    filters_overlap,
    parse_sql,
    render_template,
)
from edge_core.errors import ConfigError

__all__ = [
    "BATCH_TYPES",
    "DOCUMENT_TYPES",
    "INGEST_TYPES",
    "RULES",
    "SQL_VERSION",
    "TAMPER_TYPES",
    "ActionInvocation",
    "LambdaAction",
    "Rule",
    "RuleEngine",
    "S3Action",
    "SqsAction",
]

log = logging.getLogger(__name__)

BATCH_TYPES = ("interval", "daily", "ondemand", "diagnostic")
INGEST_TYPES = ("interval", "daily", "ondemand")
TAMPER_TYPES = ("tamper", "security")
DOCUMENT_TYPES = ("health", "anomaly", "events")
_DATE = "${parse_time('yyyy-MM-dd', timestamp(), 'UTC')}"


@dataclass(frozen=True, slots=True)
class S3Action:
    """Put the selected payload into the raw bucket at ``key`` (a substitution template)."""

    key: str
    kind: Literal["s3"] = "s3"


@dataclass(frozen=True, slots=True)
class SqsAction:
    """Send the selected payload (JSON) to the named queue (one queue per consumer)."""

    queue: str
    kind: Literal["sqs"] = "sqs"


@dataclass(frozen=True, slots=True)
class LambdaAction:
    """Invoke a handler of this package (``ingest``, ``alarm`` or ``documents``) with the
    selected document."""

    function: str
    kind: Literal["lambda"] = "lambda"


Action = S3Action | SqsAction | LambdaAction


@dataclass(frozen=True, slots=True)
class Rule:
    """One topic rule. ``payload`` says what arrives on its topics ("binary" or "json");
    a binary rule must not reference payload fields."""

    name: str
    sql: str
    actions: tuple[Action, ...]
    payload: Literal["binary", "json", "mixed"]
    description: str
    query: Query

    @classmethod
    def define(
        cls,
        name: str,
        sql: str,
        actions: Iterable[Action],
        *,
        payload: Literal["binary", "json", "mixed"],
        description: str,
    ) -> Rule:
        if not name.replace("_", "").isalnum():
            raise ConfigError(f"rule name {name!r} must be [A-Za-z0-9_]+")
        query = parse_sql(sql)
        if payload in ("binary", "mixed") and not query.binary_safe:
            raise ConfigError(f"rule {name} references payload fields but receives binary data")
        acts = tuple(actions)
        if not acts:
            raise ConfigError(f"rule {name} has no action")
        for act in acts:
            if isinstance(act, S3Action):
                check_template(act.key)
        return cls(name, sql, acts, payload, description, query)

    @property
    def topic_filter(self) -> str:
        return self.query.topic_filter


@dataclass(frozen=True, slots=True)
class ActionInvocation:
    """What one action of one rule must do with one message.

    ``target`` is the S3 key, the queue name or the function name; ``payload`` is bytes for a
    binary ``SELECT *`` and a JSON document (dict) otherwise.
    """

    rule: str
    kind: str
    target: str
    payload: bytes | dict[str, Any]


def _in(types: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{t}'" for t in types) + ")"


RULES: tuple[Rule, ...] = (
    Rule.define(
        "ami_raw_batches",
        f"SELECT * FROM 'dt/ami/+/#' WHERE topic(4) IN {_in(BATCH_TYPES)}",
        [S3Action(f"raw/thing=${{topic(3)}}/date={_DATE}/${{newuuid()}}.bin")],
        payload="binary",
        description="Binary batches, unchanged, into the raw bucket.",
    ),
    Rule.define(
        "ami_raw_documents",
        f"SELECT * FROM 'dt/ami/+/#' WHERE topic(4) NOT IN {_in(BATCH_TYPES)}",
        [S3Action(f"raw/thing=${{topic(3)}}/date={_DATE}/${{newuuid()}}.json")],
        payload="json",
        description="JSON documents (events, anomaly, health) into the raw bucket.",
    ),
    Rule.define(
        "ami_ingest",
        "SELECT encode(*, 'base64') AS data, topic() AS topic, topic(3) AS thing, "
        f"timestamp() AS received_ms FROM 'dt/ami/+/#' WHERE topic(4) IN {_in(INGEST_TYPES)}",
        [LambdaAction("ingest")],
        payload="binary",
        description="Interval, daily and on-demand batches to the ingest function.",
    ),
    Rule.define(
        "ami_alarms_oms",
        "SELECT *, topic(3) AS thing, timestamp() AS received_ms FROM 'alarm/ami/+/#'",
        [SqsAction("oms"), LambdaAction("alarm")],
        payload="json",
        description="Every alarm to the outage management queue and the outage table.",
    ),
    Rule.define(
        "ami_documents",
        "SELECT *, topic() AS topic, topic(3) AS thing, timestamp() AS received_ms "
        f"FROM 'dt/ami/+/#' WHERE topic(4) IN {_in(DOCUMENT_TYPES)}",
        [LambdaAction("documents")],
        payload="json",
        description="Health, anomaly and meter event documents to the dashboard tables.",
    ),
    Rule.define(
        "ami_read_responses",
        "SELECT *, topic() AS topic, topic(3) AS thing, timestamp() AS received_ms "
        "FROM 'cmd/ami/+/read/res'",
        [LambdaAction("documents")],
        payload="json",
        description="On-demand read responses to the read request table (by correlation id).",
    ),
    Rule.define(
        "ami_events_revenue_protection",
        "SELECT *, topic(3) AS thing, timestamp() AS received_ms FROM 'dt/ami/+/events' "
        f"WHERE type IN {_in(TAMPER_TYPES)} AND test = false",
        [SqsAction("revenue-protection")],
        payload="json",
        description="Tamper and security events to the revenue-protection queue.",
    ),
)


class RuleEngine:
    """Evaluates rules on messages; returns the action invocations (no I/O here).

    ``clock_ms`` supplies ``timestamp()`` (milliseconds since the epoch).
    """

    def __init__(
        self,
        rules: Iterable[Rule] = RULES,
        *,
        clock_ms: Callable[[], int] | None = None,
        uuid_factory: Callable[[], str] | None = None,
    ) -> None:
        self.rules = tuple(rules)
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ConfigError(f"duplicate rule names in {names}")
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._uuid = uuid_factory
        self.errors = 0  # rule evaluation errors (IoT Core would run the error action)

    def topic_filters(self) -> tuple[str, ...]:
        """The filters to subscribe to: the rules' FROM filters minus those another one covers.

        Raises ConfigError for two filters that overlap without one covering the other: a broker
        may deliver such a message once per subscription, and the rules would run twice.
        """
        distinct = list(dict.fromkeys(r.topic_filter for r in self.rules))
        kept = [f for f in distinct if not any(g != f and filter_covers(g, f) for g in distinct)]
        for i, f in enumerate(kept):
            for g in kept[i + 1 :]:
                if filters_overlap(f, g):
                    raise ConfigError(f"rule filters {f!r} and {g!r} overlap; use a covering one")
        return tuple(kept)

    def evaluate(self, topic: str, payload: bytes) -> list[ActionInvocation]:
        """Every action invocation the message triggers, in rule order."""
        now = self._clock_ms()
        out: list[ActionInvocation] = []
        for rule in self.rules:
            try:
                result = rule.query.evaluate(
                    topic, payload, timestamp_ms=now, uuid_factory=self._uuid
                )
                if result is None:
                    continue
                for act in rule.actions:
                    if isinstance(act, S3Action):
                        key = render_template(
                            act.key, topic, payload, timestamp_ms=now, uuid_factory=self._uuid
                        )
                        out.append(ActionInvocation(rule.name, "s3", key, result.payload))
                    elif isinstance(act, SqsAction):
                        out.append(ActionInvocation(rule.name, "sqs", act.queue, result.payload))
                    else:
                        out.append(
                            ActionInvocation(rule.name, "lambda", act.function, result.payload)
                        )
            except RuleEvaluationError as exc:
                self.errors += 1
                log.warning("rule %s failed on %s: %s", rule.name, topic, exc)
        return out
