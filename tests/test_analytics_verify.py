"""A tick under live ingest reads only changed rows; the verification pass finds deletions and skipped rows by
comparing id ranges, and reads only the ranges that differ."""

import logging

import httpx
from sqlalchemy import text

from tally.analytics.service import Analytics
from tally.analytics.source import StoreReader
from tally.analytics.verify import RANGE_IDS
from tests.analytics_store import BASE, change, store
from tests.conftest import count_rows, start_server, wait_until


class RecordingReader(StoreReader):
    """The real reader, noting each query; `meanwhile` runs once, just before the refresh reads changed rows
    (a commit that lands while a refresh runs)."""

    def __init__(self, url: str, meanwhile=None) -> None:
        super().__init__(url)
        self.queries: list[str] = []
        self._meanwhile = meanwhile

    def query(self, sql: str):
        if self._meanwhile is not None and "FROM interaction WHERE (updated_at" in sql:
            meanwhile, self._meanwhile = self._meanwhile, None
            meanwhile()
        self.queries.append(" ".join(sql.split()))
        return super().query(sql)

    def of_interactions(self) -> list[str]:
        return [q for q in self.queries if "FROM interaction " in q + " "]


def _move(engine, interaction_id: int, new_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE interaction SET id = :new WHERE id = :old"), {"new": new_id, "old": interaction_id})


def test_a_tick_under_live_ingest_reads_only_changed_rows(engine, settings, app_keys):
    store(engine, app_keys, 30)
    analytics = Analytics(settings)
    try:
        analytics.refresh()
        store(engine, app_keys, 2, at_ms=BASE + 60_000)
        analytics.refresher.reader.close()
        reader = analytics.refresher.reader = RecordingReader(
            settings.database_url, meanwhile=lambda: store(engine, app_keys, at_ms=BASE + 120_000))
        report = analytics.refresh()
        assert all("updated_at >" in q for q in reader.of_interactions()), reader.of_interactions()
        assert (report.interactions, report.verified) == (3, False)

        reader.queries.clear()
        report = analytics.refresh(verify_all=True)
        assert (report.interactions, report.deleted, report.verified) == (0, 0, True)
        assert [q for q in reader.of_interactions() if "updated_at >" not in q] == [
            f"SELECT CAST((id - id % {RANGE_IDS}) / {RANGE_IDS} AS BIGINT) AS part, count(*) AS n, "
            f"CAST(sum(id % {RANGE_IDS}) AS BIGINT) AS offsets FROM interaction GROUP BY 1"]  # no ids: all agree
    finally:
        analytics.close()


def test_deleted_and_skipped_rows_reach_the_warehouse_at_the_next_verification(engine, settings, app_keys, caplog):
    caplog.set_level(logging.WARNING, logger="tally.analytics")
    kept, deleted_here, far, bad = store(engine, app_keys, 4)
    _move(engine, far, 3 * RANGE_IDS + 5)  # ranges apart: each range is compared on its own
    analytics = Analytics(settings)
    try:
        analytics.refresh()
        change(engine, bad, prompt_tokens=-1)
        analytics.refresh()
        [skipped] = store(engine, app_keys, at_ms=BASE + 60_000)
        _move(engine, skipped, 7 * RANGE_IDS)
        change(engine, 7 * RANGE_IDS, stamp=False, updated_at=1)  # committed by a clock far behind
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM interaction WHERE id IN (:a, :b, :c)"),
                         {"a": deleted_here, "b": 3 * RANGE_IDS + 5, "c": bad})
        report = analytics.refresh()
        assert (report.deleted, report.interactions, report.verified) == (0, 0, False)  # until the next pass

        analytics.refresher.reader.close()
        reader = analytics.refresher.reader = RecordingReader(settings.database_url)
        report = analytics.refresh(verify_all=True)
        assert (report.deleted, report.interactions) == (3, 1)
        cursor = analytics.warehouse.cursor()
        assert sorted(r[0] for r in cursor.execute("SELECT id FROM interaction").fetchall()) == [kept, 7 * RANGE_IDS]
        assert cursor.execute("SELECT count(*) FROM quarantine").fetchall() == [(0,)]
        stored = count_rows(engine, "interaction")
        assert cursor.execute("SELECT sum(interactions) FROM rollup_day").fetchall() == [(stored,)]
        id_reads = [q for q in reader.of_interactions() if q.startswith("SELECT id FROM interaction WHERE id >")]
        assert len(id_reads) == 3  # the ranges that differ: 0, 3 and 7, and no other
        assert [r.getMessage() for r in caplog.records if "skipped by the watermark" in r.getMessage()] == [
            "analytics: 1 interactions had been skipped by the watermark (a clock step?); loaded now"]
    finally:
        analytics.close()


def test_a_deletion_shows_within_the_verification_interval(engine, settings, app_keys, read_token):
    ids = store(engine, app_keys, 3)
    server = start_server(settings.model_copy(update={"analytics_refresh_seconds": 0.2,
                                                      "analytics_verify_seconds": 1}))
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {read_token}"}) as http:
            def shown():
                return sorted(i["id"] for i in http.get("/api/v1/interactions",
                                                        params={"from": "2024-05-01"}).json()["items"])
            assert wait_until(lambda: shown() == ids)
            with engine.begin() as conn:
                conn.execute(text("DELETE FROM interaction WHERE id = :id"), {"id": ids[1]})
            assert wait_until(lambda: shown() == [ids[0], ids[2]], seconds=5)
    finally:
        server.stop()


def test_a_refresh_on_sqlite_reads_again_only_rows_changed_since(engine, settings, app_keys):
    """The overlap re-reads the last seconds' rows at every refresh; on SQLite, whose one writer hands out ids in
    commit order, those already held and unchanged are left out in the store's own query."""
    ids = store(engine, app_keys, 30)
    analytics = Analytics(settings)
    try:
        analytics.refresh()
        analytics.refresher.reader.close()
        reader = analytics.refresher.reader = CountingReader(settings.database_url)
        analytics.refresh()
        again = sum(rows for sql, rows in reader.results if "FROM interaction WHERE (updated_at" in sql)
        assert again == (0 if settings.database_url.startswith("sqlite") else 30)
        change(engine, ids[0], session_id=ids[-1])  # a late arrival regrouped an old row: changed after storing
        assert analytics.refresh().interactions == 1
    finally:
        analytics.close()


class CountingReader(StoreReader):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.results: list[tuple[str, int]] = []

    def query(self, sql: str):
        table = super().query(sql)
        self.results.append((" ".join(sql.split()), table.num_rows))
        return table
