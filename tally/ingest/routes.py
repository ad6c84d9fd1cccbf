"""Ingest routes: POST /track, /track/batch and /upload, as the Reconify client modules call them.

They take the raw request rather than FastAPI body parameters: the body is size-checked while it streams and
validated in one pass from bytes, which keeps the hot path short.
"""

import orjson
from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from tally.ingest.batch import ImageUpload, StoredUpload
from tally.ingest.http import read_json_body
from tally.store.errors import ApiError, error_response, json_response
from tally.ingest.service import IngestService
from tally.ingest.uploads import decode_image, save_upload
from tally.ingest.wire import UploadPayload, field_errors
from tally.ingest.writer import WriterOverloaded

router = APIRouter(tags=["ingest"])
_JSON_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}}


def _service(request: Request) -> IngestService:
    return request.app.state.ingest


@router.post("/track", status_code=201, openapi_extra=_JSON_BODY, summary="Store one Reconify payload",
             responses={200: {"description": "A retry of an interaction already stored"},
                        400: {"description": "Not JSON"}, 401: {"description": "Bad keys"},
                        413: {"description": "Too large"}, 415: {"description": "Not JSON content"},
                        422: {"description": "Invalid payload; `errors` names each field"}})
async def track(request: Request) -> Response:
    service = _service(request)
    try:
        body = await read_json_body(request, service.settings.track_max_bytes)
    except ApiError as error:
        return error_response(error)
    [(status, answer)] = await service.track([body])
    return json_response(answer, status, {"Retry-After": "1"} if status == 503 else None)


@router.post("/track/batch", openapi_extra=_JSON_BODY, summary="Store a JSON array of payloads, item by item")
async def track_batch(request: Request) -> Response:
    service = _service(request)
    limit = service.settings.batch_max_items
    try:
        body = await read_json_body(request, service.settings.batch_max_bytes)
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
    except ApiError as error:
        return error_response(error)
    answers = await service.track(items)
    results = [{"index": index, "http_status": status, **answer} for index, (status, answer) in enumerate(answers)]
    stored = sum(1 for status, _ in answers if status < 300)
    return json_response({"status": "ok", "stored": stored, "rejected": len(answers) - stored, "results": results})


@router.post("/upload", status_code=201, openapi_extra=_JSON_BODY, summary="Store an image_upload payload")
async def upload(request: Request) -> Response:
    service = _service(request)
    try:
        body = await read_json_body(request, service.settings.upload_max_bytes)
        payload = _parse_upload(body)
        app = service.authenticate(payload.reconify)
        try:
            content = decode_image(payload.upload.data)
        except ValueError as error:
            raise ApiError(422, "invalid_payload", "the upload holds no image",
                           [{"field": "upload.data", "message": str(error)}]) from None
        path = await run_in_threadpool(save_upload, service.settings.uploads_dir, app.app_id,
                                       payload.upload.filename, content)
        job = ImageUpload(app.app_id, payload.upload.filename, str(path.relative_to(service.settings.data_dir)),
                          len(content))
        try:
            [stored] = await service.writer.submit([job])
        except WriterOverloaded:
            raise ApiError(503, "overloaded", "too many writes are queued; retry shortly",
                           headers={"Retry-After": "1"}) from None
        if not isinstance(stored, StoredUpload):
            raise ApiError(500, "storage_failed", "the upload could not be recorded; retry")
    except ApiError as error:
        return error_response(error)
    return json_response({"status": "ok", "filename": stored.filename, "interaction_id": stored.interaction_id}, 201)


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
