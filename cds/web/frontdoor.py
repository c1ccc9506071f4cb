"""The HTTP front door: limits uvicorn does not enforce by itself (issue 15, finding 6).

uvicorn bounds only the idle time between keep-alive requests (`timeout_keep_alive`) and, with
`limit_concurrency`, answers 503 once too many requests are in flight. It has no header size limit
with httptools, no time limit for a client to finish sending its headers or its body, and accepts
sockets without bound, so a few hundred slow clients hold the service. `GuardedHttpToolsProtocol`
is uvicorn's own httptools protocol with four more checks, all per connection and all O(1):

| limit | setting | answer |
|---|---|---|
| headers (request line + fields) larger than | `max_header_bytes` | 431, connection closed |
| headers not complete this long after the connection opened or the last answer | `header_timeout_seconds` | 408 (or a silent close when nothing was sent) |
| body not complete this long after the headers | `body_timeout_seconds` | 408, connection closed; the handler sees a disconnect |
| open connections per worker above | `max_connections` | 503, connection closed at once |

`BodyLimit` (ASGI middleware) caps every request body, hook calls at `max_body_bytes` and every
other endpoint (sandbox API, static files, operations) at `max_other_body_bytes`, with a 413.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from cds.runtime.errors import PayloadTooLarge, operation_outcome
from cds.runtime.settings import Settings

log = logging.getLogger("cds.web.frontdoor")

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}


@dataclass(frozen=True)
class DoorLimits:
    max_header_bytes: int
    header_timeout_seconds: float
    body_timeout_seconds: float
    max_connections: int

    @classmethod
    def of(cls, settings: Settings) -> DoorLimits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            header_timeout_seconds=settings.header_timeout_seconds,
            body_timeout_seconds=settings.body_timeout_seconds,
            max_connections=settings.max_connections,
        )


@lru_cache(maxsize=1)
def _limits_from_settings() -> DoorLimits:
    """Worker processes (spawned by uvicorn) read the same settings as `cds serve` did."""
    from cds.runtime.settings import load_settings

    return DoorLimits.of(load_settings())


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header size, header/body time and connection limits."""

    limits: DoorLimits | None = None  # set by `cds serve` (or a test); else read from settings

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = type(self).limits or _limits_from_settings()
        self._door_timer: asyncio.TimerHandle | None = None
        self._in_headers = True
        self._raw_header_bytes = 0  # bytes received while the headers are incomplete
        self._header_bytes = 0  # request line and header fields, as parsed
        self._refused = False
        self._message_done = False

    # --- connection --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._limits.max_connections:
            log.warning(
                "connection refused: too many open connections", extra={"limit": self._limits.max_connections}
            )
            self._refuse(503, "too many open connections; retry shortly")
            return
        self._arm(self._limits.header_timeout_seconds, self._header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_headers:
            self._raw_header_bytes += len(data)
        super().data_received(data)
        # Headers still incomplete after more than the limit: refuse before buffering more.
        if self._in_headers and not self._refused and self._raw_header_bytes > self._limits.max_header_bytes:
            self._refuse(
                431, f"request headers are larger than the limit of {self._limits.max_header_bytes} bytes"
            )

    # --- parser callbacks --------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._header_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._header_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._message_done = False
        if self._header_bytes > self._limits.max_header_bytes:
            self._refuse(
                431, f"request headers are larger than the limit of {self._limits.max_header_bytes} bytes"
            )
            return
        self._arm(self._limits.body_timeout_seconds, self._body_timeout)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._disarm()  # the whole request is in: the handler's own time is not limited here
        self._message_done = True
        answered = self.cycle is not None and self.cycle.response_complete
        super().on_message_complete()
        if answered:  # answered before the body was all in (a 413): now wait for the next request
            self._await_next_request()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._message_done:  # else the body is still arriving; its deadline still runs
            self._await_next_request()

    def _await_next_request(self) -> None:
        """The next request on this keep-alive connection gets the same header deadline."""
        if not self.transport.is_closing() and not self.pipeline:
            self._in_headers = True
            self._raw_header_bytes = 0
            self._arm(self._limits.header_timeout_seconds, self._header_timeout)

    # --- limits ------------------------------------------------------------------------------
    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._door_timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._door_timer is not None:
            self._door_timer.cancel()
            self._door_timer = None

    def _header_timeout(self) -> None:
        self._door_timer = None
        if self.transport.is_closing():
            return
        if self._raw_header_bytes == 0:  # an idle connection: just close it
            self._refused = True
            self.transport.close()
        else:
            self._refuse(
                408, f"request headers not received within {self._limits.header_timeout_seconds:g} s"
            )

    def _body_timeout(self) -> None:
        self._door_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and cycle.response_started:
            self._refused = True
            self.transport.close()
            return
        if cycle is not None:  # the handler waiting on the body sees a disconnect, writes nothing
            cycle.disconnected = True
            cycle.message_event.set()
        self._refuse(408, f"request body not received within {self._limits.body_timeout_seconds:g} s")

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` with a short text and close: the request never reaches the app."""
        self._refused = True
        self._disarm()
        body = message.encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, _REASONS[status], len(body), body)
        )
        self.transport.close()


class BodyLimit:
    """ASGI middleware: a 413 for any request body over its endpoint's limit, declared or streamed.

    Hook calls (`/cds-services/...`) may carry `max_body_bytes` (prefetch); everything else
    `max_other_body_bytes`. Raised as PayloadTooLarge from `receive`, so the app's handler answers.
    """

    def __init__(self, app: Any, max_body_bytes: int, max_other_body_bytes: int) -> None:
        self.app = app
        self.max_hook = max_body_bytes
        self.max_other = max_other_body_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_hook if scope["path"].startswith("/cds-services/") else self.max_other
        for k, v in scope["headers"]:
            if k == b"content-length" and v.isdigit() and int(v) > limit:
                message = f"request body is larger than the limit of {limit} bytes"
                await operation_outcome(413, message)(scope, receive, send)
                return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
            return message

        await self.app(scope, limited, send)
