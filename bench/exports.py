"""Streams GET /api/v1/exports/interactions.csv over the whole range at 100k and 1M interactions, and reports the
server process's peak RSS against its RSS before the export: memory must not grow with the size."""

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import httpx
from analytics import free_port  # bench/analytics.py
from sqlmodel import Session
from synthetic import create_store, file_mb, now_ms, write_sqlite  # bench/synthetic.py

from tally.analytics.service import refresh_once
from tally.server import migrations
from tally.store.engine import build_engine
from tally.store.read_tokens import create_read_token
from tally.store.settings import Settings

SAMPLE_SECONDS = 0.02


def build(data_dir: Path, size: int) -> None:
    """The synthetic store of bench/analytics.py in SQLite, and the DuckDB warehouse caught up with it."""
    settings = Settings(data_dir=data_dir, _env_file=None)
    migrations.upgrade(settings)
    started = time.perf_counter()
    with duckdb.connect(str(data_dir / "generated.duckdb")) as gen:
        create_store(gen, size, now_ms())
        write_sqlite(gen, settings.database_url.split(":///", 1)[1], first_id=1, first_session=1)
    (data_dir / "generated.duckdb").unlink()
    report = refresh_once(settings)
    print(f"  built {size:,} interactions ({file_mb(data_dir / 'tally.db'):,.0f} MB of SQLite, "
          f"{report.interactions:,} synced to DuckDB) in {time.perf_counter() - started:.0f} s", flush=True)


def read_token(data_dir: Path) -> str:
    engine = build_engine(Settings(data_dir=data_dir, _env_file=None))
    with Session(engine) as db:
        token = create_read_token(db, name="bench")
        db.commit()
    engine.dispose()
    return token


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


class PeakSampler(threading.Thread):
    """Samples a process's RSS while it runs; the kernel's high-water mark (VmHWM) backs it up at the end."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0, True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_kb(self.pid))
            time.sleep(SAMPLE_SECONDS)

    def stop(self) -> int:
        self.running = False
        self.join()
        return max(self.peak, rss_kb(self.pid, "VmHWM"))


def serve(data_dir: Path, port: int) -> subprocess.Popen:
    # The warehouse is already caught up, and a periodic refresh would add its own passing memory to the figures
    # (it scans the warehouse): the server refreshes once at start and then stays out of the way.
    env = {**os.environ, "TALLY_DATA_DIR": str(data_dir), "TALLY_PORT": str(port), "TALLY_DATABASE_URL": "",
           "TALLY_ANALYTICS_REFRESH_SECONDS": "3600"}
    server = subprocess.Popen([str(Path(sys.executable).parent / "tally"), "serve"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise RuntimeError("the server did not start")
        time.sleep(0.1)


def export(client: httpx.Client, params: dict) -> tuple[int, int, float]:
    """Streams one export and returns (rows, bytes, seconds); the rows are the line ends after the header, since
    the generated texts hold no line breaks (a CRLF may straddle two chunks: the LFs are counted)."""
    started, size, lines = time.perf_counter(), 0, 0
    with client.stream("GET", "/api/v1/exports/interactions.csv", params=params) as answer:
        answer.raise_for_status()
        for chunk in answer.iter_raw():
            size += len(chunk)
            lines += chunk.count(b"\n")
    return lines - 1, size, time.perf_counter() - started


def measure(data_dir: Path, size: int) -> list[dict]:
    """Two full exports on one server: the first fills DuckDB's block cache with the table it reads, the second
    finds it full, so its growth is what streaming itself holds."""
    port = free_port()
    server = serve(data_dir, port)
    results = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600,
                          headers={"Authorization": f"Bearer {read_token(data_dir)}"}) as client:
            export(client, {"from": str(now_ms() - 3_600_000)})  # imports and caches what every export uses
            for cache in ("cold", "warm"):
                time.sleep(1)
                baseline = rss_kb(server.pid)
                Path(f"/proc/{server.pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
                sampler = PeakSampler(server.pid)
                sampler.start()
                rows, size_bytes, seconds = export(client, {"from": "0", "to": str(now_ms() + 86_400_000)})
                peak = sampler.stop()
                assert rows == size, f"exported {rows:,} rows of {size:,}"
                results.append({"rows": rows, "bytes": size_bytes, "seconds": seconds, "cache": cache,
                                "baseline_kb": baseline, "peak_kb": peak})
    finally:
        server.terminate()
        server.wait(timeout=60)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100000,1000000", help="interaction counts, comma-separated")
    parser.add_argument("--keep", type=Path, help="build the stores here and reuse them on later runs")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="tally-bench-exports-") as scratch:
        for size in (int(text) for text in args.sizes.split(",")):
            data_dir = (args.keep or Path(scratch)) / f"exports-{size}"
            print(f"== {size:,} interactions ==", flush=True)
            if not (data_dir / "analytics.duckdb").exists():
                build(data_dir, size)
            results += measure(data_dir, size)
    print(f"\n{'rows':>10} {'cache':>6} {'MB':>8} {'seconds':>8} {'rows/s':>9} {'RSS before MB':>14} "
          f"{'peak RSS MB':>12} {'growth MB':>10} {'ratio':>6}")
    for r in results:
        print(f"{r['rows']:>10,} {r['cache']:>6} {r['bytes'] / 1e6:>8.1f} {r['seconds']:>8.1f} "
              f"{r['rows'] / r['seconds']:>9,.0f} {r['baseline_kb'] / 1024:>14.1f} {r['peak_kb'] / 1024:>12.1f} "
              f"{(r['peak_kb'] - r['baseline_kb']) / 1024:>10.1f} {r['peak_kb'] / r['baseline_kb']:>6.2f}")


if __name__ == "__main__":
    main()
