"""A `[[trusted_clients]]` table is declared once (ClientEntry): every key has a type, and a value
of the wrong type is refused naming the key; the module's documentation lists exactly those keys."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

import cds.auth.clients as clients_module
from cds.auth.clients import ClientEntry, parse_trusted_clients
from cds.runtime.settings import Settings, SettingsError

GOOD = {"iss": "https://ehr.example.org", "jku": ["https://ehr.example.org/jwks.json"]}
KEYS = [f.encode_name for f in msgspec.structs.fields(ClientEntry)]
WRONG: dict[str, list[Any]] = {
    "iss": [3, "", " padded", None],
    "jku": [3, {"a": 1}, [3]],
    "jwks_url": [3, ["https://x"]],
    "jwks_file": [3, ""],
    "algorithms": ["ES384", [], [3], ["HS256"], ["none"], ["ES384", "RS384", "ES1"]],
    "tenant": [3, [], [""], [1], ""],
    "fhir_servers": ["https://x/fhir", [3], {"a": "b"}],
    "max_token_lifetime_seconds": [0, 86401, -5, 1.5, "300", True],
    "allow_local_fhir": ["yes", 1, None],
}


def test_every_declared_key_is_documented_and_has_wrong_values_below() -> None:
    doc = clients_module.__doc__ or ""
    assert all(f"\n    {k} " in doc for k in KEYS), [k for k in KEYS if f"\n    {k} " not in doc]
    assert set(WRONG) == set(KEYS) - {"backend"}  # the backend table: tests/smart/test_backend_settings.py


@pytest.mark.parametrize(("key", "value"), [(k, v) for k, vs in WRONG.items() for v in vs])
def test_a_wrong_value_is_refused_naming_the_key(key: str, value: Any) -> None:
    with pytest.raises(SettingsError) as e:
        parse_trusted_clients(Settings(trusted_clients=[{**GOOD, key: value}]))
    message = str(e.value)
    assert message.startswith("trusted_clients[0]")
    assert key in message or (key == "algorithms" and "not accepted" in message), message


def test_a_misspelt_key_lists_the_allowed_ones() -> None:
    with pytest.raises(SettingsError) as e:
        parse_trusted_clients(Settings(trusted_clients=[{**GOOD, "tenants": ["t"]}]))
    assert str(e.value) == (
        f"trusted_clients[0] (https://ehr.example.org): unknown key(s) tenants; allowed: {', '.join(sorted(KEYS))}"
    )


@pytest.mark.parametrize("lifetime", [1, 300, 86400])
def test_the_lifetime_bounds_are_inclusive(lifetime: int) -> None:
    [c] = parse_trusted_clients(Settings(trusted_clients=[{**GOOD, "max_token_lifetime_seconds": lifetime}]))
    assert c.max_token_lifetime_seconds == lifetime
