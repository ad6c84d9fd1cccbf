"""The app factory: settings in, a FastAPI app out, whose lifespan opens and closes every resource."""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from tally.analytics.service import Analytics
from tally.dashboard.mount import mount_dashboard
from tally.dashboard.routes import StoreViews
from tally.dashboard.web_session import cookie_signer
from tally.ingest import readback
from tally.ingest.keys import KeyVerifier
from tally.ingest.rate_limits import RateLimiter
from tally.ingest.redaction import server_redactions
from tally.ingest.service import IngestService
from tally.ingest.writer import GroupCommitWriter
from tally.server.errors import answer_errors
from tally.server.scheduler import Scheduler
from tally.store.engine import build_engine
from tally.store.settings import Settings
from tally.web import admin_api, alerts_api, analytics_api, budgets_api, exports_api, privacy_api, read_api
from tally.web.images import image_response
from tally.web.ingest_routes import IngestFront


def create_api(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Each resource is closed, in reverse order, however far the startup got: a failure halfway (a bad price
        # file, a busy DuckDB) must not leave the storage process or the DuckDB file behind.
        async with AsyncExitStack() as resources:
            engine = build_engine(settings)
            resources.callback(engine.dispose)
            writer = GroupCommitWriter(settings, max_batch=settings.writer_max_batch,
                                       max_pending=settings.writer_max_pending)
            resources.push_async_callback(writer.stop)
            writer.start()
            app.state.settings = settings
            app.state.engine = engine
            app.state.cookie_signer = cookie_signer(settings, engine)
            app.state.ingest = IngestService(settings, KeyVerifier(engine, settings.key_cache_seconds), writer,
                                             RateLimiter(engine), server_redactions(settings, engine))
            analytics = app.state.analytics = Analytics(settings)
            resources.callback(analytics.close)
            scheduler = app.state.scheduler = Scheduler(analytics, engine)
            scheduler.start()
            resources.callback(scheduler.stop)
            yield

    app = FastAPI(title="Tally", summary="Analytics for LLM telemetry in the Reconify format", version="0.1.0",
                  lifespan=lifespan)
    app.include_router(read_api.router)
    app.include_router(analytics_api.router)
    mount_dashboard(app, settings, StoreViews(session=readback.read_session, interaction=readback.read_interaction,
                                              image=image_response))
    app.include_router(exports_api.router)
    app.include_router(admin_api.router)
    app.include_router(privacy_api.router)
    app.include_router(budgets_api.router)
    app.include_router(alerts_api.router)
    answer_errors(app)

    @app.get("/healthz", include_in_schema=False)
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/dashboard")

    return app


def create_app(settings: Settings) -> IngestFront:
    """The ASGI app to serve: the ingest endpoints in front of the FastAPI app (see `web.ingest_routes`)."""
    return IngestFront(create_api(settings), body_timeout_seconds=settings.body_timeout_seconds)


def app_from_environment() -> IngestFront:
    """The app of a `tally serve --workers N` worker: its settings from the same TALLY_* environment."""
    return create_app(Settings())
