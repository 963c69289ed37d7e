"""The FastAPI application factory: the one place where every part is wired together."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api import (
    cors,
    dicomweb,
    errors,
    graphql_schema,
    landmark_models,
    offline_docs,
    rest_cephalometry,
    rest_compliance,
    rest_images,
    rest_reconciliation,
    rest_reports,
    rest_scans,
    rest_simulations,
    rest_viewing,
)
from api.docs_guard import docs_guard_middleware
from api.observability import Metrics, configure_logging, request_context_middleware
from api.rate_limits import RateBudgets, RateLimiter, rate_limit_middleware
from api.services import Services
from api.settings import Settings
from api.transport_security import hsts_middleware

READY_DATABASE_TIMEOUT = 3.0  # seconds /readyz waits for a database connection


def _runner_lags(services: Services) -> Iterable[tuple[str, int, int, bool]]:
    head = services.app.recorder.max_notification_id() or 0
    for name, job in services.supervisor.jobs.items():
        runner = job.current
        tracking = getattr(runner, "tracking", None) or getattr(runner, "view", None)
        position = tracking.max_tracking_id(services.app.name) if tracking else None
        yield name, head - (position or 0), job.restarts, job.running


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_level)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = services is None
        built = services or await run_in_threadpool(Services.build, settings)
        app.state.services = built
        metrics.add_lag_collector(lambda: _runner_lags(built))
        if own:
            built.start_background()
        try:
            yield
        finally:
            if own:
                await run_in_threadpool(built.close)

    app = FastAPI(
        title="orthovault",
        version="0.1.0",
        description="Imaging backend of an orthodontic practice suite.",
        lifespan=lifespan,
        docs_url=None,  # served offline by offline_docs.install (embedded mode only)
        redoc_url=None,
    )
    app.state.metrics = metrics
    app.middleware("http")(docs_guard_middleware(settings.mode == "production"))
    app.middleware("http")(errors.plain_errors_as_problems)
    # Innermost of the three, so a refusal is still logged, counted and given a request id.
    app.middleware("http")(rate_limit_middleware(RateLimiter(RateBudgets.from_settings(settings))))
    cors.install(app, settings)  # outside the rate limiter: a preflight is never 401/429
    app.middleware("http")(request_context_middleware(metrics))
    app.middleware("http")(hsts_middleware)
    errors.install(app)
    offline_docs.install(app, settings)
    app.include_router(rest_images.router)
    app.include_router(rest_cephalometry.router)
    app.include_router(landmark_models.router)
    app.include_router(rest_viewing.router)
    app.include_router(rest_reconciliation.router)
    app.include_router(rest_reports.router)
    app.include_router(rest_simulations.router)
    app.include_router(dicomweb.router)
    app.include_router(rest_scans.router)
    app.include_router(rest_compliance.router)
    app.include_router(graphql_schema.router(graphiql=settings.mode == "embedded",
                                             introspection=settings.mode == "embedded",
                                             allowed_origins=cors.allowed_origins(settings)),
                       prefix="/graphql")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz(request: Request) -> JSONResponse:
        services: Services = request.app.state.services
        checks: dict[str, str] = {}
        try:
            # One bounded try, not the event store's read (retried ten times, each waiting
            # up to the pool's timeout): with PostgreSQL away this says so within seconds.
            pool = services.app.recorder.datastore.pool
            with pool.connection(timeout=READY_DATABASE_TIMEOUT) as conn:
                conn.execute("SELECT 1")
            checks["database"] = "ok"
        except Exception as error:
            checks["database"] = type(error).__name__
        if services.settings.run_background:
            for name, job in services.supervisor.jobs.items():
                checks[name] = "ok" if job.running else "starting"
        ready = all(value == "ok" for value in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
