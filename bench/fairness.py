"""Fair ingest: how much a flood from one app slows another app's POST /track.

One Tally server (the same uvicorn options as bench/ingest.py) on a fresh store with apps `flood` and `quiet`.
First `quiet` alone sends single /track requests one after another (the baseline); then, with `--threads`
threads of `flood` posting `--batch`-item batches to /track/batch as fast as the server takes them, `quiet`
sends the same again. Prints quiet's p50 and p99 in both phases, their ratios (flooded / alone), and what the
flood got stored. With `--flood-limit N`, `flood` is limited to N interactions a second (`tally apps set-limit`)
and the 429s it gets are counted.

    .venv/bin/python bench/fairness.py [--seconds 10] [--threads 8] [--batch 500] [--database-url postgresql://…]
"""

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from ingest import child, free_port, serve_tally, wait_until_listening  # bench/ingest.py
from ingest_load import HOST
from sqlmodel import Session

sys.path.insert(0, str(Path(__file__).parents[1]))
from tally.ingest.keys import create_app, find_app, set_limits  # noqa: E402
from tally.server import migrations  # noqa: E402
from tally.store.engine import build_engine  # noqa: E402
from tally.store.settings import Settings  # noqa: E402
from tests.payloads import openai_chat  # noqa: E402


class Keys:
    def __init__(self, app_key: str, api_key: str) -> None:
        self.app_key, self.api_key = app_key, api_key


def prepare(settings: Settings, flood_limit: float | None) -> dict[str, Keys]:
    migrations.upgrade(settings)
    engine = build_engine(settings)
    keys = {}
    with Session(engine) as db:
        for name in ("flood", "quiet"):
            app, api_key = create_app(db, name=name)
            keys[name] = Keys(app.app_key, api_key)
        if flood_limit:
            set_limits(db, app=find_app(db, "flood"), per_second=flood_limit, bytes_per_second=None)
        db.commit()
    engine.dispose()
    return keys


def quiet_latencies(base: str, keys: Keys, seconds: float) -> list[float]:
    """Milliseconds of each single /track the quiet app sends, one after another, for `seconds`."""
    latencies = []
    with httpx.Client(base_url=base, timeout=60) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            payload = openai_chat(keys, user={"userId": f"q{len(latencies) % 50}"})
            started = time.perf_counter()
            answer = client.post("/track", json=payload)
            latencies.append((time.perf_counter() - started) * 1000)
            if answer.status_code != 201:
                raise SystemExit(f"the quiet app got {answer.status_code}: {answer.text[:200]}")
    return latencies


def flood(base: str, keys: Keys, batch: int, stop: threading.Event, statuses: Counter, stored: list[int]) -> None:
    payloads = [openai_chat(keys, user={"userId": f"f{i % 500}"}) for i in range(batch)]
    with httpx.Client(base_url=base, timeout=120) as client:
        while not stop.is_set():
            for payload in payloads:
                payload["response"]["id"] = f"flood-{time.time_ns()}-{id(payload)}"
            answer = client.post("/track/batch", json=payloads)
            statuses[answer.status_code] += 1
            if answer.status_code == 200:
                stored.append(answer.json()["stored"])
            elif answer.status_code == 429:
                time.sleep(int(answer.headers.get("retry-after", "1")))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--flood-limit", type=float, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tally-fairness-") as data_dir:
        settings = Settings(data_dir=Path(data_dir), database_url=args.database_url, _env_file=None)
        keys = prepare(settings, args.flood_limit)
        port = free_port()
        with child(serve_tally, port, data_dir, settings.database_url) as server:
            wait_until_listening(server, port)
            base = f"http://{HOST}:{port}"
            quiet_latencies(base, keys["quiet"], 1)  # warm-up
            alone = quiet_latencies(base, keys["quiet"], args.seconds)
            stop, statuses, stored = threading.Event(), Counter(), []
            threads = [threading.Thread(target=flood, args=(base, keys["flood"], args.batch, stop, statuses, stored))
                       for _ in range(args.threads)]
            flood_started = time.monotonic()
            for thread in threads:
                thread.start()
            time.sleep(1)  # the flood's queue builds up
            flooded = quiet_latencies(base, keys["quiet"], args.seconds)
            elapsed = time.monotonic() - flood_started
            stop.set()
            for thread in threads:
                thread.join()
    print(f"store: {'PostgreSQL' if args.database_url else 'SQLite'}; flood: {args.threads} threads x "
          f"{args.batch}-item batches" + (f", limited to {args.flood_limit:g}/s" if args.flood_limit else ""))
    print(f"{'quiet /track':<22} {'requests':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for name, latencies in (("alone (baseline)", alone), ("during the flood", flooded)):
        print(f"{name:<22} {len(latencies):>9} {statistics.median(latencies):>8.1f} "
              f"{percentile(latencies, 0.99):>8.1f}")
    print(f"ratio flooded/alone: p50 {statistics.median(flooded) / statistics.median(alone):.1f}x, "
          f"p99 {percentile(flooded, 0.99) / percentile(alone, 0.99):.1f}x")
    print(f"flood: {sum(stored) / elapsed:,.0f} interactions/s stored, answers {dict(statuses)}")


if __name__ == "__main__":
    main()
