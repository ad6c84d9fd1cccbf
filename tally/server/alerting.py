"""Alerts at work: after each refresh the rules are read against the analytics and the crossings recorded (once,
whatever the replicas); every few seconds the due events are posted to their webhooks, signed, and retried with
back-off when the receiver fails.

A delivery is a POST of JSON (`{"id", "rule_id", "kind", "status", "subject", "value", "message", "at"}`, or for
`format=slack` a Slack-compatible `{"text"}`) with `Tally-Event-Id` and `Tally-Signature: t=SECONDS,v1=HEX`, where
HEX is the HMAC-SHA256, keyed with the rule's secret, of `SECONDS.BODY` (as Stripe signs): a receiver recomputes it
and refuses a stale `t`. A 2xx answer delivers it; anything else, or no answer within `TIMEOUT_SECONDS`, is
retried after 30 s, 2, 10 and 30 minutes, 1 and 2 hours, then the event is failed. The delivery log is each
event's attempts, last error and outcome (`tally alerts history`, `GET /api/v1/alerts/events`, the dashboard).
"""

import hashlib
import hmac
import json
import logging
import time

import httpx
from sqlalchemy import Engine
from sqlmodel import Session

from tally.analytics.alert_readings import readings
from tally.analytics.service import Analytics
from tally.store.alerts import any_due, claim_due, list_rules, moves, record_attempt, record_readings
from tally.store.engine import writing
from tally.store.models import AlertEvent, AlertRule

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 5.0


def evaluate(engine: Engine, analytics: Analytics) -> list[int]:
    """Reads every rule now and records the crossings; returns the new events' ids."""
    with Session(engine) as db:
        rules = list_rules(db, apps=None)
    if not rules:
        return []
    now = time.time_ns() // 1_000_000
    found = readings(analytics.warehouse.cursor(), rules, analytics.budgets, now_ms=now)
    watched = {rule.id for rule in rules if rule.id is not None}
    with Session(engine) as db:
        if not moves(db, found, watched):  # nothing crossed: SQLite's write lock is not taken at every refresh
            return []
    with Session(writing(engine)) as db:  # the moves are read again under the lock: another replica may be first
        made = record_readings(db, found, watched, now=now)
        db.commit()
    return made


def deliver_due(engine: Engine, client: httpx.Client) -> int:
    """Posts every due event to its webhook; returns how many were attempted."""
    now = time.time_ns() // 1_000_000
    with Session(engine) as db:
        if not any_due(db, now=now):  # the usual case: no write lock taken every few seconds for nothing
            return 0
    with Session(writing(engine)) as db:
        claimed = claim_due(db, now=now)
    for event, rule in claimed:
        error = _post(client, event, rule)
        if error:
            log.warning("alert %s to %s: %s", event.id, rule.webhook_url, error)
        with Session(writing(engine)) as db:
            record_attempt(db, event.id or 0, now=time.time_ns() // 1_000_000, error=error)
    return len(claimed)


def payload(event: AlertEvent, rule: AlertRule) -> bytes:
    if rule.format == "slack":
        icon = {"firing": ":rotating_light:", "warning": ":warning:", "resolved": ":white_check_mark:"}
        body: dict = {"text": f"{icon.get(event.status, '')} Tally {rule.kind} {event.status}: {event.message}"}
    else:
        body = {"id": event.id, "rule_id": rule.id, "kind": rule.kind, "status": event.status,
                "subject": event.subject, "value": event.value, "message": event.message, "at": event.at}
    return json.dumps(body, separators=(",", ":")).encode()


def signature(secret: str, body: bytes, *, at_seconds: int) -> str:
    digest = hmac.new(secret.encode(), f"{at_seconds}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at_seconds},v1={digest}"


def _post(client: httpx.Client, event: AlertEvent, rule: AlertRule) -> str | None:
    body = payload(event, rule)
    headers = {"Content-Type": "application/json", "User-Agent": "Tally-Alerts/1", "Tally-Event-Id": str(event.id),
               "Tally-Signature": signature(rule.secret, body, at_seconds=int(time.time()))}
    try:
        answer = client.post(rule.webhook_url, content=body, headers=headers, timeout=TIMEOUT_SECONDS)
    except httpx.HTTPError as error:
        return f"{type(error).__name__}: {error}"[:500]
    return None if answer.is_success else f"HTTP {answer.status_code}: {answer.text[:200]}"
