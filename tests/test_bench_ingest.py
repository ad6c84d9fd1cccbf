"""`bench/ingest.py --quick` still runs: three servers, the durability check and the ratios."""

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "ingest.py"


def test_the_ingest_bench_runs_and_finds_nothing_lost():
    done = subprocess.run([sys.executable, str(BENCH), "--quick", "--connections", "8"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert re.search(r"durability: [\d,]+ interaction ids acknowledged with 2xx, 0 missing", out), out
    for server in ("Tally", "bare", "raw"):
        assert re.search(rf"^{server}\s+[\d,]+\s", out, re.MULTILINE), out
    # CPU per 1,000 accepted, per process: Tally's web and storage processes are both counted.
    assert re.search(r"^Tally .*web [\d,]+ \+ storage [\d,]+", out, re.MULTILINE), out
    assert re.search(r"ratio Tally/raw: accepted/s [\d.]+; CPU per 1,000 accepted [\d.]+", out), out
