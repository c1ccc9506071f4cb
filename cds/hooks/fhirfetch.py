"""The FHIR fallback: fetch the prefetch keys a client did not send, from its `fhirServer`.

All missing keys are fetched concurrently through the outbound gate (`cds.runtime.outbound`), within a
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
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from cds.auth.clients import TrustedClient
from cds.hooks.prefetch import UnresolvedToken, render
from cds.hooks.request import HookRequest
from cds.runtime.errors import PreconditionFailed
from cds.runtime.outbound import STRICT, Failed, OutboundClient, Reach, Refused, Target
from cds.runtime.settings import Settings
from cds.smart.scopes import covers, resource_type
from cds.smart.tokens import BackendTokenError, BackendTokens

log = logging.getLogger("cds.fhir")

# Search parameters that take a Patient reference: sent as Patient/<id>, which every server
# accepts (Medplum's engine accepts only that form).
_PATIENT_PARAMS = frozenset({"patient", "subject"})
_ACCEPT = "application/fhir+json, application/json;q=0.9"


class FetchFailed(Exception):
    """One key could not be fetched; the message is safe to show (no token, no patient data)."""


class _Auth:
    """The Authorization header for one kind of token: the EHR's, ours (backend), or none."""

    async def header(self, relative_url: str) -> str | None:
        return None

    async def refreshed(self, refused: str | None) -> str | None:
        """A new header after the FHIR server answered 401 to `refused`; None: do not retry."""
        return None


class _EhrToken(_Auth):
    def __init__(self, access_token: str) -> None:
        self._header = f"Bearer {access_token}"

    async def header(self, relative_url: str) -> str | None:
        return self._header


class _BackendToken(_Auth):
    """Our own SMART Backend Services token for this client and FHIR server."""

    def __init__(self, tokens: BackendTokens, client: TrustedClient, fhir_server: str, reach: Reach) -> None:
        self.tokens, self.client, self.fhir_server, self.reach = tokens, client, fhir_server, reach

    async def _get(self, stale: str | None = None) -> tuple[str, str | None]:
        assert self.client.backend is not None
        try:
            return await self.tokens.token(
                self.client.iss, self.client.backend, self.fhir_server, self.reach, stale=stale
            )
        except BackendTokenError as e:
            raise FetchFailed(f"backend services: {e}") from None

    async def header(self, relative_url: str) -> str | None:
        token, granted = await self._get()
        if granted is not None and not covers(granted, relative_url):
            raise FetchFailed(
                f"backend services: the authorization server did not grant a scope for {resource_type(relative_url)}"
            )
        return f"Bearer {token}"

    async def refreshed(self, refused: str | None) -> str | None:
        stale = refused.removeprefix("Bearer ") if refused else None
        token, _ = await self._get(stale=stale)
        return f"Bearer {token}"


