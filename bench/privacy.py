"""Benchmarks the privacy passes on a synthetic store (SQLite, or an empty PostgreSQL database): retention
removing the content of every interaction older than a day (against one plain UPDATE of the same rows, rolled
back: the baseline), the wait a writer sees meanwhile, and the analytics catching up; then erasing the busiest
user (store, then DuckDB with its file rewritten)."""

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import psycopg
from sqlalchemy import Engine, select, text
from sqlmodel import Session
from synthetic import generate, now_ms  # bench/synthetic.py

from tally.analytics.service import Analytics
from tally.server import migrations
from tally.store.engine import build_engine, writing
from tally.store.erasure import after_commit, erase_person
from tally.store.models import App, EndUser, Interaction
from tally.store.retention import DAY_MS, EMPTY_JSON, apply_retention
from tally.store.settings import Settings


class WriterProbe:
    """A writer committing one small change every 10 ms on its own connection: the waits it sees are what
    ingest's storage process would see."""

    def __init__(self, engine: Engine) -> None:
        self._engine, self.waits, self._stop = engine, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "WriterProbe":
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.perf_counter()
            with writing(self._engine).begin() as conn:
                conn.execute(text("UPDATE app SET created_at = created_at WHERE id = 1"))
            self.waits.append((time.perf_counter() - began) * 1000)
            time.sleep(0.01)

    def summary(self) -> str:
        ordered = sorted(self.waits) or [0.0]
        return (f"writer waits over {len(ordered)} commits: median {statistics.median(ordered):.1f} ms, "
                f"p99 {ordered[int(0.99 * (len(ordered) - 1))]:.1f} ms, worst {ordered[-1]:.1f} ms")


def baseline(engine: Engine, cutoff: int) -> float:
    """The same rows changed by one UPDATE, rolled back: the least the work can cost, in one transaction that
    holds the rows (on SQLite, the whole store) throughout."""
    began = time.perf_counter()
    with writing(engine).connect() as conn:
        transaction = conn.begin()
        conn.execute(text("UPDATE interaction SET input_text = '', output_text = '', request_json = :e, "
                          "response_json = :e, expired_at = :c, updated_at = :c WHERE request_at < :c"),
                     {"e": EMPTY_JSON, "c": cutoff})
        seconds = time.perf_counter() - began
        transaction.rollback()
    return seconds


def copy_to_postgres(generated: Path, url: str) -> None:
    """The generated tables into an empty, migrated PostgreSQL database, with COPY."""
    began = time.perf_counter()
    with duckdb.connect(str(generated), read_only=True) as gen, psycopg.connect(url) as pg:
        for table in ("app", "end_user", "interaction_session", "interaction"):
            result = gen.execute(f"SELECT * FROM {table} ORDER BY id")
            columns = ", ".join(column[0] for column in result.description)
            with pg.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                while rows := result.fetchmany(50_000):
                    for row in rows:
                        copy.write_row(row)
        pg.commit()
    print(f"copied to PostgreSQL: {time.perf_counter() - began:.1f} s", flush=True)


def run(data_dir: Path, size: int, database_url: str) -> None:
    settings = Settings(data_dir=data_dir, database_url=database_url, analytics_refresh_seconds=3600,
                        _env_file=None)
    migrations.upgrade(settings)
    data_dir.mkdir(parents=True, exist_ok=True)
    now = now_ms()
    if database_url:
        generate(data_dir / "generated.duckdb", size, now, None)
        copy_to_postgres(data_dir / "generated.duckdb", database_url)
    else:
        generate(data_dir / "generated.duckdb", size, now, settings.database_url.split(":///", 1)[1])
    analytics = Analytics(settings)
    report = analytics.refresh()
    print(f"analytics caught up: {report.interactions:,} interactions in {report.seconds:.1f} s", flush=True)
    engine = build_engine(settings)
    cutoff = now - DAY_MS
    with engine.connect() as conn:
        due = conn.execute(text("SELECT count(*) FROM interaction WHERE request_at < :c"), {"c": cutoff}).scalar()
        conn.execute(text("UPDATE app SET raw_retention_days = 1"))
        conn.commit()
    base = baseline(engine, cutoff)
    print(f"baseline: one UPDATE of the {due:,} rows older than a day: {base:.1f} s ({due / base:,.0f} rows/s), "
          "in one transaction", flush=True)

    with WriterProbe(engine) as idle:
        time.sleep(2)
    print(f"idle:      {idle.summary()}", flush=True)
    with WriterProbe(engine) as busy:
        removed = apply_retention(engine, now=now, data_dir=settings.data_dir)
    print(f"retention: the content of {removed.interactions:,} interactions removed in {removed.seconds:.1f} s "
          f"({removed.interactions / removed.seconds:,.0f} rows/s), ratio to the baseline "
          f"{removed.seconds / base:.2f}\n           {busy.summary()}", flush=True)
    report = analytics.refresh()
    print(f"analytics after retention: {report.interactions:,} changed interactions reloaded in "
          f"{report.seconds:.1f} s", flush=True)

    with Session(engine) as db:
        busiest = db.exec(select(Interaction.user_id).group_by(Interaction.user_id)
                          .order_by(text("count(*) DESC")).limit(1)).first()
        user = db.get(EndUser, busiest)
        app = db.get(App, user.app_id)
        began = time.perf_counter()
        erased = erase_person(db, app=app, user_id=user.external_id, email=user.email, actor="bench",
                              data_dir=settings.data_dir)
        db.commit()
    after_commit(engine, erased)
    store_seconds = time.perf_counter() - began
    duckdb_mb = settings.analytics_path.stat().st_size / 1e6
    report = analytics.refresh()
    print(f"erasure of the busiest user ({erased.interactions:,} interactions, {erased.sessions:,} sessions): store "
          f"{store_seconds:.2f} s; analytics {report.seconds:.1f} s with the DuckDB file ({duckdb_mb:,.0f} MB) "
          "rewritten", flush=True)
    analytics.close()
    engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1_000_000, help="interactions in the synthetic store")
    parser.add_argument("--database-url", default="",
                        help="an empty PostgreSQL database (postgresql://…); default a temporary SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tally-bench-privacy-") as tmp:
        run(Path(tmp) / "data", args.size, args.database_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
