"""The raw ASGI edge of ingest: reading bounded JSON bodies in bounded time, keys in headers, JSON answers."""

import asyncio
import re
import time

import orjson

from tally.web.errors import ApiError

APP_KEY_HEADER, API_KEY_HEADER = b"tally-app-key", b"tally-api-key"
# The first payload's `reconify` object, when it is flat (as every client sends it), and its keys.
_FIRST_HEADER = re.compile(rb'"reconify"\s*:\s*\{([^{}]{0,4096})\}')
_KEY_FIELDS = {name: re.compile(rb'"' + name + rb'"\s*:\s*"([^"\\]{1,200})"') for name in (b"appKey", b"apiKey")}


class ClientGone(Exception):
    """The client disconnected before its body arrived."""


def header_keys(scope: dict) -> tuple[str, str] | None:
    """The app and API key sent as `Tally-App-Key` and `Tally-Api-Key` headers (a proxy may add them)."""
    headers = dict(scope["headers"])
    app_key, api_key = headers.get(APP_KEY_HEADER), headers.get(API_KEY_HEADER)
    if not app_key or not api_key:
        return None
    return app_key.decode("latin-1"), api_key.decode("latin-1")


def first_payload_keys(body: bytes) -> tuple[str, str] | None:
    """The keys of the first payload of a batch, read from its raw bytes without parsing the rest, so that a
    batch from someone without a key is refused before it costs a parse."""
    header = _FIRST_HEADER.search(body, 0, 65_536)
    if header is None:
        return None
    found = [pattern.search(header.group(1)) for pattern in _KEY_FIELDS.values()]
    if found[0] is None or found[1] is None:
        return None
    return found[0].group(1).decode("utf-8", "replace"), found[1].group(1).decode("utf-8", "replace")


def body_deadline(seconds: float):
    """A `receive` wrapper for the rest of the app: a body that does not arrive within `seconds` of the request's
    start ends as a client disconnect, so a trickling client cannot hold a connection open for good."""
    def wrap(receive):
        deadline = time.monotonic() + seconds

        async def bounded() -> dict:
            try:
                return await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return {"type": "http.disconnect"}
        return bounded
    return wrap


async def read_json_body(scope: dict, receive, limit: int, *, timeout: float) -> bytes:
    """The raw body, after checking that it is JSON, within `limit` bytes (415 and 413 otherwise) and arrived
    within `timeout` seconds (408)."""
    headers = dict(scope["headers"])
    media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower().decode("latin-1")
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", f"send JSON with Content-Type: application/json, "
                       f"not {media_type or 'no content type'}")
    declared = headers.get(b"content-length", b"")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size, more = [], 0, True
    try:
        async with asyncio.timeout(timeout):  # one timer for the whole body, no task per message
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
    except TimeoutError:
        raise ApiError(408, "request_timeout", f"the body did not arrive within {timeout:g} s",
                       headers={"Connection": "close"}) from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_json(send, status: int, body: object, headers: dict[str, str] | None = None) -> None:
    content = orjson.dumps(body)
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    raw_headers += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": content})


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the body is larger than the {limit} bytes allowed here")
