"""A damaged DuckDB file is moved aside and rebuilt from the store, at start or at a refresh; a file held by
another process is reported as such, naming it."""

import logging
import os
import subprocess
import sys

import duckdb
import httpx
import pytest
from typer.testing import CliRunner

from tally.analytics.duckdb_file import damage
from tally.analytics.service import Analytics, WarehouseBusy, refresh_once
from tally.server.cli import app as cli
from tests.analytics_store import BASE, store
from tests.conftest import start_server, wait_until
from tests.payloads import openai_chat


def _overwrite(path, start: int, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(start)
        handle.write(data)


def _garbage_header(path) -> None:
    _overwrite(path, 0, os.urandom(8192))


def _truncated(path) -> None:
    os.truncate(path, os.path.getsize(path) // 2)


def _overwritten_in_the_middle(path) -> None:
    """Opens fine (the headers and the catalog are intact); the first query of the data fails its checksum."""
    size = os.path.getsize(path)
    _overwrite(path, size // 4, b"\xab" * (size // 2))


DAMAGES = [_garbage_header, _truncated, _overwritten_in_the_middle]


def _aside(settings) -> list:
    """The damaged files moved aside (a write-ahead log goes along, as NAME.wal)."""
    return sorted(p for p in settings.data_dir.glob("analytics.duckdb.corrupt-*") if p.suffix != ".wal")


def _damage_reports(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and "is damaged" in r.getMessage()]


@pytest.mark.parametrize("spoil", DAMAGES, ids=lambda f: f.__name__.strip("_"))
def test_a_server_starts_on_a_damaged_file_and_rebuilds_it(engine, settings, app_keys, read_token, caplog, spoil):
    caplog.set_level(logging.ERROR, logger="tally.analytics")
    ids = store(engine, app_keys, 40)
    refresh_once(settings)
    spoil(settings.analytics_path)
    server = start_server(settings.model_copy(update={"analytics_refresh_seconds": 0.2}))
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {read_token}"}) as http:
            def shown() -> list[int] | None:  # None while a reader meets the damage (503) before the refresh
                answer = http.get("/api/v1/interactions", params={"from": "2024-05-01", "limit": 100})
                return sorted(i["id"] for i in answer.json()["items"]) if answer.status_code == 200 else None

            assert wait_until(lambda: shown() == ids)
            assert http.post("/track", json=openai_chat(app_keys)).status_code == 201  # ingest never waited on it
    finally:
        server.stop()
    aside = _aside(settings)
    assert aside and aside[0].name.startswith("analytics.duckdb.corrupt-")
    reports = _damage_reports(caplog)
    assert len(reports) == 1 and str(settings.analytics_path) in reports[0] and str(aside[0]) in reports[0]


def test_a_file_damaged_while_open_is_replaced_at_the_next_refresh(engine, settings, app_keys):
    ids = store(engine, app_keys, 40)
    refresh_once(settings)
    analytics = Analytics(settings)
    try:
        reader = analytics.warehouse.cursor()  # a reader's cursor from before the damage
        size = os.path.getsize(settings.analytics_path)
        _overwrite(settings.analytics_path, 12288, b"\xab" * (size - 12288))  # all but the headers
        report = analytics.refresh()
        assert report.full_rollup and report.interactions == len(ids)
        assert len(_aside(settings)) == 1
        assert reader is not analytics.warehouse.cursor()  # readers moved to the new connection
        assert analytics.warehouse.cursor().execute("SELECT sum(interactions) FROM rollup_day").fetchall() == [(40,)]
        assert analytics.refresh().interactions == 0
    finally:
        analytics.close()


def test_a_block_only_readers_touch_is_replaced_after_a_reader_meets_it(engine, settings, app_keys, read_token):
    """The refresh never reads old rollups when nothing changed: a reader's failure must lead to the rebuild."""
    for hour in range(40):  # a bucket each, so that the rollups' columns take blocks of their own
        store(engine, app_keys, at_ms=BASE + hour * 3_600_000)
    refresh_once(settings)
    with duckdb.connect(str(settings.analytics_path), read_only=True) as db:
        block_size = db.execute("SELECT block_size FROM pragma_database_size()").fetchall()[0][0]
        blocks = [row[0] for row in db.execute(
            "SELECT DISTINCT block_id FROM pragma_storage_info('rollup_day') WHERE block_id >= 0 UNION "
            "SELECT DISTINCT block_id FROM pragma_storage_info('rollup_hour') WHERE block_id >= 0").fetchall()]
    for block in blocks:  # the file's three 4 KiB headers come first
        _overwrite(settings.analytics_path, 3 * 4096 + block * block_size + 64, b"\xab" * 1024)
    server = start_server(settings.model_copy(update={"analytics_refresh_seconds": 0.5}))
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {read_token}"}) as http:
            def usage():
                return http.get("/api/v1/usage", params={"from": "2024-05-29", "to": "2024-06-01",
                                                         "granularity": "hour"})
            first = usage()
            assert first.status_code == 503 and first.json()["error"] == "analytics_unavailable", first.text
            assert first.headers["Retry-After"] == "1"
            assert wait_until(lambda: usage().status_code == 200 and len(usage().json()["series"]) == 40)
    finally:
        server.stop()
    assert len(_aside(settings)) == 1


def test_rebuild_works_on_a_damaged_file(engine, settings, app_keys, monkeypatch):
    store(engine, app_keys, 5)
    refresh_once(settings)
    _garbage_header(settings.analytics_path)
    monkeypatch.setenv("TALLY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("TALLY_DATABASE_URL", settings.database_url)
    result = CliRunner().invoke(cli, ["analytics", "rebuild"])
    assert result.exit_code == 0, result.output
    assert "rebuilt: 5 interactions" in result.stdout
    with duckdb.connect(str(settings.analytics_path), read_only=True) as db:
        assert db.execute("SELECT count(*) FROM interaction").fetchall() == [(5,)]


def test_a_file_held_by_another_process_is_reported_with_its_pid(engine, settings, monkeypatch):
    refresh_once(settings)
    with subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; db = duckdb.connect(sys.argv[1]); "
                           "print('open', flush=True); time.sleep(60)", str(settings.analytics_path)],
                          stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout.readline().strip() == "open"
            with pytest.raises(WarehouseBusy, match=rf"in use by another process \(PID {holder.pid}\)"):
                Analytics(settings)
            monkeypatch.setenv("TALLY_DATA_DIR", str(settings.data_dir))
            monkeypatch.setenv("TALLY_DATABASE_URL", settings.database_url)
            result = CliRunner().invoke(cli, ["analytics", "rebuild"])
            assert result.exit_code == 1 and f"in use by another process (PID {holder.pid})" in result.output
            assert _aside(settings) == []
        finally:
            holder.kill()
    Analytics(settings).close()  # free again, once the holder has exited


def test_errors_are_told_apart():
    assert damage(duckdb.IOException('IO Error: Could not set lock on file "x": Conflicting lock is held in '
                                      "/usr/bin/python (PID 7)")) is None
    assert damage(duckdb.FatalException("FATAL Error: database has been invalidated because of a previous fatal "
                                        "error")) == "invalidated"
    assert damage(duckdb.BinderException("Binder Error: column x not found")) is None
    with duckdb.connect(":memory:") as db, pytest.raises(duckdb.Error) as failed:
        db.execute("SELECT 1 / 'x'")
    assert damage(failed.value) is None
