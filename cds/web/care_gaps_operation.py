"""`POST /fhir/Measure/$care-gaps`: the Da Vinci DEQM gaps-in-care operation.

Authenticated by the JWT gate like the hooks (cds/web/authgate.py). The service stores no patient
data, so the patients' data comes in the request: a Parameters resource with

    periodStart, periodEnd (valueDate, required)      the measurement period
    bundle (resource, 1..*)                           FHIR Bundles with the patients' resources
    status (valueCode, 0..*)                          open-gap | closed-gap | prospective-gap |
                                                      not-applicable (default: all)
    measureId / measureUrl (valueString / valueCanonical / valueUri, 0..*)   default: all eight
    subject (valueString "Patient/<id>", 0..1)        only this patient

and the answer is a Parameters resource with one gaps-in-care Bundle per patient
(cds/services/care_gaps/measures/deqm.py). Bad input is a 400 OperationOutcome naming the parameter.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cds.fhir.dates import utcnow
from cds.fhir.record import resources_of
from cds.runtime.errors import BadRequest, HTTPProblem, problem_response
from cds.runtime.settings import Settings
from cds.services.care_gaps.measures.deqm import GAP_STATUSES, care_gaps_parameters, gaps_bundle
from cds.services.care_gaps.measures.engine import UnknownMeasureError, evaluate, resolve_measure
from cds.services.care_gaps.measures.period import Period
from cds.services.care_gaps.measures.sources import SourceError, patient_records
from cds.web.body import read_json

PATH = "/fhir/Measure/$care-gaps"
_VALUE_KEYS = ("valueString", "valueCanonical", "valueUri", "valueCode", "valueDate", "valueDateTime")


def _value(p: dict[str, Any]) -> Any:
    return next((p[k] for k in _VALUE_KEYS if k in p), None)


def parse_request(body: Any) -> tuple[Period, list[dict[str, Any]], list[str], list[str] | None, str | None]:
    """(period, resources, statuses, measures, subject id) from the operation's Parameters."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest("the body must be a FHIR Parameters resource", expression=["Parameters"])
    params = [
        p for p in body.get("parameter") or [] if isinstance(p, dict) and isinstance(p.get("name"), str)
    ]

    def values(name: str) -> list[Any]:
        return [_value(p) for p in params if p["name"] == name]

    start, end = values("periodStart"), values("periodEnd")
    if len(start) != 1 or len(end) != 1 or not isinstance(start[0], str) or not isinstance(end[0], str):
        raise BadRequest(
            "periodStart and periodEnd are required, once each (valueDate)", expression=["periodStart"]
        )
    try:
        period = Period.parse(start[0], end[0])
    except ValueError as e:
        raise BadRequest(f"periodStart/periodEnd: {e}", expression=["periodStart"]) from None
    statuses = values("status") or list(GAP_STATUSES)
    bad = [s for s in statuses if s not in GAP_STATUSES]
    if bad:
        raise BadRequest(
            f"status must be one of {', '.join(GAP_STATUSES)} (got {bad[0]!r})", expression=["status"]
        )
    try:
        names = values("measureId") + values("measureUrl")
        measures = [resolve_measure(str(m)) for m in names] if names else None
    except UnknownMeasureError as e:
        raise BadRequest(str(e.args[0]), expression=["measureId"]) from None
    subject = values("subject")
    subject_id = str(subject[0]).rsplit("/", 1)[-1] if subject and subject[0] else None
    bundles = [p.get("resource") for p in params if p["name"] == "bundle"]
    if not bundles or not all(isinstance(b, dict) and b.get("resourceType") == "Bundle" for b in bundles):
        raise BadRequest("the patients' data is required: one or more `bundle` parameters (a Bundle resource)",
                         expression=["bundle"])  # fmt: skip
    resources = [r for b in bundles for r in resources_of(b) if isinstance(r, dict)]
    return period, resources, statuses, measures, subject_id


def care_gaps_report(body: Any) -> dict[str, Any]:
    """The operation's answer for a parsed JSON body (raises BadRequest)."""
    period, resources, statuses, measures, subject_id = parse_request(body)
    now = utcnow()
    try:
        records = [r for r in patient_records(resources) if subject_id is None or r.patient_id == subject_id]
    except SourceError:
        records = []
    if not records:
        raise BadRequest("no Patient in the bundles" + (f" with id {subject_id!r}" if subject_id else ""),
                         expression=["bundle"])  # fmt: skip
    return care_gaps_parameters(gaps_bundle(r, evaluate(r, period, measures), now, statuses) for r in records)


def care_gaps_routes(settings: Settings) -> list[BaseRoute]:
    async def endpoint(request: Request) -> Response:
        try:
            body = await read_json(request, settings.max_body_bytes, settings.max_json_depth)
            result = await run_in_threadpool(care_gaps_report, body)
        except HTTPProblem as e:
            return problem_response(e)
        return Response(orjson.dumps(result), media_type="application/fhir+json")

    return [Route(PATH, endpoint, methods=["POST"])]
