"""Alerts as the store keeps them: rules, the state of what each watches, and the events to deliver.

A rule watches subjects (a budget, an app's error rate or latency, an unpriced model, an app that went quiet);
each subject is `ok`, `warning` (budgets only) or `firing`. When the evaluation after a refresh finds a subject at
another level than the store holds, it moves the state on with a compare-and-set: the replica whose update
succeeds records the event (warning, firing, resolved), so each crossing is told once whatever the number of
replicas, and nothing is told again while the level holds. Events are delivered to the rule's webhook, retried
with back-off (`RETRY_SECONDS`), each attempt claimed in the store so that two replicas never send one twice at
once.
"""

import math
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import delete, insert, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from tally.store import audit
from tally.store.access import Actor
from tally.store.app_access import AppIds, find_app_id, sees, visible
from tally.store.models import AlertEvent, AlertRule, AlertState, table_of
from tally.store.secrets import now_ms

KINDS = ("budget", "error_rate", "latency", "unpriced_model", "silence")
FORMATS = ("json", "slack")
DEFAULT_WINDOW_MINUTES = {"budget": 0.0, "error_rate": 15.0, "latency": 15.0, "unpriced_model": 60.0,
                          "silence": 30.0}
RETRY_SECONDS = (30, 120, 600, 1800, 3600, 7200)  # after the first attempt fails; then the event is failed
CLAIM_SECONDS = 60  # an attempt in progress; a replica that dies mid-attempt is retried after this
_states, _events = table_of(AlertState), table_of(AlertEvent)


