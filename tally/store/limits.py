"""The bounds of what Tally stores: ingest refuses values outside them, so every layer above may rely on them.

They are chosen to be far beyond anything a real interaction carries and well inside every column type on both
stores (PostgreSQL INTEGER is 32-bit), so that the same payload gets the same answer on SQLite and PostgreSQL and
no arithmetic over stored values (costs, sums in rollups) can overflow.
"""

MAX_TOKENS = 1_000_000_000  # per token count of one interaction; the largest context windows hold ~10M
MAX_LATENCY_MS = 7 * 86_400_000  # a response later than this after its request is not a latency
MAX_FUTURE_MS = 86_400_000  # how far ahead of the time of receipt a client clock may run
MAX_JSON_DEPTH = 64  # nesting of `request` and `response`; real payloads stay under 20
MAX_ID = 2**63 - 1  # the largest id either store can hand out
MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last instant DuckDB's timestamps hold
MAX_PRICE_PER_UNIT = 1_000_000.0  # USD per million tokens or per image, in a price file
