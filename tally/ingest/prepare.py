"""Turning a validated payload into the row to store: checks that need the format, timestamps, normalising."""

import hashlib
import re
from dataclasses import dataclass, field

import orjson

from tally.ingest.keys import VerifiedApp
from tally.ingest.normalised import PayloadRejected, rejected
from tally.ingest.providers import SUPPORTED_TYPES, normalise
from tally.ingest.redaction import Redactor
from tally.ingest.wire import FILENAME_PATTERN, TrackPayload, UserFields
from tally.store.limits import MAX_FUTURE_MS, MAX_LATENCY_MS

_FILENAME = re.compile(FILENAME_PATTERN)
MAX_REF_LENGTH = 255


@dataclass(slots=True)
class PreparedInteraction:
    app_id: int
    user: UserFields | None
    session_external_id: str | None
    timeout_ms: int | None  # None: never times out (an explicit session whose payloads give no timeout)
    image_files: list[str]
    row: dict = field(default_factory=dict)  # interaction columns, less ids and session placement
    warnings: list[dict[str, str]] = field(default_factory=list)  # what made the response malformed


def check_format(payload: TrackPayload) -> None:
    header = payload.reconify
    if header.format not in SUPPORTED_TYPES:
        raise rejected("reconify.format",
                       f"unsupported format {header.format!r}; supported: {', '.join(SUPPORTED_TYPES)}")
    if header.type not in SUPPORTED_TYPES[header.format]:
        raise rejected("reconify.type", f"unsupported type {header.type!r} for format {header.format!r}; "
                       f"supported: {', '.join(SUPPORTED_TYPES[header.format])}")
    if header.format != "universal" and not isinstance(payload.request, dict):
        raise rejected("request", f"must be a JSON object for format {header.format!r}")


def times(payload: TrackPayload, received_at: int) -> tuple[int, int, int | None]:
    """(request_at, response_at, latency_ms). A missing request time is the response time, else the time of
    receipt; a missing response time, or one before the request, is the request time, and the latency is then
    unknown (None) rather than 0, so that it cannot drag percentiles down."""
    stamps = payload.timestamps
    request, response = (stamps.request, stamps.response) if stamps else (None, None)
    for name, value in (("request", request), ("response", response)):
        if value is not None and value > received_at + MAX_FUTURE_MS:
            raise rejected(f"timestamps.{name}", "is more than 24 hours after the time Tally received it; "
                           "check the client's clock")
    request_at = request if request is not None else response if response is not None else received_at
    if request is None or response is None or response < request:
        return request_at, request_at, None
    if response - request > MAX_LATENCY_MS:
        raise rejected("timestamps.response", "is more than 7 days after timestamps.request")
    return request_at, response, response - request


def prepare(payload: TrackPayload, *, app: VerifiedApp, received_at: int, default_timeout_minutes: float,
            redactor: Redactor | None = None) -> PreparedInteraction:
    """The row for `payload`; raises PayloadRejected naming the field when a value cannot be stored. With a
    `redactor`, the texts and raw JSON are stored redacted and the numbers are those of what was sent."""
    header = payload.reconify
    request_at, response_at, latency_ms = times(payload, received_at)
    normalised = normalise(header.format, header.type, payload.request, payload.response)
    request, response, texts = payload.request, payload.response, normalised
    if redactor is not None:
        # The texts are the redacted JSON's, read again: each value is redacted once, and the same way in both.
        request, response = redactor.json(request), redactor.json(response)
        texts = normalise(header.format, header.type, request, response)
    explicit = payload.session is not None
    minutes = payload.session_timeout_minutes
    if minutes is None and not explicit:
        minutes = app.session_timeout_minutes or default_timeout_minutes
    timeout_ms = round(minutes * 60_000) if minutes is not None else None
    row = {
        "app_id": app.app_id,
        "session_key": f"s:{payload.session}" if explicit else None,
        "session_timeout_ms": timeout_ms,
        "provider": header.format,
        "type": header.type,
        "model": _column_text(normalised.model, 200),
        "input_text": _column_text(texts.input_text),
        "output_text": _column_text(texts.output_text),
        "prompt_tokens": normalised.prompt_tokens,
        "cached_prompt_tokens": normalised.cached_prompt_tokens,
        "completion_tokens": normalised.completion_tokens,
        "total_tokens": normalised.total_tokens,
        "usage_source": normalised.usage_source,
        "finish_reason": _column_text(normalised.finish_reason, 64),
        "request_at": request_at,
        "response_at": response_at,
        "latency_ms": latency_ms,
        "image_count": normalised.image_count,
        "is_error": normalised.is_error,
        "response_ref": response_ref(normalised.response_ref),
        "client_version": header.version[:64] if header.version else None,
        "request_json": orjson.dumps(request).decode(),
        "response_json": orjson.dumps(response).decode(),
        "malformed": orjson.dumps(normalised.problems).decode() if normalised.problems else None,
        "received_at": received_at,
        "updated_at": received_at,
    }
    # Only names an upload can carry are linked (an image inlined as base64 is counted, never linked).
    files = [name for name in normalised.image_files if len(name) <= 255 and _FILENAME.match(name)]
    return PreparedInteraction(app.app_id, payload.user, payload.session, timeout_ms, files, row,
                               normalised.problems)


def _column_text(text: str | None, limit: int | None = None) -> str | None:
    """Text from the request or response as a column holds it: NUL, which PostgreSQL cannot store, becomes
    U+FFFD (the raw JSON keeps it exactly, escaped), and short columns are cut to their length."""
    if text is None:
        return None
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text[:limit] if limit is not None else text


def response_ref(ref: str | None) -> str | None:
    """The provider's response id, which dedupes retries. One longer than the column is kept as its SHA-256, so
    that two long ids sharing their first 255 characters are still two interactions."""
    if ref is None:
        return None
    if len(ref) <= MAX_REF_LENGTH and "\x00" not in ref:
        return ref
    return "sha256:" + hashlib.sha256(ref.encode("utf-8", "surrogatepass")).hexdigest()


__all__ = ["PayloadRejected", "PreparedInteraction", "check_format", "prepare", "response_ref", "times"]
