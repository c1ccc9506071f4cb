"""The baseline: a bare Starlette endpoint that only parses the same JSON (orjson) and answers
{"cards": []}. The service's throughput is reported as a ratio of this one's."""

from __future__ import annotations

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def hook(request: Request) -> Response:
    orjson.loads(await request.body())
    return Response(b'{"cards":[]}', media_type="application/json")


app = Starlette(routes=[Route("/cds-services/{service_id}", hook, methods=["POST"])])
