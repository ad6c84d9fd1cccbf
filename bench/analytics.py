"""Benchmarks Tally's analytics at 1M and 10M interactions: store sync, rollups and every read API query."""

import argparse
import math
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import duckdb
import httpx
import pyarrow
import uvicorn
from fastapi import FastAPI
from sqlmodel import Session
from synthetic import (  # bench/synthetic.py
    DAY_MS,
    DAYS,
    add_traffic,
    file_mb,
    generate,
    increment_window,
    now_ms,
    write_sqlite,
)

from tally.analytics import rollups
from tally.analytics.service import Analytics
from tally.analytics.source import INTERACTION_COLUMNS, USER_COLUMNS, StoreReader
from tally.server import migrations
from tally.store.engine import build_engine
from tally.store.read_tokens import create_read_token
from tally.store.settings import Settings
from tally.web import analytics_api

HOST = "127.0.0.1"
INCREMENT = 10_000
INCREMENT_ROUNDS = 3
WARMUP_RUNS = 2

class AttachedStore(StoreReader):
    """The generated store attached to the warehouse's DuckDB, read by the refresher in place of SQLite."""

    def __init__(self, connection: duckdb.DuckDBPyConnection) -> None:
        super().__init__("duckdb:attached")
        self._connection = connection

    def query(self, sql: str) -> pyarrow.Table:
        return self._connection.sql(sql).to_arrow_table()


def copy_inside_duckdb(cursor: duckdb.DuckDBPyConnection) -> None:
    """The fast path: the store's rows straight into the warehouse tables, watermarks set as a sync would."""
    cursor.begin()
    cursor.execute("INSERT INTO chat_session SELECT id, app_id, external_id FROM store.interaction_session")
    cursor.execute(f"INSERT INTO end_user SELECT {USER_COLUMNS} FROM store.end_user")
    cursor.execute(f"INSERT INTO interaction SELECT {INTERACTION_COLUMNS} FROM store.interaction")
    for name, table in (("interaction", "interaction"), ("user", "end_user")):
        cursor.execute(f"INSERT OR REPLACE INTO sync_state SELECT '{name}_watermark', max(updated_at)::VARCHAR "
                       f"FROM store.{table}")
    cursor.commit()


@dataclass
class Result:
    name: str
    size: int
    seconds: list[float]
    target: float | None = None  # seconds, judged on p95
    direct: list[float] | None = None  # the same handler called in-process
    rows: int | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def p95(self) -> float:
        return percentile(self.seconds, 0.95)

    @property
    def ok(self) -> str:
        return "" if self.target is None else "yes" if self.p95 <= self.target else "NO"


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def timed(action: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


class TimedCursor:
    """Passes statements on to a DuckDB cursor and records how long each took."""

    def __init__(self, cursor: duckdb.DuckDBPyConnection) -> None:
        self._cursor = cursor
        self.seconds: dict[str, float] = {}

    def execute(self, sql: str, *args):
        seconds, result = timed(lambda: self._cursor.execute(sql, *args))
        verb, _, table = sql.split()[:3]
        if verb in ("DELETE", "INSERT"):  # DELETE FROM t / INSERT INTO t
            self.seconds[table] = self.seconds.get(table, 0.0) + seconds
        return result


def time_rebuild(analytics: Analytics, size: int, runs: int) -> list[Result]:
    """`rollups.rebuild_all` as the first refresh runs it, and each rollup's share; every run is rolled back."""
    cursor = analytics.warehouse.cursor()
    totals, per_table = [], {}
    for _ in range(runs):
        timed_cursor = TimedCursor(cursor)
        cursor.begin()
        try:
            rebuild = partial(rollups.rebuild_all, timed_cursor, analytics.settings.analytics_timezone)
            totals.append(timed(rebuild)[0])
        finally:
            cursor.rollback()
        for table, seconds in timed_cursor.seconds.items():
            per_table.setdefault(table, []).append(seconds)
    return reported([Result("rebuild_all (every rollup)", size, totals),
                     *(Result(f"  rebuild {table}", size, seconds, target=3.0 if table == "session_stats" else None)
                       for table, seconds in per_table.items())])


@dataclass(frozen=True)
class Case:
    name: str
    path: str  # under /api/v1
    params: dict


def cases(now: int, user_id: int) -> list[Case]:
    d90 = {"from": str(now - DAYS * DAY_MS)}
    user, model = {"user": str(user_id)}, {"model": "gpt-4o"}
    return [
        Case("usage day 30d", "/usage", {"granularity": "day"}),
        Case("usage hour 30d", "/usage", {"granularity": "hour"}),
        Case("usage day 90d", "/usage", {"granularity": "day", **d90}),
        Case("usage hour 30d user", "/usage", {"granularity": "hour", **user}),  # 90 days of hours: over the cap
        Case("usage day 30d model", "/usage", {"granularity": "day", **model}),
        Case("usage day 30d user", "/usage", {"granularity": "day", **user}),
        Case("totals 30d", "/usage/totals", {}),
        Case("totals 90d", "/usage/totals", d90),
        Case("totals 30d model", "/usage/totals", model),
        Case("totals 30d user", "/usage/totals", user),
        Case("models 30d", "/usage/models", {}),
        Case("models 90d", "/usage/models", d90),
        Case("top-users 30d", "/usage/top-users", {}),
        Case("top-users 90d by cost", "/usage/top-users", {"sort": "cost", **d90}),
        Case("active-users day 90d", "/usage/active-users", {"granularity": "day", **d90}),
        Case("active-users week 90d", "/usage/active-users", {"granularity": "week", **d90}),
        Case("active-users month 90d", "/usage/active-users", {"granularity": "month", **d90}),
        Case("users (last seen)", "/users", {}),
        Case("users sort=tokens", "/users", {"sort": "tokens"}),
        Case("users search", "/users", {"search": "user4242"}),
        Case("sessions 30d", "/sessions", {}),
        Case("sessions 30d model", "/sessions", model),
        Case("sessions 30d user", "/sessions", user),
        Case("interactions 30d", "/interactions", {}),
        Case("interactions 30d model", "/interactions", model),
        Case("interactions 30d user", "/interactions", user),
    ]


def in_process(analytics: Analytics, case: Case) -> Callable[[], dict]:
    """The case's route handler, called as FastAPI would after auth (query parameters as strings)."""
    endpoints = {route.path: route.endpoint for route in analytics_api.router.routes}
    endpoint = endpoints[analytics_api.router.prefix + case.path]
    request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(analytics=analytics)))
    names = {"from": "start", "to": "end"}
    kwargs = {names.get(key, key): value for key, value in case.params.items()}
    return lambda: endpoint(request, None, **kwargs)


