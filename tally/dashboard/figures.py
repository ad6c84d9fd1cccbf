"""Pure figure builders: query rows in, Plotly figure dicts out (titles, axis units, hover text, empty states).

They return plain dicts rather than `plotly.graph_objects` figures: validating every property costs more time
than rendering a page may take, so the tests validate the dicts with `go.Figure` instead.
"""

from collections import defaultdict
from html import escape

PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#EECA3B", "#9D755D",
           "#FF9DA6", "#BAB0AC")
REPORTED, ESTIMATED, ERROR = "#4C78A8", "#F2A65A", "#E45756"
Span = tuple[str, str] | None  # the time axis range, as local "YYYY-MM-DD HH:MM"
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
        layout[key] = {**layout.get(key, {}), **value} if isinstance(value, dict) else value
    return layout


def _empty(title: str, hint: str = EMPTY_HINT) -> dict:
    """A titled figure with no data that says why and what to do."""
    return {"data": [], "layout": {
        **_layout(title, "", ""),
        "xaxis": {"visible": False}, "yaxis": {"visible": False},
        "annotations": [{"text": hint, "showarrow": False, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5,
                         "font": {"size": 13, "color": "#666"}}]}}


def _time_axis(granularity: str, timezone: str) -> str:
    return f"{'Hour' if granularity == 'hour' else 'Day'} ({timezone})"


def _over(layout: dict, span: Span) -> dict:
    """The time axis shows the whole range asked for, empty hours or days included, so charts line up."""
    if span is not None:
        layout["xaxis"] = {**layout["xaxis"], "range": list(span), "type": "date"}
    return layout


def _stamp(bucket) -> str:
    return bucket.strftime("%Y-%m-%d %H:%M") if hasattr(bucket, "strftime") else str(bucket)


def tokens_by_model(rows: list[dict], *, granularity: str, timezone: str, span: Span = None,
                    top: int = 8) -> dict:
    """Stacked bars of tokens per bucket, one colour per model; beyond `top` models the rest are grouped."""
    title = "Tokens over time, by model"
    if not rows:
        return _empty(title)
    totals: dict[str, int] = defaultdict(int)
    for row in rows:
        totals[row["model"] or "(no model)"] += row["prompt_tokens"] + row["completion_tokens"]
    ranked = sorted(totals, key=lambda name: (-totals[name], name))
    kept = set(ranked[:top])
    series: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        name = row["model"] or "(no model)"
        tokens = row["prompt_tokens"] + row["completion_tokens"]
        series[name if name in kept else _OTHERS][_stamp(row["bucket"])] += tokens
    names = [name for name in ranked if name in kept] + ([_OTHERS] if _OTHERS in series else [])
    data = [{"type": "bar", "name": label(name), "x": list(series[name]), "y": list(series[name].values()),
             "marker": {"color": PALETTE[index % len(PALETTE)]},
             "hovertemplate": "%{y:,} tokens<extra>%{fullData.name}</extra>"}
            for index, name in enumerate(names)]
    return {"data": data, "layout": _over(_layout(
        title, _time_axis(granularity, timezone), "Tokens", barmode="stack", yaxis={"tickformat": "~s"},
        legend={"orientation": "v", "x": 1.02, "xanchor": "left", "y": 1, "yanchor": "top", "font": {"size": 11}}),
        span)}


def cost_over_time(series: list[dict], *, granularity: str, timezone: str, span: Span = None) -> dict:
    """Cost per bucket in USD, split by where its tokens came from; unpriced interactions are said, not hidden."""
    title = "Cost over time (USD)"
    if not series:
        return _empty(title)
    x = [_stamp(row["bucket"]) for row in series]
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
    x = [_stamp(row["bucket"]) for row in series]
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
    x = [_stamp(row["bucket"]) for row in series]
    data = [{"type": "scatter", "mode": "lines+markers", "name": name, "x": x,
             "y": [row[f"latency_{key}"] for row in series], "line": {"color": color},
             "hovertemplate": f"{name}: %{{y:,.0f}} ms<extra></extra>"}
            for key, name, color in (("p50", "p50", REPORTED), ("p95", "p95", ESTIMATED))]
    return {"data": data, "layout": _over(_layout(title, _time_axis(granularity, timezone), "Latency (ms)",
                                                  yaxis={"tickformat": ",.0f"}), span)}


def active_users(series: list[dict], *, timezone: str, span: Span = None) -> dict:
    title = "Daily active users"
    if not series:
        return _empty(title)
    data = [{"type": "scatter", "mode": "lines+markers", "name": "active users", "fill": "tozeroy",
             "x": [_stamp(row["bucket"]) for row in series], "y": [row["active_users"] for row in series],
             "line": {"color": "#54A24B"}, "hovertemplate": "%{y:,} active users<extra></extra>"}]
    return {"data": data, "layout": _over(_layout(title, _time_axis("day", timezone), "Users",
                                                  yaxis={"tickformat": ",d"}), span)}


def model_breakdown(rows: list[dict]) -> dict:
    """Horizontal bars of tokens per model, reported and estimated stacked; unpriced models marked."""
    title = "Tokens by model"
    if not rows:
        return _empty(title)
    ordered = sorted(rows, key=lambda r: r["reported_tokens"] + r["estimated_tokens"])
    names = [label(f"{r['model'] or '(no model)'} · {r['provider']}" + ("  (unpriced)" if r["unpriced"] else ""))
             for r in ordered]
    data = [{"type": "bar", "orientation": "h", "name": f"{kind} tokens", "y": names,
             "x": [r[f"{kind}_tokens"] for r in ordered], "marker": {"color": color},
             "hovertemplate": f"%{{x:,}} {kind} tokens<extra></extra>"}
            for kind, color in (("reported", REPORTED), ("estimated", ESTIMATED))]
    layout = _layout(title, "Tokens", "Model", barmode="stack", hovermode="y unified",
                     height=max(260, 60 + 34 * len(rows)), xaxis={"tickformat": "~s"},
                     yaxis={"automargin": True, "rangemode": "normal"})
    return {"data": data, "layout": layout}
