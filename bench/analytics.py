"""Benchmarks Tally's analytics at 1M and 10M interactions: store sync, rollups and every read API query."""

import argparse
import math
import socket
import sqlite3
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

from tally.analytics import api as analytics_api
from tally.analytics import rollups
from tally.analytics.service import Analytics
from tally.analytics.source import INTERACTION_COLUMNS, USER_COLUMNS, StoreReader
from tally.server import migrations
from tally.store.engine import build_engine
from tally.store.read_tokens import create_read_token
from tally.store.settings import Settings

HOST = "127.0.0.1"
DAY_MS = 86_400_000
DAYS = 90
INTERACTIONS_PER_USER = 20  # 50k users at 1M, 500k at 10M
MEAN_TURNS = 5  # interactions per session, geometric
MAX_TURNS = 30
TURN_GAP_MS = 90_000  # turns are 90-150 s apart, so a session lasts under 45 minutes
SESSION_MS = MAX_TURNS * TURN_GAP_MS
INCREMENT = 10_000
INCREMENT_ROUNDS = 3
WARMUP_RUNS = 2
COPY_BATCH = 50_000

APPS = (("support-bot", 0.6), ("code-assistant", 0.3), ("marketing-writer", 0.1))
# (provider, model, share of sessions, median latency ms); house-model-x is missing from the price table on purpose
MODELS = (
    ("openai", "gpt-4o-mini-2024-07-18", 0.28, 900), ("openai", "gpt-4o", 0.10, 2200),
    ("openai", "gpt-4.1-mini", 0.06, 1100), ("anthropic", "claude-3-5-sonnet-20241022", 0.12, 2600),
    ("anthropic", "claude-3-haiku-20240307", 0.10, 800), ("bedrock", "meta.llama3-8b-instruct-v1:0", 0.06, 700),
    ("bedrock", "anthropic.claude-3-haiku-20240307-v1:0", 0.04, 900), ("cohere", "command-r", 0.08, 1200),
    ("mistral", "mistral-large-latest", 0.08, 1800), ("openai", "house-model-x", 0.08, 500),
)
QUESTIONS = ("How do I reset my password?", "Summarise this contract clause in plain words.",
             "Write a haiku about autumn.", "Why does my build fail with a missing module?",
             "Translate good morning into French.", "What is the refund policy for e-books?",
             "Draft a polite reminder about an unpaid invoice.", "Explain recursion to a ten-year-old.")