class _FhirReader:
    """GETs under one fhirServer, with one kind of token, through the outbound gate."""

    def __init__(
        self,
        outbound: OutboundClient,
        target: Target,
        reach: Reach,
        auth: _Auth,
        max_bytes: int,
        timeout: float,
    ) -> None:
        self.outbound = outbound
        self.target = target
        self.reach = reach
        self.auth = auth
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def _send(self, url: str, authorization: str | None, paging: bool) -> Any:
        headers = {"Accept": _ACCEPT}
        if authorization:
            headers["Authorization"] = authorization
        try:
            return await self.outbound.request(
                "GET",
                url,
                target=self.target,
                reach=self.reach,
                headers=headers,
                max_bytes=self.max_bytes,
                timeout=self.timeout,
            )
        except Refused as e:
            if paging and not self.target.admits(url):
                raise FetchFailed("a paging link points outside fhirServer; it was not followed") from None
            raise FetchFailed(f"fhirServer was not queried: {e}") from None
        except Failed as e:
            raise FetchFailed(f"fhirServer: {e}") from None

    async def get(self, url: str, relative_url: str, *, paging: bool = False) -> Any:
        authorization = await self.auth.header(relative_url)
        reply = await self._send(url, authorization, paging)
        if reply.status == 401:
            again = await self.auth.refreshed(authorization)  # ours: a new token, one retry
            if again is not None:
                reply = await self._send(url, again, paging)
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

    def __init__(
        self, settings: Settings, outbound: OutboundClient | None = None, tokens: BackendTokens | None = None
    ) -> None:
        self.settings = settings
        self.outbound = outbound or OutboundClient(connect_timeout=settings.fhir_timeout_seconds)
        self.tokens = tokens
        # Cap a single response well above a sane search page, far below memory trouble.
        self.max_response_bytes = 4 * settings.max_body_bytes

    async def start(self) -> None:
        await self.outbound.start()

    async def close(self) -> None:
        await self.outbound.close()

    async def _fetch_key(self, reader: _FhirReader, relative_url: str) -> Any:
        data = await reader.get(_search_url(reader.target, relative_url), relative_url)
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
            page = await reader.get(link, relative_url, paging=True)
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

    def _readers(
        self, request: HookRequest, target: Target, reach: Reach, client: TrustedClient | None
    ) -> Callable[[str], _FhirReader]:
        """The reader for each relative query, by the token it carries: the EHR's when its scope
        covers the query; else ours when the caller's client has backend credentials; else the
        EHR's all the same if there is one (the server decides), else none (open servers)."""
        ehr = request.fhir_authorization
        ehr_auth: _Auth = _EhrToken(ehr["access_token"]) if ehr else _Auth()
        backend_auth: _Auth | None = None
        if client is not None and client.backend is not None and self.tokens is not None:
            assert request.fhir_server is not None
            backend_auth = _BackendToken(self.tokens, client, request.fhir_server, reach)
        readers: dict[int, _FhirReader] = {}

        def reader_for(relative_url: str) -> _FhirReader:
            auth = ehr_auth
            if backend_auth is not None and not (ehr and covers(ehr.get("scope"), relative_url)):
                auth = backend_auth
            return readers.setdefault(
                id(auth),
                _FhirReader(
                    self.outbound,
                    target,
                    reach,
                    auth,
                    self.max_response_bytes,
                    self.settings.fhir_timeout_seconds,
                ),
            )

        return reader_for

    async def read_many(
        self,
        request: HookRequest,
        reads: list[str],
        reach: Reach = STRICT,
        client: TrustedClient | None = None,
    ) -> list[dict[str, Any]]:
        """Resources read by `Type/id` from the request's fhirServer, best effort: the ones that
        could not be read (refused, missing, timeout) are left out and logged, never a 412."""
        if not reads or not request.fhir_server:
            return []
        try:
            target = Target.parse(request.fhir_server)
        except ValueError:
            return []
        readers = self._readers(request, target, reach, client)

        async def one(query: str) -> Any:
            return await readers(query).get(target.join(query), query)

        tasks = [asyncio.create_task(one(q)) for q in reads]
        _, pending = await asyncio.wait(tasks, timeout=self.settings.fhir_timeout_seconds)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        out: list[dict[str, Any]] = []
        failed = 0
        for query, task in zip(reads, tasks, strict=True):
            ok = task.done() and not task.cancelled() and task.exception() is None
            value = task.result() if ok else None
            if isinstance(value, dict) and f"{value.get('resourceType')}/{value.get('id')}" == query:
                out.append(value)
            else:
                failed += 1
        if failed:
            log.warning("referenced resources not readable from fhirServer", extra={"count": failed})
        return out

    async def fetch(
        self,
        request: HookRequest,
        templates: Mapping[str, str],
        keys: list[str],
        reach: Reach = STRICT,
        client: TrustedClient | None = None,
    ) -> dict[str, Any]:
        """Resources for `keys`, or PreconditionFailed naming every key that could not be had.

        `reach` is the caller's (`Caller.reach`): which schemes and addresses it may use; which
        token each query carries: see `_readers`."""
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
        reader_for = self._readers(request, target, reach, client)

        tasks: dict[str, asyncio.Task[Any]] = {}
        reasons: dict[str, str] = {}
        for key in keys:
            try:
                url = render(templates[key], request.context)
            except UnresolvedToken as e:
                reasons[key] = str(e)
                continue
            tasks[key] = asyncio.create_task(self._fetch_key(reader_for(url), url))
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


# Resources whose `medicationReference` names a Medication that a server may leave out when it
# ignores `_include=...:medication`.
_MEDICATION_USERS = frozenset(
    {"MedicationRequest", "MedicationStatement", "MedicationAdministration", "MedicationDispense"}
)
MAX_MEDICATION_READS = 50  # per hook: a chart rarely holds more distinct referenced Medications


def missing_medication_references(resources: list[Any]) -> list[str]:
    """`Medication/<id>` for each Medication referenced by the orders but absent from `resources`
    (contained ones excepted), sorted, at most MAX_MEDICATION_READS."""
    present: set[str] = set()
    wanted: set[str] = set()
    for r in resources:  # one pass: this runs over the whole chart on every hook
        if not isinstance(r, dict):
            continue
        rtype = r.get("resourceType")
        if rtype == "Medication":
            if isinstance(r.get("id"), str):
                present.add(f"Medication/{r['id']}")
            continue
        if rtype not in _MEDICATION_USERS:
            continue
        ref = r.get("medicationReference")
        target = ref.get("reference") if isinstance(ref, dict) else None
        if not isinstance(target, str) or target.startswith("#"):
            continue
        parts = [p for p in target.split("/") if p]
        if "_history" in parts:
            parts = parts[: parts.index("_history")]
        if len(parts) >= 2 and parts[-2] == "Medication" and _ID.match(parts[-1]):
            wanted.add(f"Medication/{parts[-1]}")
    return sorted(wanted - present)[:MAX_MEDICATION_READS]


_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")  # FHIR id
