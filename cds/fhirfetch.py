"""The FHIR fallback: fetch the prefetch keys a client did not send, from its `fhirServer`.

All missing keys are fetched concurrently through fhirpy over ONE shared aiohttp session (fhirpy
would otherwise open a session, and pay a TLS handshake, per request), within a total time budget,
with a cap on pages and on response size. Anything that stops a key from being fetched becomes a
412 naming the keys. The access token is only sent to the caller's own `fhirServer`, and never
logged, stored or echoed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import orjson
from fhirpy import AsyncFHIRClient

from cds.errors import PreconditionFailed
from cds.hookrequest import HookRequest
from cds.prefetch import UnresolvedToken, render
from cds.settings import Settings

log = logging.getLogger("cds.fhir")

# Search parameters that take a Patient reference: sent as Patient/<id>, which every server
# accepts (Medplum's engine accepts only that form).
_PATIENT_PARAMS = frozenset({"patient", "subject"})


class FetchFailed(Exception):
    """One key could not be fetched; the message is safe to show (no token, no patient data)."""


class _SharedSessionClient(AsyncFHIRClient):
    """fhirpy's async client on a shared aiohttp session, with a response size cap and orjson."""

    def __init__(self, url: str, session: aiohttp.ClientSession, authorization: str | None, max_bytes: int):
        super().__init__(url, authorization=authorization)
        self._session = session
        self._max_bytes = max_bytes

    async def _do_request(  # type: ignore[override]
        self,
        method: str,
        path: str,
        data: dict | None = None,
        params: dict | None = None,
        extra_headers: dict | None = None,
        *,
        returning_status: bool = False,
    ) -> Any:
        try:
            url = self._build_request_url(path, params)
        except ValueError:
            raise FetchFailed("a paging link points outside fhirServer") from None
        try:
            async with self._session.request(method, url, headers=self._build_request_headers()) as r:
                if r.status in (401, 403):
                    raise FetchFailed(f"fhirServer refused the access token (HTTP {r.status})")
                if not 200 <= r.status < 300:
                    raise FetchFailed(f"fhirServer answered HTTP {r.status}")
                body = bytearray()
                async for chunk in r.content.iter_chunked(65536):
                    body += chunk
                    if len(body) > self._max_bytes:
                        raise FetchFailed(f"fhirServer response is larger than {self._max_bytes} bytes")
        except (aiohttp.ClientError, OSError) as e:
            raise FetchFailed(f"fhirServer is unreachable ({type(e).__name__})") from None
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise FetchFailed("fhirServer answered with something that is not JSON") from None


def _split(relative_url: str) -> tuple[str, dict[str, list[str]]]:
    path, _, query = relative_url.partition("?")
    params: dict[str, list[str]] = {}
    for k, v in parse_qsl(query, keep_blank_values=True):
        if k in _PATIENT_PARAMS and "/" not in v:
            v = f"Patient/{v}"
        params.setdefault(k, []).append(v)
    return path, params


def _next_link(bundle: Mapping[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None


class FhirFetcher:
    """Owns the shared HTTP session; one instance per process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None
        # Cap a single response well above a sane search page, far below memory trouble.
        self.max_response_bytes = 4 * settings.max_body_bytes

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=200, limit_per_host=50, ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.settings.fhir_timeout_seconds),
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _fetch_key(self, client: _SharedSessionClient, relative_url: str) -> Any:
        path, params = _split(relative_url)
        data = await client.execute(path, method="get", params=params)
        if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
            raise FetchFailed("fhirServer answered with something that is not a FHIR resource")
        if data["resourceType"] == "OperationOutcome":
            raise FetchFailed("fhirServer answered with an OperationOutcome")
        if data["resourceType"] != "Bundle":
            return data
        entries = list(data.get("entry") or [])
        pages = 1
        link = _next_link(data)
        while link and pages < self.settings.fhir_max_pages:
            page = await client.execute(link, method="get")
            if not isinstance(page, dict) or page.get("resourceType") != "Bundle":
                raise FetchFailed("a paging link did not return a Bundle")
            entries.extend(page.get("entry") or [])
            if len(entries) > self.settings.max_prefetch_resources:
                raise FetchFailed("fhirServer returned more resources than the configured limit")
            pages += 1
            link = _next_link(page)
        if link:
            log.warning("fhir paging stopped at the page cap", extra={"pages": pages})
        return {
            **data,
            "entry": entries,
            "link": [ln for ln in data.get("link") or [] if ln.get("relation") != "next"],
        }

    async def fetch(
        self, request: HookRequest, templates: Mapping[str, str], keys: list[str]
    ) -> dict[str, Any]:
        """Resources for `keys`, or PreconditionFailed naming every key that could not be had."""
        if not keys:
            return {}
        if not request.fhir_server:
            raise PreconditionFailed(
                f"prefetch is missing {', '.join(keys)} and the request has no fhirServer to fetch them from",
                expression=[f"prefetch.{k}" for k in keys],
            )
        if self._session is None:
            await self.start()
        assert self._session is not None
        auth = request.fhir_authorization
        client = _SharedSessionClient(
            request.fhir_server,
            self._session,
            f"Bearer {auth['access_token']}" if auth else None,
            self.max_response_bytes,
        )
        tasks: dict[str, asyncio.Task[Any]] = {}
        reasons: dict[str, str] = {}
        for key in keys:
            try:
                url = render(templates[key], request.context)
            except UnresolvedToken as e:
                reasons[key] = str(e)
                continue
            tasks[key] = asyncio.create_task(self._fetch_key(client, url))
        if tasks:
            _, pending = await asyncio.wait(tasks.values(), timeout=self.settings.fhir_timeout_seconds)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        results: dict[str, Any] = {}
        for key, task in tasks.items():
            if not task.done() or task.cancelled():
                reasons[key] = f"fhirServer did not answer within {self.settings.fhir_timeout_seconds:g} s"
            elif isinstance(task.exception(), FetchFailed):
                reasons[key] = str(task.exception())
            elif task.exception() is not None:
                log.error("unexpected FHIR fetch error: %s", type(task.exception()).__name__)
                reasons[key] = "fhirServer could not be queried"
            else:
                results[key] = task.result()
        if reasons:
            detail = "; ".join(f"{k}: {v}" for k, v in sorted(reasons.items()))
            raise PreconditionFailed(
                f"could not obtain required FHIR data for {', '.join(sorted(reasons))} ({detail})",
                expression=[f"prefetch.{k}" for k in sorted(reasons)],
            )
        return results
