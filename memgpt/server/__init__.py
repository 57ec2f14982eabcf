"""`memgpt serve`: an OpenAI-compatible HTTP server over one loaded model, with document memories.

    settings = ServeSettings(data_dir=Path("memgpt-data"), dtype="fp32")
    app = create_app(settings)                # a FastAPI app; `memgpt serve` runs it under uvicorn

Layout: `settings` (what can be set), `errors` (OpenAI's error JSON), `schemas` (request bodies),
`worker` (the one thread that runs the model), `generation` (sampling, streaming, stop strings),
`store` (memory files and their background reading), `answers` (answering from a memory),
`context` (what the routes share), `replies` (whole or streamed answers, cancelled when the client
goes), `routes/` (one module per resource), `middleware` (API key, Host/Origin, body limit),
`limits` (what one client may hold: connections per address, body pace, unread responses), `protocol`
(uvicorn's h11 applying them, with the connection cap and header timeout), `app` (assembles them),
`command` (the click command). How to run and secure it: docs/serving.md.
"""

from .settings import ServeSettings


def create_app(settings: ServeSettings, engine=None):
    """The FastAPI app (imports FastAPI only when called); `engine`: an already loaded `Engine`."""
    from .app import create_app as _create

    return _create(settings, engine)


__all__ = ["ServeSettings", "create_app"]
