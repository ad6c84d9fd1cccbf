"""A warehouse written by an older Tally is dropped and rebuilt from the store, views included."""

import duckdb

from tally.analytics.service import Analytics
from tally.analytics.warehouse import SCHEMA_VERSION
from tests.payloads import openai_chat


def test_an_older_warehouse_is_rebuilt_from_the_store(engine, settings, app_keys):
    from tally.ingest.batch import store_batch
    from tally.ingest.keys import VerifiedApp
    from tally.ingest.prepare import prepare
    from tally.ingest.wire import TrackPayload
    from tally.store.secrets import now_ms

    job = prepare(TrackPayload.model_validate(openai_chat(app_keys)), app=VerifiedApp(1, None), received_at=now_ms(),
                  default_timeout_minutes=10)
    with engine.begin() as conn:
        store_batch(conn, [job])
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(settings.analytics_path)) as old:
        old.execute("CREATE TABLE sync_state (name VARCHAR PRIMARY KEY, value VARCHAR)")
        old.execute("INSERT INTO sync_state VALUES ('schema_version', '1'), "
                    "('interaction_watermark', '99999999999999')")
        old.execute("CREATE TABLE interaction (id BIGINT, stale BOOLEAN)")
        old.execute("CREATE VIEW costed AS SELECT * FROM interaction")
    analytics = Analytics(settings)
    try:
        assert analytics.refresh().interactions == 1
        cursor = analytics.warehouse.cursor()
        assert cursor.execute("SELECT value FROM sync_state WHERE name = 'schema_version'").fetchall() == [
            (SCHEMA_VERSION,)]
        assert cursor.execute("SELECT count(*), bool_and(priced) FROM costed").fetchall() == [(1, True)]
    finally:
        analytics.close()
