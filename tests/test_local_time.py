"""Local buckets by offset arithmetic agree with DuckDB's own time zone conversion, DST transitions included."""

from datetime import datetime
from zoneinfo import ZoneInfo

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from tally.analytics.filters import END_OF_TIME_MS, all_time
from tally.analytics.local_time import (
    hour_buckets,
    hour_start,
    hour_start_sql,
    local_bucket_sql,
    local_moment,
    utc_offsets,
)
from tally.exports.csv_files import download_name
from tests.analytics_brute import hour_began

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


@settings(max_examples=30, deadline=None)
@given(zone=st.sampled_from(ZONES), instants=st.lists(st.integers(0, YEAR_2100), min_size=1, max_size=50))
def test_hours_start_where_brute_force_finds_them_in_sql_and_python(zone, instants):
    instants = instants + _near_transitions(zone)[-60:]
    low, high = min(instants), max(instants)
    in_sql = _duck.execute(f"SELECT {hour_start_sql('x', zone, low, high)} FROM (SELECT unnest(?) AS x)",
                           [instants]).fetchall()
    assert [row[0] for row in in_sql] == [hour_start(at, zone) for at in instants] == [
        hour_began(at, zone) for at in instants]


def test_hour_buckets_follow_each_other_without_gaps_through_lord_howes_half_hour_changes():
    day = 1_775_311_200_000  # 2026-04-04T14:00Z, 01:00 on Lord Howe, half an hour before the clocks go back
    buckets = hour_buckets(day - 3_600_000, day + 3 * 3_600_000, "Australia/Lord_Howe")
    starts = [start for start, _, _ in buckets]
    assert [start - day for start in starts] == [-3_600_000, 0, 3_600_000, 5_400_000, 9_000_000]
    assert [name.strftime("%H:%M") for _, name, _ in buckets] == ["00:00", "01:00", "01:00", "02:00", "03:00"]


def test_the_end_of_time_east_of_greenwich_has_names_in_year_9999():
    """`to=9999-12-31` in Paris ends at 9999-12-31T23:00Z, which Paris calls year 10000: Python's dates end before,
    so the names stop at 9999's last hour and minute instead of raising (the dashboard answered 500)."""
    end = END_OF_TIME_MS
    buckets = hour_buckets(end - 3 * 3_600_000, end, "Europe/Paris")
    assert [name for _, name, _ in buckets] == [datetime(9999, 12, 31, 22), datetime(9999, 12, 31, 23)]
    assert local_moment(end - 1, "Europe/Paris") == datetime(9999, 12, 31, 23, 59)
    assert local_moment(0, "Europe/Paris") == datetime(1970, 1, 1, 1)
    assert download_name("users", all_time(), ZoneInfo("Europe/Paris")) == "users_1970-01-01_9999-12-31.csv"
