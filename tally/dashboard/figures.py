"""Pure figure builders: query rows in, Plotly figure dicts out (titles, axis units, hover text, empty states).

They return plain dicts rather than `plotly.graph_objects` figures: validating every property costs more time
than rendering a page may take, so the tests validate the dicts with `go.Figure` instead.
"""

from collections import Counter, defaultdict
from datetime import datetime
from html import escape

from tally.analytics.local_time import offset_text

PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#EECA3B", "#9D755D",
           "#FF9DA6", "#BAB0AC")
REPORTED, ESTIMATED, ERROR = "#4C78A8", "#F2A65A", "#E45756"
# The time axis: a date axis's range, as local "YYYY-MM-DD HH:MM"; or, by the hour, every hour's name by the
# instant it starts (see `hour_names`).
Span = tuple[str, str] | dict[int, str] | None
EMPTY_HINT = "No interactions in this range: widen the dates or clear a filter"
_OTHERS = "other models"


def label(text: object) -> str:
    """Payload text as a Plotly label: Plotly reads a few HTML-like tags in labels, so `<`, `>` and `&` are
    escaped and shown literally, never interpreted."""
    return escape(str(text), quote=False)


def _layout(title: str, x_title: str, y_title: str, **extra) -> dict:
    layout = {
        "title": {"text": title, "x": 0, "xanchor": "left", "font": {"size": 15}},
        "template": "plotly_white", "height": 320, "margin": {"l": 64, "r": 24, "t": 48, "b": 48},
        "hovermode": "x unified",
        "legend": {"orientation": "h", "x": 1, "xanchor": "right", "y": 1.02, "yanchor": "bottom"},
        "xaxis": {"title": {"text": x_title}, "automargin": True},
        "yaxis": {"title": {"text": y_title}, "rangemode": "tozero", "automargin": True},
        "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12},
    }
    for key, value in extra.items():
        base = layout.get(key)
        layout[key] = {**base, **value} if isinstance(value, dict) and isinstance(base, dict) else value
    return layout


def _empty(title: str, hint: str = EMPTY_HINT) -> dict:
    """A titled figure with no data that says why and what to do."""
    return {"data": [], "layout": {
        **_layout(title, "", ""),
        "xaxis": {"visible": False}, "yaxis": {"visible": False},
        "annotations": [{"text": hint, "showarrow": False, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5,
                         "font": {"size": 13, "color": "#666"}}]}}


def _time_axis(granularity: str, timezone: str) -> str:
    return f"{granularity.capitalize()} ({timezone})"


def _over(layout: dict, span: Span) -> dict:
    """The time axis shows the whole range asked for, empty hours or days included, so charts line up."""
    if isinstance(span, dict):
        names = list(span.values())
        # About five labels, which fit the narrowest chart, a whole number of hours apart: the time, and the day
        # under the first of each day.
        ticks = names[::next((step for step in (1, 2, 3, 4, 6, 12) if len(names) <= 5 * step), 24)]
        days = [None] + [name[:10] for name in ticks]
        layout["xaxis"] = {**layout["xaxis"], "type": "category", "categoryorder": "array", "categoryarray": names,
                           "range": [-0.5, len(names) - 0.5], "tickmode": "array", "tickvals": ticks, "tickangle": 0,
                           "ticktext": [name[11:] + (f"<br>{name[:10]}" if name[:10] != day else "")
                                        for name, day in zip(ticks, days)]}
    elif span is not None:
        layout["xaxis"] = {**layout["xaxis"], "range": list(span), "type": "date"}
    return layout


def hour_names(hours: list[tuple[int, datetime, int]]) -> dict[int, str]:
    """The name on the axis of each hour (start, wall-clock name, UTC offset ms), by the instant it starts: its
    local time, and, for the two hours the clocks going back name alike, its offset too. A date axis would draw
    those two at one place, so hours go on a category axis, one slot each, in the order they happened."""
    repeats = Counter(name for _, name, _ in hours)
    return {start: _stamp(name) + (f" {offset_text(offset)}" if repeats[name] > 1 else "")
            for start, name, offset in hours}


