"""The HTTP edge of ingest: reading bounded JSON bodies and answering with the one error shape."""

from starlette.requests import Request

from tally.store.errors import ApiError


def unauthorized() -> ApiError:
    return ApiError(401, "unauthorized", "unknown app key or wrong API key",
                    [{"field": "reconify.apiKey", "message": "unknown app key or wrong API key"}])


async def read_json_body(request: Request, limit: int) -> bytes:
    """The raw body, after checking that it is JSON and within `limit` bytes (415 and 413 otherwise)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", f"send JSON with Content-Type: application/json, "
                       f"not {media_type or 'no content type'}")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the body is larger than the {limit} bytes allowed here")
