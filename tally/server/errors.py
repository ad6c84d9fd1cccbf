"""How the app answers what went wrong: the JSON error shape on API paths, the error page on the dashboard's."""

import logging
import math
from http import HTTPStatus

import duckdb
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tally.analytics.filters import FilterError
from tally.dashboard.errors import error_page, is_dashboard_path
from tally.ingest.readback import BadCursor
from tally.web.errors import ApiError, error_response, handle

log = logging.getLogger(__name__)


def answer_errors(app: FastAPI) -> None:
    handle(app, ApiError, _api_error)
    handle(app, duckdb.Error, _analytics_error)
    handle(app, HTTPException, _http_error)  # Starlette's own 404 and 405 as well as FastAPI's
    handle(app, RequestValidationError, _validation_error)
    handle(app, FilterError, _filter_error)
    handle(app, BadCursor, _filter_error)
    app.add_middleware(AnswerUnhandled)


async def _page(request: Request, status: int, title: str, message: str, *, reset: str | None = None) -> Response:
    """The dashboard's error page, made off the event loop: it reads the login from the store."""
    return await run_in_threadpool(error_page, request, status, title, message, reset=reset)


async def _api_error(request: Request, exc: ApiError) -> Response:
    if is_dashboard_path(request.url.path):
        return await _page(request, exc.status, HTTPStatus(exc.status).phrase, exc.message)
    return error_response(exc)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    status, path = exc.status_code, request.url.path
    message = str(exc.detail)
    if message == HTTPStatus(status).phrase:  # Starlette's own: say what was not found or not allowed
        message = {404: f"there is nothing at {path}",
                   405: f"{request.method} is not allowed on {path}"}.get(status, message)
    if is_dashboard_path(path):
        return await _page(request, status, "Not found" if status == 404 else HTTPStatus(status).phrase, message)
    code = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}.get(status, "error")
    return error_response(ApiError(status, code, message, headers=dict(exc.headers) if exc.headers else None))


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    """An id in the path that cannot exist is a 404; bad query parameters (filters) a 400; the rest a 422."""
    errors = [{"field": ".".join(str(p) for p in item["loc"][1:]) or str(item["loc"][0]), "message": item["msg"]}
              for item in exc.errors()]
    places = {item["loc"][0] for item in exc.errors()}
    if places == {"path"}:
        status, code, message = 404, "not_found", f"there is nothing at {request.url.path}"
    elif places == {"query"}:
        status, code, message = 400, "invalid_filter", "the request is invalid"
    else:
        status, code, message = 422, "invalid_request", "the request is invalid"
    if is_dashboard_path(request.url.path):
        status = 400 if status == 422 else status
        return await _page(request, status, "Not found" if status == 404 else "That request cannot be read",
                           message if status == 404 else "; ".join(f"{e['field']}: {e['message']}" for e in errors))
    return error_response(ApiError(status, code, message, errors))


async def _analytics_error(request: Request, exc: duckdb.Error) -> Response:
    """A damaged DuckDB file is replaced by the next refresh: until then, a retryable 503. Any other failure is
    a bug, answered 500 by AnswerUnhandled."""
    if not request.app.state.analytics.reader_failed(exc):
        raise exc
    retry = str(math.ceil(request.app.state.settings.analytics_refresh_seconds))
    message = "the analytics file is damaged and is being rebuilt from the store; retry shortly"
    if is_dashboard_path(request.url.path):
        page = await _page(request, 503, "Analytics are being rebuilt", message)
        page.headers["Retry-After"] = retry
        return page
    return error_response(ApiError(503, "analytics_unavailable", message, headers={"Retry-After": retry}))


async def _filter_error(request: Request, exc: FilterError | BadCursor) -> Response:
    if is_dashboard_path(request.url.path):  # say which filter, and offer the page without filters
        return await _page(request, 400, "That filter cannot be read", f"{exc.field}: {exc}", reset=request.url.path)
    return error_response(ApiError(400, "invalid_filter", str(exc), [{"field": exc.field, "message": str(exc)}]))


class AnswerUnhandled:
    """Any exception no handler answered is logged once, with its traceback, and answered 500 in the JSON error
    shape (the error page under the dashboard's paths) on a connection that stays open. An answer already under
    way (a streamed CSV) cannot be replaced: it is cut off, so the client sees an error, never a short file."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            if started:
                raise
            log.exception("unhandled error answering %s %s", scope["method"], scope["path"])
            request = Request(scope)
            if is_dashboard_path(request.url.path):
                response = await _page(request, 500, "Something went wrong",
                                       "The server could not show this page; the error is logged. Try again, or "
                                       "go back to the overview.")
            else:
                response = error_response(ApiError(500, "internal_error", "the server failed to answer; the "
                                                                          "error is logged"))
            await response(scope, receive, send)
