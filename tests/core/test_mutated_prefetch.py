"""Real prefetch with any one field mutated never gets a 500, for every service in the discovery
document (issue 15, finding 5).

The charts are the sandbox's sample patients and a few Synthea charts, turned into the exact
prefetch each service asks for (the sandbox's FHIR search answers the discovery templates). Each
example changes one to three fields anywhere in the prefetch or the draft orders: a different JSON
type, the value wrapped in a list or an object, null, a deleted key, or nested garbage.
"""

from __future__ import annotations

import copy
import gzip
import json
from functools import lru_cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds.hooks.discovery import Discovery
from cds.hooks.prefetch import render
from cds.runtime.settings import REPO_ROOT
from cds.sandbox.fhirsearch import search
from cds.sandbox.patients import sample_patients
from cds.sandbox.requestbuilder import build_request
from tests.conftest import SHARED_DATA
from tests.core.conftest import Caller

DISCOVERY = Discovery.load(REPO_ROOT / "hooks.json")
SERVICES = sorted(DISCOVERY.services)
SYNTHEA_CHARTS = 3  # the smallest few: enough variety, quick to evaluate
MAX_RESOURCES_PER_KEY = 60

Path = tuple[Any, ...]

garbage = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(
        ["", " ", "x", " Patient/p", "urn:uuid:x", "#p", "2024-02-30", "10*3/uL", "http://loinc.org"]
    )
    | st.text(max_size=12),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
    max_leaves=8,
)


def _paths(node: Any, prefix: Path = ()) -> list[Path]:
    """Every path (keys and list indexes) below a JSON value."""
    out: list[Path] = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append((*prefix, k))
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.append((*prefix, i))
            out.extend(_paths(v, (*prefix, i)))
    return out


def _synthea_requests() -> list[dict[str, Any]]:
    folder = SHARED_DATA / "synthea-r4"
    if not folder.is_dir():
        return []
    files = sorted(folder.glob("*.json.gz"), key=lambda p: (p.stat().st_size, p.name))[:SYNTHEA_CHARTS]
    out = []
    for f in files:
        bundle = json.loads(gzip.decompress(f.read_bytes()))
        resources = [e["resource"] for e in bundle.get("entry", []) if isinstance(e.get("resource"), dict)]
        patient = next(r for r in resources if r["resourceType"] == "Patient")
        # Synthea references its patient as urn:uuid:<id>; a FHIR server would answer Patient/<id>.
        for r in resources:
            for field in ("subject", "patient"):
                ref = r.get(field)
                if isinstance(ref, dict) and ref.get("reference") == f"urn:uuid:{patient['id']}":
                    ref["reference"] = f"Patient/{patient['id']}"
        for sid in SERVICES:
            entry = DISCOVERY.services[sid]
            context: dict[str, Any] = {"userId": "Practitioner/1", "patientId": patient["id"]}
            if entry.hook == "order-sign":
                context["draftOrders"] = {"resourceType": "Bundle", "type": "collection", "entry": []}
            prefetch = {}
            for key, template in entry.prefetch.items():
                answer = search(resources, render(template, context))
                if answer is not None and answer.get("resourceType") == "Bundle":
                    answer["entry"] = answer.get("entry", [])[:MAX_RESOURCES_PER_KEY]
                if answer is not None:
                    prefetch[key] = answer
            out.append(
                {
                    "hook": entry.hook,
                    "hookInstance": "00000000-0000-4000-8000-000000000001",
                    "context": context,
                    "prefetch": prefetch,
                    "_service": sid,
                }
            )
    return out


@lru_cache(maxsize=1)
def real_requests() -> dict[str, list[dict[str, Any]]]:
    """Per service: hook requests built from real charts (sample patients, Synthea)."""
    by_service: dict[str, list[dict[str, Any]]] = {sid: [] for sid in SERVICES}
    for patient in sample_patients():
        for sid in SERVICES:
            by_service[sid].append(build_request(DISCOVERY, sid, patient.id))
    for req in _synthea_requests():
        by_service[req.pop("_service")].append(req)
    return by_service


def _mutate(body: dict[str, Any], path: Path, how: str, value: Any) -> None:
    parent: Any = body
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    old = parent[last]
    if how == "delete" and isinstance(parent, dict):
        del parent[last]
    elif how == "wrap-list":
        parent[last] = [old]
    elif how == "wrap-object":
        parent[last] = {"value": old}
    elif how == "unwrap" and isinstance(old, list | dict) and old:
        parent[last] = next(iter(old.values())) if isinstance(old, dict) else old[0]
    else:
        parent[last] = value


@st.composite
def mutated_request(draw: st.DrawFn, service: str) -> dict[str, Any]:
    body = copy.deepcopy(draw(st.sampled_from(real_requests()[service])))
    for _ in range(draw(st.integers(1, 3))):
        roots = [("prefetch",)]
        if "draftOrders" in body.get("context", {}):
            roots.append(("context", "draftOrders"))
        paths = [p for root in roots for p in _paths(_get(body, root), root) if _get(body, root) is not None]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        how = draw(
            st.sampled_from(["replace", "replace", "replace", "delete", "wrap-list", "wrap-object", "unwrap"])
        )
        _mutate(body, path, how, draw(garbage))
    return body


def _get(body: Any, path: Path) -> Any:
    for step in path:
        if not isinstance(body, dict | list):
            return None
        try:
            body = body[step]
        except (KeyError, IndexError, TypeError):
            return None
    return body


@pytest.mark.parametrize("service", SERVICES)
@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
def test_mutated_real_prefetch_never_gets_a_500(caller: Caller, service: str, data: st.DataObject) -> None:
    body = data.draw(mutated_request(service))
    resp = caller.post(f"/cds-services/{service}", json=body)
    assert resp.status_code < 500, resp.text
    if resp.status_code == 200:
        assert isinstance(resp.json()["cards"], list)
    else:
        assert resp.json()["resourceType"] == "OperationOutcome"


def test_every_service_has_real_charts() -> None:
    """The test above mutates real prefetch for each service in the discovery document."""
    reqs = real_requests()
    assert set(reqs) == set(DISCOVERY.services)
    for sid, bodies in reqs.items():
        assert len(bodies) >= len(sample_patients()), sid
        assert any(len(_paths(b["prefetch"])) > 100 for b in bodies), sid
