"""The FastAPI app: the routes (memgpt.server.routes) behind the ASGI layers (memgpt.server.middleware),
with the app's Context (engine, worker, store) on `app.state.context`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from ..model.engine import Engine, get_engine
from . import errors, page
from .context import Context
from .middleware import BearerAuth, BodyLimit, HostGuard
from .routes import ROUTERS
from .settings import ServeSettings
from .store import MemoryStore, Quota
from .worker import ModelWorker


def create_app(settings: ServeSettings, engine: Engine | None = None) -> FastAPI:
    settings.validate()
    engine = engine or get_engine(settings.model, settings.dtype, settings.window)
    worker = ModelWorker(settings.max_queue)
    store = MemoryStore(settings.data_dir, engine, worker, settings.max_body_bytes,
                        Quota(settings.max_memories, settings.max_data_bytes))
    ctx = Context(settings, engine, worker, store)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        worker.close()

    app = FastAPI(title="memgpt", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(page.router)  # the reader at /
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    if settings.api_key:  # added last: runs first
        app.add_middleware(BearerAuth, key=settings.api_key)
    else:
        app.add_middleware(HostGuard, names=settings.host_names(), bound=settings.host)
    app.state.context, app.state.engine = ctx, engine
    store.resume()
    return app
