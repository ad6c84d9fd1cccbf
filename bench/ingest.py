"""Benchmarks Tally's POST /track against two baselines that receive and validate the same payloads and store
nothing: a bare FastAPI endpoint (a body parameter of the payload model) and a bare raw-ASGI endpoint that runs
Tally's own validation. The servers take turns in rounds (Tally, bare, raw, Tally, …) and the medians of the rounds
are compared, so the machine's noise falls on all alike. Every acknowledged interaction is then looked up in the store.

With `--replicas N` (PostgreSQL), it then runs 1, 2, … N Tally replicas on the one database, the connections spread
over them, and prints the aggregate accepted/s against one replica's, each replica's share and every process's CPU."""

import argparse
import importlib.util
import multiprocessing
import random
import secrets
import signal
import socket
import sys
import tempfile
import time
from argparse import Namespace
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from statistics import median

import orjson
import uvicorn
from fastapi import FastAPI
from ingest_load import (  # bench/ingest_load.py
    HOST,
    POOL_RATE,
    STEP_MS,
    USERS,
    WARMUP_SECONDS,
    Keys,
    Result,
    chat_payload,
    load,
)
from sqlalchemy import make_url, select
from sqlmodel import Session

from tally.ingest.keys import create_app as create_tally_app
from tally.ingest.redaction import Policy, Redactor
from tally.ingest.service import Refusal, parse_payload
from tally.ingest.wire import TrackPayload
from tally.server import migrations
from tally.server.app import create_app
from tally.store.engine import build_engine
from tally.store.models import Interaction
from tally.store.read_tokens import create_read_token
from tally.store.settings import Settings

CTX = multiprocessing.get_context("spawn")
PERSONAL = (" I am Jane Roe, jane.roe@example.com, +44 20 7946 0958; my card 4111 1111 1111 1111 was charged "
            "twice for order ORD-2024-000123.")


# --- the three servers, each run by uvicorn in a spawned process ---

def bare_app() -> FastAPI:
    app = FastAPI()

    @app.post("/track")
    async def track(payload: TrackPayload) -> dict[str, str]:
        return {"status": "ok"}

    return app


def raw_app():
    """The cheapest honest endpoint: plain ASGI, the body read whole, then Tally's validation (JSON, envelope,
    depth, format) as /track runs it, and a JSON answer. No keys, no storage."""
    ok = b'{"status":"ok"}'

    async def app(scope: dict, receive, send) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            parse_payload(body)
            status, answer = 200, ok
        except Refusal as refusal:
            status, answer = 422, orjson.dumps({"error": refusal.code, "errors": refusal.errors})
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})

    return app


def uvicorn_options() -> dict:
    options = {"host": HOST, "workers": 1, "log_level": "warning", "access_log": False}
    # The fast parser and loop only where installed, and then for both servers alike.
    if importlib.util.find_spec("httptools"):
        options["http"] = "httptools"
    if importlib.util.find_spec("uvloop"):
        options["loop"] = "uvloop"
    return options


def serve_tally(port: int, data_dir: str, database_url: str, redaction: str = "off") -> None:
    settings = Settings(data_dir=Path(data_dir), database_url=database_url, redaction_mode=redaction,
                        _env_file=None)
    uvicorn.run(create_app(settings), port=port, **uvicorn_options())


def serve_bare(port: int) -> None:
    uvicorn.run(bare_app(), port=port, **uvicorn_options())


def serve_raw(port: int) -> None:
    uvicorn.run(raw_app(), port=port, lifespan="off", **uvicorn_options())

# --- orchestration ---

@contextmanager
def child(target, *args) -> Iterator[multiprocessing.Process]:
    """A spawned process that is stopped however the block ends, Ctrl-C included."""
    process = CTX.Process(target=target, args=args)
    process.start()
    try:
        yield process
    finally:
        if process.is_alive():
            process.terminate()
            process.join(30)
        if process.is_alive():
            process.kill()
            process.join()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_until_listening(server: multiprocessing.Process, port: int) -> None:
    # uvicorn binds only after the app's lifespan startup, so an accepted connection means ready.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.is_alive():
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"the server on port {port} did not start")


def measure(serve, serve_args: tuple, keys: Keys, args: argparse.Namespace, start_ms: int) -> Result:
    return measure_replicas(serve, [serve_args], keys, args, start_ms)


