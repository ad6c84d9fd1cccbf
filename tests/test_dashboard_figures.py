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


def test_payload_text_in_labels_is_shown_literally_not_as_markup():
    figure = figures.tokens_by_model([_by_model(DAY1, '<img src=x onerror="alert(1)">', 10)], **AXIS)
    assert figure["data"][0]["name"] == '&lt;img src=x onerror="alert(1)"&gt;'
