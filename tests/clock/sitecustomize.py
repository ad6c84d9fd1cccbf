"""Test-only, on PYTHONPATH during a TALLY_TEST_CLOCK run (tests/conftest.py): moves each new Python process's
wall clock by the session's offset at startup, the forkserver's server process included."""

import os

OFFSET_VARIABLE = "TALLY_TEST_CLOCK_OFFSET_NS"


def travel_by(offset_ns: int) -> None:
    """Move this process's wall clock by `offset_ns` for good, ticking on from there."""
    import time

    import time_machine

    time_machine.travel((time.time_ns() + offset_ns) / 1e9, tick=True).start()
    # time-machine starts ticking at the first reading: take it now, or a process that reads the clock minutes
    # later (the forkserver's children) would start from the destination and lag behind by those minutes.
    time.time()


if OFFSET_VARIABLE in os.environ:
    travel_by(int(os.environ[OFFSET_VARIABLE]))
