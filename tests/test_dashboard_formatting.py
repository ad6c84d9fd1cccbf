"""Numbers for people, and the filter bar's reading of the URL."""

from zoneinfo import ZoneInfo

import pytest

from tally.analytics.filters import FilterError
from tally.dashboard.formatting import change, compact, duration_ms, money, percent, when
from tally.dashboard.view_filters import parse_view

PARIS = ZoneInfo("Europe/Paris")
NOW = 1_764_068_400_000  # 2025-11-25T11:00:00Z, 12:00 in Paris


@pytest.mark.parametrize("value, text", [(0, "0"), (999, "999"), (1000, "1k"), (1234, "1.2k"), (999_999, "1M"),
                                          (1_200_000, "1.2M"), (45_600_000, "45.6M"), (123_000_000, "123M"),
                                          (3.2e9, "3.2B"), (None, "–")])
def test_compact(value, text):
    assert compact(value) == text


@pytest.mark.parametrize("value, text", [(3.456, "$3.46"), (0, "$0.00"), (0.0042, "$0.0042"), (1234.5, "$1,234.50"),
                                          (0.00001, "<$0.0001"), (2_500_000, "$2.5M"), (None, "–")])
def test_money_never_rounds_a_real_cost_to_zero(value, text):
    assert money(value) == text


def test_durations_percent_and_times():
    assert [duration_ms(v) for v in (850, 2300, 250_000, 3_900_000)] == ["850 ms", "2.3 s", "4 min 10 s", "1 h 05 min"]
    assert percent(0.0173) == "1.7%" and percent(None) == "–"
    assert when(NOW, PARIS) == "2025-11-25 12:00"


def test_change_against_the_previous_period():
    assert change(120, 100) == {"text": "+20%", "direction": "up"}
    assert change(99.6, 100)["direction"] == "flat"
    assert change(5, 0) == {"text": "new", "direction": "up"}
    assert change(0, 0) is None and change(None, 3) is None


def test_presets_cover_whole_local_days_ending_today_and_compare_with_the_days_before():
    view = parse_view({"range": "7d"}, zone=PARIS, apps=None, now_ms=NOW)
    midnight_paris = 1_763_506_800_000  # 2025-11-19T00:00 Paris, six days before today
    assert view.filters.start_ms == midnight_paris
    assert view.filters.end_ms == midnight_paris + 7 * 86_400_000
    assert view.previous.end_ms == view.filters.start_ms
    assert view.previous.start_ms == view.filters.start_ms - 7 * 86_400_000
    assert view.granularity == "day" and view.label == "Last 7 days"


def test_day_ranges_compare_with_as_many_whole_days_when_the_clocks_change():
    # Paris fell back on 2025-10-26: that day has 25 hours, so the week after it (168 h) is an hour shorter than
    # the week before (169 h), and a span of hours would start the previous period at 01:00 on its first day.
    view = parse_view({"from": "2025-10-27", "to": "2025-11-02"}, zone=PARIS, apps=None, now_ms=NOW)
    assert view.previous.start_ms == 1_760_911_200_000  # 2025-10-20T00:00 Paris (CEST)
    assert view.previous.end_ms == view.filters.start_ms == 1_761_519_600_000  # 2025-10-27T00:00 Paris (CET)
    two_days = parse_view({"from": "2025-10-25", "to": "2025-10-26"}, zone=PARIS, apps=None, now_ms=NOW)
    assert two_days.filters.end_ms - two_days.filters.start_ms == 49 * 3_600_000 and two_days.granularity == "hour"
    assert two_days.previous.start_ms == 1_761_170_400_000  # 2025-10-23T00:00 Paris, 48 hours before


def test_the_last_24_hours_are_whole_hours_by_the_hour():
    view = parse_view({"range": "24h"}, zone=PARIS, apps=None, now_ms=NOW + 1_800_000)
    assert view.filters.end_ms == NOW + 3_600_000 and view.filters.start_ms == NOW - 23 * 3_600_000
    assert view.previous.start_ms == NOW - 47 * 3_600_000 and view.previous.end_ms == view.filters.start_ms
    assert view.granularity == "hour"


def test_custom_days_and_dimensions_round_trip_through_the_url():
    query = {"from": "2025-11-01", "to": "2025-11-03", "app": "2", "model": "gpt-4o", "user": "17"}
    view = parse_view(query, zone=PARIS, apps=None, now_ms=NOW)
    assert view.range == "custom" and view.filters.app_id == 2 and view.filters.user_id == 17
    assert view.filters.end_ms - view.filters.start_ms == 3 * 86_400_000
    assert parse_view(view.params(), zone=PARIS, apps=None, now_ms=NOW) == view
    assert view.query(model=None, cursor="abc") == (
        "?range=custom&from=2025-11-01&to=2025-11-03&app=2&user=17&cursor=abc")
    assert parse_view({}, zone=PARIS, apps=None, now_ms=NOW).params() == {}


@pytest.mark.parametrize("query, field", [({"range": "fortnight"}, "range"), ({"from": "2025-02-30"}, "from"),
                                          ({"range": "custom", "to": "tomorrow"}, "to"), ({"app": "shop"}, "app"),
                                          ({"from": "2025-11-05", "to": "2025-11-01"}, "from")])
def test_a_bad_url_names_the_parameter(query, field):
    with pytest.raises(FilterError) as raised:
        parse_view(query, zone=PARIS, apps=None, now_ms=NOW)
    assert raised.value.field == field