ANSWER = "Here is what I found: the answer depends on a few details, so let me walk you through them."
FIRST_NAMES = ("Ann", "Bob", "Chloe", "David", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemal", "Lea")
LAST_NAMES = ("Smith", "Garcia", "Nguyen", "Muller", "Rossi", "Kowalski", "Dubois", "Tanaka", "Silva", "Olsen")

# The store's tables, as far as the generator fills them (same names and order of columns as in SQLite).
STORE_TABLES = """
CREATE TABLE IF NOT EXISTS app (id BIGINT, name VARCHAR, app_key VARCHAR, session_timeout_minutes DOUBLE,
    created_at BIGINT);
CREATE TABLE IF NOT EXISTS end_user (id BIGINT, app_id BIGINT, external_id VARCHAR, email VARCHAR, email_key VARCHAR,
    first_name VARCHAR, last_name VARCHAR, phone VARCHAR, gender VARCHAR, is_authenticated BOOLEAN, profile_at BIGINT,
    created_at BIGINT, updated_at BIGINT);
CREATE TABLE IF NOT EXISTS interaction_session (id BIGINT, app_id BIGINT, external_id VARCHAR, user_id BIGINT,
    merged_into BIGINT, created_at BIGINT);
CREATE TABLE IF NOT EXISTS interaction (id BIGINT, app_id BIGINT, user_id BIGINT, session_id BIGINT,
    session_key VARCHAR, session_timeout_ms BIGINT, provider VARCHAR, type VARCHAR, model VARCHAR, input_text VARCHAR,
    output_text VARCHAR, prompt_tokens BIGINT, cached_prompt_tokens BIGINT, completion_tokens BIGINT,
    total_tokens BIGINT, usage_source VARCHAR, finish_reason VARCHAR, request_at BIGINT, response_at BIGINT,
    latency_ms BIGINT, image_count INTEGER, is_error BOOLEAN, response_ref VARCHAR, client_version VARCHAR,
    request_json VARCHAR, response_json VARCHAR, received_at BIGINT, updated_at BIGINT);
"""
# Uniform and normal draws keyed by a row number and a salt (< 64): reproducible, and safe on parallel threads.
# One hashed integer per draw: hash(x, salt) combines two hashes weakly, and its draws for one x correlate.
RANDOM_MACROS = """
CREATE OR REPLACE TEMP MACRO rnd(x, salt) AS hash(x * 64 + salt) / 18446744073709551616.0;
CREATE OR REPLACE TEMP MACRO normal(x, a, b) AS sqrt(-2 * ln(1 - rnd(x, a))) * cos(2 * pi() * rnd(x, b));
"""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _literal(value) -> str:
    return "'" + value.replace("'", "''") + "'" if isinstance(value, str) else repr(value)


def _pick(values: tuple, draw: str) -> str:
    """SQL choosing one of `values` uniformly with the draw `draw` in [0, 1)."""
    return f"[{', '.join(map(_literal, values))}][1 + floor({draw} * {len(values)})::INT]"


def _weighted_index(shares: list[float], draw: str) -> str:
    """SQL for the 1-based index of the share the draw falls in."""
    bounds = [sum(shares[:i + 1]) for i in range(len(shares) - 1)]
    return ("CASE " + " ".join(f"WHEN {draw} < {bound:.6f} THEN {i + 1}" for i, bound in enumerate(bounds))
            + f" ELSE {len(shares)} END")


def _column(index: int) -> str:
    """SQL list of MODELS' column `index`, to be indexed by the model number `m`."""
    return f"[{', '.join(_literal(row[index]) for row in MODELS)}][m]"


def create_store(gen: duckdb.DuckDBPyConnection, size: int, now: int) -> int:
    """Apps, users and `size` interactions over the last DAYS days; returns the number of users."""
    gen.execute(STORE_TABLES + RANDOM_MACROS)
    gen.execute("INSERT INTO app VALUES " + ", ".join(
        f"({i}, {_literal(name)}, 'bench-key-{i}', NULL, {now - 2 * DAYS * DAY_MS})"
        for i, (name, _) in enumerate(APPS, start=1)))
    users = max(1, size // INTERACTIONS_PER_USER)
    named = "rnd(i, 4) < 0.7"
    gen.execute(f"""
        INSERT INTO end_user
        SELECT id, app_id, external_id, email, lower(email), first_name, last_name, NULL, NULL, is_authenticated,
               created_at, created_at, created_at
        FROM (SELECT i + 1 AS id, {_weighted_index([share for _, share in APPS], 'rnd(i, 1)')} AS app_id,
                     CASE WHEN rnd(i, 2) < 0.9 THEN 'user-' || (i + 1) END AS external_id,
                     CASE WHEN rnd(i, 2) >= 0.9 OR rnd(i, 3) < 0.6 THEN 'user' || (i + 1) || '@example.com' END
                         AS email,
                     CASE WHEN {named} THEN {_pick(FIRST_NAMES, 'rnd(i, 5)')} END AS first_name,
                     CASE WHEN {named} THEN {_pick(LAST_NAMES, 'rnd(i, 6)')} END AS last_name,
                     rnd(i, 7) < 0.8 AS is_authenticated,
                     {now - DAYS * DAY_MS} - floor(rnd(i, 8) * 60 * {DAY_MS})::BIGINT AS created_at
              FROM range({users}) r(i))""")
    add_traffic(gen, size, users=users, start=now - DAYS * DAY_MS, end=now)
    return users


def add_traffic(gen: duckdb.DuckDBPyConnection, count: int, *, users: int, start: int, end: int,
                updated_at: int | None = None) -> tuple[int, int]:
    """Appends `count` interactions in new sessions of existing users, all between `start` and `end`; returns
    the first new interaction and session ids.

    `updated_at` None stamps each row with its arrival time, as ingest does; a number stamps them all.
    """
    gen.execute(RANDOM_MACROS)
    first_id, first_session = gen.execute(
        "SELECT (SELECT coalesce(max(id), 0) + 1 FROM interaction), "
        "(SELECT coalesce(max(id), 0) + 1 FROM interaction_session)").fetchone()
    last_start = end - SESSION_MS
    if end - start > 2 * DAY_MS:  # busy in the afternoon (UTC), quiet at night
        hour = "CASE WHEN rnd(s, 11) < 0.75 THEN 14.5 + 3.5 * normal(s, 12, 13) ELSE 24 * rnd(s, 14) END"
        day0 = (end // DAY_MS - DAYS + 1) * DAY_MS
        moment = f"{day0} + floor(rnd(s, 15) * {DAYS})::BIGINT * {DAY_MS} + (({hour}) % 24 + 24) % 24 * 3600000"
        started = (f"CASE WHEN {moment} > {last_start} THEN {last_start} - (({moment}) - {last_start}) % {DAY_MS} "
                   f"ELSE {moment} END")
    else:
        started = f"{start} + floor(rnd(s, 15) * {max(1, last_start - start)})"
    # Enough sessions that their turns surely reach `count`; the surplus is cut off below.
    sessions = math.ceil(count / (MEAN_TURNS - 0.5)) + 100
    # User popularity is skewed (rank = users * u^2), and the rank is scattered over the ids by a large prime.
    gen.execute(f"""
        CREATE OR REPLACE TEMP TABLE new_session AS
        SELECT * FROM (
            SELECT s.*, u.app_id, sum(s.turns) OVER (ORDER BY s.id) - s.turns AS first_turn
            FROM (SELECT s AS id, 1 + floor({users} * pow(rnd(s, 10), 2))::BIGINT * 1000003 % {users} AS user_id,
                         least({MAX_TURNS}, 1 + floor(ln(1 - rnd(s, 16)) / ln(1 - 1 / {MEAN_TURNS})))::INT AS turns,
                         rnd(s, 17) < 0.2 AS explicit, rnd(s, 18) AS model_draw,
                         ({started})::BIGINT AS started_at
                  FROM (SELECT {first_session} + i AS s FROM range({sessions}) r(i))) s
            JOIN end_user u ON u.id = s.user_id)
        WHERE first_turn < {count}""")
    gen.execute("INSERT INTO interaction_session SELECT id, app_id, CASE WHEN explicit THEN 'conv-' || id END, "
                "user_id, NULL, started_at FROM new_session ORDER BY id")
    # Ids follow request time, as they do when traffic is ingested live.
    gen.execute(f"""
        CREATE OR REPLACE TEMP TABLE new_turn AS
        SELECT {first_id} - 1 + row_number() OVER (ORDER BY request_at, x) AS id, *
        FROM (SELECT *, started_at + k * {TURN_GAP_MS} + floor(rnd(x, 20) * 60000)::BIGINT AS request_at
              FROM (SELECT id AS session_id, user_id, app_id, explicit, model_draw, started_at, k,
                           {first_id} + first_turn + k AS x
                    FROM (SELECT *, unnest(range(turns)) AS k FROM new_session)
                    WHERE first_turn + k < {count}))
        ORDER BY id""")
    shares = [share for _, _, share, _ in MODELS]
    stamp = "received_at" if updated_at is None else str(updated_at)
    gen.execute(f"""
        INSERT INTO interaction
        WITH t AS (
            SELECT *, {_weighted_index(shares, 'CASE WHEN rnd(x, 21) < 0.05 THEN rnd(x, 22) ELSE model_draw END')} AS m,
                   CASE WHEN rnd(x, 23) < 0.85 THEN 'reported' WHEN rnd(x, 23) < 0.98 THEN 'estimated'
                        ELSE 'absent' END AS usage_source,
                   rnd(x, 24) < 0.02 AS is_error
            FROM new_turn),
        v AS (
            SELECT *, {_column(0)} AS provider, {_column(1)} AS model,
                   greatest(50, round({_column(3)} * exp(0.6 * normal(x, 25, 26))))::BIGINT AS latency_ms,
                   round((300 + 180 * k) * exp(0.5 * normal(x, 27, 28)))::BIGINT AS prompt,
                   CASE WHEN is_error THEN 0 ELSE round(220 * exp(0.7 * normal(x, 29, 30)))::BIGINT END AS completion
            FROM t),
        w AS (SELECT *, request_at + latency_ms + 20 + floor(rnd(x, 31) * 200)::BIGINT AS received_at FROM v)
        SELECT id, app_id, user_id, session_id,
               CASE WHEN explicit THEN 's:conv-' || session_id ELSE 'u:' || user_id END,
               CASE WHEN NOT explicit THEN 600000 END, provider, 'chat', model, {_pick(QUESTIONS, 'rnd(x, 32)')},
               CASE WHEN is_error THEN '' ELSE {_literal(ANSWER)} END,
               CASE WHEN usage_source <> 'absent' THEN prompt END,
               CASE WHEN usage_source = 'reported' AND k > 0 AND provider IN ('openai', 'anthropic')
                    AND rnd(x, 33) < 0.5 THEN prompt * 6 // 10 END,
               CASE WHEN usage_source <> 'absent' THEN completion END,
               CASE WHEN usage_source <> 'absent' THEN prompt + completion END,
               usage_source, CASE WHEN is_error THEN NULL WHEN rnd(x, 34) < 0.03 THEN 'length' ELSE 'stop' END,
               request_at, request_at + latency_ms, latency_ms, (rnd(x, 35) < 0.01)::INT, is_error,
               'resp-' || x, '3.0.0', '{{}}', '{{}}', received_at, {stamp}
        FROM w ORDER BY id""")
    gen.execute("DROP TABLE new_session; DROP TABLE new_turn")
    return first_id, first_session


def copy_rows(gen: duckdb.DuckDBPyConnection, store: sqlite3.Connection, table: str, where: str = "TRUE") -> None:
    result = gen.execute(f"SELECT * FROM {table} WHERE {where} ORDER BY id")
    columns = [column[0] for column in result.description]
    insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    while rows := result.fetchmany(COPY_BATCH):
        store.executemany(insert, rows)


def write_sqlite(gen: duckdb.DuckDBPyConnection, path: str, *, first_id: int, first_session: int) -> None:
    """Copies rows from the ids given on (users and apps only on the first copy) in one transaction."""
    store = sqlite3.connect(path)
    try:
        store.execute("PRAGMA synchronous=OFF")  # a fixture: durability is not what is measured here
        with store:
            if first_id == 1:
                copy_rows(gen, store, "app")
                copy_rows(gen, store, "end_user")
            copy_rows(gen, store, "interaction_session", f"id >= {first_session}")
            copy_rows(gen, store, "interaction", f"id >= {first_id}")
    finally:
        store.close()


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
        Case("usage hour 90d", "/usage", {"granularity": "hour", **d90}),
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


def file_mb(*paths: Path) -> float:
    return sum(path.stat().st_size for path in paths if path.exists()) / 1e6


def generate(path: Path, size: int, now: int, sqlite_path: str | None) -> int:
    """The synthetic store in a DuckDB file, copied to the SQLite store unless None; returns the user count."""
    with duckdb.connect(str(path)) as gen:
        seconds, users = timed(lambda: create_store(gen, size, now))
        sessions = gen.execute("SELECT count(*) FROM interaction_session").fetchone()[0]
        print(f"generated {size:,} interactions, {users:,} users, {sessions:,} sessions in DuckDB: {seconds:.1f} s",
              flush=True)
        if sqlite_path is not None:
            seconds, _ = timed(lambda: write_sqlite(gen, sqlite_path, first_id=1, first_session=1))
            print(f"written to the SQLite store with executemany: {seconds:.1f} s "
                  f"({file_mb(Path(sqlite_path)):,.0f} MB)", flush=True)
    return users


def increment_window(stamp: int) -> dict:
    """Sessions starting in the ten minutes that end one session length before `stamp`: every turn is past."""
    return {"start": stamp - SESSION_MS - 600_000, "end": stamp, "updated_at": stamp}


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
