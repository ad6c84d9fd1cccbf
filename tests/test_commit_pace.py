"""The group-commit writer's batch size, learned from how long its transactions take."""

from tally.ingest.writer import MIN_BATCH, TARGET_COMMIT_SECONDS, CommitPace


def settle(pace: CommitPace, fixed: float, per_write: float, queued: int, batches: int = 60) -> int:
    """Run `batches` transactions as the writer does: each takes what is queued up to the learned size."""
    size = pace.batch_size(MIN_BATCH, 512)
    for _ in range(batches):
        writes = min(size, queued)
        pace.learn(writes, fixed + per_write * writes)
        size = pace.batch_size(MIN_BATCH, 512)
    return size


def test_a_store_with_costly_round_trips_gets_batches_that_amortise_them():
    # PostgreSQL: ~8 ms of round trips per transaction, 0.3 ms per row. Judged by the mean time per write, the
    # writer kept to batches of 8 (8 + 2.4 ms per 8 writes: "1.3 ms a write"), and stored 470/s.
    pace = CommitPace()
    size = settle(pace, fixed=0.008, per_write=0.0003, queued=64)
    assert abs(pace.fixed - 0.008) < 1e-4 and abs(pace.per_write - 0.0003) < 1e-5
    assert size == int((4 * 0.008 - 0.008) / 0.0003)  # the fixed part a quarter of the transaction
    assert pace.fixed / (pace.fixed + pace.per_write * size) <= 0.26


def test_a_cheap_store_keeps_transactions_short():
    # SQLite: the fixed part is small; a transaction should take about TARGET_COMMIT_SECONDS, not 512 rows' time.
    pace = CommitPace()
    size = settle(pace, fixed=0.001, per_write=0.0001, queued=1000)
    assert size == int((TARGET_COMMIT_SECONDS - 0.001) / 0.0001)


def test_batches_of_one_size_keep_what_was_learned():
    pace = CommitPace()
    settle(pace, fixed=0.008, per_write=0.0003, queued=64)
    learned = pace.batch_size(MIN_BATCH, 512)
    for _ in range(500):  # a long steady stretch of full batches tells the two parts apart no more
        pace.learn(learned, 0.008 + 0.0003 * learned)
    assert pace.batch_size(MIN_BATCH, 512) == learned


def test_bounds_hold():
    pace = CommitPace()
    assert pace.batch_size(MIN_BATCH, 512) == 512  # nothing learned yet: all that is queued
    assert settle(CommitPace(), fixed=0.001, per_write=0.01, queued=64) == MIN_BATCH  # slow rows: the least
    assert settle(CommitPace(), fixed=0.0001, per_write=1e-6, queued=1000) == 512  # cheap rows: the most


def test_one_slow_small_batch_does_not_make_writes_look_free():
    pace = CommitPace()
    settle(pace, fixed=0.008, per_write=0.0003, queued=64)
    learned = pace.batch_size(MIN_BATCH, 512)
    pace.learn(MIN_BATCH, 0.5)  # an fsync that stalled: more writes seem to take less time
    assert MIN_BATCH <= pace.batch_size(MIN_BATCH, 512) <= learned
