"""fhirServer allow-list: exact base URL per client, https only outside development mode."""

from __future__ import annotations

import pytest

from cds.auth.caller import Caller
from cds.auth.clients import TrustedClient
from cds.auth.urls import normalize_base_url

CLIENT = TrustedClient(
    iss="https://ehr.example.org", fhir_servers=frozenset({"https://ehr.example.org/fhir"})
)


def caller(client: TrustedClient = CLIENT, dev: bool = False) -> Caller:
    return Caller(iss=client.iss, sub=None, tenant=None, jti="j", client=client, dev=dev)


@pytest.mark.parametrize(
    "url",
    [
        "https://ehr.example.org/fhir",
        "https://ehr.example.org/fhir/",
        "HTTPS://EHR.example.org/fhir",
        "https://ehr.example.org:443/fhir",
    ],
)
def test_allowed(url):
    assert caller().allows_fhir_server(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://ehr.example.org/fhir/Patient",
        "https://ehr.example.org/fhir/..",
        "https://ehr.example.org",
        "https://ehr.example.org.evil.com/fhir",
        "https://evil.com@ehr.example.org/fhir",
        "https://ehr.example.org:8443/fhir",
        "https://ehr.example.org/fhir?x=1",
        "https://ehr.example.org/fhir#x",
        "https://ehr.example.org/FHIR",
        "http://ehr.example.org/fhir",
        "http://169.254.169.254/latest/meta-data",
        "http://127.0.0.1:8080/fhir",
        "file:///etc/passwd",
        "",
        " https://ehr.example.org/fhir",
    ],
)
def test_refused(url):
    assert not caller().allows_fhir_server(url)


def test_http_refused_outside_dev_even_if_listed():
    client = TrustedClient(iss="x", fhir_servers=frozenset({"http://fhir.local/r4"}))
    assert not caller(client).allows_fhir_server("http://fhir.local/r4")
    assert caller(client, dev=True).allows_fhir_server("http://fhir.local/r4")


def test_dev_client_any_server():
    client = TrustedClient(iss="cds-dev", any_fhir_server=True)
    assert caller(client, dev=True).allows_fhir_server("http://localhost:8103/fhir/R4")
    assert not caller(client, dev=True).allows_fhir_server("ftp://localhost/fhir")


def test_normalize():
    assert normalize_base_url("https://A.example/x/") == "https://a.example/x"
    assert normalize_base_url("http://[::1]:80/fhir") == "http://[::1]/fhir"
    assert normalize_base_url("https://a.example:99999/x") is None
