"""Export schedules: the period rule, atomic files, run history, and real APScheduler jobs across restarts."""

import csv
import io
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import Session

from tally.analytics.service import Analytics
from tally.exports.csv_files import write_atomically
from tally.exports.periods import cron_trigger, granularity, last_period
from tally.exports.runs import run_period
from tally.exports.schedules import add_schedule, recent_runs
from tally.ingest.batch import store_batch
from tally.ingest.keys import VerifiedApp
from tally.ingest.prepare import prepare
from tally.ingest.wire import TrackPayload
from tally.store.secrets import now_ms
from tests.conftest import make_token, start_server
from tests.payloads import openai_chat

UTC = UTC
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
    # Paris's 02:00 comes twice when the clocks go back: each of the two hours names its own file
    ("5 * * * *", "Europe/Paris", "2026-10-25T00:05Z", "2026-10-25T01", "2026-10-24T23:00Z", "2026-10-25T00:00Z"),
    ("5 * * * *", "Europe/Paris", "2026-10-25T01:05Z", "2026-10-25T02+0200", "2026-10-25T00:00Z", "2026-10-25T01:00Z"),
    ("5 * * * *", "Europe/Paris", "2026-10-25T02:05Z", "2026-10-25T02+0100", "2026-10-25T01:00Z", "2026-10-25T02:00Z"),
    ("5 * * * *", "Europe/Paris", "2026-10-25T03:05Z", "2026-10-25T03", "2026-10-25T02:00Z", "2026-10-25T03:00Z"),
    # Lord Howe goes back half an hour at 02:00 (+11:00): 01:00 then lasts 90 minutes, run once at 02:05 (+10:30)
    ("5 * * * *", "Australia/Lord_Howe", "2026-04-04T14:05Z", "2026-04-05T00", "2026-04-04T13:00Z",
     "2026-04-04T14:00Z"),
    ("5 * * * *", "Australia/Lord_Howe", "2026-04-04T15:35Z", "2026-04-05T01", "2026-04-04T14:00Z",
     "2026-04-04T15:30Z"),
    ("*/15 * * * *", "UTC", "2026-11-25T10:00Z", "2026-11-25T09", "2026-11-25T09:00Z", "2026-11-25T10:00Z"),
    ("0 6 * * 1", "UTC", "2026-11-30T06:00Z", "2026-W48", "2026-11-23T00:00Z", "2026-11-30T00:00Z"),
    ("0 0 * * mon", "UTC", "2027-01-04T00:00Z", "2026-W53", "2026-12-28T00:00Z", "2027-01-04T00:00Z"),
    ("0 1 1 * *", "America/New_York", "2026-12-01T06:00Z", "2026-11", "2026-11-01T04:00Z", "2026-12-01T05:00Z"),
    ("0 0 1 1 *", "UTC", "2027-01-01T00:00Z", "2026", "2026-01-01T00:00Z", "2027-01-01T00:00Z"),
])
def test_a_run_exports_the_last_complete_period_of_its_cron(cron, zone, now, label, start, end):
    period = last_period(granularity(cron), ZoneInfo(zone), _at(now))
    assert (period.label, period.start_ms, period.end_ms) == (label, _ms(start), _ms(end))


@pytest.mark.parametrize("zone, day", [
    ("Australia/Lord_Howe", "2026-04-04"), ("Australia/Lord_Howe", "2026-10-03"),  # back, then forward, half an hour
    ("Europe/Paris", "2026-10-24"), ("Europe/Paris", "2026-03-28"), ("Asia/Kolkata", "2026-11-24")])
@pytest.mark.parametrize("minute", ["5", "45"])
def test_hourly_files_cover_every_instant_across_a_clock_change(zone, day, minute):
    """The runs the trigger makes over two days, each writing its period's file (a later run of the same label
    replaces it): together the files hold every instant, none left between two hours."""
    trigger, moment, files = cron_trigger(f"{minute} * * * *", ZoneInfo(zone)), _at(f"{day}T00:00Z"), {}
    while moment < _at(f"{day}T00:00Z") + timedelta(days=2):
        # In UTC: two local times of one zone compare by their wall clocks, and the hour that comes twice would not
        # move on.
        moment = trigger.get_next_fire_time(None, moment + timedelta(seconds=1)).astimezone(UTC)
        period = last_period("hour", ZoneInfo(zone), moment)
        files[period.label] = (period.start_ms, period.end_ms)
    spans = sorted(files.values())
    assert [span for span in zip(spans, spans[1:]) if span[0][1] < span[1][0]] == []  # no gap between files
    assert len(spans) >= 46


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
        store_batch(conn, jobs)


