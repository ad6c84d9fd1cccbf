"""The verification pass: interactions deleted from the store, and rows the watermark skipped, found by comparing
the count and the id sum of every range of ids between the store and the warehouse.

A deletion leaves no row to travel with the watermark, and a row committed with a stamp older than the
watermark's overlap (a clock stepped back) is never read by it. One aggregate query on each side finds the ranges
that differ; only their ids are read, and only the missing rows in full.
"""

import logging

import duckdb

from tally.analytics import rollups
from tally.analytics.loading import load_interactions
from tally.analytics.source import StoreReader

log = logging.getLogger(__name__)
RANGE_IDS = 65_536  # ids per range: a range that differs costs reading this many ids
_BY_ID = 10_000  # missing rows read per query
# The warehouse holds every interaction of the store once, loaded or quarantined.
_HELD = "(SELECT id FROM interaction UNION ALL SELECT id FROM quarantine)"


def verify(cursor: duckdb.DuckDBPyConnection, reader: StoreReader, *, watermark: int) -> tuple[int, int]:
    """Removes what the store no longer holds and loads what the warehouse lacks; returns (deleted, loaded).
    `watermark`: rows stamped before it (less the overlap) should have travelled already, so missing them is
    worth a warning; later ones were merely committed after this refresh read its changes."""
    cursor.register("store_ranges", reader.interaction_ranges(RANGE_IDS))
    parts = cursor.execute(
        f"WITH held AS (SELECT id // {RANGE_IDS} AS part, count(*) AS n, sum(id % {RANGE_IDS}) AS offsets "
        f"FROM {_HELD} GROUP BY ALL) "
        "SELECT coalesce(s.part, h.part) FROM store_ranges s FULL JOIN held h ON s.part = h.part "
        "WHERE s.n IS DISTINCT FROM h.n OR s.offsets IS DISTINCT FROM h.offsets ORDER BY 1").fetchall()
    cursor.unregister("store_ranges")
    deleted, missing = 0, []
    for (part,) in parts:
        cursor.register("store_ids", reader.interaction_ids_in(RANGE_IDS, part))
        in_part = (f"id > {(part - 1) * RANGE_IDS} AND id < {(part + 1) * RANGE_IDS} "
                   f"AND id // {RANGE_IDS} = {part}")
        cursor.execute(f"CREATE OR REPLACE TEMP TABLE gone AS SELECT id FROM {_HELD} WHERE {in_part} "
                       "AND id NOT IN (SELECT id FROM store_ids)")
        missing += [row[0] for row in cursor.execute(
            f"SELECT id FROM store_ids WHERE id NOT IN (SELECT id FROM {_HELD} WHERE {in_part})").fetchall()]
        cursor.unregister("store_ids")
        rollups.record_affected(cursor, "gone")
        cursor.execute("DELETE FROM interaction WHERE id IN (SELECT id FROM gone)")
        cursor.execute("DELETE FROM quarantine WHERE id IN (SELECT id FROM gone)")
        deleted += cursor.execute("SELECT count(*) FROM gone").fetchall()[0][0]
    loaded = skipped = 0
    for start in range(0, len(missing), _BY_ID):
        loaded += load_interactions(cursor, reader.interactions_by_id(missing[start:start + _BY_ID]))
        skipped += cursor.execute("SELECT count(*) FROM changed WHERE updated_at < ?", [watermark]).fetchall()[0][0]
    if skipped:
        log.warning("analytics: %d interactions had been skipped by the watermark (a clock step?); loaded now", skipped)
    return deleted, loaded