def _stamp(bucket) -> str:
    return bucket.strftime("%Y-%m-%d %H:%M") if hasattr(bucket, "strftime") else str(bucket)


def _x(row: dict, span: Span) -> str:
    """Where a row goes on the time axis: hour rows by the instant their hour starts, others by their bucket."""
    if isinstance(span, dict) and "start_ms" in row:
        return span[row["start_ms"]]
    return _stamp(row["bucket"])


def tokens_by_model(rows: list[dict], *, granularity: str, timezone: str, span: Span = None,
                    top: int = 8) -> dict:
    """Stacked bars of tokens per bucket, one colour per model; beyond `top` models the rest are grouped, as are
    rows marked `other` (the query already grouped them)."""
    title = "Tokens over time, by model"
    if not rows:
        return _empty(title)
    totals: dict[str, int] = defaultdict(int)
    for row in rows:
        totals[_model_name(row)] += row["prompt_tokens"] + row["completion_tokens"]
    ranked = sorted((name for name in totals if name != _OTHERS), key=lambda name: (-totals[name], name))
    kept = set(ranked[:top])
    series: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        name = _model_name(row)
        tokens = row["prompt_tokens"] + row["completion_tokens"]
        series[name if name in kept else _OTHERS][_x(row, span)] += tokens
    names = [name for name in ranked if name in kept] + ([_OTHERS] if _OTHERS in series else [])
    data = [{"type": "bar", "name": label(name), "x": list(series[name]), "y": list(series[name].values()),
             "marker": {"color": PALETTE[index % len(PALETTE)]},
             "hovertemplate": "%{y:,} tokens<extra>%{fullData.name}</extra>"}
            for index, name in enumerate(names)]
    return {"data": data, "layout": _over(_layout(
        title, _time_axis(granularity, timezone), "Tokens", barmode="stack", yaxis={"tickformat": "~s"},
        legend={"orientation": "v", "x": 1.02, "xanchor": "left", "y": 1, "yanchor": "top", "font": {"size": 11}}),
        span)}


def _model_name(row: dict) -> str:
    return _OTHERS if row.get("other") else row["model"] or "(no model)"


def cost_over_time(series: list[dict], *, granularity: str, timezone: str, span: Span = None) -> dict:
    """Cost per bucket in USD, split by where its tokens came from; unpriced interactions are said, not hidden."""
    title = "Cost over time (USD)"
    if not series:
        return _empty(title)
    x = [_x(row, span) for row in series]
    unpriced = sum(row["unpriced"] for row in series)
    data = [
        {"type": "bar", "name": "from reported tokens", "x": x,
         "y": [row["cost"] - row["estimated_cost"] for row in series],
         "marker": {"color": REPORTED}, "hovertemplate": "$%{y:,.4f}<extra>reported</extra>"},
        {"type": "bar", "name": "from estimated tokens", "x": x, "y": [row["estimated_cost"] for row in series],
         "marker": {"color": ESTIMATED}, "hovertemplate": "$%{y:,.4f}<extra>estimated</extra>"},
    ]
    layout = _layout(title, _time_axis(granularity, timezone), "Cost (USD)", barmode="stack",
                     yaxis={"tickprefix": "$", "tickformat": ",.2f"})
    if unpriced:
        layout["title"]["text"] += f"<br><sup>{unpriced:,} unpriced interactions are not included</sup>"
        layout["margin"] = {**layout["margin"], "t": 64}
    return {"data": data, "layout": _over(layout, span)}


