"""Ingest endpoints, POST /track, /track/batch and /upload, served as plain ASGI ahead of the FastAPI app.

They skip FastAPI's routing, request objects and dependency solving: the body is size-checked as it streams,
validated in one pass from bytes, and answered with one JSON document. Every other path goes to FastAPI.
"""

import logging

import orjson

from tally.analytics.budgets import BudgetBoard
from tally.ingest.service import IngestService, Refusal, Stored, unauthorized
from tally.web.errors import ApiError
from tally.web.ingest_http import ClientGone, body_deadline, first_payload_keys, header_keys, read_json_body, send_json

log = logging.getLogger(__name__)
# The answer to each kind of refusal: 4xx is final, 503 asks to retry after Retry-After seconds.
STATUS = {"invalid_json": 400, "unauthorized": 401, "invalid_payload": 422, "unstorable": 422, "rate_limited": 429,
          "overloaded": 503, "storage_unavailable": 503, "internal_error": 500}
RETRY_AFTER_SECONDS = {"overloaded": 1, "storage_unavailable": 5}
Answer = tuple[int, dict, dict[str, str] | None]


def refused(refusal: Refusal) -> ApiError:
    retry = refusal.retry_after or RETRY_AFTER_SECONDS.get(refusal.code)
    return ApiError(STATUS[refusal.code], refusal.code, refusal.message, refusal.errors,
                    headers={"Retry-After": str(retry)} if retry else None)


def _answer(outcome: Stored | Refusal, budgets: BudgetBoard) -> tuple[int, dict]:
    if isinstance(outcome, Refusal):
        return STATUS[outcome.code], refused(outcome).body()
    stored = outcome.interaction
    body: dict = {"status": "ok", "interaction_id": stored.interaction_id, "user_id": stored.user_id,
                  "session_id": stored.session_id}
    if stored.duplicate:
        body["duplicate"] = True
    elif outcome.warnings:
        body["warnings"] = outcome.warnings  # stored, and flagged as malformed
    if budgets.has_budgets(outcome.app_id):  # what GET /api/v1/budgets/check would answer for this user
        body["budget"] = budgets.status(outcome.app_id, stored.user_id)
    return (200 if stored.duplicate else 201), body


async def _keys_first(service: IngestService, scope: dict) -> tuple[str, str] | None:
    """Keys sent in headers are checked before the body is read: a wrong one costs the server nothing more."""
    keys = header_keys(scope)
    if keys is not None and await service.verifier.verify(*keys) is None:
        raise unauthorized()
    return keys


async def _body(service: IngestService, scope: dict, receive, limit: int) -> bytes:
    return await read_json_body(scope, receive, limit, timeout=service.settings.body_timeout_seconds)


async def track(service: IngestService, budgets: BudgetBoard, scope: dict, receive) -> Answer:
    keys = await _keys_first(service, scope)
    body = await _body(service, scope, receive, service.settings.track_max_bytes)
    [outcome] = await service.track([body], default_keys=keys, size=len(body))
    if isinstance(outcome, Refusal):
        error = refused(outcome)
        return error.status, error.body(), error.headers
    return *_answer(outcome, budgets), None


async def track_batch(service: IngestService, budgets: BudgetBoard, scope: dict, receive) -> Answer:
    limit = service.settings.batch_max_items
    keys = await _keys_first(service, scope)
    body = await _body(service, scope, receive, service.settings.batch_max_bytes)
    first = first_payload_keys(body) if keys is None else None
    if first is not None and await service.verifier.verify(*first) is None:
        raise unauthorized()  # the batch's first payload has no valid key: refused whole, before parsing it
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
    outcomes = await service.track(items, default_keys=keys, size=len(body))
    limited = [outcome for outcome in outcomes if isinstance(outcome, Refusal) and outcome.code == "rate_limited"]
    if limited and len(limited) == len(outcomes):  # the whole batch is over its app's limit: retry it whole
        error = refused(limited[0])
        return error.status, error.body(), error.headers
    answers = [_answer(outcome, budgets) for outcome in outcomes]
    results = [{"index": index, "http_status": status, **answer} for index, (status, answer) in enumerate(answers)]
    stored = sum(1 for status, _ in answers if status < 300)
    headers = {"Retry-After": str(max(r.retry_after or 1 for r in limited))} if limited else None
    return 200, {"status": "ok", "stored": stored, "rejected": len(answers) - stored, "results": results}, headers


async def upload(service: IngestService, _: BudgetBoard, scope: dict, receive) -> Answer:
    keys = await _keys_first(service, scope)
    body = await _body(service, scope, receive, service.settings.upload_max_bytes)
    stored = await service.upload(body, default_keys=keys)
    return 201, {"status": "ok", "filename": stored.filename, "interaction_id": stored.interaction_id}, None


ENDPOINTS = {"/track": track, "/track/batch": track_batch, "/upload": upload}


class IngestFront:
    """The outermost ASGI app: serves the ingest endpoints itself and hands every other request to `inner`."""

    def __init__(self, inner, *, body_timeout_seconds: float) -> None:
        self.inner = inner
        self._bounded = body_deadline(body_timeout_seconds)

    async def __call__(self, scope, receive, send) -> None:
        endpoint = ENDPOINTS.get(scope.get("path")) if scope["type"] == "http" else None
        if endpoint is None:
            await self.inner(scope, self._bounded(receive) if scope["type"] == "http" else receive, send)
            return
        if scope["method"] != "POST":
            await send_json(send, 405, ApiError(405, "method_not_allowed", "use POST").body(), {"Allow": "POST"})
            return
        try:
            state = self.inner.state
            status, body, headers = await endpoint(state.ingest, state.analytics.budgets, scope, receive)
        except Refusal as refusal:
            error = refused(refusal)
            status, body, headers = error.status, error.body(), error.headers
        except ApiError as error:
            status, body, headers = error.status, error.body(), error.headers
        except ClientGone:
            return
        except Exception:
            log.exception("ingest request failed")
            status, body, headers = 500, ApiError(500, "internal_error", "the request failed; retry").body(), None
        await send_json(send, status, body, headers)
