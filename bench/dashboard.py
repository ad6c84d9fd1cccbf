"""Benchmarks the dashboard's server-side rendering at 1M interactions: every page over HTTP, logged in."""

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from sqlmodel import Session

sys.path.insert(0, str(Path(__file__).parent))
from analytics import HOST, free_port, percentile  # noqa: E402  (bench/analytics.py)
from synthetic import generate, now_ms  # noqa: E402  (bench/synthetic.py)

from tally.analytics.service import Analytics  # noqa: E402
from tally.server import migrations  # noqa: E402
from tally.server.app import create_app  # noqa: E402
from tally.store.accounts import create_account, find_account, hash_password  # noqa: E402
from tally.store.engine import build_engine  # noqa: E402
from tally.store.settings import Settings  # noqa: E402

TARGET_MS = 200
EMAIL, PASSWORD = "bench@example.com", "bench password"


def pages(client: httpx.Client) -> list[tuple[str, str]]:
    """(name, path) of every page, with ids taken from the data: the busiest user, one of their sessions."""
    users = client.get("/dashboard/users?sort=interactions").text
    user_id = users.split('href="/dashboard/users/', 1)[1].split('"', 1)[0].split("?")[0]
    sessions = client.get(f"/dashboard/users/{user_id}").text
    session_id = sessions.split('href="/dashboard/sessions/', 1)[1].split('"', 1)[0].split("?")[0]
    interactions = client.get(f"/dashboard/interactions?session={session_id}&range=90d").text
    interaction_id = interactions.split('href="/dashboard/interactions/', 1)[1].split('"', 1)[0].split("?")[0]
    return [
        ("overview, last 30 days", "/dashboard"), ("overview, last 24 hours", "/dashboard?range=24h"),
        ("overview, last 90 days", "/dashboard?range=90d"), ("overview, 30 days, one model", "/dashboard?model=gpt-4o"),
        ("overview, 30 days, one user", f"/dashboard?user={user_id}"), ("models, 30 days", "/dashboard/models"),
        ("models, 90 days", "/dashboard/models?range=90d"), ("users, by last seen", "/dashboard/users"),
        ("users, by tokens", "/dashboard/users?sort=tokens"), ("users, search", "/dashboard/users?search=user4242"),
        ("user page", f"/dashboard/users/{user_id}"), ("sessions", "/dashboard/sessions"),
        ("session transcript", f"/dashboard/sessions/{session_id}"), ("interactions", "/dashboard/interactions"),
        ("interactions, one model", "/dashboard/interactions?model=gpt-4o"),
        ("interaction detail", f"/dashboard/interactions/{interaction_id}"),
    ]


def timed_gets(client: httpx.Client, path: str, runs: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        client.get(path).raise_for_status()
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        client.get(path).raise_for_status()
        seconds.append(time.perf_counter() - started)
    return seconds


def serve(settings: Settings) -> tuple[uvicorn.Server, str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host=HOST, port=port, log_level="warning",
                                           access_log=False))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://{HOST}:{port}"


def prepare(data_dir: Path, size: int) -> Settings:
    # The scheduler's refresh would compete for the cores during the timings: the data is loaded up front.
    settings = Settings(data_dir=data_dir, analytics_refresh_seconds=3600, _env_file=None)
    migrations.upgrade(settings)
    sqlite_path = settings.database_url.split(":///", 1)[1]
    if not Path(sqlite_path).exists() or Path(sqlite_path).stat().st_size < 1_000_000:
        generate(data_dir / "generated.duckdb", size, now_ms(), sqlite_path)
    analytics = Analytics(settings)
    report = analytics.refresh()
    analytics.close()
    print(f"analytics caught up: {report.interactions:,} interactions in {report.seconds:.1f} s", flush=True)
    engine = build_engine(settings)
    with Session(engine) as db:
        if find_account(db, email=EMAIL) is None:
            create_account(db, email=EMAIL, password_hash=hash_password(PASSWORD), role="admin")
            db.commit()
    engine.dispose()
    return settings


def run(data_dir: Path, size: int, runs: int) -> None:
    settings = prepare(data_dir, size)
    server, url = serve(settings)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            form = client.get("/login").text
            csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            answer = client.post("/login", data={"email": EMAIL, "password": PASSWORD, "csrf": csrf})
            assert answer.status_code == 303, answer.text
            baseline = statistics.median(timed_gets(client, "/login", runs))
            print(f"\nbaseline: the login page (a template, no query) median {baseline * 1000:.1f} ms; "
                  f"{runs} runs per page after 2 warm-up runs\n")
            print(f"{'page':<34} {'median ms':>10} {'p95 ms':>8} {'x baseline':>11} {'target ms':>10}  ok?")
            missed = 0
            for name, path in pages(client):
                seconds = timed_gets(client, path, runs)
                median, p95 = statistics.median(seconds), percentile(seconds, 0.95)
                ok = p95 * 1000 <= TARGET_MS
                missed += not ok
                print(f"{name:<34} {median * 1000:10.1f} {p95 * 1000:8.1f} {median / baseline:11.1f} "
                      f"{TARGET_MS:10d}  {'yes' if ok else 'NO'}", flush=True)
            print(f"\n{missed} page(s) over {TARGET_MS} ms at p95")
    finally:
        server.should_exit = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1_000_000, help="interactions to generate")
    parser.add_argument("--runs", type=int, default=20, help="timed requests per page")
    parser.add_argument("--data", type=Path, help="reuse or keep the data here (default: a temporary directory)")
    args = parser.parse_args()
    if args.data:
        run(args.data, args.size, args.runs)
    else:
        with tempfile.TemporaryDirectory(prefix="tally-bench-dashboard-") as workdir:
            run(Path(workdir), args.size, args.runs)


if __name__ == "__main__":
    main()
