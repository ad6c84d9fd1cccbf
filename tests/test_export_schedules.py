"""Export schedules: the period rule, atomic files, run history, and real APScheduler jobs across restarts."""

import csv
import io
import json
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import httpx
import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from sqlmodel import Session

from tally.analytics.export_periods import cron_trigger, granularity, last_period
from tally.analytics.export_runs import run_schedule
from tally.analytics.export_schedules import add_schedule, recent_runs
from tally.analytics.exports import write_atomically
from tally.analytics.service import Analytics
from tally.ingest.batch import BatchStore
from tally.ingest.keys import VerifiedApp
from tally.ingest.prepare import prepare
from tally.ingest.wire import TrackPayload
from tally.server.export_jobs import JOBSTORE, job_store
from tally.store.secrets import now_ms
from tests.conftest import start_server
from tests.payloads import openai_chat

UTC = timezone.utc
DAY_MS = 86_400_000


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _ms(text: str) -> int:
    return round(_at(text).timestamp() * 1000)


@pytest.mark.parametrize("cron, zone, now, label, start, end", [
    ("0 2 * * *", "Europe/Paris", "2026-11-25T01:30Z", "2026-11-24", "2026-11-23T23:00Z", "2026-11-24T23:00Z"),
    # the day the clocks go forward in Paris lasts 23 hours
    ("0 2 * * *", "Europe/Paris", "2026-03-30T01:00Z", "2026-03-29", "2026-03-28T23:00Z", "2026-03-29T22:00Z"),
    ("5 * * * *", "Asia/Kolkata", "2026-11-25T10:20Z", "2026-11-25T14", "2026-11-25T08:30Z", "2026-11-25T09:30Z"),
    ("*/15 * * * *", "UTC", "2026-11-25T10:00Z", "2026-11-25T09", "2026-11-25T09:00Z", "2026-11-25T10:00Z"),
    ("0 6 * * 1", "UTC", "2026-11-30T06:00Z", "2026-W48", "2026-11-23T00:00Z", "2026-11-30T00:00Z"),
    ("0 0 * * mon", "UTC", "2027-01-04T00:00Z", "2026-W53", "2026-12-28T00:00Z", "2027-01-04T00:00Z"),
    ("0 1 1 * *", "America/New_York", "2026-12-01T06:00Z", "2026-11", "2026-11-01T04:00Z", "2026-12-01T05:00Z"),
    ("0 0 1 1 *", "UTC", "2027-01-01T00:00Z", "2026", "2026-01-01T00:00Z", "2027-01-01T00:00Z"),
])
def test_a_run_exports_the_last_complete_period_of_its_cron(cron, zone, now, label, start, end):
    period = last_period(granularity(cron), ZoneInfo(zone), _at(now))
    assert (period.label, period.start_ms, period.end_ms) == (label, _ms(start), _ms(end))


@pytest.mark.parametrize("weekdays, days", [
    ("0", {6}), ("7", {6}), ("sun", {6}), ("1-5", {0, 1, 2, 3, 4}), ("mon-sun", set(range(7))), ("*/2", {6, 1, 3, 5}),
    ("5-7", {4, 5, 6}), ("0,3", {6, 2}),
])
def test_weekdays_count_from_sunday_as_cron_does(weekdays, days):
    trigger, moment, seen = cron_trigger(f"0 2 * * {weekdays}", ZoneInfo("UTC")), _at("2026-11-23T00:00Z"), set()
    for _ in range(14):
        moment = trigger.get_next_fire_time(None, moment + timedelta(minutes=1))
        seen.add(moment.weekday())  # Monday is 0
    assert seen == days


@pytest.mark.parametrize("cron", ["0 2 * *", "0 2 1 * 1", "0 25 * * *", "0 2 * * 8", "0 2 * * fri-mon", "x 2 * * *"])
def test_crontabs_cron_would_read_otherwise_are_refused(cron):
    with pytest.raises(ValueError):
        cron_trigger(cron, ZoneInfo("UTC"))


def test_a_file_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "out" / "users_all_2026-11-24.csv"

    def chunks(text: bytes, fail: bool = False):
        for _ in range(3):
            assert len(list(target.parent.glob(".users_all_2026-11-24.csv.*.part"))) == 1
            assert not target.exists() or target.read_bytes() == b"old" * 3
            yield text
        if fail:
            raise OSError(28, "No space left on device")

    assert write_atomically(target, chunks(b"old")) == 9
    with pytest.raises(OSError):
        write_atomically(target, chunks(b"new", fail=True))
    assert target.read_bytes() == b"oldoldold" and len(list(target.parent.iterdir())) == 1
    write_atomically(target, chunks(b"new"))
    assert target.read_bytes() == b"newnewnew" and len(list(target.parent.iterdir())) == 1


