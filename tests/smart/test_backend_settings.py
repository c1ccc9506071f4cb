"""The `[trusted_clients.backend]` settings, SMART scope coverage, and `cds keys generate`."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds.auth.clients import parse_trusted_clients
from cds.cli import main
from cds.runtime.outbound import LOCAL, STRICT
from cds.runtime.settings import SettingsError, load_settings
from cds.smart.backend import parse_backend, public_jwks
from cds.smart.scopes import covers, interaction, system_scope
from cds.smart.tokens import BackendTokens

FHIR = "https://ehr.example.org/fhir"


def pem(key: Any, path: Path, mode: int = 0o600, password: bytes | None = None) -> Path:
    enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
    path.chmod(mode)
    return path


def client(tmp: Path, **backend: Any) -> list[Any]:
    entry = {
        "iss": "https://ehr.example.org",
        "jku": ["https://ehr.example.org/.well-known/jwks.json"],
        "fhir_servers": [FHIR],
        "backend": {
            "client_id": "cds-service",
            "private_key_file": str(pem(ec.generate_private_key(ec.SECP384R1()), tmp / "k.pem")),
        }
        | backend,
    }
    return parse_trusted_clients(
        load_settings(data_dir=tmp, public_base_url="https://cds.example.org", trusted_clients=[entry])
    )


def test_valid_backend_is_parsed_with_a_thumbprint_kid(tmp_path: Path) -> None:
    [c] = client(tmp_path)
    assert c.backend.client_id == "cds-service" and c.backend.alg == "ES384" and len(c.backend.kid) == 43
    assert "PRIVATE" not in repr(c.backend) and "private_key" not in repr(c.backend)
    [jwk] = public_jwks([c.backend])["keys"]
    assert "d" not in jwk and jwk["kid"] == c.backend.kid


def test_rsa_key_signs_rs384(tmp_path: Path) -> None:
    key = pem(rsa.generate_private_key(65537, 2048), tmp_path / "rsa.pem")
    [c] = client(tmp_path, private_key_file=str(key), kid="cds-1")
    assert (c.backend.alg, c.backend.kid) == ("RS384", "cds-1")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda t: {"private_key_file": str(t / "missing.pem")}, "not found"),
        (
            lambda t: {"private_key_file": str(pem(ec.generate_private_key(ec.SECP256R1()), t / "p256.pem"))},
            "P-384",
        ),
        (
            lambda t: {"private_key_file": str(pem(rsa.generate_private_key(65537, 1024), t / "small.pem"))},
            "2048",
        ),
        (
            lambda t: {
                "private_key_file": str(
                    pem(ec.generate_private_key(ec.SECP384R1()), t / "enc.pem", password=b"pw")
                )
            },
            "encrypted",
        ),
        (
            lambda t: {
                "private_key_file": str(
                    pem(ec.generate_private_key(ec.SECP384R1()), t / "open.pem", mode=0o644)
                )
            },
            "chmod 600",
        ),
        (lambda t: {"client_id": ""}, "client_id"),
        (lambda t: {"token_url": "http://ehr.example.org/token"}, "must use https"),
        (lambda t: {"token_url": "https://169.254.169.254/token"}, "link-local"),
        (lambda t: {"scope": ""}, "scope"),
        (lambda t: {"secret": "x"}, "unknown key(s) secret"),
    ],
)
def test_invalid_backend_settings_stop_start_up_with_a_message(
    tmp_path: Path, make: Any, message: str
) -> None:
    with pytest.raises(SettingsError) as err:
        client(tmp_path, **make(tmp_path))
    assert "backend" in str(err.value) and message in str(err.value)


def test_backend_needs_fhir_servers(tmp_path: Path) -> None:
    key = pem(ec.generate_private_key(ec.SECP384R1()), tmp_path / "k.pem")
    entry = {
        "iss": "x",
        "jku": ["https://x.example/j"],
        "backend": {"client_id": "c", "private_key_file": str(key)},
    }
    with pytest.raises(SettingsError, match="need fhir_servers"):
        parse_trusted_clients(
            load_settings(data_dir=tmp_path, public_base_url="https://c.example", trusted_clients=[entry])
        )


def test_local_token_url_only_with_allow_local(tmp_path: Path) -> None:
    key = pem(ec.generate_private_key(ec.SECP384R1()), tmp_path / "k.pem")
    raw = {"client_id": "c", "private_key_file": str(key), "token_url": "http://127.0.0.1:9/token"}
    assert parse_backend(raw, "t", LOCAL).token_url == raw["token_url"]
    with pytest.raises(SettingsError):
        parse_backend(raw, "t", STRICT)


@pytest.mark.parametrize(
    ("scope", "query", "expected"),
    [
        ("system/Observation.rs", "Observation?patient=1", True),
        ("system/Observation.r", "Observation?patient=1", False),  # read is not search
        ("system/Observation.r", "Observation/123", True),
        ("system/Observation.cruds", "Observation?patient=1", True),
        ("system/Observation.read", "Observation?patient=1", True),  # SMART v1
        ("user/*.read", "Condition?patient=1", True),
        ("patient/*.rs", "Patient/1", True),
        ("patient/Observation.rs?category=laboratory", "Observation?patient=1", False),  # narrowed
        ("system/Observation.write", "Observation?patient=1", False),
        ("system/Condition.rs", "Observation?patient=1", False),
        ("", "Observation?patient=1", False),
        (None, "Observation?patient=1", False),
        ("launch openid fhirUser", "Observation?patient=1", False),
    ],
)
def test_scope_coverage(scope: str | None, query: str, expected: bool) -> None:
    assert covers(scope, query) is expected


def test_system_scope_is_derived_from_the_discovery_templates() -> None:
    queries = [
        "Patient/{{context.patientId}}",
        "Observation?patient=1&code=x",
        "Observation?category=vital-signs",
    ]
    assert system_scope(queries) == "system/Observation.rs system/Patient.rs"
    assert interaction("Patient/{{context.patientId}}") == "r"


def test_assertion_claims(tmp_path: Path) -> None:
    [c] = client(tmp_path)
    tokens = BackendTokens(
        outbound=None, metrics=None, default_scope="system/Patient.rs", timeout=1, clock=lambda: 1_000_000.0
    )  # type: ignore[arg-type]
    a, b = (
        tokens.assertion(c.backend, "https://ehr.example.org/token"),
        tokens.assertion(c.backend, "https://ehr.example.org/token"),
    )
    header = jwt.get_unverified_header(a)
    claims = jwt.decode(a, options={"verify_signature": False})
    assert header == {"alg": "ES384", "kid": c.backend.kid, "typ": "JWT"}
    assert (
        claims["iss"] == claims["sub"] == "cds-service" and claims["aud"] == "https://ehr.example.org/token"
    )
    assert claims["exp"] - 1_000_000 <= 300
    assert claims["jti"] != jwt.decode(b, options={"verify_signature": False})["jti"]
    pub = c.backend.private_key.public_key()
    jwt.decode(
        a, pub, algorithms=["ES384"], audience="https://ehr.example.org/token", options={"verify_exp": False}
    )


def test_keys_generate_writes_a_usable_pair(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "keys"
    assert main(["keys", "generate", "--alg", "ES384", "--out", str(out), "--kid", "cds-1"]) == 0
    printed = capsys.readouterr().out
    assert "PRIVATE" not in printed
    assert (out / "backend-key.pem").stat().st_mode & 0o777 == 0o600
    jwks = json.loads((out / "jwks.json").read_text())
    assert [k["kid"] for k in jwks["keys"]] == ["cds-1"] and "d" not in jwks["keys"][0]
    block = printed[printed.index("[trusted_clients.backend]") :]
    raw = tomllib.loads(block)["trusted_clients"]["backend"]
    backend = parse_backend(raw, "t", STRICT)
    assert backend.kid == "cds-1" and public_jwks([backend]) == jwks
    assert main(["keys", "generate", "--out", str(out)]) == 2  # never overwrites silently
