"""Adding a service touches nothing outside its own module, discovery entry and tests: the example
`shock-index` service, given through the `hooks_file` setting, appears in discovery, OpenAPI, the
metrics and the sandbox like the shipped ones."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from cds.auth import mint_dev_token
from cds.hooks.discovery import Discovery
from cds.runtime.settings import Settings, load_settings
from cds.sandbox.runner import local_service, run_all
from cds.sandbox.scenarios import load_scenarios
from cds.web.app import create_app

HERE = Path(__file__).resolve().parent
HOOKS = HERE / "hooks.json"
SHIPPED = Settings().hooks_file
BASE = "http://localhost"


def four_services(tmp: Path) -> Path:
    """The shipped discovery file plus the example's entry, as a deployment would write it."""
    shipped = json.loads(SHIPPED.read_text())["services"]
    example = json.loads(HOOKS.read_text())["services"]
    path = tmp / "hooks.json"
    path.write_text(json.dumps({"services": shipped + example}))
    return path


def _settings(tmp: Path, hooks_file: Path) -> Settings:
    return load_settings(dev=True, data_dir=tmp / "data", hooks_file=hooks_file)


def _get(client: TestClient, settings: Settings, path: str):
    return client.get(path, headers={"Authorization": f"Bearer {mint_dev_token(settings, BASE + path)}"})


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Settings]]:
    tmp = tmp_path_factory.mktemp("four")
    settings = _settings(tmp, four_services(tmp))
    with TestClient(create_app(settings), base_url=BASE) as client:
        yield client, settings


def test_the_example_is_not_shipped() -> None:
    assert "shock-index" not in Discovery.load(SHIPPED).services


def test_it_appears_in_discovery_without_its_implementation(app: tuple[TestClient, Settings]) -> None:
    client, settings = app
    services = _get(client, settings, "/cds-services").json()["services"]
    assert [s["id"] for s in services] == [*Discovery.load(SHIPPED).services, "shock-index"]
    example = services[-1]
    assert example == {
        k: v for k, v in json.loads(HOOKS.read_text())["services"][0].items() if k != "implementation"
    }
    assert all("implementation" not in s for s in services)
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and "shock-index" in ready["services"]


def test_it_appears_in_openapi(app: tuple[TestClient, Settings]) -> None:
    client, settings = app
    doc = _get(client, settings, "/openapi.json").json()
    op = doc["paths"]["/cds-services/shock-index"]["post"]
    assert op["operationId"] == "call-shock-index"
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert "vitals" in json.dumps(schema) and "/cds-services/shock-index/feedback" in doc["paths"]


def test_a_call_gets_its_card_and_is_counted_under_its_own_label(app: tuple[TestClient, Settings]) -> None:
    client, settings = app
    body = client.get("/sandbox/api/request", params={"patient": "sbx-sepsis-high", "service": "shock-index"})
    assert body.status_code == 200
    url = "/cds-services/shock-index"
    got = client.post(
        url,
        json=body.json()["request"],
        headers={"Authorization": f"Bearer {mint_dev_token(settings, BASE + url)}"},
    )
    assert got.status_code == 200, got.text
    assert [c["summary"][:20] for c in got.json()["cards"]] == ["Shock index 1.43 (he"]
    metrics = _get(client, settings, "/metrics").text
    assert 'cds_hook_requests_total{service="shock-index",status="200"} 1.0' in metrics
    assert 'cds_cards_total{indicator="warning",service="shock-index"} 1.0' in metrics


def test_the_sandbox_page_lists_it(app: tuple[TestClient, Settings]) -> None:
    client, _ = app
    config = client.get("/sandbox/api/config").json()
    assert "shock-index" in [s["id"] for s in config["services"]]


def test_its_sandbox_scenarios_pass(tmp_path: Path) -> None:
    """The example's own scenario file, run by the sandbox runner against the real server."""
    settings = _settings(tmp_path, HOOKS)
    scenarios = load_scenarios([HERE / "scenarios.yaml"])
    with local_service(create_app, settings) as (base_url, local):
        results = run_all(scenarios, base_url, Discovery.load(HOOKS), lambda aud: mint_dev_token(local, aud))
    assert [(r.differences, r.error) for r in results] == [([], None)] * len(scenarios)


def test_cds_sandbox_check_runs_its_scenarios_from_a_settings_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`cds sandbox check --config` serves the settings' discovery file in-process."""
    from cds.cli import main

    config = tmp_path / "cds.toml"
    config.write_text(f"hooks_file = {json.dumps(str(HOOKS))}\n")
    code = main(["sandbox", "check", str(HERE / "scenarios.yaml"), "--config", str(config)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "0 failed" in out
