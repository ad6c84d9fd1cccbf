"""Hours and days where the clocks change: every hour of real time is a bucket of its own, in every answer that
counts by the hour or the day (rollups, the read API, the dashboard), and each range counts exactly the whole local
hours or days it overlaps; checked against a brute-force computation with zoneinfo."""

import itertools
from collections import Counter, defaultdict
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import text

from tally.analytics.filters import Filters
from tally.analytics.service import Analytics
from tally.dashboard import pages
from tally.dashboard.view_filters import parse_view
from tally.ingest.batch import store_batch
from tally.ingest.keys import VerifiedApp
from tally.ingest.prepare import prepare
from tally.ingest.wire import TrackPayload
from tally.store.secrets import now_ms
from tests.analytics_brute import day_key, hour_began, hour_key, keys_touched, offset_name
from tests.conftest import make_app, start_server, wait_until
from tests.payloads import openai_chat

MINUTE, HOUR = 60_000, 3_600_000
PARIS = ZoneInfo("Europe/Paris")


def _utc(text_: str) -> int:
    return int(datetime.fromisoformat(text_).replace(tzinfo=UTC).timestamp() * 1000)


# Instants at which the offset changes (in 2025, so that ingest takes them whatever the tests' clock), or for a
# zone without changes any instant: Paris goes forward and back an hour; Lord Howe back and forward half an hour,
# at 02:00 local, so that one local hour is cut in two; Adelaide and Kolkata sit half an hour off UTC's hours;
# Havana goes forward at midnight, so that a day starts at 01:00.
CHANGES = [("Europe/Paris", _utc("2025-03-30T01:00")), ("Europe/Paris", _utc("2025-10-26T01:00")),
           ("Australia/Lord_Howe", _utc("2025-04-05T15:00")), ("Australia/Lord_Howe", _utc("2025-10-04T15:30")),
           ("Australia/Adelaide", _utc("2025-04-05T16:30")), ("Asia/Kolkata", _utc("2025-10-26T01:00")),
           ("America/Havana", _utc("2025-03-09T05:00"))]
_names = itertools.count()


def test_the_changes_are_where_the_tests_look_for_them():
    for zone, moment in CHANGES:
        before, after = (datetime.fromtimestamp(ms / 1000, ZoneInfo(zone)).utcoffset() for ms in (moment - 1, moment))
        assert (before != after) == (zone != "Asia/Kolkata"), zone


def _near(change: int):
    """Instants up to 26 hours either side of a change, many of them a millisecond from a half hour."""
    return st.one_of(st.integers(-26 * HOUR, 26 * HOUR),
                     st.builds(lambda half_hours, nudge: half_hours * 30 * MINUTE + nudge,
                               st.integers(-52, 52), st.sampled_from([-1, 0, 1]))).map(lambda delta: change + delta)


@st.composite
def cases(draw):
    zone, change = draw(st.sampled_from(CHANGES))
    at = _near(change)
    interactions = draw(st.lists(st.tuples(at, st.booleans()), min_size=1, max_size=16))
    ranges = [(min(a, b), max(a, b) + (a == b)) for a, b in draw(st.lists(st.tuples(at, at), min_size=1, max_size=4))]
    return zone, interactions, ranges


def _app_id(engine, keys) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT id FROM app WHERE app_key = :k"), {"k": keys.app_key}).scalar_one()


def _store(engine, keys, app_id: int, interactions: list[tuple[int, bool]]) -> None:
    """Interactions at the instants given, the marked ones by the user `u`, the others by a new user each."""
    jobs = [prepare(TrackPayload.model_validate(openai_chat(keys, at_ms=at, user={"userId": "u"} if mine else {})),
                    app=VerifiedApp(app_id, None), received_at=now_ms(), default_timeout_minutes=30)
            for at, mine in interactions]
    with engine.begin() as conn:
        store_batch(conn, jobs)


