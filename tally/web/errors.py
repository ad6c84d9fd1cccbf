"""The one error shape of every API answer, and JSON responses rendered with orjson."""

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import orjson
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response


class ApiError(Exception):
    """Answered as `{"status": "error", "error": code, "message": …, "errors": [{"field", "message"}]}`."""

    def __init__(self, status: int, code: str, message: str, errors: list[dict[str, str]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.errors, self.headers = status, code, message, errors, headers

    def body(self) -> dict:
        body: dict[str, object] = {"status": "error", "error": self.code, "message": self.message}
        if self.errors:
            body["errors"] = self.errors
        return body


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def error_response(error: ApiError) -> Response:
    return json_response(error.body(), error.status, error.headers)


class FieldError(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """Every error answer of the API: `error` is a stable code, `errors` names the fields at fault."""

    status: str = "error"
    error: str
    message: str
    errors: list[FieldError] | None = None


def error_responses(*statuses: int) -> dict:
    """OpenAPI documentation of error answers in the one error shape, for a router's `responses`."""
    meaning = {400: "A parameter that cannot be read (named in `errors`)", 401: "No valid bearer token",
               403: "The token may not do this", 404: "Nothing with that id", 408: "The body did not arrive in time",
               413: "Too large", 415: "Not JSON", 422: "A body that does not match its schema",
               429: "Too many requests", 503: "Unavailable for now: retry after `Retry-After` seconds"}
    return {status: {"model": ErrorBody, "description": meaning[status]} for status in statuses}


Raised = TypeVar("Raised", bound=Exception)


def handle(app: Starlette, kind: type[Raised], handler: Callable[[Request, Raised], Awaitable[Response]]) -> None:
    """`app.add_exception_handler`, typed for a handler of one kind of exception (Starlette's own signature wants
    handlers of any exception)."""
    app.add_exception_handler(kind, cast(Any, handler))
