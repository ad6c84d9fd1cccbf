"""The ingest service: parse, check, authenticate, prepare and store payloads; answers as (status, body)."""

from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from tally.ingest.batch import StoredInteraction
from tally.ingest.http import unauthorized
from tally.store.errors import ApiError
from tally.ingest.keys import KeyVerifier, VerifiedApp
from tally.ingest.prepare import PayloadRejected, PreparedInteraction, check_format, prepare
from tally.ingest.wire import ReconifyHeader, TrackPayload, field_errors
from tally.ingest.writer import GroupCommitWriter, WriterOverloaded
from tally.store.secrets import now_ms
from tally.store.settings import Settings


@dataclass
class IngestService:
    settings: Settings
    verifier: KeyVerifier
    writer: GroupCommitWriter

    def authenticate(self, header: ReconifyHeader) -> VerifiedApp:
        app = self.verifier.verify(header.appKey, header.apiKey)
        if app is None:
            raise unauthorized()
        return app

    def prepare(self, payload: TrackPayload, received_at: int) -> PreparedInteraction:
        app = self.authenticate(payload.reconify)
        return prepare(payload, app=app, received_at=received_at,
                       default_timeout_minutes=self.settings.default_session_timeout_minutes)

    async def track(self, bodies: list[bytes | Any]) -> list[tuple[int, dict]]:
        """Store each payload that passes; one bad payload does not sink the others."""
        received_at = now_ms()
        answers: list[tuple[int, dict] | None] = [None] * len(bodies)
        jobs, slots = [], []
        for index, body in enumerate(bodies):
            try:
                jobs.append(self.prepare(parse_payload(body), received_at))
                slots.append(index)
            except ApiError as error:
                answers[index] = (error.status, error.body())
        if jobs:
            try:
                results = await self.writer.submit(jobs)
            except WriterOverloaded as overloaded:
                results = [overloaded] * len(jobs)
            for index, result in zip(slots, results):
                answers[index] = _answer(result)
        return answers


def parse_payload(body: bytes | Any) -> TrackPayload:
    """A validated payload from raw JSON bytes (/track) or an already-parsed item (/track/batch)."""
    if isinstance(body, bytes):
        try:
            body = orjson.loads(body)  # then validate the parsed envelope; see TrackPayload.request
        except orjson.JSONDecodeError:
            raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    try:
        payload = TrackPayload.model_validate(body)
    except ValidationError as error:
        raise _invalid(error) from None
    try:
        check_format(payload)
    except PayloadRejected as rejected:
        raise ApiError(422, "invalid_payload", "the payload does not match the Reconify format",
                       rejected.errors) from None
    return payload


def _invalid(error: ValidationError) -> ApiError:
    return ApiError(422, "invalid_payload", "the payload does not match the Reconify format", field_errors(error))


def _answer(result: StoredInteraction | BaseException) -> tuple[int, dict]:
    if isinstance(result, WriterOverloaded):
        return 503, ApiError(503, "overloaded", "too many writes are queued; retry shortly").body()
    if isinstance(result, BaseException):
        return 500, ApiError(500, "storage_failed", "the interaction could not be stored; retry").body()
    body = {"status": "ok", "interaction_id": result.interaction_id, "user_id": result.user_id,
            "session_id": result.session_id}
    if result.duplicate:
        body["duplicate"] = True
    return (200 if result.duplicate else 201), body
