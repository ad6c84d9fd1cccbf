"""Export schedules as APScheduler jobs in a persistent job store: kept in step with `export_schedule`, and run.

The `export_schedule` table is the source of truth; the job store (`export_job`, in the same database) only adds
what APScheduler needs to survive a restart: each job's next run time. A run missed while the server was down
is therefore still due when it starts again, and runs once (coalesced), however many ticks it missed.
"""

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy import Engine, make_url
from sqlmodel import Session, select

from tally.analytics.export_periods import cron_trigger
from tally.analytics.export_runs import run_schedule
from tally.analytics.export_schedules import fail_interrupted_runs
from tally.analytics.service import Analytics
from tally.store.engine import writing
from tally.store.models import ExportJob, ExportSchedule
from tally.store.secrets import now_ms

log = logging.getLogger(__name__)
JOBSTORE = "exports"


@dataclass
class ExportRuntime:
    """What a running export job needs and cannot carry in the job store: live connections do not pickle."""

    engine: Engine
    analytics: Analytics
    key: str
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


# APScheduler pickles a persistent job as a reference to a module-level function plus its arguments, so the job
# carries plain values only: its store's key and the schedule id. At run time it finds the engine and warehouse
# of the server that loaded it here, registered by that server's lifespan. The key (a hash of the store's URL
# without its password) stays the same across restarts and tells apart two servers in one process (tests).
_RUNTIMES: dict[str, ExportRuntime] = {}


def store_key(engine: Engine) -> str:
    url = make_url(engine.url).render_as_string(hide_password=True)
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def run_export_job(key: str, schedule_id: int) -> None:
    runtime = _RUNTIMES.get(key)
    if runtime is None:
        log.error("export schedule %d is due but its server is not running here", schedule_id)
        return
    run_schedule(runtime.engine, runtime.analytics, schedule_id=schedule_id, should_stop=runtime.stopping.is_set)


def job_store(engine: Engine) -> SQLAlchemyJobStore:
    return SQLAlchemyJobStore(engine=engine, tablename=ExportJob.__tablename__)


def start_exports(scheduler: BaseScheduler, engine: Engine, analytics: Analytics, *,
                  sync_seconds: float) -> ExportRuntime:
    """Registers the runtime, marks runs cut short by the last stop, and brings the jobs in line with the
    schedules; call it while the scheduler is paused, so that a missed run is caught up only after this."""
    runtime = ExportRuntime(engine, analytics, store_key(engine))
    _RUNTIMES[runtime.key] = runtime
    try:
        with Session(writing(engine)) as db:
            if interrupted := fail_interrupted_runs(db, now_ms=now_ms()):
                log.warning("%d export run(s) were interrupted by the last stop", interrupted)
            db.commit()
        reconcile(scheduler, runtime)
    except BaseException:
        forget_exports(runtime)
        raise
    # Schedules added or removed from the command line are taken up within `sync_seconds`.
    scheduler.add_job(sync_jobs, "interval", args=[scheduler, runtime], id="exports-sync",
                      seconds=sync_seconds, max_instances=1, coalesce=True)
    return runtime


def stop_exports(runtime: ExportRuntime) -> None:
    """Running exports give up at their next page, and job reconciling ends, a reconcile under way finishing
    first: it needs the scheduler's job store lock, which `shutdown(wait=True)` holds while it waits for running
    jobs, so a reconcile caught by a shutdown would wait for it forever."""
    runtime.stopping.set()
    with runtime.lock:
        pass


def forget_exports(runtime: ExportRuntime) -> None:
    _RUNTIMES.pop(runtime.key, None)


def reconcile(scheduler: BaseScheduler, runtime: ExportRuntime) -> None:
    """One job per schedule: adds the missing, removes the orphaned, and updates the changed ones. A job that
    is already right is left alone, so that its next run time (a catch-up, maybe) stays as stored."""
    with runtime.lock:
        if runtime.stopping.is_set():
            return
        with Session(runtime.engine) as db:
            schedules = {f"export-{s.id}": s for s in db.exec(select(ExportSchedule))}
        jobs = {job.id: job for job in scheduler.get_jobs(jobstore=JOBSTORE)}
        for job_id in jobs.keys() - schedules.keys():
            scheduler.remove_job(job_id, jobstore=JOBSTORE)
        for job_id, schedule in schedules.items():
            trigger = cron_trigger(schedule.cron, ZoneInfo(schedule.timezone))
            args = (runtime.key, schedule.id)
            job = jobs.get(job_id)
            if job is None:
                scheduler.add_job(run_export_job, trigger, args=args, id=job_id, jobstore=JOBSTORE,
                                  name=f"export {schedule.dataset} ({schedule.cron})", coalesce=True,
                                  max_instances=1, misfire_grace_time=None)
                continue
            if repr(job.trigger) != repr(trigger):
                scheduler.reschedule_job(job_id, jobstore=JOBSTORE, trigger=trigger)
            if tuple(job.args) != args:
                scheduler.modify_job(job_id, jobstore=JOBSTORE, args=args)


def sync_jobs(scheduler: BaseScheduler, runtime: ExportRuntime) -> None:
    """`reconcile`, logging a failure instead of raising it: the next periodic look tries again."""
    try:
        reconcile(scheduler, runtime)
    except Exception:
        log.exception("could not bring export jobs in line with the schedules")
