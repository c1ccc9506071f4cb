"""Finding 11: development mode takes the audience of tokens (and the sandbox's token minting)
from the Host header, so it answers only local names: a page whose DNS name is rebound to
127.0.0.1 gets 400 and no token."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from cds.runtime.settings import load_settings
from cds.web.app import create_app

AUD_PATH = "/cds-services/deterioration"


@pytest.fixture
def dev_app(tmp_path: Path):
    return create_app(load_settings(dev=True, data_dir=tmp_path))


@pytest.mark.parametrize("origin", ["http://127.0.0.1:8080", "http://localhost:8080", "http://localhost"])
def test_local_names_get_tokens(dev_app, origin: str) -> None:
    with TestClient(dev_app, base_url=origin) as c:
        resp = c.post("/sandbox/api/token", json={"aud": origin + AUD_PATH})
        assert resp.status_code == 200, resp.text
        token = resp.json()["token"]
        assert (
            c.get("/cds-services", headers={"Authorization": f"Bearer {token}"}).status_code == 401
        )  # aud is the hook
        hook_token = c.post("/sandbox/api/token", json={"aud": origin + "/cds-services"}).json()["token"]
        assert c.get("/cds-services", headers={"Authorization": f"Bearer {hook_token}"}).status_code == 200


@pytest.mark.parametrize(
    "origin",
    [
        "http://rebound.attacker.example",
        "http://rebound.attacker.example:8080",
        "http://127.0.0.1.nip.io:8080",
        "http://[::1]:8080",
        "http://10.0.0.5:8080",
    ],
)
def test_other_host_names_are_refused_in_dev_mode(dev_app, origin: str) -> None:
    with TestClient(dev_app, base_url=origin) as c:
        resp = c.post("/sandbox/api/token", json={"aud": origin + AUD_PATH})
        assert resp.status_code == 400 and "token" not in resp.text
        assert c.get("/cds-services").status_code == 400
        assert c.get("/sandbox/api/config").status_code == 400


def test_public_base_url_host_is_answered_in_dev_mode(tmp_path: Path) -> None:
    app = create_app(
        load_settings(dev=True, data_dir=tmp_path, public_base_url="http://devbox.internal:8080")
    )
    with TestClient(app, base_url="http://devbox.internal:8080") as c:
        resp = c.post("/sandbox/api/token", json={"aud": "http://devbox.internal:8080" + AUD_PATH})
        assert resp.status_code == 200


def test_production_mode_does_not_restrict_host(tmp_path: Path) -> None:
    """Outside dev mode the audience comes from public_base_url (required with trusted clients)."""
    with TestClient(create_app(load_settings(data_dir=tmp_path)), base_url="http://cds.example.org") as c:
        assert c.get("/healthz").status_code == 200