def measure_replicas(serve, each_args: list[tuple], keys: Keys, args: argparse.Namespace, start_ms: int) -> Result:
    """One server per entry of `each_args`, all loaded at once, then stopped gracefully."""
    ports = [free_port() for _ in each_args]
    with ExitStack() as stack:
        servers = [stack.enter_context(child(serve, port, *serve_args)) for port, serve_args in zip(ports, each_args)]
        for server, port in zip(servers, ports):
            wait_until_listening(server, port)
        names = {f"replica {n + 1}" if len(servers) > 1 else "server": server.pid for n, server in enumerate(servers)}
        result = run_load(ports, names, keys, args, start_ms, stores=serve is serve_tally)
        for server in servers:
            server.terminate()  # SIGTERM: uvicorn drains, then the lifespan stops the writer
        for server in servers:
            server.join(60)
            # After a graceful shutdown uvicorn re-raises the signal it caught, so -SIGTERM is a clean exit too.
            if server.exitcode not in (0, -signal.SIGTERM):
                raise SystemExit(f"a server did not stop cleanly (exit code {server.exitcode})")
    result.accepted_by_port = Counter({n + 1: result.accepted_by_port[port] for n, port in enumerate(ports)})
    return result


def run_load(ports: list[int], servers: dict[str, int], keys: Keys, args: argparse.Namespace,
             start_ms: int, stores: bool) -> Result:
    receiver, sender = CTX.Pipe(duplex=False)
    with child(load, sender, ports, servers, keys, args.seconds, args.connections, args.seed, start_ms,
               stores) as loader:
        sender.close()  # so that recv() fails, rather than waits forever, if the load generator dies
        try:
            return receiver.recv()
        except EOFError:
            loader.join()
            raise SystemExit(f"the load generator died (exit code {loader.exitcode})") from None


def prepare_store(settings: Settings) -> Keys:
    migrations.upgrade(settings)
    engine = build_engine(settings)
    try:
        with Session(engine) as db:
            app, api_key = create_tally_app(db, name=f"bench-{secrets.token_hex(4)}")
            keys = Keys(app.id, app.app_key, api_key, create_read_token(db, name="bench"))
            db.commit()
    finally:
        engine.dispose()
    return keys


def stored_ids(settings: Settings, app_id: int) -> set[int]:
    table = Interaction.__table__
    engine = build_engine(settings)
    try:
        with engine.connect() as conn:
            return set(conn.execute(select(table.c.id).where(table.c.app_id == app_id)).scalars())
    finally:
        engine.dispose()


def report(name: str, result: Result) -> None:
    print(f"{name:<6} {result.rate:>8,.0f}/s accepted over {result.seconds:.1f} s   "
          f"p50 {result.latency_ms(0.5):6.1f} ms   p99 {result.latency_ms(0.99):6.1f} ms   "
          f"non-2xx: {result.failures()}   cpu ms/1k: {_cpu_per_1k(result)}", flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10, help="measured seconds per server and round, after "
                        "1 s warm-up")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of Tally, bare, raw; medians are compared")
    parser.add_argument("--quick", action="store_true", help="one round of 2 s: checks that the bench runs")
    parser.add_argument("--connections", type=int, default=64, help="concurrent keep-alive connections")
    parser.add_argument("--database-url", default="", help="postgresql://… for Tally; default a temporary SQLite file")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated payloads")
    parser.add_argument("--redaction", choices=("mask", "hash", "drop-body"),
                        help="then run Tally again with this redaction mode (every detector) and print its cost")
    parser.add_argument("--replicas", type=int, default=1,
                        help="then run 1..N replicas on the one PostgreSQL database (needs --database-url)")
    args = parser.parse_args()
    if args.replicas > 1 and not args.database_url.startswith("postgresql"):
        parser.error("--replicas needs --database-url postgresql://…: a SQLite store has one server process")
    if args.quick:
        args.rounds, args.seconds = 1, 2.0
    return args


