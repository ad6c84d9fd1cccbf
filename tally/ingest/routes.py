"""Ingest endpoints, POST /track, /track/batch and /upload, served as plain ASGI ahead of the FastAPI app.

They skip FastAPI's routing, request objects and dependency solving: the body is size-checked as it streams,
validated in one pass from bytes, and answered with one JSON document. Every other path goes to FastAPI.
"""

import logging

import orjson
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from tally.ingest.batch import ImageUpload, StoredUpload
from tally.ingest.http import ClientGone, read_json_body, send_json
from tally.ingest.service import IngestService
from tally.ingest.uploads import decode_image, save_upload
from tally.ingest.wire import UploadPayload, field_errors
from tally.ingest.writer import WriterOverloaded
from tally.store.errors import ApiError

log = logging.getLogger(__name__)


async def track(service: IngestService, scope: dict, receive) -> tuple[int, dict, dict | None]:
    body = await read_json_body(scope, receive, service.settings.track_max_bytes)
    [(status, answer)] = await service.track([body])
    return status, answer, {"Retry-After": "1"} if status == 503 else None


async def track_batch(service: IngestService, scope: dict, receive) -> tuple[int, dict, dict | None]:
    limit = service.settings.batch_max_items
    body = await read_json_body(scope, receive, service.settings.batch_max_bytes)
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(items, list):
        raise ApiError(422, "invalid_payload", "send a JSON array of payloads",
                       [{"field": "(body)", "message": "must be a JSON array"}])
    if len(items) > limit:
        raise ApiError(413, "payload_too_large", f"at most {limit} payloads per batch, got {len(items)}",
                       [{"field": "(body)", "message": f"must hold at most {limit} payloads"}])
    answers = await service.track(items)
    results = [{"index": index, "http_status": status, **answer} for index, (status, answer) in enumerate(answers)]
    stored = sum(1 for status, _ in answers if status < 300)
    return 200, {"status": "ok", "stored": stored, "rejected": len(answers) - stored, "results": results}, None


async def upload(service: IngestService, scope: dict, receive) -> tuple[int, dict, dict | None]:
    body = await read_json_body(scope, receive, service.settings.upload_max_bytes)
    payload = _parse_upload(body)
    app = service.authenticate(payload.reconify)
    try:
        content = decode_image(payload.upload.data)
    except ValueError as error:
        raise ApiError(422, "invalid_payload", "the upload holds no image",
                       [{"field": "upload.data", "message": str(error)}]) from None
    path = await run_in_threadpool(save_upload, service.settings.uploads_dir, app.app_id, payload.upload.filename,
                                   content)
    job = ImageUpload(app.app_id, payload.upload.filename, str(path.relative_to(service.settings.data_dir)),
                      len(content))
    try:
        [stored] = await service.writer.submit([job])
    except WriterOverloaded:
        raise ApiError(503, "overloaded", "too many writes are queued; retry shortly",
                       headers={"Retry-After": "1"}) from None
    if not isinstance(stored, StoredUpload):
        raise ApiError(500, "storage_failed", "the upload could not be recorded; retry")
    return 201, {"status": "ok", "filename": stored.filename, "interaction_id": stored.interaction_id}, None


def _parse_upload(body: bytes) -> UploadPayload:
    try:
        payload = UploadPayload.model_validate_json(body)
    except ValidationError as error:
        if any(item["type"] == "json_invalid" for item in error.errors()):
            raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
        raise ApiError(422, "invalid_payload", "the payload is not an image_upload", field_errors(error)) from None
    if payload.reconify.type != "image_upload":
        raise ApiError(422, "invalid_payload", "the payload is not an image_upload",
                       [{"field": "reconify.type", "message": "must be 'image_upload' on /upload"}])
    return payload


ENDPOINTS = {"/track": track, "/track/batch": track_batch, "/upload": upload}


class IngestFront:
    """The outermost ASGI app: serves the ingest endpoints itself and hands every other request to `inner`."""

    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send) -> None:
        endpoint = ENDPOINTS.get(scope.get("path")) if scope["type"] == "http" else None
        if endpoint is None:
            await self.inner(scope, receive, send)
            return
        if scope["method"] != "POST":
            await send_json(send, 405, ApiError(405, "method_not_allowed", "use POST").body(), {"Allow": "POST"})
            return
        try:
            status, body, headers = await endpoint(self.inner.state.ingest, scope, receive)
        except ApiError as error:
            status, body, headers = error.status, error.body(), error.headers
        except ClientGone:
            return
        except Exception:
            log.exception("ingest request failed")
            status, body, headers = 500, ApiError(500, "internal_error", "the request failed; retry").body(), None
        await send_json(send, status, body, headers)
