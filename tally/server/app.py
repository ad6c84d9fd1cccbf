"""The app factory: settings in, a FastAPI app out, whose lifespan opens and closes every resource."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response

from tally.analytics import api as analytics_api
from tally.analytics import exports_api
from tally.analytics.service import Analytics
from tally.dashboard.mount import mount_dashboard
from tally.dashboard.routes import StoreViews
from tally.ingest import readback
from tally.ingest.routes import IngestFront
from tally.store.errors import ApiError, error_response
from tally.ingest.keys import KeyVerifier
from tally.ingest.service import IngestService
from tally.ingest.writer import GroupCommitWriter
from tally.server.export_jobs import sync_jobs
from tally.server.scheduler import start_scheduler, stop_scheduler
from tally.store.engine import build_engine
from tally.store.settings import Settings


def create_api(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = build_engine(settings)
        writer = GroupCommitWriter(settings, max_batch=settings.writer_max_batch,
                                   max_pending=settings.writer_max_pending)
        writer.start()
        app.state.settings = settings
        app.state.engine = engine
        app.state.ingest = IngestService(settings, KeyVerifier(engine, settings.key_cache_seconds), writer)
        analytics = app.state.analytics = Analytics(settings)
        scheduler, exports = start_scheduler(analytics, engine)
        app.state.scheduler = scheduler
        app.state.export_schedules_changed = partial(sync_jobs, scheduler, exports)
        try:
            yield
        finally:
            stop_scheduler(scheduler, exports)
            analytics.close()
            await writer.stop()
            engine.dispose()

    app = FastAPI(title="Tally", summary="Analytics for LLM telemetry in the Reconify format", version="0.1.0",
                  lifespan=lifespan)
    app.include_router(readback.router)
    app.include_router(analytics_api.router)
    mount_dashboard(app, settings, StoreViews(session=readback.read_session, interaction=readback.read_interaction))
    app.include_router(exports_api.router)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)

    @app.get("/healthz", include_in_schema=False)
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/dashboard")

    return app


def create_app(settings: Settings) -> IngestFront:
    """The ASGI app to serve: the ingest endpoints in front of the FastAPI app (see `ingest.routes`)."""
    return IngestFront(create_api(settings))


async def _api_error(_: Request, exc: ApiError) -> Response:
    return error_response(exc)


async def _http_error(_: Request, exc: HTTPException) -> Response:
    code = {401: "unauthorized", 403: "forbidden", 404: "not_found"}.get(exc.status_code, "error")
    return error_response(ApiError(exc.status_code, code, str(exc.detail), headers=exc.headers))


async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
    """Bad query parameters (filters) are a 400; anything else FastAPI validates is a 422."""
    errors = [{"field": ".".join(str(p) for p in item["loc"][1:]) or str(item["loc"][0]), "message": item["msg"]}
              for item in exc.errors()]
    in_query = all(item["loc"][0] == "query" for item in exc.errors())
    code, status = ("invalid_filter", 400) if in_query else ("invalid_request", 422)
    return error_response(ApiError(status, code, "the request is invalid", errors))
