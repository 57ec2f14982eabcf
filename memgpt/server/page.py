"""The reader page at `/` (memgpt/server/static: plain HTML, CSS and JS, no build step, nothing fetched
from elsewhere). The page's files are public, as a load balancer's health check is: they hold no data;
every call the page makes to /v1 carries the API key like any client's."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC = Path(__file__).with_name("static")
FILES = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript; charset=utf-8"),
         "/app.css": ("app.css", "text/css; charset=utf-8")}
PATHS = tuple(FILES)
# Only the page's own files run: no inline script, no other origin (document text is inserted as text, and
# this is the second wall should that ever slip).
HEADERS = {"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                                      "img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
           "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache", "Referrer-Policy": "no-referrer"}

router = APIRouter()


def _serve(name: str, media_type: str):
    def page() -> FileResponse:
        return FileResponse(STATIC / name, media_type=media_type, headers=HEADERS)
    return page


for _path, (_name, _type) in FILES.items():
    router.add_api_route(_path, _serve(_name, _type), methods=["GET"], include_in_schema=False)
