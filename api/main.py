"""The gateway app factory: `uvicorn --factory api.main:create_app`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from api import metrics, pages
from api.access import AccessControl
from api.canvas_answers import CanvasAnswers
from api.completion import CompletionWatcher
from api.errors import install_error_handlers
from api.headers import SecurityHeaders
from api.limits import RequestSizeLimit
from api.metrics import GatewayMetrics, RequestMetrics
from api.routes import health, jobs, models, predict
from jobs import canvas_queue
from jobs.logs import configure_logging
from jobs.queue import make_celery
from jobs.settings import Settings, get_settings
from jobs.sweep import start_sweeper


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)
    celery = make_celery(settings)
    watcher = CompletionWatcher(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop_sweeper = start_sweeper(settings, celery)
        watching = asyncio.create_task(watcher.run())
        redis = canvas_queue.connect_async(settings) if canvas_queue.enabled(settings) else None
        if redis is not None:
            app.state.canvas_answers = CanvasAnswers(redis, settings)
            reading = asyncio.create_task(app.state.canvas_answers.run())
        yield
        if redis is not None:
            reading.cancel()
            await redis.aclose()
        watching.cancel()
        stop_sweeper.set()

    app = FastAPI(
        title="Handwriting recognition",
        description="Asynchronous character recognition jobs on EMNIST-trained CNNs.",
        lifespan=lifespan,
        form_limits={"max_files": settings.max_files},
    )
    app.state.settings = settings
    app.state.celery = celery
    app.state.watcher = watcher
    app.state.canvas_answers = None
    app.state.metrics = GatewayMetrics(settings, celery)
    app.state.readiness = health.Readiness(settings, celery)
    install_error_handlers(app)
    # Outermost last: metrics see every answer, CORS preflights pass before the key check.
    app.add_middleware(RequestSizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(AccessControl, settings=settings)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        expose_headers=["Location", "Retry-After"],
    )
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestMetrics, metrics=app.state.metrics)
    for router in (jobs.router, predict.router, models.router):
        app.include_router(router, prefix="/api/v1")
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=pages.FRONTEND_DIR, check_dir=False), name="static")
    return app
