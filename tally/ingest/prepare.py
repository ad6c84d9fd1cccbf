"""Turning a validated payload into the row to store: checks that need the format, timestamps, normalising."""

from dataclasses import dataclass, field

import orjson

from tally.ingest.keys import VerifiedApp
from tally.ingest.providers import SUPPORTED_TYPES, normalise
from tally.ingest.wire import TrackPayload, UserFields


class PayloadRejected(ValueError):
    """A payload that passed the schema but cannot be stored; carries field errors for the 422."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(errors)
        self.errors = errors


@dataclass(slots=True)
class PreparedInteraction:
    app_id: int
    user: UserFields | None
    session_external_id: str | None
    timeout_ms: int | None  # None: never times out (an explicit session)
    image_files: list[str]
    row: dict = field(default_factory=dict)  # interaction columns, less ids and session placement


def check_format(payload: TrackPayload) -> None:
    header = payload.reconify
    if header.format not in SUPPORTED_TYPES:
        raise PayloadRejected([{"field": "reconify.format", "message":
                                f"unsupported format {header.format!r}; supported: {', '.join(SUPPORTED_TYPES)}"}])
    if header.type not in SUPPORTED_TYPES[header.format]:
        raise PayloadRejected([{"field": "reconify.type", "message": f"unsupported type {header.type!r} for format "
                                f"{header.format!r}; supported: {', '.join(SUPPORTED_TYPES[header.format])}"}])
    if header.format != "universal" and not isinstance(payload.request, dict):
        raise PayloadRejected([{"field": "request", "message": f"must be a JSON object for format {header.format!r}"}])


def prepare(payload: TrackPayload, *, app: VerifiedApp, received_at: int,
            default_timeout_minutes: float) -> PreparedInteraction:
    header = payload.reconify
    stamps = payload.timestamps
    request_at = (stamps.request if stamps else None) or received_at
    response_at = (stamps.response if stamps else None) or request_at
    normalised = normalise(header.format, header.type, payload.request, payload.response)
    minutes = payload.session_timeout_minutes or app.session_timeout_minutes or default_timeout_minutes
    row = {
        "app_id": app.app_id,
        "session_key": f"s:{payload.session}" if payload.session is not None else None,
        "session_timeout_ms": None if payload.session is not None else round(minutes * 60_000),
        "provider": header.format,
        "type": header.type,
        "model": normalised.model[:200] if normalised.model else None,
        "input_text": normalised.input_text,
        "output_text": normalised.output_text,
        "prompt_tokens": normalised.prompt_tokens,
        "cached_prompt_tokens": normalised.cached_prompt_tokens,
        "completion_tokens": normalised.completion_tokens,
        "total_tokens": normalised.total_tokens,
        "usage_source": normalised.usage_source,
        "finish_reason": normalised.finish_reason[:64] if normalised.finish_reason else None,
        "request_at": request_at,
        "response_at": response_at,
        "latency_ms": max(0, response_at - request_at),
        "image_count": normalised.image_count,
        "is_error": normalised.is_error,
        "response_ref": normalised.response_ref[:255] if normalised.response_ref else None,
        "client_version": header.version[:64] if header.version else None,
        "request_json": orjson.dumps(payload.request).decode(),
        "response_json": orjson.dumps(payload.response).decode(),
        "received_at": received_at,
        "updated_at": received_at,
    }
    return PreparedInteraction(app.app_id, payload.user, payload.session, row["session_timeout_ms"],
                               normalised.image_files, row)
