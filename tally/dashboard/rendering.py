"""Rendering pages: the Jinja environment (autoescaped), figures as inert JSON, and the security headers."""

import json
from pathlib import Path

import plotly
import plotly.io
from fastapi import Request
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.responses import Response

from tally.dashboard import formatting
from tally.dashboard.view_filters import PRESETS
from tally.dashboard.web_session import csrf_nonce, remember_csrf, signer

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
PLOTLY_VERSION = plotly.offline.get_plotlyjs_version()
# Scripts only from our own files (the figures travel as JSON data, never as inline script); Plotly sets inline
# styles on the elements it draws, so styles may be inline.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                           "img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
                           "form-action 'self'")
SECURITY_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}

templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))
templates.env.filters.update(compact=formatting.compact, money=formatting.money, percent=formatting.percent,
                             duration=formatting.duration_ms,
                             pretty_json=lambda value: json.dumps(value, indent=2, ensure_ascii=False))


def figure_json(figure: dict) -> Markup:
    """Plotly's JSON escapes `<` as \\u003c, so it can sit in a <script type="application/json"> block whatever
    the payloads held."""
    return Markup(plotly.io.to_json(figure, validate=False))


def render(request: Request, name: str, context: dict, *, status: int = 200) -> Response:
    """A page with what every template needs: the CSRF token, the time zone, the plotly.js URL."""
    analytics = request.app.state.analytics
    zone = analytics.zone
    base = {
        "csrf_token": signer(request).csrf_token(csrf_nonce(request)), "presets": PRESETS,
        "plotly_js": f"/dashboard/static/plotly-{PLOTLY_VERSION}.min.js", "figure_json": figure_json,
        "timezone": analytics.settings.analytics_timezone,
        "when": lambda ms, seconds=False: formatting.when(ms, zone, seconds=seconds),
        "day": lambda ms: formatting.day(ms, zone),
        "freshness": analytics.freshness(),
    }
    response = templates.TemplateResponse(request, name, {**base, **context}, status_code=status,
                                          headers=SECURITY_HEADERS)
    return remember_csrf(request, response)
