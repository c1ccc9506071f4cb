"""Reading request bodies: size limit while streaming, content type, orjson parse, depth limit."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from starlette.requests import Request

from cds.runtime.errors import BadRequest, HTTPProblem, PayloadTooLarge

_NOT_STRUCTURAL = bytes(sorted(set(range(256)) - set(b'[]{}"')))
_DEPTH_STEP = np.zeros(256, dtype=np.int8)
_DEPTH_STEP[ord("[")] = _DEPTH_STEP[ord("{")] = 1
_DEPTH_STEP[ord("]")] = _DEPTH_STEP[ord("}")] = -1


def _neutralise_escaped_quotes(raw: bytes) -> bytes:
    """The text with every escaped quote (`\\"`) replaced by a harmless byte, so that each
    remaining quote opens or closes a string. FHIR JSON has few backslashes: visit only those."""
    if b"\\" not in raw:
        return raw
    buf = bytearray(raw)
    i = raw.find(b"\\")
    while i != -1 and i + 1 < len(buf):
        if buf[i + 1] == 34:  # the byte after a backslash is escaped; an escaped quote
            buf[i + 1] = 32
        i = raw.find(b"\\", i + 2)
    return bytes(buf)


def json_depth(raw: bytes) -> int:
    """Maximum nesting depth of a (valid) JSON text, at C/numpy speed, without recursion.

    Escaped quotes are neutralised first, so every remaining quote opens or closes a string; then
    only quotes and brackets are kept, and brackets inside strings are masked out.
    """
    structural = np.frombuffer(
        _neutralise_escaped_quotes(raw).translate(None, _NOT_STRUCTURAL), dtype=np.uint8
    )
    if structural.size == 0:
        return 0
    outside = (np.cumsum(structural == 34, dtype=np.int32) & 1) == 0
    steps = _DEPTH_STEP[structural] * outside
    return int(np.cumsum(steps, dtype=np.int32).max())


async def read_body(request: Request, max_bytes: int, max_depth: int) -> bytes:
    """The raw JSON body, checked before any decoding: 415 not JSON, 413 too big, 400 empty or
    nested deeper than `max_depth` (so no decoder recurses that deep)."""
    ctype = request.headers.get("content-type", "")
    media = ctype.split(";", 1)[0].strip().lower()
    if media not in ("application/json", "application/fhir+json") and not media.endswith("+json"):
        raise HTTPProblem(f"Content-Type must be application/json (got {media or 'none'})", status=415)
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > max_bytes:
                raise PayloadTooLarge(f"request body is larger than the limit of {max_bytes} bytes")
        except ValueError:
            raise BadRequest("Content-Length is not a number") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"request body is larger than the limit of {max_bytes} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise BadRequest("request body is empty; expected a JSON object")
    # No text nests deeper than it has bytes: tiny bodies skip the scan. (Counting the brackets
    # first cost a hook body as much as the scan itself, and a hook body always has more.)
    if len(raw) > max_depth and json_depth(raw) > max_depth:
        raise BadRequest(f"JSON nesting is deeper than the limit of {max_depth}")
    return raw


async def read_json(request: Request, max_bytes: int, max_depth: int) -> Any:
    """The parsed JSON body, or an HTTPProblem (413 too big, 415 not JSON, 400 malformed/too deep)."""
    raw = await read_body(request, max_bytes, max_depth)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"request body is not valid JSON: {e}") from None
