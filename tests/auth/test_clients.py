"""Trusted-client configuration: every mistake stops start-up with a message that says what."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cds.auth import Authenticator
from cds.auth.clients import parse_trusted_clients
from cds.runtime.settings import Settings, SettingsError, load_settings

GOOD = {"iss": "https://ehr.example.org", "jku": ["https://ehr.example.org/jwks.json"]}


def parse(*entries: Any, dev: bool = False):
    return parse_trusted_clients(Settings(trusted_clients=list(entries), dev=dev))


def test_defaults():
    [client] = parse({**GOOD, "fhir_servers": ["https://ehr.example.org/fhir/"]})
    assert client.algorithms == {"ES384", "RS384"}
    assert client.tenants is None
    assert client.fhir_servers == {"https://ehr.example.org/fhir"}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"jku": GOOD["jku"]}, "iss must be"),
        ({"iss": "https://x"}, "at least one key source"),
        ({**GOOD, "jwks_uri": "https://x"}, "unknown key(s) jwks_uri"),
        ({**GOOD, "algorithms": ["HS256"]}, "HS256 not accepted"),
        ({**GOOD, "algorithms": ["none"]}, "none not accepted"),
        ({**GOOD, "algorithms": []}, "algorithms must be"),
        ({**GOOD, "jku": ["http://ehr.example.org/jwks.json"]}, "must use https"),
        ({**GOOD, "jku": ["https://user:pw@ehr.example.org/jwks.json"]}, "not a plain http(s) URL"),
        ({**GOOD, "jwks_url": "ftp://ehr.example.org/jwks.json"}, "not a plain http(s) URL"),
        ({**GOOD, "jwks_file": "/nonexistent/jwks.json"}, "not found"),
        ({**GOOD, "fhir_servers": ["http://ehr.example.org/fhir"]}, "must use https"),
        ({**GOOD, "fhir_servers": ["https://ehr.example.org/fhir?x"]}, "not a plain http(s) base URL"),
        ({**GOOD, "fhir_servers": "https://ehr.example.org/fhir"}, "fhir_servers must be a list"),
        ({**GOOD, "tenant": []}, "tenant must be"),
        ({**GOOD, "max_token_lifetime_seconds": 0}, "max_token_lifetime_seconds"),
        ("not a table", "must be a table"),
    ],
)
def test_invalid(entry, message):
    with pytest.raises(SettingsError) as exc:
        parse(entry)
    assert message in str(exc.value)


def test_duplicate_issuer():
    with pytest.raises(SettingsError, match="listed twice"):
        parse(GOOD, GOOD)


def test_dev_allows_http_and_reserves_dev_issuer(tmp_path):
    [client] = parse({**GOOD, "fhir_servers": ["http://localhost:8103/fhir"]}, dev=True)
    assert client.fhir_servers == {"http://localhost:8103/fhir"}
    with pytest.raises(SettingsError, match="reserved"):
        Authenticator(Settings(dev=True, data_dir=tmp_path, trusted_clients=[{**GOOD, "iss": "cds-dev"}]))


def test_loopback_jwks_over_http_only_with_allow_local_fhir():
    with pytest.raises(SettingsError, match="allow_local_fhir"):
        parse({**GOOD, "jku": ["http://127.0.0.1:9999/jwks.json"]})
    [client] = parse({**GOOD, "jku": ["http://127.0.0.1:9999/jwks.json"], "allow_local_fhir": True})
    assert client.jku == ("http://127.0.0.1:9999/jwks.json",)
    assert client.allow_local_fhir


@pytest.mark.parametrize(
    "entry",
    [
        {"fhir_servers": ["http://169.254.169.254/fhir"]},
        {"fhir_servers": ["https://[fe80::1]/fhir"]},
        {"jku": ["http://169.254.169.254/latest/jwks.json"]},
        {"fhir_servers": ["https://10.1.2.3/fhir"], "allow_local_fhir": False},
    ],
)
def test_link_local_never_and_private_only_with_allow_local(entry):
    with pytest.raises(SettingsError, match="never fetched from"):
        parse({**GOOD, "allow_local_fhir": True, **entry})


def test_allow_local_fhir_permits_http_and_private_servers():
    [client] = parse(
        {
            **GOOD,
            "fhir_servers": ["http://10.1.2.3:8080/fhir", "http://localhost:8103/fhir"],
            "allow_local_fhir": True,
        }
    )
    assert client.fhir_servers == {"http://10.1.2.3:8080/fhir", "http://localhost:8103/fhir"}
    with pytest.raises(SettingsError, match="must be true or false"):
        parse({**GOOD, "allow_local_fhir": "yes"})


def test_jwks_file(tmp_path, keys):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [keys["RS384"].jwk()]}))
    [client] = parse({"iss": "https://air-gapped.example", "jwks_file": str(path)})
    assert list(client.local_keys) == [keys["RS384"].kid]
    path.write_text(json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}))
    with pytest.raises(SettingsError, match="no usable signing key"):
        parse({"iss": "https://air-gapped.example", "jwks_file": str(path)})


def test_from_toml_and_env(tmp_path, monkeypatch):
    config = tmp_path / "cds.toml"
    config.write_text(
        'public_base_url = "https://cds.example.org"\n'
        "[[trusted_clients]]\n"
        'iss = "https://ehr.example.org"\n'
        'jku = ["https://ehr.example.org/.well-known/jwks.json"]\n'
        'tenant = "t1"\n'
        'fhir_servers = ["https://ehr.example.org/fhir"]\n'
    )
    [client] = parse_trusted_clients(load_settings(config))
    assert client.tenants == {"t1"}
    monkeypatch.setenv("CDS_TRUSTED_CLIENTS", json.dumps([GOOD]))
    monkeypatch.setenv("CDS_PUBLIC_BASE_URL", "https://cds.example.org")
    [client] = parse_trusted_clients(load_settings())
    assert client.iss == GOOD["iss"]
