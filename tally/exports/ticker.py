"""The export ticker, run every few seconds by every server: it claims the fires that came due and writes each
period once, however many replicas tick, and takes over a run whose replica stopped writing it.

Claims live in the store, so any number of replicas can tick: a fire belongs to the replica that moves the
schedule's `next_run_at` on from it (a compare-and-set), a period is written again only if no run of it succeeded
or is still alive, and a running run whose heartbeat went stale (its replica died) is marked failed by the one
replica that wins that update, which then writes the period again. A fire missed while every server was down is
caught up once, at the next tick (coalesced: the latest fire only, as cron would not replay a night of minutes).
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import Engine, and_, or_, update
from sqlmodel import Session, col, select

from tally.analytics.service import Analytics
from tally.exports.periods import Period, cron_trigger, granularity, last_period
from tally.exports.runs import run_period
from tally.exports.schedules import next_fire
from tally.store.engine import writing
from tally.store.models import ExportRun, ExportSchedule, id_of, table_of
from tally.store.secrets import now_ms

log = logging.getLogger(__name__)
STALE_MS = 60_000  # a running run whose heartbeat is older than this was abandoned by its replica
_schedules, _runs = table_of(ExportSchedule), table_of(ExportRun)


@dataclass(frozen=True)
class Due:
    schedule_id: int
    period: Period


def tick(engine: Engine, analytics: Analytics, *, replica: str, now: int | None = None,
         should_stop: Callable[[], bool] | None = None) -> list[dict]:
    """Claims what is due at `now` and writes it; returns the runs this replica recorded."""
    now = now if now is not None else now_ms()
    runs = []
    for due in claim_fires(engine, now=now) + take_over_stale(engine, now=now):
        if should_stop is not None and should_stop():
            break
        if _still_to_write(engine, due, now=now):
            run = run_period(engine, analytics, schedule_id=due.schedule_id, period=due.period, replica=replica,
                             should_stop=should_stop)
            if run is not None:
                runs.append(run)
    return runs


def claim_fires(engine: Engine, *, now: int) -> list[Due]:
    """The fires at or before `now` that this replica moved on first, as the periods they export."""
    with Session(engine) as db:
        due = db.exec(select(ExportSchedule).where(or_(col(ExportSchedule.next_run_at).is_(None),
                                                       col(ExportSchedule.next_run_at) <= now))).all()
    claimed = []
    for schedule in due:
        trigger = cron_trigger(schedule.cron, ZoneInfo(schedule.timezone))
        fire, following = _latest_fire(trigger, schedule.next_run_at, now=now)
        with writing(engine).begin() as conn:
            moved = conn.execute(update(_schedules).where(
                _schedules.c.id == schedule.id,
                _schedules.c.next_run_at.is_(None) if schedule.next_run_at is None
                else _schedules.c.next_run_at == schedule.next_run_at).values(next_run_at=following)).rowcount
        if moved == 1 and fire is not None:  # a schedule from before claims starts from now, without a run
            claimed.append(Due(id_of(schedule), last_period(granularity(schedule.cron), trigger.timezone,
                                                            _moment(fire))))
    return claimed


def take_over_stale(engine: Engine, *, now: int) -> list[Due]:
    """Runs left running by a replica that stopped (no heartbeat for STALE_MS): each marked failed by the one
    replica that wins the update, which then writes its period again."""
    with Session(engine) as db:
        stale = db.exec(select(ExportRun).where(ExportRun.status == "running", or_(
            col(ExportRun.heartbeat_at).is_(None), col(ExportRun.heartbeat_at) < now - STALE_MS))).all()
    taken = []
    for run in stale:
        with writing(engine).begin() as conn:
            won = conn.execute(update(_runs).where(
                _runs.c.id == run.id, _runs.c.status == "running",
                _runs.c.heartbeat_at.is_(None) if run.heartbeat_at is None
                else _runs.c.heartbeat_at == run.heartbeat_at).values(
                status="failed", finished_at=now,
                error=f"abandoned: {run.replica or 'a server'} stopped during the run; written again")).rowcount
        if won == 1:
            log.warning("export run %s (%s) was abandoned by %s; writing it again", run.id, run.period, run.replica)
            taken.append(Due(run.schedule_id, Period(run.period, run.period_start, run.period_end)))
    return taken


def _still_to_write(engine: Engine, due: Due, *, now: int) -> bool:
    """No run of the period succeeded, and none is alive: each period is written once."""
    with Session(engine) as db:
        found = db.exec(select(ExportRun.id).where(
            ExportRun.schedule_id == due.schedule_id, ExportRun.period_start == due.period.start_ms,
            ExportRun.period_end == due.period.end_ms,
            or_(col(ExportRun.status) == "succeeded",
                and_(col(ExportRun.status) == "running", col(ExportRun.heartbeat_at) >= now - STALE_MS))
        ).limit(1)).first()
    return found is None


def _latest_fire(trigger: CronTrigger, next_run_at: int | None, *, now: int) -> tuple[int | None, int | None]:
    """(the latest fire at or before `now`, the first after it), from the stored next fire on."""
    if next_run_at is None:
        return None, next_fire(trigger, after_ms=now)
    fire, following = next_run_at, next_fire(trigger, after_ms=next_run_at)
    while following is not None and following <= now:
        fire, following = following, next_fire(trigger, after_ms=following)
    return fire, following


def _moment(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