def repeat(action: Callable[[], object], runs: int) -> list[float]:
    for _ in range(WARMUP_RUNS):
        action()
    return [timed(action)[0] for _ in range(runs)]


def item_count(answer: dict) -> int:
    """Rows in the answer's list, or 1 for the totals object."""
    return next((len(answer[key]) for key in ("series", "items", "users", "models") if key in answer), 1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@contextmanager
def read_api(analytics: Analytics, settings: Settings) -> Iterator[httpx.Client]:
    """The read API's real router and token check under uvicorn, on this process's warehouse.

    The scheduler of `create_app` is left out: it would refresh in the middle of the timings and, in the fast
    path, find the SQLite store empty and delete every row from DuckDB.
    """
    app = FastAPI()
    app.include_router(analytics_api.router)
    app.state.analytics = analytics
    app.state.engine = engine = build_engine(settings)
    with Session(engine) as db:
        token = create_read_token(db, name="bench")
        db.commit()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the read API did not start")
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://{HOST}:{port}/api/v1", timeout=120,
                          headers={"Authorization": f"Bearer {token}"}) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        engine.dispose()


def time_queries(analytics: Analytics, settings: Settings, size: int, now: int, runs: int) -> list[Result]:
    target = 0.1 if size <= 1_000_000 else 0.5
    user_id = analytics.warehouse.cursor().execute(
        "SELECT user_id FROM interaction GROUP BY 1 ORDER BY count(*) DESC LIMIT 1").fetchone()[0]
    results = []
    with read_api(analytics, settings) as client:
        for case in cases(now, user_id):
            def over_http(case=case) -> dict:
                answer = client.get(case.path, params=case.params)
                answer.raise_for_status()
                return answer.json()

            direct = in_process(analytics, case)
            results += reported([Result(case.name, size, repeat(over_http, runs), target, repeat(direct, runs),
                                        item_count(direct()))])
    return results


def report(result: Result) -> None:
    direct = f"  in-process median {statistics.median(result.direct) * 1000:7.1f} ms" if result.direct else ""
    rows = f"  ({result.rows} rows)" if result.rows is not None else ""
    print(f"  {result.name:<40} median {result.median * 1000:8.1f} ms  p95 {result.p95 * 1000:8.1f} ms{direct}{rows}",
          flush=True)


def reported(results: list[Result]) -> list[Result]:
    for result in results:
        report(result)
    return results


def sqlite_delivery(generated: Path, sqlite_path: str, users: int) -> Callable[[int], None]:
    def deliver(stamp: int) -> None:
        with duckdb.connect(str(generated)) as gen:
            first_id, first_session = add_traffic(gen, INCREMENT, users=users, **increment_window(stamp))
            write_sqlite(gen, sqlite_path, first_id=first_id, first_session=first_session)
    return deliver


