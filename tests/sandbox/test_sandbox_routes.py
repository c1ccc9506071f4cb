"""The sandbox's JSON API and page, mounted by the app when the sandbox is enabled."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from cds.runtime.settings import SettingsError, load_settings
from cds.sandbox.patients import sample_patients
from cds.web.app import create_app
from tests.auth.test_sandbox import SANDBOX as SANDBOX_CLIENT
from tests.auth.test_sandbox import sandbox_token
from tests.shipped_services import SERVICE_IDS


def _bearer(url: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + sandbox_token(url)}


def _client(tmp: Path, **overrides: object) -> TestClient:
    return TestClient(create_app(load_settings(data_dir=tmp, **overrides)), base_url="http://localhost")


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with _client(tmp_path_factory.mktemp("dev"), dev=True) as c:
        yield c


def test_page_and_static_files_are_served_with_a_strict_policy(dev: TestClient) -> None:
    page = dev.get("/sandbox")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert 'src="sandbox/static/sandbox.js"' in page.text and "http" not in page.text.split("<body>")[0]
    for name in ("sandbox.js", "markdown.js", "sandbox.css"):
        assert dev.get(f"/sandbox/static/{name}").status_code == 200
    assert dev.get("/sandbox/", follow_redirects=False).headers["location"].endswith("/sandbox")


def test_api_lists_patients_and_builds_requests(dev: TestClient) -> None:
    config = dev.get("/sandbox/api/config").json()
    assert config["dev"] is True and [s["id"] for s in config["services"]] == list(SERVICE_IDS)
    listed = dev.get("/sandbox/api/patients").json()["patients"]
    assert [p["id"] for p in listed] == [p.id for p in sample_patients()]
    warfarin = next(p for p in listed if p["id"] == "sbx-warfarin-af")
    assert any("Naproxen" in o["label"] for o in warfarin["orders"])
    got = dev.get(
        "/sandbox/api/request",
        params={
            "patient": "sbx-warfarin-af",
            "service": "medication-risk",
            "orders": "sbx-warfarin-af-naproxen",
        },
    ).json()
    assert got["url"] == "http://localhost/cds-services/medication-risk"
    entries = got["request"]["context"]["draftOrders"]["entry"]
    assert [e["resource"]["id"] for e in entries] == ["sbx-warfarin-af-naproxen"]
    edited = {"resourceType": "MedicationRequest", "id": "x", "status": "draft", "intent": "order"}
    posted = dev.post(
        "/sandbox/api/request",
        json={
            "patient": "sbx-warfarin-af",
            "service": "medication-risk",
            "draftOrders": [edited],
            "prefetch": False,
        },
    ).json()["request"]
    assert posted["context"]["draftOrders"]["entry"] == [{"resource": edited}] and "prefetch" not in posted


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"patient": "nobody", "service": "deterioration"}, "no sample patient 'nobody'"),
        ({"patient": "sbx-healthy-adult", "service": "nothing"}, "no service 'nothing'"),
        ({"service": "deterioration"}, "give a sample patient id"),
        ({"patient": "sbx-warfarin-af", "service": "medication-risk", "orders": "zzz"}, "no draft order zzz"),
    ],
)
def test_bad_requests_say_what_is_wrong(dev: TestClient, params: dict, message: str) -> None:
    resp = dev.get("/sandbox/api/request", params=params)
    assert resp.status_code == 400
    assert message in resp.json()["issue"][0]["diagnostics"]


def test_tokens_only_for_this_service_and_only_in_dev_mode(dev: TestClient, tmp_path: Path) -> None:
    ok = dev.post("/sandbox/api/token", json={"aud": "http://localhost/cds-services/deterioration"})
    assert ok.status_code == 200 and ok.json()["token"].count(".") == 2
    for aud in ("https://elsewhere.example/cds-services/x", "http://localhost/metrics", None):
        assert dev.post("/sandbox/api/token", json={"aud": aud}).status_code == 400
    with _client(
        tmp_path, sandbox=True, trusted_clients=[SANDBOX_CLIENT], public_base_url="http://localhost"
    ) as prod:
        assert prod.get("/sandbox").status_code == 200
        url = "http://localhost/sandbox/api/config"
        assert prod.get("/sandbox/api/config", headers=_bearer(url)).json()["dev"] is False
        url = "http://localhost/sandbox/api/token"
        refused = prod.post(
            "/sandbox/api/token",
            json={"aud": "http://localhost/cds-services/deterioration"},
            headers=_bearer(url),
        )
        assert refused.status_code == 403 and "paste a token" in refused.json()["issue"][0]["diagnostics"]


def test_outside_dev_mode_the_sandbox_api_needs_a_jwt_and_a_client_to_sign_it(tmp_path: Path) -> None:
    """Issue 15, finding 6: `sandbox = true` outside dev mode no longer serves an open API."""
    with pytest.raises(SettingsError, match="trusted_clients"):
        load_settings(data_dir=tmp_path, sandbox=True)
    with _client(
        tmp_path, sandbox=True, trusted_clients=[SANDBOX_CLIENT], public_base_url="http://localhost"
    ) as prod:
        for method, path in [
            ("GET", "/sandbox/api/config"),
            ("GET", "/sandbox/api/patients"),
            ("POST", "/sandbox/api/request"),
            ("POST", "/sandbox/api/token"),
        ]:
            resp = prod.request(method, path, json={})
            assert resp.status_code == 401, (path, resp.text)
            wrong_aud = prod.request(
                method, path, json={}, headers=_bearer("http://testserver/sandbox/api/x")
            )
            assert wrong_aud.status_code == 401, path
        assert prod.get("/sandbox/static/sandbox.js").status_code == 200  # the page's own files


def test_every_sandbox_endpoint_has_a_body_limit(dev: TestClient) -> None:
    """Issue 15, finding 6: /sandbox/api/request echoed a 31.7 MB body; now 413 above 64 KiB."""
    big = b'{"patient": "' + b"x" * (200 * 1024) + b'", "service": "deterioration"}'
    for path in ("/sandbox/api/request", "/sandbox/api/token"):
        resp = dev.post(path, content=big, headers={"content-type": "application/json"})
        assert resp.status_code == 413, path

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
            yield big[:1000]
            yield big[1000:]

        streamed = dev.post(path, content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413, path
        assert len(streamed.content) < 1000


def test_sandbox_is_off_in_production_settings(tmp_path: Path) -> None:
    with _client(tmp_path) as prod:
        assert prod.get("/sandbox").status_code == 404
        assert prod.get("/sandbox/api/patients").status_code == 404