def interactions_and_errors(series: list[dict], *, granularity: str, timezone: str, span: Span = None) -> dict:
    title = "Interactions and error rate"
    if not series:
        return _empty(title)
    x = [_x(row, span) for row in series]
    data = [
        {"type": "bar", "name": "interactions", "x": x, "y": [row["interactions"] for row in series],
         "marker": {"color": REPORTED}, "hovertemplate": "%{y:,} interactions<extra></extra>"},
        {"type": "scatter", "mode": "lines+markers", "name": "error rate", "x": x, "yaxis": "y2",
         "y": [row["errors"] / row["interactions"] if row["interactions"] else 0 for row in series],
         "line": {"color": ERROR}, "hovertemplate": "%{y:.1%} errors<extra></extra>"},
    ]
    return {"data": data, "layout": _over(_layout(
        title, _time_axis(granularity, timezone), "Interactions",
        yaxis2={"title": {"text": "Error rate (%)"}, "overlaying": "y", "side": "right", "tickformat": ".0%",
                "rangemode": "tozero", "showgrid": False, "automargin": True}), span)}


def latency(series: list[dict], *, granularity: str, timezone: str, span: Span = None) -> dict:
    title = "Latency, median and 95th percentile"
    if not series:
        return _empty(title)
    x = [_x(row, span) for row in series]
    data = [{"type": "scatter", "mode": "lines+markers", "name": name, "x": x,
             "y": [row[f"latency_{key}"] for row in series], "line": {"color": color},
             "hovertemplate": f"{name}: %{{y:,.0f}} ms<extra></extra>"}
            for key, name, color in (("p50", "p50", REPORTED), ("p95", "p95", ESTIMATED))]
    return {"data": data, "layout": _over(_layout(title, _time_axis(granularity, timezone), "Latency (ms)",
                                                  yaxis={"tickformat": ",.0f"}), span)}


def active_users(series: list[dict], *, timezone: str, span: Span = None, granularity: str = "day") -> dict:
    title = f"Active users per {granularity}"
    if not series:
        return _empty(title)
    data = [{"type": "scatter", "mode": "lines+markers", "name": "active users", "fill": "tozeroy",
             "x": [_x(row, span) for row in series], "y": [row["active_users"] for row in series],
             "line": {"color": "#54A24B"}, "hovertemplate": "%{y:,} active users<extra></extra>"}]
    return {"data": data, "layout": _over(_layout(title, _time_axis(granularity, timezone), "Users",
                                                  yaxis={"tickformat": ",d"}), span)}


def model_breakdown(rows: list[dict], other: dict | None = None, *, top: int = 16) -> dict:
    """Horizontal bars of tokens per model, reported and estimated stacked; unpriced models marked. Beyond the
    `top` models by tokens, the rest (with `other`, the models the query did not list) share one bar."""
    title = "Tokens by model"
    if not rows:
        return _empty(title)
    ranked = sorted(rows, key=lambda r: r["reported_tokens"] + r["estimated_tokens"], reverse=True)
    rest = ranked[top:] + ([other] if other else [])
    bars = [(f"{r['model'] or '(no model)'} · {r['provider']}" + ("  (unpriced)" if r["unpriced"] else ""),
             r["reported_tokens"], r["estimated_tokens"]) for r in ranked[:top]]
    if rest:
        count = len(ranked[top:]) + (other["models"] if other else 0)
        bars.append((f"{count:,} {_OTHERS}", sum(r["reported_tokens"] for r in rest),
                     sum(r["estimated_tokens"] for r in rest)))
    bars.reverse()  # Plotly draws the first bar at the bottom
    data = [{"type": "bar", "orientation": "h", "name": f"{kind} tokens", "y": [label(bar[0]) for bar in bars],
             "x": [bar[index] for bar in bars], "marker": {"color": color},
             "hovertemplate": f"%{{x:,}} {kind} tokens<extra></extra>"}
            for index, kind, color in ((1, "reported", REPORTED), (2, "estimated", ESTIMATED))]
    layout = _layout(title, "Tokens", "Model", barmode="stack", hovermode="y unified",
                     height=max(260, 60 + 34 * len(bars)), xaxis={"tickformat": "~s"},
                     yaxis={"automargin": True, "rangemode": "normal"})
    return {"data": data, "layout": layout}
