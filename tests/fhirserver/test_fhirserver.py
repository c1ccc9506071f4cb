"""The test FHIR server (Medplum's engine + tests/fhirserver/server.js) behaves like a FHIR server:
CRUD, search, paging, auth, and each injectable fault. Other tests rely on all of this."""

from __future__ import annotations

import asyncio
import http.client
import json
import time
import urllib.error
import urllib.request

import pytest
from fhir_server import OPENER

LOINC = "http://loinc.org"
VITALS = "http://terminology.hl7.org/CodeSystem/observation-category"


def observation(oid: str, patient: str, code: str, when: str, value: float = 1.0, **extra) -> dict:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [{"coding": [{"system": VITALS, "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
        "valueQuantity": {
            "value": value,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
        **extra,
    }


def request(server, method: str, path: str, body=None, token=True, timeout: float = 10):
    """One FHIR call; returns (status, headers, parsed body)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{server.base_url}/{path}", data=data, method=method)
    req.add_header("Content-Type", "application/fhir+json")
    if token:
        req.add_header("Authorization", f"Bearer {server.token if token is True else token}")
    try:
        with OPENER.open(req, timeout=timeout) as resp:
            return resp.status, resp.headers, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, err.headers, json.loads(err.read())


def ids(bundle: dict) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


@pytest.fixture
def fhir(fresh_fhir_server):
    fresh_fhir_server.load(
        [
            {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1950-02-03"},
            {"resourceType": "Patient", "id": "p2", "gender": "male"},
            observation("hr-old", "p1", "8867-4", "2024-01-01T08:00:00Z", 70),
            observation("hr-new", "p1", "8867-4", "2024-01-02T08:00:00+02:00", 90),
            observation("rr", "p1", "9279-1", "2024-01-02T07:00:00Z", 16),
            observation("hr-p2", "p2", "8867-4", "2024-01-03T08:00:00Z", 60),
        ]
    )
    return fresh_fhir_server


def test_create_read_update(fhir):
    body = observation("ignored", "p1", "8310-5", "2024-02-01T00:00:00Z", 37.0)
    del body["id"]
    status, headers, created = request(fhir, "POST", "Observation", body)
    assert status == 201
    assert created["id"] and created["meta"]["versionId"]
    assert headers["Location"].startswith(f"{fhir.base_url}/Observation/{created['id']}/_history/")

    status, _, read = request(fhir, "GET", f"Observation/{created['id']}")
    assert status == 200
    assert read["code"]["coding"][0]["code"] == "8310-5"

    read["status"] = "amended"
    status, _, updated = request(fhir, "PUT", f"Observation/{created['id']}", read)
    assert status == 200
    assert updated["id"] == created["id"]
    assert updated["meta"]["versionId"] != created["meta"]["versionId"]

    status, _, outcome = request(fhir, "GET", "Observation/does-not-exist")
    assert status == 404
    assert outcome["resourceType"] == "OperationOutcome"


def test_search_by_patient_and_code(fhir):
    status, _, bundle = request(fhir, "GET", f"Observation?patient=Patient/p1&code={LOINC}|8867-4")
    assert status == 200
    assert bundle["type"] == "searchset"
    assert sorted(ids(bundle)) == ["hr-new", "hr-old"]
    assert bundle["total"] == 2
    assert all(e["fullUrl"].startswith(fhir.base_url) for e in bundle["entry"])

    # Code without system, comma lists, a system that does not match.
    assert sorted(ids(request(fhir, "GET", "Observation?patient=Patient/p1&code=8867-4,9279-1")[2])) == [
        "hr-new",
        "hr-old",
        "rr",
    ]
    assert (
        ids(request(fhir, "GET", "Observation?patient=Patient/p1&code=http://snomed.info/sct|8867-4")[2])
        == []
    )
    # A bare id is accepted for a reference parameter, as real servers do.
    assert sorted(ids(request(fhir, "GET", "Observation?patient=p1&code=8867-4")[2])) == ["hr-new", "hr-old"]
    assert ids(request(fhir, "GET", "Observation?subject:Patient=p2")[2]) == ["hr-p2"]


def test_service_query_shape(fhir):
    """The query the service's fallback sends: newest first, by instant (time zones honoured)."""
    status, _, bundle = request(
        fhir, "GET", "Observation?patient=Patient/p1&category=vital-signs&_sort=-date&_count=200"
    )
    assert status == 200
    # hr-new is 06:00Z on Jan 2, before rr at 07:00Z although its local time reads later.
    assert ids(bundle) == ["rr", "hr-new", "hr-old"]
    status, _, patient = request(fhir, "GET", "Patient/p1")
    assert (status, patient["birthDate"]) == (200, "1950-02-03")


def test_unsupported_search_is_an_error_not_an_empty_result(fhir):
    for query in (
        "Observation?patient=Patient/p1&value-quantity=gt50",
        "Observation?patient=Patient/p1&no-such-param=1",
        "Observation?_include=Observation:no-such-param",
        "Observation?_include=Patient:link",
        "Observation?_revinclude=Provenance:target",
        "Observation?patient.name=x",
        "Observation?_sort=-nonsense",
        "Observation?code:below=http://loinc.org|8867",
    ):
        status, _, outcome = request(fhir, "GET", query)
        assert status == 400, query
        assert outcome["resourceType"] == "OperationOutcome"
    assert request(fhir, "GET", "NotAType?x=1")[0] == 404


def test_auth_rejected_and_logged_without_token(fhir):
    fhir.reset()
    status, headers, outcome = request(fhir, "GET", "Patient/p1", token=None)
    assert status == 401
    assert outcome["resourceType"] == "OperationOutcome"
    assert headers["WWW-Authenticate"] == "Bearer"
    assert request(fhir, "GET", "Patient/p1", token="wrong-token")[0] == 401
    assert request(fhir, "GET", "Patient/p1")[0] == 200

    log = fhir.requests()
    assert [(r["auth_present"], r["auth_ok"], r["status"]) for r in log] == [
        (False, False, 401),
        (True, False, 401),
        (True, True, 200),
    ]
    assert all(r["path"] == "/fhir/R4/Patient/p1" for r in log)
    assert fhir.token not in json.dumps(log)
    fhir.reset()
    assert fhir.requests() == []


def test_paging_links(fresh_fhir_server):
    fhir = fresh_fhir_server
    fhir.load(
        [{"resourceType": "Patient", "id": "many"}]
        + [observation(f"o{i:02d}", "many", "8867-4", f"2024-03-01T00:{i:02d}:00Z", i) for i in range(45)]
    )
    path = "Observation?patient=Patient/many&_sort=-date&_count=20"
    seen, pages = [], 0
    url = f"{fhir.base_url}/{path}"
    while url:
        status, _, bundle = request(fhir, "GET", url.removeprefix(fhir.base_url + "/"))
        assert status == 200
        assert bundle["total"] == 45
        seen += ids(bundle)
        pages += 1
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        assert ("previous" in links) == (pages > 1)
        url = links.get("next")
    assert pages == 3
    assert seen == [f"o{i:02d}" for i in reversed(range(45))]
    # Default page size is 20; _summary=count gives the total only.
    assert len(request(fhir, "GET", "Observation?patient=Patient/many")[2]["entry"]) == 20
    summary = request(fhir, "GET", "Observation?patient=Patient/many&_summary=count")[2]
    assert summary["total"] == 45 and "entry" not in summary


def test_transaction_resolves_urn_uuid_references(fresh_fhir_server):
    fhir = fresh_fhir_server
    pid = "urn:uuid:9c5f4d6e-1111-4222-8333-944455556666"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": pid,
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    **observation("x", "x", "8867-4", "2024-01-01T00:00:00Z"),
                    "subject": {"reference": pid},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    del bundle["entry"][1]["resource"]["id"]
    status, _, response = request(fhir, "POST", "", bundle)
    assert status == 200
    assert response["type"] == "transaction-response"
    new_patient = response["entry"][0]["response"]["location"].split("/")[1]
    found = request(fhir, "GET", f"Observation?patient=Patient/{new_patient}")[2]
    assert found["total"] == 1


def test_load_keeps_ids_and_rewrites_urn_references(fresh_fhir_server):
    fhir = fresh_fhir_server
    loaded = fhir.load(
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {"fullUrl": "urn:uuid:aaaa", "resource": {"resourceType": "Patient", "id": "aaaa"}},
                {
                    "fullUrl": "urn:uuid:bbbb",
                    "resource": {
                        **observation("bbbb", "x", "8867-4", "2024-01-01T00:00:00Z"),
                        "subject": {"reference": "urn:uuid:aaaa"},
                    },
                },
            ],
        }
    )
    assert loaded == {"Patient": 1, "Observation": 1}
    assert ids(request(fhir, "GET", "Observation?patient=Patient/aaaa")[2]) == ["bbbb"]
    assert fhir.stats() == {"Patient": 1, "Observation": 1}


def test_service_client_reads_and_pages(fhir):
    """The service's own FHIR reader against this server: search, sort, read, follow `next`."""
    from cds.hooks.fhirfetch import _EhrToken, _FhirReader, _search_url
    from cds.runtime.outbound import LOCAL, OutboundClient, Target

    async def run():
        outbound = OutboundClient()
        target = Target.parse(fhir.base_url)
        reader = _FhirReader(outbound, target, LOCAL, _EhrToken(fhir.token), 1 << 20, 5.0)

        async def get(query: str) -> dict:
            return await reader.get(_search_url(target, query), query)

        try:
            newest = await get("Observation?patient=p1&category=vital-signs&_sort=-date&_count=200")
            patient = await get("Patient/p1")
            page = await get("Observation?_count=2")
            everything = list(page.get("entry", []))
            while nxt := next((ln["url"] for ln in page.get("link", []) if ln["relation"] == "next"), None):
                page = await reader.get(nxt, "Observation?_count=2", paging=True)
                everything += page.get("entry", [])
        finally:
            await outbound.close()
        return [e["resource"]["id"] for e in newest["entry"]], patient["gender"], len(everything)

    newest, gender, count = asyncio.run(run())
    assert newest == ["rr", "hr-new", "hr-old"]
    assert gender == "female"
    assert count == 4
    first = fhir.requests()[0]
    assert first["path"].startswith("/fhir/R4/Observation?")
    assert first["auth_ok"]


# ------------------------------------------------------------------ faults


def test_fault_slow(fhir):
    with fhir.fault("slow", delay_ms=400):
        started = time.monotonic()
        status, _, patient = request(fhir, "GET", "Patient/p1")
        assert status == 200 and patient["id"] == "p1"
        assert time.monotonic() - started >= 0.4
    assert fhir.requests()[-1]["fault"] == "slow"


def test_fault_hang_needs_a_client_timeout(fhir):
    with fhir.fault("hang"), pytest.raises(TimeoutError):
        request(fhir, "GET", "Patient/p1", timeout=0.3)


def test_fault_error_status(fhir):
    with fhir.fault("error500"):
        status, _, outcome = request(fhir, "GET", "Patient/p1")
    assert status == 500 and outcome["resourceType"] == "OperationOutcome"
    with fhir.fault("error500", status=503):
        assert request(fhir, "GET", "Patient/p1")[0] == 503
    assert request(fhir, "GET", "Patient/p1")[0] == 200


def test_fault_garbage(fhir):
    with fhir.fault("garbage"):
        status, body = fhir.get("Observation?patient=Patient/p1")
    assert status == 200
    assert isinstance(body, str) and "<html>" in body


def test_fault_huge(fhir):
    with fhir.fault("huge", count=50000):
        started = time.monotonic()
        with OPENER.open(
            urllib.request.Request(
                f"{fhir.base_url}/Observation?patient=Patient/p1",
                headers={"Authorization": f"Bearer {fhir.token}"},
            ),
            timeout=30,
        ) as resp:
            raw = resp.read()
        elapsed = time.monotonic() - started
        # Reads are not affected by "huge".
        assert request(fhir, "GET", "Patient/p1")[0] == 200
    assert len(raw) > 20_000_000, len(raw)
    bundle = json.loads(raw)
    assert bundle["total"] == 50000 and len(bundle["entry"]) == 50000
    assert elapsed < 30


def test_fault_page_forever(fhir):
    with fhir.fault("page-forever"):
        path = "Observation?patient=Patient/p1&_count=1"
        for page in range(2, 7):
            bundle = request(fhir, "GET", path)[2]
            nxt = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
            assert f"_page={page}" in nxt
            path = nxt.removeprefix(fhir.base_url + "/")


def test_fault_reset_and_truncate(fhir):
    with fhir.fault("reset"), pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
        request(fhir, "GET", "Patient/p1")
    with fhir.fault("truncate"), pytest.raises(http.client.IncompleteRead):
        request(fhir, "GET", "Observation?patient=Patient/p1")
    assert request(fhir, "GET", "Patient/p1")[0] == 200


def test_fault_scoped_by_match_and_times(fhir):
    fhir.fault("error500", match=r"/Observation", times=1)
    assert request(fhir, "GET", "Patient/p1")[0] == 200
    assert request(fhir, "GET", "Observation?patient=Patient/p1")[0] == 500
    assert request(fhir, "GET", "Observation?patient=Patient/p1")[0] == 200
    assert [r["fault"] for r in fhir.requests()] == ["none", "error500", "none"]


def test_unknown_fault_mode_is_refused(fhir):
    with pytest.raises(ValueError):
        fhir.fault("explode")


def test_include_adds_referenced_resources_once(fhir):
    """`_include`, as real servers (HAPI, Epic, Medplum's own) answer the services' prefetch queries;
    the ignore-include fault mimics a server that drops it and returns the matches only."""
    fhir.load(
        [
            {"resourceType": "Medication", "id": "inc-med", "code": {"text": "warfarin"}},
            *(
                {
                    "resourceType": "MedicationRequest",
                    "id": f"inc-mr{i}",
                    "status": "active",
                    "intent": "order",
                    "subject": {"reference": "Patient/p1"},
                    "medicationReference": {"reference": "Medication/inc-med"},
                }
                for i in (1, 2)
            ),
            {
                "resourceType": "MedicationRequest",
                "id": "inc-mr3",
                "status": "active",
                "intent": "order",
                "subject": {"reference": "Patient/p1"},
                "medicationReference": {"reference": "Medication/missing"},
            },
        ]
    )
    query = "MedicationRequest?patient=Patient/p1&_include=MedicationRequest:medication&_count=2"
    status, _, bundle = request(fhir, "GET", query)
    assert status == 200
    modes = [
        (e["resource"]["resourceType"], e["resource"]["id"], e["search"]["mode"]) for e in bundle["entry"]
    ]
    assert [m for m in modes if m[2] == "include"] == [("Medication", "inc-med", "include")]
    assert all(m[0] == "MedicationRequest" for m in modes if m[2] == "match")
    nxt = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
    assert "_include=MedicationRequest%3Amedication" in nxt  # later pages include too
    with fhir.fault("ignore-include"):
        status, _, bundle = request(fhir, "GET", query)
    assert status == 200
    assert {e["search"]["mode"] for e in bundle["entry"]} == {"match"}