def _store(engine, *payloads) -> None:
    jobs = [prepare(TrackPayload.model_validate(p), app=VerifiedApp(1, None), received_at=now_ms(),
                    default_timeout_minutes=10) for p in payloads]
    with engine.begin() as conn:
        BatchStore().store(conn, jobs)


def _add(engine, settings, **options) -> int:
    with Session(engine) as db:
        schedule = add_schedule(db, **{"dataset": "interactions", "cron": "0 2 * * *", "timezone_name": "UTC",
                                       "data_dir": settings.data_dir, "confined": False, "now_ms": 0, **options})
        db.commit()
        return schedule.id


def test_a_rerun_of_a_period_replaces_its_file(engine, settings, app_keys):
    day = _ms("2026-11-24T00:00Z")
    _store(engine, *(openai_chat(app_keys, at_ms=day + hour * 3_600_000) for hour in (-1, 3, 23, 24)))
    schedule_id = _add(engine, settings, app_id=1, directory="nightly")
    analytics = Analytics(settings)
    try:
        first = run_schedule(engine, analytics, schedule_id=schedule_id, now=_at("2026-11-25T02:00Z"))
        _store(engine, openai_chat(app_keys, at_ms=day + 12 * 3_600_000))
        second = run_schedule(engine, analytics, schedule_id=schedule_id, now=_at("2026-11-25T09:00Z"))
    finally:
        analytics.close()
    path = settings.data_dir / "nightly" / "interactions_test-app_2026-11-24.csv"
    assert first["file"] == second["file"] == str(path) and list(path.parent.iterdir()) == [path]
    assert (first["status"], first["rows"], second["status"], second["rows"]) == ("succeeded", 2, "succeeded", 3)
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))
    assert [row[1] for row in rows[1:]] == ["2026-11-24T03:00:00.000Z", "2026-11-24T12:00:00.000Z",
                                            "2026-11-24T23:00:00.000Z"]
    assert second["bytes"] == path.stat().st_size and second["period"] == "2026-11-24"
    with Session(engine) as db:
        assert [run["id"] for run in recent_runs(db, schedule_id=schedule_id)] == [second["id"], first["id"]]


def test_a_stopping_server_abandons_the_run(engine, settings):
    schedule_id = _add(engine, settings, dataset="users")
    analytics = Analytics(settings)
    try:
        run = run_schedule(engine, analytics, schedule_id=schedule_id, should_stop=lambda: True)
    finally:
        analytics.close()
    assert run["status"] == "failed" and run["error"].startswith("ExportStopped")
    assert not any((settings.data_dir / "exports").iterdir())


# --- with a live server and its real scheduler --------------------------------------------------------------

@pytest.fixture
def boot(engine, settings):
    """Starts servers on the same store, one at a time, and stops the last one at the end."""
    servers = []

    def start(**overrides):
        if servers:
            servers[-1].stop()
        servers.append(start_server(settings.model_copy(update={"analytics_refresh_seconds": 0.2, **overrides})))
        return servers[-1]
    def stop_last():
        servers[-1].stop()

    start.stop_last = stop_last
    yield start
    servers[-1].stop()


def _scheduler(server) -> BackgroundScheduler:
    return server.server.config.app.inner.state.scheduler


