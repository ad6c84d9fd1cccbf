"""Figure builders are pure: rows in, valid Plotly figures out, with titles, units, hover text and empty states."""

from datetime import datetime

import plotly.graph_objects as go
import pytest

from tally.dashboard import figures

DAY1, DAY2 = datetime(2026, 11, 23), datetime(2026, 11, 24)
AXIS = {"granularity": "day", "timezone": "Europe/Paris"}


def _usage(bucket, *, interactions=10, errors=1, cost=0.5, estimated_cost=0.1, unpriced=0):
    return {"bucket": bucket, "interactions": interactions, "errors": errors, "cost": cost,
            "estimated_cost": estimated_cost, "unpriced": unpriced}


def _by_model(bucket, model, tokens):
    return {"bucket": bucket, "provider": "openai", "model": model, "prompt_tokens": tokens,
            "completion_tokens": tokens // 2}


BUILT = {
    "tokens": lambda: figures.tokens_by_model([_by_model(DAY1, "gpt-4o", 100), _by_model(DAY2, "gpt-4o", 300)], **AXIS),
    "cost": lambda: figures.cost_over_time([_usage(DAY1), _usage(DAY2, unpriced=3)], **AXIS),
    "interactions": lambda: figures.interactions_and_errors([_usage(DAY1), _usage(DAY2, interactions=0, errors=0)],
                                                            **AXIS),
    "latency": lambda: figures.latency([{"bucket": DAY1, "latency_p50": 800.0, "latency_p95": 2100.0}], **AXIS),
    "active": lambda: figures.active_users([{"bucket": DAY1, "active_users": 4}], timezone="UTC"),
    "models": lambda: figures.model_breakdown([{"provider": "openai", "model": "gpt-4o", "reported_tokens": 90,
                                                 "estimated_tokens": 10, "unpriced": 0}]),
}


@pytest.mark.parametrize("name", BUILT)
def test_every_figure_is_valid_plotly_with_title_axis_units_and_hover_text(name):
    figure = BUILT[name]()
    go.Figure(figure)  # raises on any property Plotly does not know
    layout = figure["layout"]
    assert layout["title"]["text"]
    axes = [layout[key]["title"]["text"] for key in ("xaxis", "yaxis") if layout[key].get("title")]
    assert all(axes) and len(axes) >= 1
    assert figure["data"] and all("hovertemplate" in trace for trace in figure["data"])


def test_time_axes_name_their_unit_and_zone_and_value_axes_their_unit():
    layout = BUILT["cost"]()["layout"]
    assert layout["xaxis"]["title"]["text"] == "Day (Europe/Paris)"
    assert layout["yaxis"]["title"]["text"] == "Cost (USD)" and layout["yaxis"]["tickprefix"] == "$"
    assert BUILT["latency"]()["layout"]["yaxis"]["title"]["text"] == "Latency (ms)"


@pytest.mark.parametrize("builder", [figures.tokens_by_model, figures.cost_over_time,
                                     figures.interactions_and_errors, figures.latency])
def test_no_rows_give_a_titled_figure_that_says_what_to_do(builder):
    figure = builder([], **AXIS)
    go.Figure(figure)
    assert figure["data"] == [] and figure["layout"]["title"]["text"]
    assert "widen the dates" in figure["layout"]["annotations"][0]["text"]


def test_cost_splits_reported_and_estimated_and_says_what_is_unpriced():
    figure = BUILT["cost"]()
    reported, estimated = figure["data"]
    assert reported["y"] == [0.4, 0.4] and estimated["y"] == [0.1, 0.1]
    assert "3 unpriced interactions are not included" in figure["layout"]["title"]["text"]


def test_error_rate_of_an_empty_bucket_is_zero_not_a_division_error():
    assert BUILT["interactions"]()["data"][1]["y"] == [0.1, 0]


def test_tokens_keep_the_top_models_and_group_the_rest():
    rows = [_by_model(DAY1, f"model-{index}", 1000 - index) for index in range(12)]
    names = [trace["name"] for trace in figures.tokens_by_model(rows, top=8, **AXIS)["data"]]
    assert names == [f"model-{index}" for index in range(8)] + ["other models"]


def test_rows_the_query_grouped_as_other_join_the_other_models():
    rows = [_by_model(DAY1, "gpt-4o", 100), {**_by_model(DAY1, None, 40), "other": True},
            {**_by_model(DAY2, None, 60), "other": True}]
    data = figures.tokens_by_model(rows, **AXIS)["data"]
    assert [(trace["name"], sum(trace["y"])) for trace in data] == [("gpt-4o", 150), ("other models", 150)]


def test_model_breakdown_draws_the_top_models_and_one_bar_for_the_rest():
    rows = [{"provider": "openai", "model": f"m{index}", "reported_tokens": 100 - index, "estimated_tokens": 1,
             "unpriced": 0} for index in range(30)]
    other = {"models": 1000, "reported_tokens": 5000, "estimated_tokens": 7, "unpriced": 3}
    figure = figures.model_breakdown(rows, other, top=16)
    go.Figure(figure)
    reported, estimated = figure["data"]
    assert len(reported["y"]) == 17 and reported["y"][0] == "1,014 other models" and reported["y"][-1] == "m0 · openai"
    assert sum(reported["x"]) == sum(r["reported_tokens"] for r in rows) + 5000
    assert sum(estimated["x"]) == 30 + 7


@pytest.mark.parametrize("granularity", ["hour", "day", "week", "month"])
def test_time_axes_say_their_bucket(granularity):
    layout = figures.cost_over_time([_usage(DAY1)], granularity=granularity, timezone="UTC")["layout"]
    assert layout["xaxis"]["title"]["text"] == f"{granularity.capitalize()} (UTC)"


def test_payload_text_in_labels_is_shown_literally_not_as_markup():
    figure = figures.tokens_by_model([_by_model(DAY1, '<img src=x onerror="alert(1)">', 10)], **AXIS)
    assert figure["data"][0]["name"] == '&lt;img src=x onerror="alert(1)"&gt;'


def test_hours_the_clocks_name_alike_get_a_place_each_and_their_offsets():
    first, second = 1_761_436_800_000, 1_761_440_400_000  # 00:00Z and 01:00Z on 2025-10-26: 02:00 in Paris twice
    names = figures.hour_names([(first - 3_600_000, datetime(2025, 10, 26, 1), 7_200_000),
                                (first, datetime(2025, 10, 26, 2), 7_200_000),
                                (second, datetime(2025, 10, 26, 2), 3_600_000)])
    assert list(names.values()) == ["2025-10-26 01:00", "2025-10-26 02:00 +02:00", "2025-10-26 02:00 +01:00"]
    rows = [{**_usage(datetime(2025, 10, 26, 2), interactions=3), "start_ms": first},
            {**_usage(datetime(2025, 10, 26, 2), interactions=5), "start_ms": second}]
    figure = figures.interactions_and_errors(rows, granularity="hour", timezone="Europe/Paris", span=names)
    go.Figure(figure)
    bars = figure["data"][0]
    assert dict(zip(bars["x"], bars["y"])) == {"2025-10-26 02:00 +02:00": 3, "2025-10-26 02:00 +01:00": 5}
    assert figure["layout"]["xaxis"]["categoryarray"] == list(names.values())
    by_model = figures.tokens_by_model([{**_by_model(datetime(2025, 10, 26, 2), "gpt-4o", 10), "start_ms": start}
                                        for start in (first, second)], granularity="hour", timezone="Europe/Paris",
                                       span=names)
    assert by_model["data"][0]["x"] == ["2025-10-26 02:00 +02:00", "2025-10-26 02:00 +01:00"]