def _add(engine, settings, **options) -> int:
    with Session(engine) as db:
        schedule = add_schedule(db, **{"dataset": "interactions", "cron": "0 2 * * *", "timezone_name": "UTC",
                                       "exports_dir": settings.exports_folder, "now_ms": now_ms(),
                                       "actor": "tests", "apps": None,
                                       **options})
        db.commit()
        return schedule.id


def test_a_rerun_of_a_period_replaces_its_file(engine, settings, app_keys):
    # A year back: ingest refuses times more than a day ahead, and CI runs the suite on clocks set to early 2026.
    day = _ms("2025-11-24T00:00Z")
    _store(engine, *(openai_chat(app_keys, at_ms=day + hour * 3_600_000) for hour in (-1, 3, 23, 24)))
    schedule_id = _add(engine, settings, app_id=1, directory="nightly")
    analytics = Analytics(settings)
    try:
        period = last_period("day", ZoneInfo("UTC"), _at("2025-11-25T02:00Z"))
        first = run_period(engine, analytics, schedule_id=schedule_id, period=period, replica="by hand")
        _store(engine, openai_chat(app_keys, at_ms=day + 12 * 3_600_000))
        second = run_period(engine, analytics, schedule_id=schedule_id, period=period, replica="by hand")
    finally:
        analytics.close()
    path = settings.exports_folder / "nightly" / "interactions_test-app_2025-11-24.csv"
    assert first["file"] == second["file"] == str(path) and list(path.parent.iterdir()) == [path]
    assert (first["status"], first["rows"], second["status"], second["rows"]) == ("succeeded", 2, "succeeded", 3)
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))
    assert [row[1] for row in rows[1:]] == ["2025-11-24T03:00:00.000Z", "2025-11-24T12:00:00.000Z",
                                            "2025-11-24T23:00:00.000Z"]
    assert second["bytes"] == path.stat().st_size and second["period"] == "2025-11-24"
    with Session(engine) as db:
        runs = recent_runs(db, schedule_id=schedule_id, apps=None)
        assert [run["id"] for run in runs] == [second["id"], first["id"]]


def test_a_stopping_server_abandons_the_run(engine, settings):
    schedule_id = _add(engine, settings, dataset="users")
    analytics = Analytics(settings)
    try:
        period = last_period("day", ZoneInfo("UTC"), datetime.now(UTC))
        run = run_period(engine, analytics, schedule_id=schedule_id, period=period, replica="a",
                         should_stop=lambda: True)
    finally:
        analytics.close()
    assert run["status"] == "failed" and run["error"].startswith("ExportStopped")
    assert not any(settings.exports_folder.iterdir())


# --- with live servers and their real schedulers ------------------------------------------------------------

@pytest.fixture
def boot(engine, settings):
    """Starts servers on the same store, one at a time, and stops the last one at the end."""
    servers = []

    def start(**overrides):
        if servers:
            servers[-1].stop()
        servers.append(start_server(settings.model_copy(update={"analytics_refresh_seconds": 0.2,
                                                                "export_sync_seconds": 0.2, **overrides})))
        return servers[-1]
    def stop_last():
        servers[-1].stop()

    start.stop_last = stop_last
    start.current = lambda: servers[-1]
    yield start
    servers[-1].stop()


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


def _quiet_cron() -> dict:
    """A daily crontab whose next tick is 11 to 12 hours away, so that none falls inside a test, and whose day is
    24 hours: in UTC, as the hour is reckoned, not in the default zone (TALLY_ANALYTICS_TIMEZONE's)."""
    return {"cron": f"0 {(datetime.now(UTC).hour + 12) % 24} * * *", "timezone": "UTC"}


def _next_run_at(engine, schedule_id: int) -> int | None:
    with engine.connect() as conn:
        return conn.execute(text("SELECT next_run_at FROM export_schedule WHERE id = :i"), {"i": schedule_id}).scalar()