def fast_path(analytics: Analytics, generated: Path, users: int, stack: ExitStack) -> Callable[[int], None]:
    """Copies the generated store into the warehouse inside DuckDB and points the refresher at it."""
    # A second connection to the warehouse file shares its database instance, where the store gets attached:
    # it reads the store for the refresher and generates the increments into it.
    attached = duckdb.connect(str(analytics.settings.analytics_path))
    stack.callback(attached.close)
    attached.execute(f"ATTACH '{generated}' AS store")
    attached.execute("USE store")
    analytics.refresher.reader = AttachedStore(attached)
    seconds, _ = timed(lambda: copy_inside_duckdb(analytics.warehouse.cursor()))
    print(f"fast path: store rows copied into the warehouse tables inside DuckDB: {seconds:.1f} s", flush=True)
    return lambda stamp: add_traffic(attached, INCREMENT, users=users, **increment_window(stamp))


def time_refreshes(analytics: Analytics, size: int, deliver: Callable[[int], None], fast: bool) -> list[Result]:
    """The first refresh (a full rollup), one with nothing new, then INCREMENT_ROUNDS incremental ones."""
    full = analytics.refresh()
    assert full.full_rollup
    idle = analytics.refresh()
    increments = []
    for _ in range(INCREMENT_ROUNDS):
        deliver(now_ms())
        refreshed = analytics.refresh()
        assert not refreshed.full_rollup and refreshed.interactions == INCREMENT, refreshed
        increments.append(refreshed.seconds)
    first = "first refresh, full rollup" + (" (after the fast-path copy)" if fast else " (reads SQLite)")
    source = "attached store" if fast else "in SQLite"
    return reported([Result(first, size, [full.seconds]), Result("refresh, nothing new", size, [idle.seconds]),
                     Result(f"incremental refresh (+{INCREMENT:,} {source})", size, increments, target=1.0)])


def bench_size(size: int, workdir: Path, args: argparse.Namespace) -> list[Result]:
    fast = size > args.sqlite_max
    path = "fast path: rows written into DuckDB directly, no SQLite store" if fast else "SQLite store, real sync"
    print(f"\n== {size:,} interactions ({path}) ==", flush=True)
    settings = Settings(data_dir=workdir / f"n{size}", analytics_timezone=args.timezone, _env_file=None)
    migrations.upgrade(settings)  # the read token lives in the store, in both paths
    generated = settings.data_dir / "generated.duckdb"
    sqlite_path = settings.database_url.split(":///", 1)[1]
    users = generate(generated, size, now_ms(), None if fast else sqlite_path)
    with ExitStack() as stack:
        analytics = Analytics(settings)
        stack.callback(analytics.close)
        deliver = (fast_path(analytics, generated, users, stack) if fast
                   else sqlite_delivery(generated, sqlite_path, users))
        results = time_refreshes(analytics, size, deliver, fast)
        warehouse = settings.analytics_path
        print(f"DuckDB file: {file_mb(warehouse, warehouse.with_suffix('.duckdb.wal')):,.0f} MB", flush=True)
        results += time_rebuild(analytics, size, args.rebuild_runs)
        print(f"read API, {args.runs} runs each after {WARMUP_RUNS} warm-up runs "
              f"(over HTTP; in-process = the same handler called directly):", flush=True)
        results += time_queries(analytics, settings, size, now_ms(), args.runs)
    return results


def print_table(results: list[Result]) -> None:
    print(f"\n{'check':<54} {'size':>11} {'median ms':>10} {'p95 ms':>10} {'in-proc ms':>10} {'target ms':>9}  ok?")
    for r in results:
        direct = f"{statistics.median(r.direct) * 1000:10.1f}" if r.direct else f"{'':>10}"
        target = f"{r.target * 1000:9.0f}" if r.target is not None else f"{'':>9}"
        print(f"{r.name:<54} {r.size:>11,} {r.median * 1000:10.1f} {r.p95 * 1000:10.1f} {direct} {target}  {r.ok}")
    missed = [r for r in results if r.ok == "NO"]
    print(f"\n{len(missed)} target(s) missed"
          + (": " + "; ".join(f"{r.name.strip()} at {r.size:,}" for r in missed) if missed else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000000,10000000", help="interaction counts, comma-separated")
    parser.add_argument("--runs", type=int, default=20, help="timed runs of each read query")
    parser.add_argument("--rebuild-runs", type=int, default=3, help="timed runs of the full rollup rebuild")
    parser.add_argument("--sqlite-max", type=int, default=1_000_000,
                        help="larger sizes skip SQLite and write DuckDB directly (the fast path)")
    parser.add_argument("--timezone", default="UTC", help="analytics_timezone of the warehouse")
    parser.add_argument("--keep", type=Path, help="build the data here and keep it (default: a temporary directory)")
    args = parser.parse_args()
    results = []
    for size in (int(size) for size in args.sizes.split(",")):
        if args.keep:
            results += bench_size(size, args.keep, args)
        else:
            with tempfile.TemporaryDirectory(prefix="tally-bench-") as workdir:
                results += bench_size(size, Path(workdir), args)
    print_table(results)


if __name__ == "__main__":
    main()
