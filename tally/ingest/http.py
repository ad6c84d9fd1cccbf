"""The raw ASGI edge of ingest: reading bounded JSON bodies and sending JSON answers."""

import orjson

from tally.store.errors import ApiError


class ClientGone(Exception):
    """The client disconnected before its body arrived."""


def unauthorized() -> ApiError:
    return ApiError(401, "unauthorized", "unknown app key or wrong API key",
                    [{"field": "reconify.apiKey", "message": "unknown app key or wrong API key"}])


async def read_json_body(scope: dict, receive, limit: int) -> bytes:
    """The raw body, after checking that it is JSON and within `limit` bytes (415 and 413 otherwise)."""
    headers = dict(scope["headers"])
    media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower().decode("latin-1")
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", f"send JSON with Content-Type: application/json, "
                       f"not {media_type or 'no content type'}")
    declared = headers.get(b"content-length", b"")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        more = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_json(send, status: int, body: object, headers: dict[str, str] | None = None) -> None:
    content = orjson.dumps(body)
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    raw_headers += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": content})


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the body is larger than the {limit} bytes allowed here")
