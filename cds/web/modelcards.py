"""Model cards over HTTP, so a clinician can follow a card's link to the basis of a score.

`GET /models/{name}` renders `models/<name>/card.md` as HTML (raw HTML in the Markdown is escaped);
`GET /models/{name}/{file}` serves its plots and metadata. Only files listed in the manifest are
served, so nothing else on disk can be reached through these routes.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import orjson
from markdown_it import MarkdownIt
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route

from cds.runtime.errors import operation_outcome
from cds.runtime.settings import Settings

_NAME = re.compile(r"[a-z0-9_-]+")
_SERVABLE = {".png": "image/png", ".json": "application/json", ".md": "text/markdown; charset=utf-8"}
_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<base href="{base}">
<style>body{{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3rem .6rem}}img{{max-width:100%}}
code,pre{{background:#f4f4f4}}</style></head><body>{body}</body></html>"""


def _listed(models_dir: Path, name: str) -> set[str]:
    try:
        manifest = orjson.loads((models_dir / "manifest.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return set()
    entry = manifest.get("models", {}).get(name, {}) if isinstance(manifest, dict) else {}
    files = entry.get("files", {}) if isinstance(entry, dict) else {}
    return set(files) | {"card.md"}


def model_card_routes(settings: Settings) -> list[Route]:
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    models_dir = settings.models_dir

    async def card(request: Request) -> Response:
        name = request.path_params["name"]
        path = models_dir / name / "card.md"
        if not _NAME.fullmatch(name) or not path.is_file():
            return operation_outcome(404, f"no model card for {name!r}")
        page = _PAGE.format(
            title=html.escape(f"Model card: {name}"),
            base=f"{request.scope.get('root_path', '')}/models/{name}/",  # plots are linked relative to the card
            body=md.render(path.read_text()),
        )
        return HTMLResponse(page)

    async def asset(request: Request) -> Response:
        name, file = request.path_params["name"], request.path_params["file"]
        suffix = Path(file).suffix
        if (
            not _NAME.fullmatch(name)
            or suffix not in _SERVABLE
            or "/" in file
            or file not in _listed(models_dir, name)
            or not (models_dir / name / file).is_file()
        ):
            return operation_outcome(404, f"no file {file!r} for model {name!r}")
        return FileResponse(models_dir / name / file, media_type=_SERVABLE[suffix])

    return [
        Route("/models/{name}", card, methods=["GET"]),
        Route("/models/{name}/{file}", asset, methods=["GET"]),
    ]
