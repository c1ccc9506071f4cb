"""The FHIR fallback: fetch the prefetch keys a client did not send, from its `fhirServer`.

All missing keys are fetched concurrently through the outbound gate (`cds.outbound`), within a
total time budget, with a cap on pages and on response size. Every request, each paging link
included, must lie under the request's `fhirServer` (scheme, host, port and path compared on the
parsed URL) and within the caller's reach (https and public addresses unless its client allows
local servers, or in development mode); redirects are not followed. Anything that stops a key
from being fetched becomes a 412 naming the keys. The access token is only sent to the caller's
own `fhirServer`, and never logged, stored or echoed.

This is a deliberately small FHIR read client (a search, then its `next` links) instead of
fhirpy: fhirpy decided whether a paging link belonged to the server with a substring test and
opened its own sessions, so the gate could not be guaranteed to see every request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from cds.errors import PreconditionFailed
from cds.hookrequest import HookRequest
from cds.outbound import STRICT, Failed, OutboundClient, Reach, Refused, Target
from cds.prefetch import UnresolvedToken, render
from cds.settings import Settings

log = logging.getLogger("cds.fhir")

# Search parameters that take a Patient reference: sent as Patient/<id>, which every server
# accepts (Medplum's engine accepts only that form).
_PATIENT_PARAMS = frozenset({"patient", "subject"})
_ACCEPT = "application/fhir+json, application/json;q=0.9"


class FetchFailed(Exception):
    """One key could not be fetched; the message is safe to show (no token, no patient data)."""


class _FhirReader:
    """GETs under one fhirServer, with the caller's token, through the outbound gate."""

    def __init__(
        self,
        outbound: OutboundClient,
        target: Target,
        reach: Reach,
        authorization: str | None,
        max_bytes: int,
        timeout: float,
    ) -> None:
        self.outbound = outbound
        self.target = target
        self.reach = reach
        self.headers = {"Accept": _ACCEPT}
        if authorization:
            self.headers["Authorization"] = authorization
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def get(self, url: str, *, paging: bool = False) -> Any:
        try:
            reply = await self.outbound.request(
                "GET",
                url,
                target=self.target,
                reach=self.reach,
                headers=self.headers,
                max_bytes=self.max_bytes,
                timeout=self.timeout,
            )
        except Refused as e:
            if paging and not self.target.admits(url):
                raise FetchFailed("a paging link points outside fhirServer; it was not followed") from None
            raise FetchFailed(f"fhirServer was not queried: {e}") from None
        except Failed as e:
            raise FetchFailed(f"fhirServer: {e}") from None
        if reply.status in (401, 403):
            raise FetchFailed(f"fhirServer refused the access token (HTTP {reply.status})")
        if not 200 <= reply.status < 300:
            raise FetchFailed(f"fhirServer answered HTTP {reply.status}")
        try:
            return reply.json()
        except Failed:
            raise FetchFailed("fhirServer answered with something that is not JSON") from None


def _search_url(target: Target, relative_url: str) -> str:
    path, _, query = relative_url.partition("?")
    params: list[tuple[str, str]] = []
    for k, v in parse_qsl(query, keep_blank_values=True):
        if k in _PATIENT_PARAMS and "/" not in v:
            v = f"Patient/{v}"
        params.append((k, v))
    url = target.join(path)
    return f"{url}?{urlencode(params, quote_via=quote, safe=':,|')}" if params else url


def _next_link(bundle: Mapping[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None


class FhirFetcher:
    """Fetches missing prefetch keys; one instance per process, on the shared outbound gate."""

    def __init__(self, settings: Settings, outbound: OutboundClient | None = None) -> None:
        self.settings = settings
        self.outbound = outbound or OutboundClient(connect_timeout=settings.fhir_timeout_seconds)
        # Cap a single response well above a sane search page, far below memory trouble.
        self.max_response_bytes = 4 * settings.max_body_bytes

    async def start(self) -> None:
        await self.outbound.start()

    async def close(self) -> None:
        await self.outbound.close()

    async def _fetch_key(self, reader: _FhirReader, relative_url: str) -> Any:
        data = await reader.get(_search_url(reader.target, relative_url))
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
            page = await reader.get(link, paging=True)
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
            "link": [
                ln for ln in data.get("link") or [] if isinstance(ln, dict) and ln.get("relation") != "next"
            ],
        }

    async def fetch(
        self,
        request: HookRequest,
        templates: Mapping[str, str],
        keys: list[str],
        reach: Reach = STRICT,
    ) -> dict[str, Any]:
        """Resources for `keys`, or PreconditionFailed naming every key that could not be had.

        `reach` is the caller's (`Caller.reach`): which schemes and addresses it may use."""
        if not keys:
            return {}
        if not request.fhir_server:
            raise PreconditionFailed(
                f"prefetch is missing {', '.join(keys)} and the request has no fhirServer to fetch them from",
                expression=[f"prefetch.{k}" for k in keys],
            )
        try:
            target = Target.parse(request.fhir_server)
        except ValueError:
            raise PreconditionFailed(
                f"prefetch is missing {', '.join(keys)} and fhirServer is not a plain http(s) base URL",
                expression=[f"prefetch.{k}" for k in keys],
            ) from None
        auth = request.fhir_authorization
        reader = _FhirReader(
            self.outbound,
            target,
            reach,
            f"Bearer {auth['access_token']}" if auth else None,
            self.max_response_bytes,
            self.settings.fhir_timeout_seconds,
        )
        tasks: dict[str, asyncio.Task[Any]] = {}
        reasons: dict[str, str] = {}
        for key in keys:
            try:
                url = render(templates[key], request.context)
            except UnresolvedToken as e:
                reasons[key] = str(e)
                continue
            tasks[key] = asyncio.create_task(self._fetch_key(reader, url))
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