def _expected_hours(instants: list[int], zone: str, start: int, end: int, *, whole: bool) -> list[tuple]:
    """(start, wall-clock name, offset, interactions) per hour: whole hours overlapping the range, or, `whole`
    False, only the instants in the range."""
    touched = keys_touched(start, end, hour_key, zone)
    hours = defaultdict(list)
    for at in instants:
        if hour_key(at, zone) in touched if whole else start <= at < end:
            hours[hour_key(at, zone)].append(at)
    return sorted((hour_began(members[0], zone), name, offset_name(offset), len(members))
                  for (name, offset), members in hours.items())


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=cases())
# Paris's first 02:00 alone (00:00-01:00Z), which holds none of the second's interactions.
@example(case=("Europe/Paris", [(_utc("2025-10-26T00:10"), True), (_utc("2025-10-26T01:10"), True)],
               [(_utc("2025-10-26T00:00"), _utc("2025-10-26T01:00"))]))
# Lord Howe's 01:00 (+11:00) ends at 15:00Z; the half hour after it is an hour of its own, not in this range.
@example(case=("Australia/Lord_Howe", [(_utc("2025-04-05T14:10"), True), (_utc("2025-04-05T15:10"), False)],
               [(_utc("2025-04-05T14:00"), _utc("2025-04-05T14:40"))]))
# Havana's 2025-03-08 ends at 05:00Z, when the clocks jump to 01:00 on the 9th: the 9th is not in the range.
@example(case=("America/Havana", [(_utc("2025-03-09T06:30"), True)],
               [(_utc("2025-03-08T05:00"), _utc("2025-03-09T05:00"))]))
def test_hours_and_days_of_any_range_equal_brute_force_around_clock_changes(engine, settings, case):
    zone, interactions, ranges = case
    keys = make_app(engine, name=f"clocks-{next(_names)}")
    app_id = _app_id(engine, keys)
    _store(engine, keys, app_id, interactions)
    with engine.connect() as conn:
        user_id = conn.execute(text("SELECT id FROM end_user WHERE app_id = :a AND external_id = 'u'"),
                               {"a": app_id}).scalar()
    instants = [at for at, _ in interactions]
    mine = [at for at, is_mine in interactions if is_mine]
    analytics = Analytics(settings.model_copy(update={
        "analytics_timezone": zone, "data_dir": settings.data_dir / zone.replace("/", "-")}))
    try:
        analytics.refresh()
        queries = analytics.queries()
        for start, end in ranges:
            f = Filters(start, end, app_id=app_id)
            expected = _expected_hours(instants, zone, start, end, whole=True)
            assert queries.totals(f)["interactions"] == sum(hour[3] for hour in expected)
            assert [(r["start_ms"], r["bucket"], r["utc_offset"], r["interactions"])
                    for r in queries.usage_series(f, "hour")] == expected
            touched = keys_touched(start, end, day_key, zone)
            days = Counter(day_key(at, zone) for at in instants if day_key(at, zone) in touched)
            assert [(r["bucket"], r["interactions"]) for r in queries.usage_series(f, "day")] == sorted(days.items())
            if user_id is not None:  # a user's usage counts exactly the range, still one row per hour of real time
                yours = Filters(start, end, app_id=app_id, user_id=user_id)
                assert [(r["start_ms"], r["bucket"], r["utc_offset"], r["interactions"])
                        for r in queries.usage_series(yours, "hour")] == _expected_hours(mine, zone, start, end,
                                                                                         whole=False)
    finally:
        analytics.close()


FALL_BACK_DAY = _utc("2025-10-25T22:00")  # 2025-10-26T00:00 in Paris, a day of 25 hours


@pytest.fixture
def live_server(engine, settings):
    server = start_server(settings.model_copy(update={"analytics_timezone": "Europe/Paris",
                                                      "analytics_refresh_seconds": 0.2}))
    yield server
    server.stop()


