"""The one error shape of every API answer, and JSON responses rendered with orjson."""

import orjson
from starlette.responses import Response


class ApiError(Exception):
    """Answered as `{"status": "error", "error": code, "message": …, "errors": [{"field", "message"}]}`."""

    def __init__(self, status: int, code: str, message: str, errors: list[dict[str, str]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.errors, self.headers = status, code, message, errors, headers

    def body(self) -> dict:
        body = {"status": "error", "error": self.code, "message": self.message}
        if self.errors:
            body["errors"] = self.errors
        return body


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def error_response(error: ApiError) -> Response:
    return json_response(error.body(), error.status, error.headers)
