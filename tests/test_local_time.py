"""Local buckets by offset arithmetic agree with DuckDB's own time zone conversion, DST transitions included."""

import duckdb
from hypothesis import given, settings, strategies as st

from tally.analytics.local_time import local_bucket_sql, utc_offsets

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Asia/Kathmandu",
         "America/Sao_Paulo", "Pacific/Chatham"]
YEAR_2100 = 4_102_444_800_000
_duck = duckdb.connect()
_duck.execute("SET TimeZone = 'UTC'")


def _near_transitions(zone: str) -> list[int]:
    return [start + delta for start, _ in utc_offsets(zone)[1:][-40:] for delta in (-3_600_001, -1, 0, 1, 3_599_999)]


@settings(max_examples=40, deadline=None)
@given(zone=st.sampled_from(ZONES), unit=st.sampled_from(["hour", "day"]),
       instants=st.lists(st.integers(0, YEAR_2100), min_size=1, max_size=200))
def test_buckets_equal_duckdb_timezone(zone, unit, instants):
    instants = instants + _near_transitions(zone)
    low, high = min(instants), max(instants)
    mismatches = _duck.execute(
        f"SELECT x FROM (SELECT unnest(?) AS x) WHERE {local_bucket_sql('x', unit, zone, low, high)} "
        f"<> date_trunc('{unit}', timezone('{zone}', epoch_ms(x)::TIMESTAMPTZ))", [instants]).fetchall()
    assert mismatches == []


def test_the_first_hours_of_1970_west_of_greenwich_floor_to_the_previous_local_day():
    assert _duck.execute(f"SELECT {local_bucket_sql('1', 'day', 'America/New_York', 0, 1)}").fetchone()[0].day == 31


def test_a_short_range_needs_no_transition_and_a_fixed_zone_none_at_all():
    assert "CASE" not in local_bucket_sql("x", "day", "Europe/Paris", 1_750_000_000_000, 1_750_100_000_000)
    assert "CASE" not in local_bucket_sql("x", "hour", "Asia/Kolkata", 0, YEAR_2100)