def test_the_read_api_lists_the_25_hours_of_the_day_paris_falls_back_and_counts_each(reader, app_keys):
    # Each hour of real time gets as many interactions as its place in the day, so that no two look alike.
    payloads = [openai_chat(app_keys, at_ms=FALL_BACK_DAY + hour * HOUR + 10 * MINUTE + n)
                for hour in range(25) for n in range(hour + 1)]
    assert reader.post("/track/batch", json=payloads).json()["stored"] == 325
    day = {"from": "2025-10-26", "to": "2025-10-26"}
    assert wait_until(lambda: reader.get("/api/v1/usage/totals", params=day).json()["interactions"] == 325)

    for hour in (2, 3):  # 00:00-01:00Z is the first 02:00 (+02:00), 01:00-02:00Z the second (+01:00)
        window = {"from": str(FALL_BACK_DAY + hour * HOUR), "to": str(FALL_BACK_DAY + (hour + 1) * HOUR)}
        assert reader.get("/api/v1/usage/totals", params=window).json()["interactions"] == hour + 1
        assert [(m["model"], m["interactions"]) for m in reader.get("/api/v1/usage/models", params=window).json()[
            "models"]] == [("gpt-4o-mini-2024-07-18", hour + 1)]

    series = reader.get("/api/v1/usage", params={**day, "granularity": "hour"}).json()["series"]
    names = [f"2025-10-26T{hour:02d}:00:00" for hour in (0, 1, 2, 2, *range(3, 24))]
    offsets = ["+02:00"] * 3 + ["+01:00"] * 22
    assert [(r["bucket"], r["utc_offset"], r["start_ms"], r["interactions"]) for r in series] == [
        (name, offset, FALL_BACK_DAY + hour * HOUR, hour + 1)
        for hour, (name, offset) in enumerate(zip(names, offsets))]
    days = reader.get("/api/v1/usage", params={**day, "granularity": "day"}).json()["series"]
    assert [(d["bucket"], d["interactions"]) for d in days] == [("2025-10-26T00:00:00", 325)]


def test_the_last_24_hours_show_the_current_hour_and_both_2_oclocks(engine, settings, app_keys):
    zoned = settings.model_copy(update={"analytics_timezone": "Europe/Paris"})
    first, second = FALL_BACK_DAY + 2 * HOUR, FALL_BACK_DAY + 3 * HOUR  # the two 02:00 hours, in UTC
    _store(engine, app_keys, _app_id(engine, app_keys),
           [(first + 10 * MINUTE, False), (second + 10 * MINUTE, False), (second + 20 * MINUTE, False)])
    analytics = Analytics(zoned)
    try:
        analytics.refresh()
        # At 02:30 (+02:00) the current hour is the first 02:00: its interaction is in the view.
        view = parse_view({"range": "24h"}, zone=PARIS, apps=None, now_ms=first + 30 * MINUTE)
        shown = pages.overview(analytics, view)
        assert shown["tiles"][0]["value"] == "1"
        chart = next(f for f in shown["figures"] if f["layout"]["title"]["text"] == "Interactions and error rate")
        axis = chart["layout"]["xaxis"]["categoryarray"]
        assert len(axis) == 24 and axis[-1] == "2025-10-26 02:00"
        assert dict(zip(chart["data"][0]["x"], chart["data"][0]["y"])) == {"2025-10-26 02:00": 1}
        # An hour later both 02:00 hours are in the last 24, each in its own place, told apart by their offsets.
        view = parse_view({"range": "24h"}, zone=PARIS, apps=None, now_ms=second + 30 * MINUTE)
        shown = pages.overview(analytics, view)
        assert shown["tiles"][0]["value"] == "3"
        chart = next(f for f in shown["figures"] if f["layout"]["title"]["text"] == "Interactions and error rate")
        axis = chart["layout"]["xaxis"]["categoryarray"]
        assert len(axis) == 24 and axis[-2:] == ["2025-10-26 02:00 +02:00", "2025-10-26 02:00 +01:00"]
        assert dict(zip(chart["data"][0]["x"], chart["data"][0]["y"])) == {
            "2025-10-26 02:00 +02:00": 1, "2025-10-26 02:00 +01:00": 2}
    finally:
        analytics.close()
