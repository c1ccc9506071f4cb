"""Start-up refuses settings that would make the service unsafe or do something else than meant,
with one line saying what to change (never a traceback): `public_base_url` with trusted clients
(so `aud` is never built from a spoofed Host header), top-level keys written inside a TOML table.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from cds.cli import main
from cds.runtime.settings import SettingsError, load_settings
from cds.web.app import create_app
from tests.auth.test_sandbox import sandbox_token

SANDBOX_CLIENT = {
    "iss": "https://sandbox.cds-hooks.org",
    "jku": ["https://sandbox.cds-hooks.org/.well-known/jwks.json"],  # never fetched: the key is built in
    "jwks_file": "builtin:cds-hooks-sandbox",
    "algorithms": ["ES384"],
}


def serve(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str]:
    """`cds serve --config FILE` up to the point where it would start listening."""
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)  # validation passed: do not listen
    # `cds serve` passes its options to the workers through CDS_* variables: set here through
    # monkeypatch, so they are restored (removed) after the test instead of leaking into others.
    for name in ("CDS_CONFIG", "CDS_DEV", "CDS_TRUSTED_CLIENTS", "CDS_PUBLIC_BASE_URL", "CDS_DATA_DIR"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.chdir(config.parent)
    code = main(["serve", "--config", str(config), "--data-dir", str(config.parent / "data")])
    return code, capsys.readouterr().err


def test_trusted_clients_need_public_base_url(tmp_path: Path, capsys, monkeypatch) -> None:
    """Finding 9: with trusted clients and no public_base_url, start-up stops with one line."""
    config = tmp_path / "cds.toml"
    config.write_text(
        '[[trusted_clients]]\niss = "https://sandbox.cds-hooks.org"\njwks_file = "builtin:cds-hooks-sandbox"\n'
    )
    code, err = serve(config, capsys, monkeypatch)
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "public_base_url is required when trusted_clients are configured" in err
    config.write_text('public_base_url = "https://cds.example.org"\n' + config.read_text())
    assert serve(config, capsys, monkeypatch)[0] == 0


def test_embedded_defaults_and_dev_mode_need_no_public_base_url(tmp_path: Path, capsys, monkeypatch) -> None:
    config = tmp_path / "empty.toml"
    config.write_text("")
    assert serve(config, capsys, monkeypatch)[0] == 0  # the README's `cds serve`: no trusted client
    load_settings(dev=True, data_dir=tmp_path, trusted_clients=[SANDBOX_CLIENT])  # dev: Host is local
    with pytest.raises(SettingsError, match="public_base_url is required"):
        load_settings(data_dir=tmp_path, trusted_clients=[SANDBOX_CLIENT])


def test_aud_comes_from_public_base_url_never_from_host(tmp_path: Path) -> None:
    """Finding 9: a token minted for another deployment is refused even when the caller sends
    that deployment's Host header; a token for public_base_url works whatever the Host says."""
    public = "https://cds.example.org"
    settings = load_settings(data_dir=tmp_path, public_base_url=public, trusted_clients=[SANDBOX_CLIENT])
    with TestClient(create_app(settings), base_url="http://other-deployment.example") as c:
        spoofed = sandbox_token("http://other-deployment.example/cds-services")
        assert c.get("/cds-services", headers={"Authorization": f"Bearer {spoofed}"}).status_code == 401
        right = sandbox_token(public + "/cds-services")
        assert c.get("/cds-services", headers={"Authorization": f"Bearer {right}"}).status_code == 200


MISPLACED = """\
public_base_url = "https://cds.example.org"

[[trusted_clients]]
iss = "https://sandbox.cds-hooks.org"
jwks_file = "builtin:cds-hooks-sandbox"
algorithms = ["ES384"]

cors_origins = ["https://sandbox.cds-hooks.org"]
"""


def test_top_level_key_inside_a_table_is_one_clear_line(tmp_path: Path, capsys, monkeypatch) -> None:
    """Issue 21, item 1: `cors_origins` written after [[trusted_clients]] (TOML makes it the
    client's key) stops start-up with one line naming the table and the key, and where it goes."""
    config = tmp_path / "cds.toml"
    config.write_text(MISPLACED)
    code, err = serve(config, capsys, monkeypatch)
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "cors_origins" in err and "[[trusted_clients]] number 1" in err
    assert "above the first [table] header" in err
    # moved where it belongs, the same block starts
    fixed = MISPLACED.replace('\ncors_origins = ["https://sandbox.cds-hooks.org"]\n', "")
    config.write_text('cors_origins = ["https://sandbox.cds-hooks.org"]\n' + fixed)
    assert serve(config, capsys, monkeypatch)[0] == 0


def test_misplaced_key_in_a_service_table(tmp_path: Path) -> None:
    config = tmp_path / "cds.toml"
    config.write_text('[services.care-gaps]\nmax_cards = 4\nlog_level = "debug"\n')
    with pytest.raises(SettingsError, match=r"log_level is written inside the table \[services.care-gaps\]"):
        load_settings(config)


def test_bad_trusted_client_entry_is_one_line_not_a_traceback(tmp_path: Path, capsys, monkeypatch) -> None:
    config = tmp_path / "cds.toml"
    config.write_text(
        'public_base_url = "https://cds.example.org"\n[[trusted_clients]]\n'
        f'iss = "https://x-{uuid.uuid4().hex}.example"\njwks_file = "builtin:cds-hooks-sandbox"\nfavourite = 1\n'
    )
    code, err = serve(config, capsys, monkeypatch)
    assert code == 2 and err.count("\n") == 1 and "unknown key(s) favourite" in err


def readme_block(heading: str) -> str:
    from cds.runtime.settings import REPO_ROOT

    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index(heading) :]
    return section.split("```toml\n", 1)[1].split("```", 1)[0]


def test_readme_official_sandbox_block_starts(tmp_path: Path, capsys, monkeypatch) -> None:
    """Issue 21, item 1: the README's settings block for the official sandbox starts the service,
    and with allow_local_fhir uncommented (item 6) a local http test FHIR server is accepted."""
    block = readme_block("### Trusting the official CDS Hooks Sandbox")
    config = tmp_path / "sandbox.toml"
    config.write_text(block)
    assert serve(config, capsys, monkeypatch) == (0, "")
    settings = load_settings(config)
    assert settings.cors_origins == ["https://sandbox.cds-hooks.org"] and settings.public_base_url
    local = block.replace("# fhir_servers = ", "fhir_servers = ").replace(
        "# allow_local_fhir", "allow_local_fhir"
    )
    local = local.replace('fhir_servers = ["https://launch', '# fhir_servers = ["https://launch')
    config.write_text(local)
    assert serve(config, capsys, monkeypatch) == (0, "")
    from cds.auth.clients import parse_trusted_clients

    [client] = parse_trusted_clients(load_settings(config))
    assert client.allow_local_fhir and all(s.startswith("http://") for s in client.fhir_servers)
    config.write_text(local.replace("allow_local_fhir = true", ""))
    code, err = serve(config, capsys, monkeypatch)
    assert code == 2 and "allow_local_fhir" in err


def test_a_malformed_terminology_map_stops_serve_with_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    """The maps are read by `cds serve` before the workers start (settings only check their type)."""
    (tmp_path / "bad.json").write_text("{not json")
    config = tmp_path / "cds.toml"
    config.write_text('terminology_maps = ["bad.json"]\n')
    code, err = serve(config, capsys, monkeypatch)
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "bad.json" in err
