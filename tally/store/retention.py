"""Retention: per app, how many days the raw content of interactions (prompt and answer texts, raw request and
response JSON) and uploaded images are kept, and the pass that removes what is older.

What retention removes is the content; each interaction's numbers and links (time, app, user, session, model,
tokens, latency, error, finish reason) stay. So every rollup, session and long-range figure stays exact on every
replica and through any rebuild of the analytics, which are computed from those rows: a 90-day chart of an app
with 7 days of retention still shows 90 days. The pass walks the ids in ranges, each changed in a short
transaction of its own, so ingest never waits for more than one range.
"""

import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, and_, func, select, update
from sqlalchemy.exc import IntegrityError

from tally.store.engine import let_writers_in, writing
from tally.store.models import App, Interaction, InteractionImage, table_of
from tally.store.privacy_models import RetentionRun

DAY_MS = 86_400_000
BATCH = 1_000  # images per transaction, and interaction ids per range
MAX_DAYS = 36_500
EMPTY_JSON = "{}"  # the raw JSON of an interaction whose content was removed
_interaction, _image, _app, _run = (table_of(model) for model in (Interaction, InteractionImage, App, RetentionRun))


class RetentionError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def check_days(field: str, days: int | None) -> None:
    if days is not None and not 1 <= days <= MAX_DAYS:
        raise RetentionError(field, f"must be a whole number of days from 1 to {MAX_DAYS}")


def set_retention(app: App, *, raw_days: int | None, uploads_days: int | None) -> None:
    """None for both: keep forever. Images without days of their own follow the content's."""
    check_days("raw_days", raw_days)
    check_days("uploads_days", uploads_days)
    if uploads_days is not None and raw_days is None:
        raise RetentionError("uploads_days", "needs raw_days too (the content of interactions is kept forever "
                                             "otherwise, with the images it names)")
    app.raw_retention_days, app.upload_retention_days = raw_days, uploads_days


def describe(app: App) -> str:
    if app.raw_retention_days is None:
        return "kept forever"
    images = app.upload_retention_days or app.raw_retention_days
    return f"content {_days(app.raw_retention_days)}, images {_days(images)}"


def _days(count: int) -> str:
    return f"{count} day" if count == 1 else f"{count} days"


@dataclass(frozen=True)
class Removed:
    interactions: int = 0
    images: int = 0
    seconds: float = 0.0


def apply_retention(engine: Engine, *, now: int, data_dir: Path, batch: int = BATCH) -> Removed:
    """Removes, for every app with retention, the content of interactions that began before its cutoff and the
    files of images uploaded before theirs."""
    began = time.perf_counter()
    with engine.connect() as conn:
        apps = conn.execute(select(_app.c.id, _app.c.raw_retention_days, _app.c.upload_retention_days)
                            .where(_app.c.raw_retention_days.is_not(None))).all()
    interactions = images = 0
    for app_id, raw_days, uploads_days in apps:
        interactions += _expire_content(engine, app_id, now - raw_days * DAY_MS, now, batch)
        images += _expire_images(engine, app_id, now - (uploads_days or raw_days) * DAY_MS, data_dir, batch)
    return Removed(interactions, images, time.perf_counter() - began)


def _expire_content(engine: Engine, app_id: int, cutoff: int, now: int, span: int) -> int:
    """Walks the ids in ranges of `span` (late arrivals may be old, so every id is looked at): each range is read
    by the primary key and changed in a transaction of its own, however few of its rows are due."""
    with engine.connect() as conn:
        low, high = conn.execute(select(func.min(_interaction.c.id), func.max(_interaction.c.id))).one()
    if low is None:
        return 0
    done = 0
    for start in range(low, high + 1, span):
        with writing(engine).begin() as conn:
            # updated_at moves on, so that every server's analytics reload the row (and its empty preview).
            # `app_id + 0`: an expression, so that the planner reads the id range by the primary key (SQLite,
            # without statistics, would otherwise walk all of the app's rows through an index, at every range).
            done += conn.execute(update(_interaction).where(
                _interaction.c.id >= start, _interaction.c.id < start + span, _interaction.c.app_id + 0 == app_id,
                _interaction.c.request_at < cutoff, _interaction.c.expired_at.is_(None),
            ).values(input_text="", output_text="", request_json=EMPTY_JSON, response_json=EMPTY_JSON,
                     malformed=None, expired_at=now, updated_at=now)).rowcount
        let_writers_in(engine)
    return done


def _expire_images(engine: Engine, app_id: int, cutoff: int, data_dir: Path, batch: int) -> int:
    done = 0
    due = and_(_image.c.app_id == app_id, _image.c.created_at < cutoff, _image.c.path.is_not(None))
    while True:
        with writing(engine).begin() as conn:
            rows = conn.execute(select(_image.c.id, _image.c.path).where(due).order_by(_image.c.id)
                                .limit(batch)).all()
            if not rows:
                return done
            conn.execute(update(_image).where(_image.c.id.in_([row.id for row in rows]))
                         .values(path=None, size_bytes=None))
        for row in rows:  # after the commit: a crash in between leaves a file no row names, never the reverse
            (data_dir / row.path).unlink(missing_ok=True)
        done += len(rows)
        let_writers_in(engine)


def claim_day(engine: Engine, *, day: str, replica: str, now: int) -> bool:
    """Whether this replica runs `day`'s pass: the first to record it does; the others skip it."""
    with engine.connect() as conn:
        if conn.execute(select(_run.c.day).where(_run.c.day == day)).first() is not None:
            return False
    try:
        with writing(engine).begin() as conn:
            conn.execute(_run.insert().values(day=day, replica=replica, started_at=now))
    except IntegrityError:
        return False
    return True


def record_run(engine: Engine, *, day: str, removed: Removed, now: int) -> None:
    with writing(engine).begin() as conn:
        conn.execute(update(_run).where(_run.c.day == day).values(
            finished_at=now, interactions=removed.interactions, images=removed.images))

