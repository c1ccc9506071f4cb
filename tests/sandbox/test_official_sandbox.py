"""The official CDS Hooks Sandbox (https://sandbox.cds-hooks.org) against this service, configured
as the README tells QA: CORS for its origin, its issuer trusted. Its tokens are ES384 with its kid
and jku (tests/auth has a test-only key pair standing in for it), it fails on an empty service
list, and it renders `detail` as Markdown with raw HTML passed through."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from cds.auth.clients import SANDBOX_ISSUER, SANDBOX_JKU
from cds.hooks.discovery import Discovery
from cds.runtime.settings import load_settings
from cds.sandbox.requestbuilder import build_request
from cds.sandbox.scenarios import spec_problems
from cds.web.app import create_app
from tests.auth.test_sandbox import sandbox_token

ORIGIN = "https://sandbox.cds-hooks.org"
BASE = "http://localhost"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data_dir: Path = tmp_path_factory.mktemp("official-sandbox")
    settings = load_settings(
        data_dir=data_dir,
        public_base_url=BASE,
        cors_origins=[ORIGIN],
        trusted_clients=[
            {
                "iss": SANDBOX_ISSUER,
                "jku": [SANDBOX_JKU],
                "jwks_file": "builtin:cds-hooks-sandbox",
                "algorithms": ["ES384"],
            }
        ],
    )
    with TestClient(create_app(settings), base_url=BASE) as c:
        yield c


def test_discovery_is_not_empty_and_allows_the_sandbox_origin(client: TestClient) -> None:
    url = f"{BASE}/cds-services"
    resp = client.get(url, headers={"Origin": ORIGIN, "Authorization": f"Bearer {sandbox_token(url)}"})
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] == ORIGIN
    services = resp.json()["services"]
    assert services, "the sandbox treats an empty service list as a failure"
    for s in services:
        assert {"id", "hook", "title", "description"} <= set(s) and s.get("prefetch")


def test_preflight_for_a_hook_call_is_answered(client: TestClient) -> None:
    resp = client.options(
        "/cds-services/care-gaps",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in resp.headers["access-control-allow-headers"].lower()
    evil = client.options(
        "/cds-services/care-gaps",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert evil.headers.get("access-control-allow-origin") != "https://evil.example"


def test_private_network_preflight_is_answered_for_configured_origins(client: TestClient) -> None:
    """Issue 21, item 5: Chrome's Private Network Access preflight gets 200 and the allow header
    for a configured origin; another origin still gets neither."""
    headers = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
        "Access-Control-Request-Private-Network": "true",
    }
    resp = client.options("/cds-services/care-gaps", headers={"Origin": ORIGIN, **headers})
    assert resp.status_code == 200, resp.text
    assert resp.headers["access-control-allow-private-network"] == "true"
    assert resp.headers["access-control-allow-origin"] == ORIGIN
    evil = client.options("/cds-services/care-gaps", headers={"Origin": "https://evil.example", **headers})
    assert evil.status_code == 400
    assert evil.headers.get("access-control-allow-origin") != "https://evil.example"


@pytest.mark.parametrize(
    ("service", "patient"),
    [("care-gaps", "sbx-hypertension-gaps"), ("deterioration", "sbx-sepsis-high")],
)
def test_hook_call_signed_by_the_sandbox_gets_markdown_cards(
    client: TestClient, service: str, patient: str
) -> None:
    discovery = Discovery.load(load_settings().hooks_file)
    body = build_request(discovery, service, patient)
    url = f"{BASE}/cds-services/{service}"
    resp = client.post(
        url, json=body, headers={"Origin": ORIGIN, "Authorization": f"Bearer {sandbox_token(url)}"}
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["access-control-allow-origin"] == ORIGIN
    cards = resp.json()["cards"]
    assert cards
    for card in cards:
        assert spec_problems(card) == [], card["summary"]
    # The same call with the token of another URL is refused (aud is the exact URL called).
    other = client.post(
        url, json=body, headers={"Authorization": f"Bearer {sandbox_token(BASE + '/cds-services')}"}
    )
    assert other.status_code == 401
