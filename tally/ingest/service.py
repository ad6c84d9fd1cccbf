"""The ingest service: parse, check, authenticate, prepare and store payloads and uploads; each stored or refused."""

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError

from tally.ingest.batch import ImageUpload, StoredInteraction, StoredUpload
from tally.ingest.keys import KeyVerifier, VerifiedApp
from tally.ingest.normalised import PayloadRejected
from tally.ingest.prepare import PreparedInteraction, check_format, prepare
from tally.ingest.rate_limits import RateLimited, RateLimiter, retry_after_seconds
from tally.ingest.redaction import Redactions
from tally.ingest.storage_process import StorageFailed
from tally.ingest.uploads import decode_image, save_upload
from tally.ingest.wire import ReconifyHeader, TrackPayload, UploadPayload, field_errors, too_deep
from tally.ingest.writer import GroupCommitWriter, WriterOverloaded
from tally.store.limits import MAX_JSON_DEPTH
from tally.store.secrets import now_ms
from tally.store.settings import Settings

UNAUTHORIZED = "unknown app key or wrong API key"


class Refusal(Exception):
    """Why a payload was not stored: a stable `code` (invalid_json, invalid_payload, unauthorized, rate_limited,
    unstorable, overloaded, storage_unavailable, internal_error), a message, the fields at fault, and for
    rate_limited the seconds after which to retry."""

    def __init__(self, code: str, message: str, errors: list[dict[str, str]] | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.errors, self.retry_after = code, message, errors, retry_after


def rate_limited(error: RateLimited) -> Refusal:
    return Refusal("rate_limited", str(error), [{"field": "(app)", "message": str(error)}],
                   retry_after=retry_after_seconds(error))


def unauthorized() -> Refusal:
    return Refusal("unauthorized", UNAUTHORIZED, [{"field": "reconify.apiKey", "message": UNAUTHORIZED}])


@dataclass(frozen=True)
class Stored:
    """A payload stored (or found stored already: `interaction.duplicate`), with what made it malformed."""

    interaction: StoredInteraction
    app_id: int
    warnings: list[dict[str, str]] = field(default_factory=list)


@dataclass
class IngestService:
    settings: Settings
    verifier: KeyVerifier
    writer: GroupCommitWriter
    limiter: RateLimiter
    redactions: Redactions

    async def admit(self, app: VerifiedApp, *, interactions: int, size: int) -> None:
        """Takes the app's ingest limits (its own, else the server's), or raises a rate_limited Refusal."""
        per_second = self.settings.app_max_interactions_per_second if app.max_per_second is None \
            else app.max_per_second
        per_byte = self.settings.app_max_bytes_per_second if app.max_bytes_per_second is None \
            else app.max_bytes_per_second
        try:
            await self.limiter.admit(app.app_id, interactions=interactions, size=size, per_second=per_second,
                                     bytes_per_second=per_byte)
        except RateLimited as error:
            raise rate_limited(error) from None

    async def authenticate(self, header: ReconifyHeader) -> VerifiedApp:
        app = await self.verifier.verify(header.appKey, header.apiKey)
        if app is None:
            raise unauthorized()
        return app

    async def prepare(self, payload: TrackPayload, received_at: int) -> tuple[VerifiedApp, PreparedInteraction]:
        app = await self.authenticate(payload.reconify)
        try:
            return app, prepare(payload, app=app, received_at=received_at,
                                default_timeout_minutes=self.settings.default_session_timeout_minutes,
                                redactor=self.redactions.for_app(app.redaction))
        except PayloadRejected as rejected:
            raise _invalid(rejected.errors) from None

    async def track(self, bodies: list[bytes | Any], *, default_keys: tuple[str, str] | None = None,
                    size: int = 0) -> list[Stored | Refusal]:
        """Store each payload that passes; one bad payload does not sink the others. `default_keys` (from
        headers, already verified) stand in for keys a payload does not carry. `size`, the request's bytes, is
        shared among the apps of its payloads for their limits; an app over its limit gets rate_limited."""
        received_at = now_ms()
        outcomes: list[Stored | Refusal | None] = [None] * len(bodies)
        prepared: dict[int, PreparedInteraction] = {}
        apps: dict[int, tuple[VerifiedApp, list[int]]] = {}  # by app id: the app and its payloads' indexes
        for index, body in enumerate(bodies):
            try:
                app, prepared[index] = await self.prepare(parse_payload(body, default_keys=default_keys),
                                                          received_at)
                apps.setdefault(app.app_id, (app, []))[1].append(index)
            except Refusal as refusal:
                outcomes[index] = refusal
        for app, indexes in apps.values():
            try:
                await self.admit(app, interactions=len(indexes), size=size * len(indexes) // len(bodies))
            except Refusal as refusal:
                for index in indexes:
                    outcomes[index] = refusal
                    del prepared[index]
        slots, jobs = list(prepared), list(prepared.values())
        if jobs:
            try:
                results = await self.writer.submit(jobs)
            except WriterOverloaded as overloaded:
                results = [overloaded] * len(jobs)
            for index, job, result in zip(slots, jobs, results):
                outcomes[index] = _outcome(job, result)
        return [outcome for outcome in outcomes if outcome is not None]

    async def upload(self, body: bytes, *, default_keys: tuple[str, str] | None = None) -> StoredUpload:
        """Store an uploaded image and link it to its interaction (whichever arrives first); raises Refusal."""
        payload = _parse_upload(with_default_keys(parse_json(body), default_keys))
        app = await self.authenticate(payload.reconify)
        await self.admit(app, interactions=0, size=len(body))
        try:
            content = decode_image(payload.upload.data)
        except ValueError as error:
            raise Refusal("invalid_payload", "the upload holds no image",
                          [{"field": "upload.data", "message": str(error)}]) from None
        path = await asyncio.to_thread(save_upload, self.settings.uploads_dir, app.app_id, payload.upload.filename,
                                       content)
        job = ImageUpload(app.app_id, payload.upload.filename, str(path.relative_to(self.settings.data_dir)),
                          len(content))
        try:
            [stored] = await self.writer.submit([job])
        except WriterOverloaded as overloaded:
            raise stored_failure(overloaded) from None
        if isinstance(stored, BaseException):
            raise stored_failure(stored)
        return stored


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Refusal("invalid_json", "the body is not valid JSON") from None


def with_default_keys(body: Any, keys: tuple[str, str] | None) -> Any:
    """The parsed payload with `keys` filling in an appKey or apiKey its `reconify` object lacks."""
    header = body.get("reconify") if isinstance(body, dict) else None
    if keys is None or not isinstance(header, dict):
        return body
    return {**body, "reconify": {"appKey": keys[0], "apiKey": keys[1], **header}}


def parse_payload(body: bytes | Any, *, default_keys: tuple[str, str] | None = None) -> TrackPayload:
    """A validated payload from raw JSON bytes (/track) or an already-parsed item (/track/batch)."""
    # A body with fewer brackets than the depth limit cannot nest deeper: most skip the walk that checks it.
    shallow = isinstance(body, bytes) and body.count(b"{") + body.count(b"[") <= MAX_JSON_DEPTH
    if isinstance(body, bytes):
        body = parse_json(body)  # then validate the parsed envelope; see TrackPayload.request
    body = with_default_keys(body, default_keys)
    try:
        payload = TrackPayload.model_validate(body)
    except ValidationError as error:
        raise _invalid(field_errors(error)) from None
    if not shallow and (deep := too_deep(payload)):
        raise _invalid(deep)
    try:
        check_format(payload)
    except PayloadRejected as rejected:
        raise _invalid(rejected.errors) from None
    return payload


def _parse_upload(body: object) -> UploadPayload:
    try:
        payload = UploadPayload.model_validate(body)
    except ValidationError as error:
        raise Refusal("invalid_payload", "the payload is not an image_upload", field_errors(error)) from None
    if payload.reconify.type != "image_upload":
        raise Refusal("invalid_payload", "the payload is not an image_upload",
                      [{"field": "reconify.type", "message": "must be 'image_upload' on /upload"}])
    return payload


def _invalid(errors: list[dict[str, str]]) -> Refusal:
    return Refusal("invalid_payload", "the payload does not match the Reconify format", errors)


def stored_failure(result: BaseException) -> Refusal:
    """What a failed write means to the client: retry later (the store is unavailable or too busy), or never (it
    refused a value, which validation should have caught), or a bug."""
    if isinstance(result, WriterOverloaded):
        return Refusal("overloaded", "too many writes are queued; retry shortly")
    if isinstance(result, StorageFailed) and result.transient:
        return Refusal("storage_unavailable", "the store cannot take writes right now; retry later (nothing of "
                       "this interaction was acknowledged)")
    if isinstance(result, StorageFailed):
        return Refusal("unstorable", "the store refused a value of this payload",
                       [{"field": "(body)", "message": result.reason}])
    return Refusal("internal_error", "the interaction could not be stored")


def _outcome(job: PreparedInteraction, result: StoredInteraction | BaseException) -> Stored | Refusal:
    if isinstance(result, BaseException):
        return stored_failure(result)
    return Stored(result, job.app_id, [] if result.duplicate else job.warnings)
