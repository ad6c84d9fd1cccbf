"""The budget check at scale: GET /api/v1/budgets/check on a store of `--size` synthetic interactions (1M by
default, over 90 days, three apps) with nine budgets (per app: tokens a day for the app, cost a month per user,
tokens an hour for one model), against GET /healthz on the same server in the same run (the same HTTP stack doing
nothing: the baseline). Also times the count that follows each analytics refresh, the work budgets add to it.

    .venv/bin/python bench/budgets.py [--size 1000000] [--requests 3000] [--data-dir DIR]
"""

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from dashboard import prepare, serve  # bench/dashboard.py
from sqlmodel import Session, col, select

sys.path.insert(0, str(Path(__file__).parents[1]))
from tally.analytics.service import Analytics  # noqa: E402
from tally.ingest.keys import add_api_key  # noqa: E402
from tally.server.scheduler import budget_rules  # noqa: E402
from tally.store.access import Actor  # noqa: E402
from tally.store.budgets import add_budget  # noqa: E402
from tally.store.engine import build_engine  # noqa: E402
from tally.store.models import App, EndUser  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def setup(settings) -> tuple[dict[int, tuple[str, str]], list[tuple[int, str]]]:
    """API keys for the apps, the nine budgets, and (app, userId) pairs to ask about."""
    engine = build_engine(settings)
    bench = Actor("bench")
    with Session(engine) as db:
        keys = {}
        for app in db.exec(select(App).order_by(col(App.id))).all():
            keys[app.id] = (app.app_key, add_api_key(db, app=app))
            add_budget(db, bench, app=app.id, metric="tokens", limit=5e6, period="day")
            add_budget(db, bench, app=app.id, metric="cost", limit=0.05, period="month", per_user=True)
            add_budget(db, bench, app=app.id, metric="tokens", limit=1e5, period="hour", model="gpt-4o")
        users = [(app_id, external_id) for app_id, external_id in db.exec(
            select(EndUser.app_id, EndUser.external_id).where(col(EndUser.external_id).is_not(None)).limit(5000))]
        db.commit()
    engine.dispose()
    return keys, users


def timed_requests(client: httpx.Client, requests: list[tuple[str, dict, dict]]) -> list[float]:
    latencies = []
    for path, params, headers in requests:
        started = time.perf_counter()
        answer = client.get(path, params=params, headers=headers)
        latencies.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200:
            raise SystemExit(f"{path}: {answer.status_code} {answer.text[:200]}")
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--data-dir", type=Path, default=None, help="Keep (and reuse) the generated data here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tally-budgets-") as scratch:
        data_dir = args.data_dir or Path(scratch)
        settings = prepare(data_dir, args.size)
        keys, users = setup(settings)
        analytics = Analytics(settings)
        rules = budget_rules(build_engine(settings))
        counts = []
        for _ in range(5):
            started = time.perf_counter()
            analytics.count_budgets(rules)
            counts.append((time.perf_counter() - started) * 1000)
        analytics.close()
        server, base = serve(settings)
        rng = random.Random(7)
        checks = []
        for _ in range(args.requests):
            app_id, user = rng.choice(users)
            checks.append(("/api/v1/budgets/check", {"user": user},
                           {"Tally-App-Key": keys[app_id][0], "Tally-Api-Key": keys[app_id][1]}))
        with httpx.Client(base_url=base, timeout=30) as client:
            while client.get("/api/v1/budgets/check", headers=checks[0][2]).json()["counted_at"] is None:
                time.sleep(0.2)  # the server's first refresh and count
            timed_requests(client, checks[:200])  # warm-up
            check_ms = timed_requests(client, checks)
            health_ms = timed_requests(client, [("/healthz", {}, {})] * args.requests)
        server.should_exit = True
    print(f"{args.size:,} interactions, {len(rules)} budgets; {args.requests:,} sequential requests each")
    print(f"count after a refresh: median {statistics.median(counts):.0f} ms (5 runs)")
    print(f"{'GET':<26} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for name, latencies in (("/api/v1/budgets/check", check_ms), ("/healthz (baseline)", health_ms)):
        print(f"{name:<26} {statistics.median(latencies):>8.2f} {percentile(latencies, 0.95):>8.2f} "
              f"{percentile(latencies, 0.99):>8.2f}")
    print(f"ratio check/baseline: p50 {statistics.median(check_ms) / statistics.median(health_ms):.2f}x, "
          f"p99 {percentile(check_ms, 0.99) / percentile(health_ms, 0.99):.2f}x")


if __name__ == "__main__":
    main()