class AlertError(ValueError):
    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def add_rule(db: Session, actor: Actor, *, kind: str, webhook_url: str, app: str | None = None,
             threshold: float | None = None, window_minutes: float | None = None, format: str = "json",
             apps: AppIds = None) -> AlertRule:
    """A new rule; its `secret` (which signs each delivery) is on the returned rule, to be shown once."""
    if kind not in KINDS:
        raise AlertError(f"unknown kind {kind!r}; use one of: {', '.join(KINDS)}", "kind")
    app_id = None
    if app is not None:
        app_id = find_app_id(db, app)
        if app_id is None or not sees(apps, app_id):
            raise AlertError(f"no app {app!r}", "app")
    elif apps is not None:
        raise AlertError("you may see only some apps: name one of them", "app")
    if kind in ("error_rate", "latency") and (threshold is None or not math.isfinite(threshold) or threshold <= 0
                                              or (kind == "error_rate" and threshold > 100)):
        raise AlertError("an error_rate rule needs a percent above 0 and at most 100, a latency rule a p95 in ms "
                         "above 0 (--threshold)", "threshold")
    window = DEFAULT_WINDOW_MINUTES[kind] if window_minutes is None else window_minutes
    if kind != "budget" and not (math.isfinite(window) and 0 < window <= 7 * 24 * 60):
        raise AlertError("--window-minutes is above 0 and at most a week", "window_minutes")
    parts = urlsplit(webhook_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(webhook_url) > 2000:
        raise AlertError("the webhook must be an http(s) URL", "webhook_url")
    if format not in FORMATS:
        raise AlertError(f"unknown format {format!r}; use one of: {', '.join(FORMATS)}", "format")
    rule = AlertRule(kind=kind, app_id=app_id, threshold=threshold if kind in ("error_rate", "latency") else None,
                     window_minutes=window, webhook_url=webhook_url, format=format,
                     secret="whsec_" + secrets.token_urlsafe(32), created_at=now_ms(), created_by=actor.name)
    db.add(rule)
    db.flush()
    audit.record(db, actor=actor.name, action="alert.add", target=f"alert rule {rule.id}", address=actor.address,
                 detail={"kind": kind, "app": app, "threshold": rule.threshold, "window_minutes": window,
                         "webhook": f"{parts.scheme}://{parts.netloc}", "format": format})
    return rule


def list_rules(db: Session, *, apps: AppIds) -> list[AlertRule]:
    return list(db.exec(select(AlertRule).where(visible(col(AlertRule.app_id), apps))
                        .order_by(col(AlertRule.id))).all())


def remove_rule(db: Session, actor: Actor, rule_id: int, *, apps: AppIds) -> bool:
    rule = db.get(AlertRule, rule_id)
    if rule is None or not sees(apps, rule.app_id):
        return False
    db.exec(delete(AlertEvent).where(col(AlertEvent.rule_id) == rule_id))
    db.exec(delete(AlertState).where(col(AlertState.rule_id) == rule_id))
    db.delete(rule)
    db.flush()
    audit.record(db, actor=actor.name, action="alert.remove", target=f"alert rule {rule_id}", address=actor.address,
                 detail={"kind": rule.kind})
    return True


@dataclass(frozen=True)
class Reading:
    """A subject of a rule at one level now, with the value behind it and words for people."""

    rule_id: int
    subject: str
    level: str  # ok, warning or firing
    value: float | None
    message: str


def moves(db: Session, readings: list[Reading], watched: set[int]) -> list[tuple[Reading, str]]:
    """Each reading at another level than the store holds, with the level held (`ok` for a subject not yet
    seen); a subject of a `watched` rule that was not read is ok again. Only reads."""
    current = {(s.rule_id, s.subject): s.level for s in db.exec(
        select(AlertState).where(col(AlertState.rule_id).in_(watched))).all()} if watched else {}
    read = {(r.rule_id, r.subject): r for r in readings}
    for key, level in current.items():
        if key not in read and level != "ok":
            read[key] = Reading(key[0], key[1], "ok", None, f"{key[1]}: back to normal")
    return [(reading, current.get(key, "ok")) for key, reading in read.items()
            if reading.level != current.get(key, "ok")]


def record_readings(db: Session, readings: list[Reading], watched: set[int], *, now: int) -> list[int]:
    """Moves each subject's state to its reading and records an event for each move this call made (see
    `moves`); returns the new events' ids."""
    made = []
    for reading, before in moves(db, readings, watched):
        rule_id, subject = reading.rule_id, reading.subject
        db.execute(_insert_ignore(db, rule_id, subject, now))  # a subject not seen before starts ok
        mine = (_states.c.rule_id == rule_id) & (_states.c.subject == subject) & (_states.c.level == before)
        moved = db.connection().execute(update(_states).where(mine).values(level=reading.level, since=now)).rowcount
        if moved != 1:
            continue  # another replica moved it first, and told it
        status = "resolved" if reading.level == "ok" else reading.level
        event_id = db.execute(insert(_events).values(
            rule_id=rule_id, subject=subject, status=status, value=reading.value, message=reading.message, at=now,
            delivery="pending", attempts=0, next_attempt_at=now).returning(_events.c.id)).scalar_one()
        made.append(event_id)
    db.flush()
    return made


def _insert_ignore(db: Session, rule_id: int, subject: str, now: int):
    """An INSERT of an ok state that does nothing when the row exists (another replica made it meanwhile)."""
    values = {"rule_id": rule_id, "subject": subject, "level": "ok", "since": now}
    dialect_insert = pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
    return dialect_insert(_states).values(**values).on_conflict_do_nothing()


def any_due(db: Session, *, now: int) -> bool:
    """Whether an event awaits an attempt now (a read: the claim that follows takes SQLite's write lock)."""
    return db.exec(_due(now).limit(1)).first() is not None


def _due(now: int):
    return select(AlertEvent).where(col(AlertEvent.delivery) == "pending", col(AlertEvent.next_attempt_at) <= now)


def claim_due(db: Session, *, now: int, limit: int = 50) -> list[tuple[AlertEvent, AlertRule]]:
    """Pending events whose attempt is due, each claimed for CLAIM_SECONDS (compare-and-set on its due time)."""
    due = db.exec(_due(now).order_by(col(AlertEvent.next_attempt_at), col(AlertEvent.id)).limit(limit)).all()
    claimed = []
    for event in due:
        taken = db.connection().execute(update(_events).where(_events.c.id == event.id,
                                                 _events.c.next_attempt_at == event.next_attempt_at)
                           .values(next_attempt_at=now + CLAIM_SECONDS * 1000)).rowcount
        rule = db.get(AlertRule, event.rule_id)
        if taken == 1 and rule is not None:  # copies that outlive the session: the posts happen after it
            claimed.append((AlertEvent.model_validate(event.model_dump()), AlertRule.model_validate(rule.model_dump())))
    db.commit()
    return claimed


def record_attempt(db: Session, event_id: int, *, now: int, error: str | None) -> None:
    """The outcome of one delivery attempt: delivered, retried later (back-off), or failed for good."""
    event = db.get(AlertEvent, event_id)
    if event is None:
        return
    event.attempts += 1
    if error is None:
        event.delivery, event.delivered_at, event.next_attempt_at, event.last_error = "delivered", now, None, None
    elif event.attempts > len(RETRY_SECONDS):
        event.delivery, event.next_attempt_at, event.last_error = "failed", None, error[:2000]
    else:
        event.next_attempt_at, event.last_error = now + RETRY_SECONDS[event.attempts - 1] * 1000, error[:2000]
    db.add(event)
    db.commit()


def recent_events(db: Session, *, apps: AppIds, limit: int = 100) -> list[tuple[AlertEvent, AlertRule]]:
    rows = db.exec(select(AlertEvent, AlertRule).join(AlertRule, col(AlertRule.id) == col(AlertEvent.rule_id))
                   .where(visible(col(AlertRule.app_id), apps))
                   .order_by(col(AlertEvent.at).desc(), col(AlertEvent.id).desc()).limit(limit)).all()
    return [(event, rule) for event, rule in rows]