def run(args: argparse.Namespace, data_dir: Path) -> int:
    settings = Settings(data_dir=data_dir, database_url=args.database_url, _env_file=None)
    options = ", ".join(f"{k}={v}" for k, v in uvicorn_options().items() if k in ("workers", "http", "loop"))
    store = make_url(settings.database_url).render_as_string(hide_password=True)
    print(f"POST /track, {args.connections} connections, {args.rounds} rounds of Tally, bare, raw, each "
          f"{args.seconds:g} s after {WARMUP_SECONDS:g} s warm-up; uvicorn {options}\nTally store: {store}", flush=True)
    rounds: dict[str, list[Result]] = {"Tally": [], "bare": [], "raw": []}
    missing = 0
    for number in range(1, args.rounds + 1):
        # An app of its own each round: the same users sent again over the same hours would be late arrivals in
        # their sessions (the slower placement path), and the round would measure that instead.
        keys = prepare_store(settings)
        start_ms = int(time.time() * 1000) - int(POOL_RATE * (args.seconds + WARMUP_SECONDS)) * STEP_MS
        print(f"round {number}", flush=True)
        tally = measure(serve_tally, (str(settings.data_dir), settings.database_url), keys, args, start_ms)
        report("Tally", tally)
        missing += durability(settings, keys, tally)
        for name, serve in (("bare", serve_bare), ("raw", serve_raw)):
            rounds[name].append(measure(serve, (), keys, args, start_ms))
            report(name, rounds[name][-1])
        rounds["Tally"].append(tally)
    first = rounds["Tally"][0]
    print(f"payloads: {first.requests_built:,} pre-built requests a round, JSON bodies of {first.mean_body_bytes:,.0f}"
          f" bytes on average, {USERS:,} users", flush=True)
    lags = sorted(lag for result in rounds["Tally"] for lag in result.freshness_lags_ms)
    if lags:
        print(f"analytics freshness under this load (GET /api/v1/analytics/status, {len(lags)} polls): "
              f"median lag {lags[len(lags) // 2]:,} ms, worst {lags[-1]:,} ms (target: under 10,000)", flush=True)
    summarise(rounds)
    if args.redaction:
        missing += with_redaction(settings, args, rounds["Tally"][-1])
    if args.replicas > 1:
        missing += scale_out(settings, prepare_store(settings), args, rounds["Tally"][-1])
    return 1 if missing else 0


def durability(settings: Settings, keys: Keys, result: Result) -> int:
    """Prints and returns how many interactions Tally acknowledged with a 2xx (warm-up too) are not in the store."""
    stored = stored_ids(settings, keys.app_id)
    missing = len(set(result.interaction_ids) - stored)
    print(f"       durability: {len(result.interaction_ids):,} interaction ids acknowledged with 2xx, {missing} "
          f"missing from the store; interaction rows: {len(stored):,}", flush=True)
    return missing


def summarise(rounds: dict[str, list[Result]]) -> None:
    """The median of the rounds for each server, and Tally's ratios to the two baselines."""
    print(f"\nmedian of {len(rounds['Tally'])} rounds   accepted/s   p50 ms   p99 ms   CPU ms per 1,000 accepted "
          "(each process; total)")
    rates, per_1k = {}, {}
    for name, results in rounds.items():
        rates[name] = median(r.rate for r in results)
        groups = sorted({group for r in results for group in r.cpu_seconds if group != "client"},
                        key=_group_order)
        costs = {group: median(r.cpu_per_1k(group) for r in results) for group in groups}
        costs = {group: cost for group, cost in costs.items() if cost >= 0.5}  # PostgreSQL idle: none
        per_1k[name] = (sum(cost for group, cost in costs.items() if group != "postgres"), costs.get("postgres", 0.0))
        parts = " + ".join(f"{_group_name(group)} {cost:,.0f}" for group, cost in costs.items())
        print(f"{name:<18} {rates[name]:>12,.0f} {median(r.latency_ms(0.5) for r in results):>8.1f} "
              f"{median(r.latency_ms(0.99) for r in results):>8.1f}   {parts} = "
              f"{sum(costs.values()):,.0f}", flush=True)
    for baseline in ("bare", "raw"):
        ratio = rates["Tally"] / rates[baseline] if rates[baseline] else float("nan")
        own, postgres = per_1k["Tally"]
        cpu = own / per_1k[baseline][0] if per_1k[baseline][0] else float("nan")
        with_db = f", {(own + postgres) / per_1k[baseline][0]:.2f} with PostgreSQL's" if postgres else ""
        print(f"ratio Tally/{baseline}: accepted/s {ratio:.2f}; CPU per 1,000 accepted {cpu:.2f} (Tally's processes"
              f"{with_db})", flush=True)


def _group_order(group: str) -> tuple[int, str]:
    return (group == "postgres", group.endswith(" children"), group)


def _group_name(group: str) -> str:
    """The bench's process groups as the printout names them: the web process, the storage process, PostgreSQL."""
    if group == "postgres":
        return "postgres"
    return group.replace("server children", "storage").replace("server", "web").replace(" children", " storage")