def _client(server, token) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _wait(check, seconds: float = 20):
    deadline = time.monotonic() + seconds
    while not (result := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return result


def _runs(api, schedule_id: int) -> list[dict]:
    return api.get(f"/api/v1/exports/schedules/{schedule_id}/runs").json()["runs"]


def _finished(api, schedule_id: int, count: int) -> list[dict]:
    return _wait(lambda: [r for r in _runs(api, schedule_id) if r["status"] != "running"][:count]
                 if len([r for r in _runs(api, schedule_id) if r["status"] != "running"]) >= count else None)


def _quiet_cron() -> str:
    """A daily crontab whose next tick is about 12 hours away, so that none falls inside a test."""
    return f"0 {(datetime.now(UTC).hour + 12) % 24} * * *"


def test_a_schedule_survives_a_restart_and_runs(boot, read_token, app_keys, settings):
    with _client(boot(), read_token) as api:
        assert api.post("/track", json=openai_chat(app_keys, at_ms=now_ms() - DAY_MS)).status_code == 201
        created = api.post("/api/v1/exports/schedules", json={"dataset": "interactions", "cron": _quiet_cron()})
        assert created.status_code == 201, created.text
        schedule = created.json()
    server = boot()
    with _client(server, read_token) as api:
        assert [s["id"] for s in api.get("/api/v1/exports/schedules").json()["schedules"]] == [schedule["id"]]
        job = _scheduler(server).get_job(f"export-{schedule['id']}", jobstore=JOBSTORE)
        assert round(job.next_run_time.timestamp() * 1000) == schedule["next_run_at"]
        job.modify(next_run_time=datetime.now(UTC))  # what the clock does at the next tick
        [run] = _finished(api, schedule["id"], 1)
    assert run["status"] == "succeeded" and run["rows"] == 1, run
    assert run["period_end"] <= run["started_at"] < run["period_end"] + DAY_MS
    assert run["file"] == str(settings.data_dir / "exports" / f"interactions_all_{run['period']}.csv")


def test_a_run_missed_while_down_is_caught_up_once(boot, read_token, engine):
    with _client(boot(), read_token) as api:
        schedule = api.post("/api/v1/exports/schedules", json={"dataset": "users", "cron": _quiet_cron()}).json()
    boot.stop_last()
    # Down for three days: the job's stored next run time now lies three ticks back.
    store = job_store(engine)
    store.start(BackgroundScheduler(timezone=UTC), JOBSTORE)  # no scheduler runs: the job store alone
    job = store.lookup_job(f"export-{schedule['id']}")
    job.next_run_time -= timedelta(days=3)
    store.update_job(job)
    server = boot()
    with _client(server, read_token) as api:
        [run] = _finished(api, schedule["id"], 1)
        time.sleep(1.5)  # several scheduler wake-ups: a second run would show by now
        assert len(_runs(api, schedule["id"])) == 1 and run["status"] == "succeeded"
    job = _scheduler(server).get_job(f"export-{schedule['id']}", jobstore=JOBSTORE)
    assert job.next_run_time > datetime.now(UTC) + timedelta(hours=10)
    assert run["period_end"] <= run["started_at"] < run["period_end"] + DAY_MS


def test_an_unwritable_folder_fails_the_run_not_the_ingest(boot, read_token, app_keys, settings):
    # Root ignores permission bits, so the folder is made impossible instead: its parent is a regular file.
    blocker = settings.data_dir / "blocker"
    server = boot()
    blocker.write_text("not a folder")
    with _client(server, read_token) as api:
        schedule = api.post("/api/v1/exports/schedules", json={"dataset": "interactions", "cron": _quiet_cron(),
                                                               "directory": "blocker/exports"}).json()
        job = _scheduler(server).get_job(f"export-{schedule['id']}", jobstore=JOBSTORE)
        job.modify(next_run_time=datetime.now(UTC))
        [failed] = _finished(api, schedule["id"], 1)
        assert failed["status"] == "failed" and failed["error"].startswith("NotADirectoryError"), failed
        assert failed["rows"] is None and failed["finished_at"] >= failed["started_at"]
        stored = api.post("/track", json=openai_chat(app_keys, at_ms=now_ms() - DAY_MS))
        assert stored.status_code == 201
        _wait(lambda: api.get("/api/v1/usage/totals", params={"from": "2000-01-01"}).json()["interactions"] == 1)
        job = _scheduler(server).get_job(f"export-{schedule['id']}", jobstore=JOBSTORE)
        assert job.next_run_time > datetime.now(UTC)  # still scheduled
        blocker.unlink()
        job.modify(next_run_time=datetime.now(UTC))  # the next tick
        retried, _ = _finished(api, schedule["id"], 2)
    assert retried["status"] == "succeeded" and retried["rows"] == 1 and retried["error"] is None
    assert (settings.data_dir / "blocker" / "exports").is_dir()


def test_schedules_added_from_the_cli_are_taken_up_while_running(boot, read_token, settings, monkeypatch):
    from typer.testing import CliRunner

    from tally.server.cli import app as cli

    monkeypatch.setenv("TALLY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("TALLY_DATABASE_URL", settings.database_url)
    server = boot(export_sync_seconds=0.2)
    added = CliRunner().invoke(cli, ["exports", "schedule", "add", "sessions", "--cron", "30 4 * * *", "--json"])
    assert added.exit_code == 0, added.output
    job_id = f"export-{json.loads(added.stdout)['id']}"
    job = _wait(lambda: _scheduler(server).get_job(job_id, jobstore=JOBSTORE))
    assert (job.trigger.fields[5].expressions[0].first, job.coalesce, job.misfire_grace_time) == (4, True, None)
    removed = CliRunner().invoke(cli, ["exports", "schedule", "remove", job_id.removeprefix("export-")])
    assert removed.exit_code == 0, removed.output
    _wait(lambda: _scheduler(server).get_job(job_id, jobstore=JOBSTORE) is None)


def test_a_run_cut_short_by_a_stop_is_marked_at_the_next_start(boot, read_token, engine, settings):
    from tally.store.models import ExportRun

    schedule_id = _add(engine, settings)
    with Session(engine) as db:
        db.add(ExportRun(schedule_id=schedule_id, period="2026-11-24", started_at=1, status="running"))
        db.commit()
    with _client(boot(), read_token) as api:
        [run] = _runs(api, schedule_id)
    assert run["status"] == "failed" and run["error"].startswith("interrupted")


def test_schedules_api_adds_lists_and_removes(boot, read_token, app_keys):
    with _client(boot(), read_token) as api:
        body = {"dataset": "daily_usage", "cron": "15  3 * * 1", "timezone": "Europe/Paris", "app": 1,
                "directory": "weekly/usage"}
        created = api.post("/api/v1/exports/schedules", json=body)
        assert created.status_code == 201, created.text
        schedule = created.json()
        assert {k: schedule[k] for k in ("dataset", "cron", "timezone", "app_id", "app", "directory", "period")} == {
            "dataset": "daily_usage", "cron": "15 3 * * 1", "timezone": "Europe/Paris", "app_id": 1,
            "app": "test-app", "directory": "weekly/usage", "period": "week"}
        assert datetime.fromtimestamp(schedule["next_run_at"] / 1000, ZoneInfo("Europe/Paris")).weekday() == 0
        assert api.get(f"/api/v1/exports/schedules/{schedule['id']}").json() == schedule
        assert api.get("/api/v1/exports/schedules").json() == {"schedules": [schedule]}
        assert api.get(f"/api/v1/exports/schedules/{schedule['id']}/runs").json() == {"runs": []}
        assert api.delete(f"/api/v1/exports/schedules/{schedule['id']}").status_code == 204
        assert api.get(f"/api/v1/exports/schedules/{schedule['id']}").status_code == 404
        assert api.delete(f"/api/v1/exports/schedules/{schedule['id']}").status_code == 404
        paths = api.get("/openapi.json").json()["paths"]
        assert {"/api/v1/exports/schedules", "/api/v1/exports/schedules/{schedule_id}/runs",
                "/api/v1/exports/{dataset}.csv", "/api/v1/exports/runs"} <= set(paths)


REFUSED = [
    ({"dataset": "everything"}, "dataset"), ({"cron": "0 2 * *"}, "cron"), ({"cron": "0 2 1 * mon"}, "cron"),
    ({"timezone": "Mars/Olympus"}, "timezone"), ({"app": 99}, "app"), ({"directory": "/etc/cron.d"}, "directory"),
    ({"directory": "../outside"}, "directory"), ({"dataset": "users", "include_raw": True}, "include_raw"),
    ({"every": "night"}, "every"),
]


def test_schedules_api_refuses_what_it_cannot_run(boot, read_token):
    with _client(boot(), read_token) as api:
        for change, field in REFUSED:
            answer = api.post("/api/v1/exports/schedules", json={"dataset": "interactions", "cron": "0 2 * * *",
                                                                 **change})
            assert answer.status_code == 422, (change, answer.text)
            assert field in {error["field"] for error in answer.json()["errors"]}, (change, answer.text)
        assert api.get("/api/v1/exports/schedules").json() == {"schedules": []}


def test_the_server_stops_while_it_reconciles_jobs(engine, settings):
    """Shutting the scheduler down waits for running jobs while it holds the lock a reconcile needs."""
    _add(engine, settings)
    for _ in range(5):
        server = start_server(settings.model_copy(update={"export_sync_seconds": 0.001}))
        time.sleep(0.2)
        server.server.should_exit = True
        server.thread.join(timeout=15)
        assert not server.thread.is_alive(), "the server did not stop"
