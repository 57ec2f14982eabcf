"""The routes, one module per resource: `models` (/health, /v1/models), `chat` (/v1/chat/completions),
`completions` (/v1/completions), `memories` (/v1/memories). Each is a FastAPI router of plain
functions that get the app's `Context` as a dependency."""

from . import chat, completions, memories, models

ROUTERS = [models.router, chat.router, completions.router, memories.router]