def with_redaction(settings: Settings, args: argparse.Namespace, off: Result) -> int:
    """Tally again on the same store with `--redaction`: accepted/s against the run without (above), and the
    redactor's own time per interaction, in this process, on the bench's payloads and on the same with personal
    data in each question. Returns ids missing."""
    # An app of its own: the first run's users, sent again in the same time window, would be late arrivals
    # in their sessions (the slow placement path) and measure that instead.
    keys = prepare_store(settings)
    start_ms = int(time.time() * 1000) - int(POOL_RATE * (args.seconds + WARMUP_SECONDS)) * STEP_MS
    result = measure(serve_tally, (str(settings.data_dir), settings.database_url, args.redaction), keys, args,
                     start_ms)
    report("redact", result)
    print(f"ratio Tally with {args.redaction}/without accepted/s: {result.rate / off.rate if off.rate else 0:.2f}")
    redactor = Redactor(Policy(mode=args.redaction), b"bench")
    clean = [chat_payload(keys, i, i % USERS, random.Random(i), start_ms, 0) for i in range(2000)]
    personal = [{**p, "request": {**p["request"], "messages": [p["request"]["messages"][0], {
        "role": "user", "content": p["request"]["messages"][1]["content"] + PERSONAL}]}} for p in clean]
    for name, payloads in (("bench payloads", clean), ("with personal data", personal)):
        began = time.perf_counter()
        for payload in payloads:
            redactor.json(payload["request"])
            redactor.json(payload["response"])
        micros = (time.perf_counter() - began) / len(payloads) * 1e6
        print(f"redactor ({args.redaction}, every detector), {name}: {micros:,.0f} µs per interaction", flush=True)
    lost = len(set(result.interaction_ids) - stored_ids(settings, keys.app_id))
    print(f"  durability: {len(result.interaction_ids):,} acknowledged, {lost} missing", flush=True)
    return lost


def scale_out(settings: Settings, keys: Keys, args: argparse.Namespace, one: Result) -> int:
    """2..N replicas, each on a data dir of its own, on the one database: the aggregate against one replica's
    (measured above, in this run), each replica's share, and what every process spent. Returns ids missing."""
    print(f"\nreplicas on one PostgreSQL ({args.connections} connections spread over them in turn; "
          "CPU in cores, each replica with its storage process)", flush=True)
    print(f"1 replica   {one.rate:>8,.0f}/s   ratio 1.00   p99 {one.latency_ms(0.99):6.1f} ms   "
          f"cpu: {_cpu(one)}", flush=True)
    missing = 0
    for count in range(2, args.replicas + 1):
        start_ms = int(time.time() * 1000) - int(POOL_RATE * (args.seconds + WARMUP_SECONDS)) * STEP_MS
        each = [(str(settings.data_dir.with_name(f"replica-{count}-{n}")), settings.database_url)
                for n in range(count)]
        later = Namespace(**{**vars(args), "seed": args.seed + count})  # response ids of its own
        result = measure_replicas(serve_tally, each, keys, later, start_ms)
        shares = " + ".join(f"{result.accepted_by_port[n] / result.seconds:,.0f}" for n in range(1, count + 1))
        print(f"{count} replicas  {result.rate:>8,.0f}/s   ratio {result.rate / one.rate if one.rate else 0:.2f}   "
              f"p99 {result.latency_ms(0.99):6.1f} ms   per replica {shares}   non-2xx: {result.failures()}   "
              f"cpu: {_cpu(result)}", flush=True)
        lost = len(set(result.interaction_ids) - stored_ids(settings, keys.app_id))
        print(f"  durability: {len(result.interaction_ids):,} acknowledged, {lost} missing", flush=True)
        missing += lost
    return missing


def _cpu(result: Result) -> str:
    return " / ".join(f"{_group_name(process)} {share:.2f}" for process, share in result.cpu.items())


def _cpu_per_1k(result: Result) -> str:
    return " + ".join(f"{_group_name(group)} {result.cpu_per_1k(group):,.0f}" for group in
                      sorted(result.cpu_seconds, key=_group_order) if group != "client" and result.cpu_seconds[group])


def main() -> int:
    args = parse_args()
    try:
        with tempfile.TemporaryDirectory(prefix="tally-bench-") as tmp:
            return run(args, Path(tmp) / "data")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
