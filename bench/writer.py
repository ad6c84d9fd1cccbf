"""The writer's ceiling: interactions per second one storing connection commits through Tally's storing
transaction (locks, users, sessions, duplicates, insert, commit), against the same rows inserted plainly (one
executemany and a commit per batch: the cost of the rows and commits alone), in the same run, on the same store.

    .venv/bin/python bench/writer.py --database-url postgresql://127.0.0.1:5432/tally_bench
"""

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from ingest_load import STEP_MS, USERS, Keys, chat_payload  # bench/ingest_load.py
from sqlalchemy import insert, make_url
from sqlmodel import Session

from tally.ingest.batch import store_batch
from tally.ingest.keys import VerifiedApp, create_app
from tally.ingest.prepare import prepare
from tally.ingest.wire import TrackPayload
from tally.server import migrations
from tally.store.engine import build_engine, writing
from tally.store.models import Interaction, table_of
from tally.store.settings import Settings


def jobs(keys: Keys, count: int, seed: int) -> list:
    """`count` prepared interactions of bench/ingest.py's traffic (Zipf-like users, some sessions, unique ids)."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) ** 0.5 for rank in range(USERS)]
    start_ms = int(time.time() * 1000) - count * STEP_MS
    app = VerifiedApp(keys.app_id, None)
    return [prepare(TrackPayload.model_validate(chat_payload(keys, i, user, rng, start_ms + i * STEP_MS, seed)),
                    app=app, received_at=start_ms + i * STEP_MS, default_timeout_minutes=10)
            for i, user in enumerate(rng.choices(range(USERS), weights=weights, k=count))]


def through_writer(engine, prepared: list, batch: int) -> float:
    began = time.perf_counter()
    for first in range(0, len(prepared), batch):
        with writing(engine).begin() as conn:
            store_batch(conn, prepared[first:first + batch])
    return len(prepared) / (time.perf_counter() - began)


def plain(engine, rows: list[dict], batch: int) -> float:
    began = time.perf_counter()
    for first in range(0, len(rows), batch):
        with engine.begin() as conn:
            conn.execute(insert(table_of(Interaction)), rows[first:first + batch])
    return len(rows) / (time.perf_counter() - began)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="", help="postgresql://…; default a temporary SQLite file")
    parser.add_argument("--interactions", type=int, default=6000, help="per batch size and path")
    parser.add_argument("--batches", default="16,64,512", help="interactions per transaction, comma-separated")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tally-writer-") as tmp:
        settings = Settings(data_dir=Path(tmp), database_url=args.database_url, _env_file=None)
        migrations.upgrade(settings)
        engine = build_engine(settings)
        print(f"store: {make_url(settings.database_url).render_as_string(hide_password=True)}; "
              f"{args.interactions:,} interactions per figure", flush=True)
        print(f"{'batch':>6} {'writer/s':>10} {'plain/s':>10} {'ratio':>6}", flush=True)
        for seed, batch in enumerate(int(size) for size in args.batches.split(",")):
            keys = _new_app(engine, f"writer-{batch}")
            through = through_writer(engine, jobs(keys, args.interactions, seed), batch)
            # The baseline: the rows the writer stored, copied with new response ids, inserted as they are.
            rows = _copies(engine, keys.app_id)
            baseline = plain(engine, rows, batch)
            print(f"{batch:>6} {through:>10,.0f} {baseline:>10,.0f} {through / baseline:>6.2f}", flush=True)
        engine.dispose()
    return 0


def _new_app(engine, name: str) -> Keys:
    with Session(engine) as db:
        app, api_key = create_app(db, name=f"{name}-{time.time_ns()}")
        keys = Keys(app.id, app.app_key, api_key, "")
        db.commit()
    return keys


def _copies(engine, app_id: int) -> list[dict]:
    table = table_of(Interaction)
    with engine.connect() as conn:
        found = conn.execute(table.select().where(table.c.app_id == app_id).order_by(table.c.id)).mappings().all()
    return [{**{name: value for name, value in row.items() if name != "id"},
             "response_ref": f"copy-{row['response_ref']}"} for row in found]


if __name__ == "__main__":
    sys.exit(main())