def _fire(engine, schedule_id: int, at_ms: int | None = None) -> None:
    """What the clock does at the schedule's next tick: its stored next fire comes due."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE export_schedule SET next_run_at = :at WHERE id = :i"),
                     {"at": at_ms if at_ms is not None else now_ms() - 1, "i": schedule_id})


def test_a_schedule_survives_a_restart_and_runs(boot, export_token, app_keys, settings, engine):
    with _client(boot(), export_token) as api:
        assert api.post("/track", json=openai_chat(app_keys, at_ms=now_ms() - DAY_MS)).status_code == 201
        created = api.post("/api/v1/exports/schedules", json={"dataset": "interactions", **_quiet_cron()})
        assert created.status_code == 201, created.text
        schedule = created.json()
    server = boot()
    with _client(server, export_token) as api:
        assert [s["id"] for s in api.get("/api/v1/exports/schedules").json()["schedules"]] == [schedule["id"]]
        assert _next_run_at(engine, schedule["id"]) == schedule["next_run_at"] > now_ms()
        _fire(engine, schedule["id"])
        [run] = _finished(api, schedule["id"], 1)
    assert run["status"] == "succeeded" and run["rows"] == 1 and run["replica"] == settings.replica_name, run
    assert run["period_end"] <= run["started_at"] < run["period_end"] + DAY_MS
    assert run["file"] == str(settings.exports_folder / f"interactions_all_{run['period']}.csv")


def test_a_run_missed_while_down_is_caught_up_once(boot, export_token, engine):
    with _client(boot(), export_token) as api:
        schedule = api.post("/api/v1/exports/schedules", json={"dataset": "users", **_quiet_cron()}).json()
    boot.stop_last()
    _fire(engine, schedule["id"], schedule["next_run_at"] - 3 * DAY_MS)  # down for three days: three ticks missed
    with _client(boot(), export_token) as api:
        [run] = _finished(api, schedule["id"], 1)
        time.sleep(1.5)  # several ticks: a second run would show by now
        assert len(_runs(api, schedule["id"])) == 1 and run["status"] == "succeeded"
    assert _next_run_at(engine, schedule["id"]) > now_ms() + 10 * 3_600_000
    # The run is for the day before the latest tick missed (12 hours ago, at least): the latest day, not the oldest.
    latest_tick = (schedule["next_run_at"] - DAY_MS) // 1000
    assert run["period_end"] == _ms(datetime.fromtimestamp(latest_tick, UTC).strftime("%Y-%m-%dT00:00:00Z"))


def test_an_unwritable_folder_fails_the_run_not_the_ingest(boot, export_token, app_keys, settings, engine):
    # Root ignores permission bits, so the folder is made impossible instead: its parent is a regular file.
    blocker = settings.exports_folder / "blocker"
    server = boot()
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")
    with _client(server, export_token) as api:
        schedule = api.post("/api/v1/exports/schedules", json={"dataset": "interactions", **_quiet_cron(),
                                                               "directory": "blocker/exports"}).json()
        _fire(engine, schedule["id"])
        [failed] = _finished(api, schedule["id"], 1)
        assert failed["status"] == "failed" and failed["error"].startswith("NotADirectoryError"), failed
        assert failed["rows"] is None and failed["finished_at"] >= failed["started_at"]
        stored = api.post("/track", json=openai_chat(app_keys, at_ms=now_ms() - DAY_MS))
        assert stored.status_code == 201
        _wait(lambda: api.get("/api/v1/usage/totals", params={"from": "2000-01-01"}).json()["interactions"] == 1)
        assert _next_run_at(engine, schedule["id"]) > now_ms()  # still scheduled
        blocker.unlink()
        _fire(engine, schedule["id"])  # the next fire for the same period: it was not written, so it is again
        retried, _ = _finished(api, schedule["id"], 2)
    assert retried["status"] == "succeeded" and retried["rows"] == 1 and retried["error"] is None
    assert retried["period"] == failed["period"] and (blocker / "exports").is_dir()


def test_a_period_is_written_once_however_often_its_crontab_fires(boot, export_token, engine):
    with _client(boot(), export_token) as api:
        schedule = api.post("/api/v1/exports/schedules", json={"dataset": "users", **_quiet_cron()}).json()
        for _ in range(3):  # the same day's fire, again and again (a crontab firing more often than its period)
            _fire(engine, schedule["id"])
            _wait(lambda: _next_run_at(engine, schedule["id"]) > now_ms())
        [run] = _finished(api, schedule["id"], 1)
        time.sleep(0.6)
        assert len(_runs(api, schedule["id"])) == 1 and run["status"] == "succeeded"


def test_schedules_added_from_the_cli_are_taken_up_while_running(boot, export_token, settings, engine, monkeypatch):
    from typer.testing import CliRunner

    from tally.server.cli import app as cli

    monkeypatch.setenv("TALLY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("TALLY_DATABASE_URL", settings.database_url)
    server = boot()
    added = CliRunner().invoke(cli, ["exports", "schedule", "add", "sessions", "--cron", "30 4 * * *", "--json"])
    assert added.exit_code == 0, added.output
    schedule_id = json.loads(added.stdout)["id"]
    _fire(engine, schedule_id)
    with _client(server, export_token) as api:
        [run] = _finished(api, schedule_id, 1)
    assert run["status"] == "succeeded"
    removed = CliRunner().invoke(cli, ["exports", "schedule", "remove", str(schedule_id)])
    assert removed.exit_code == 0, removed.output


def test_a_run_its_replica_abandoned_is_written_again(boot, export_token, engine, settings):
    from tally.store.models import ExportRun

    schedule_id = _add(engine, settings)
    start, end = _ms("2025-11-24T00:00Z"), _ms("2025-11-25T00:00Z")
    with Session(engine) as db:  # a replica died while writing it: its heartbeat stopped two minutes ago
        db.add(ExportRun(schedule_id=schedule_id, period="2025-11-24", period_start=start, period_end=end,
                         started_at=now_ms() - 180_000, heartbeat_at=now_ms() - 120_000, status="running",
                         replica="gone:1"))
        db.commit()
    with _client(boot(), export_token) as api:
        again, abandoned = _finished(api, schedule_id, 2)
    assert abandoned["status"] == "failed" and abandoned["error"].startswith("abandoned: gone:1 stopped")
    assert (again["status"], again["period"], again["period_start"]) == ("succeeded", "2025-11-24", start)
    assert again["replica"] == settings.replica_name


def test_two_replicas_write_each_period_once(engine, settings, export_token):
    """Two servers on one store tick five times a second; an every-minute crontab fires over and over within
    one hour: one run, by one of them, and one file. Like replicas on two machines, each has its own data folder
    (its own DuckDB file: two in one process on one file would conflict on every write) and they share the
    exports folder."""
    shared = settings.exports_folder
    replicas = [start_server(settings.model_copy(update={
        "export_sync_seconds": 0.1, "replica": name, "analytics_refresh_seconds": 0.3,
        "data_dir": _folder(settings.data_dir.parent / name), "exports_dir": shared}))
        for name in ("replica-a", "replica-b")]
    try:
        schedule_id = _add(engine, settings, cron="* * * * *", dataset="users")
        for _ in range(4):
            _fire(engine, schedule_id)
            _wait(lambda: _next_run_at(engine, schedule_id) > now_ms())
        with _client(replicas[0], export_token) as api:
            [run] = _finished(api, schedule_id, 1)
            time.sleep(1)
            assert len(_runs(api, schedule_id)) == 1
        assert run["status"] == "succeeded" and run["replica"] in ("replica-a", "replica-b")
        assert [p.name for p in shared.iterdir()] == [f"users_all_{run['period']}.csv"]
    finally:
        for replica in replicas:
            replica.stop()


def test_schedules_api_adds_lists_and_removes(boot, export_token, app_keys):
    with _client(boot(), export_token) as api:
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
        assert api.get("/api/v1/exports/schedules").json() == {"schedules": [schedule], "next_cursor": None}
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


def test_schedules_api_refuses_what_it_cannot_run(boot, export_token):
    with _client(boot(), export_token) as api:
        for change, field in REFUSED:
            answer = api.post("/api/v1/exports/schedules", json={"dataset": "interactions", "cron": "0 2 * * *",
                                                                 **change})
            assert answer.status_code == 422, (change, answer.text)
            assert field in {error["field"] for error in answer.json()["errors"]}, (change, answer.text)
        assert api.get("/api/v1/exports/schedules").json() == {"schedules": [], "next_cursor": None}


def test_the_server_stops_while_its_ticker_runs(engine, settings):
    """Stopping waits for a tick under way, which gives up at its next step."""
    _add(engine, settings)
    for _ in range(5):
        server = start_server(settings.model_copy(update={"export_sync_seconds": 0.001}))
        time.sleep(0.2)
        server.server.should_exit = True
        server.thread.join(timeout=15)
        assert not server.thread.is_alive(), "the server did not stop"


def test_the_api_limits_how_often_a_schedule_fires_and_how_many_a_token_holds(boot, engine, settings, export_token):
    def refused(answer: httpx.Response, field: str) -> str:
        assert answer.status_code == 422, answer.text
        assert [error["field"] for error in answer.json()["errors"]] == [field]
        return answer.json()["message"]

    with _client(boot(export_schedules_max=2), export_token) as api:
        add = lambda cron: api.post("/api/v1/exports/schedules", json={"dataset": "users", "cron": cron})  # noqa: E731
        assert "every 15 minutes" in refused(add("*/15 * * * *"), "cron")
        assert "every 5 minutes" in refused(add("*/5 2 * * *"), "cron")  # only at 2 o'clock, yet too often then
        assert add("0 * * * *").status_code == 201  # hourly: the shortest allowed by default
        assert add("0 3 * * *").status_code == 201
        assert "already has 2 export schedules" in refused(add("0 4 * * *"), "schedules")
        with _client(boot.current(), make_token(engine, "export")) as other:  # another token has its own count
            answer = other.post("/api/v1/exports/schedules", json={"dataset": "users", "cron": "0 4 * * *"})
            assert answer.status_code == 201, answer.text
    assert _add(engine, settings, cron="* * * * *")  # the command line is not limited


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
