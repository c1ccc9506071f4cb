"""The outbound gate (cds/runtime/outbound.py): where a request may go, checked on the parsed URL and on
the resolved address at connect time; against the real test FHIR server, a loopback "evil" server
that must receive nothing, and an HTTPS FHIR server under a CA made here. No traffic ever leaves
127.0.0.1: link-local and foreign addresses are only ever refused, never connected to.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver
from hypothesis import given, settings
from hypothesis import strategies as st

from cds.hooks.fhirfetch import FhirFetcher
from cds.hooks.request import HookRequest
from cds.runtime.outbound import (
    DEV,
    LOCAL,
    STRICT,
    AddressRefused,
    Failed,
    OutboundClient,
    Reach,
    Refused,
    Target,
    _socket_factory,
)
from cds.runtime.settings import Settings
from tests.core.conftest import Caller, patient_view
from tests.core.test_fhir_fallback import PATIENT, PID, VITALS, hook_queries, with_fhir
from tests.local_servers import RecordingServer, TestCA, json_answer
from tests.loopback_guard import is_loopback

BASE = "https://ehr.example.org/fhir"


# ------------------------------------------------------------------ the URL rules


@pytest.mark.parametrize(
    ("url", "admitted"),
    [
        ("https://ehr.example.org/fhir", True),
        ("https://ehr.example.org/fhir/", True),
        ("https://ehr.example.org/fhir/Observation?patient=Patient/1&_page=2", True),
        ("HTTPS://EHR.Example.ORG:443/fhir/Patient/1", True),
        # the finding: the allowed base as a substring of a foreign URL
        ("http://evil.example/x?u=https://ehr.example.org/fhir", False),
        ("https://evil.example/https://ehr.example.org/fhir/Patient", False),
        ("https://ehr.example.org.evil.example/fhir/Patient", False),
        ("https://ehr.example.org@evil.example/fhir/Patient", False),
        ("https://user:pw@ehr.example.org/fhir/Patient", False),
        ("http://ehr.example.org/fhir/Patient", False),  # scheme
        ("https://ehr.example.org:8443/fhir/Patient", False),  # port
        ("https://ehr.example.org/fhir2/Patient", False),  # path prefix, not a substring
        ("https://ehr.example.org/fhirPatient", False),
        ("https://ehr.example.org/admin", False),
        ("https://ehr.example.org/fhir/../admin", False),  # dot segments, plain or encoded
        ("https://ehr.example.org/fhir/%2e%2e/admin", False),
        ("https://ehr.example.org/fhir/%2E%2E/%2e%2E/admin", False),
        ("https://ehr.example.org/fhir/./Patient", False),  # any dot segment is refused, even a harmless one
        ("https://ehr.example.org/fhir\\..\\admin", False),
        ("https://ehr.example.org/fhir/Patient#frag", False),
        ("https://ehr.example.org/fhir/Patient\n", False),
        ("//ehr.example.org/fhir/Patient", False),
        ("/fhir/Patient", False),
        ("ftp://ehr.example.org/fhir/Patient", False),
        ("", False),
    ],
)
def test_target_admits_only_urls_under_the_base(url: str, admitted: bool) -> None:
    assert Target.parse(BASE).admits(url) is admitted


_segment = st.text(alphabet="abcXYZ019-._~%2eE", min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(
    scheme=st.sampled_from(["http", "https"]),
    host=st.sampled_from(["ehr.example.org", "evil.example", "ehr.example.org.evil.example", "127.0.0.1"]),
    port=st.sampled_from([None, 443, 80, 8443]),
    segments=st.lists(_segment, max_size=4),
)
def test_admitted_urls_share_scheme_host_port_and_prefix(
    scheme: str, host: str, port: int | None, segments: list[str]
) -> None:
    """Property: a URL is admitted exactly when its parts equal the base's and its path lies
    under the prefix without a dot segment (compared with an independent reading of the URL)."""
    from urllib.parse import unquote, urlsplit

    url = f"{scheme}://{host}{'' if port is None else f':{port}'}/fhir/{'/'.join(segments)}"
    parts = urlsplit(url)
    effective_port = parts.port or {"http": 80, "https": 443}[scheme]
    has_dot = any(unquote(s) in (".", "..") for s in parts.path.split("/"))
    bad_escape = "%" in parts.path  # yarl rejects or re-encodes malformed escapes: never admitted wrongly
    expected = scheme == "https" and host == "ehr.example.org" and effective_port == 443 and not has_dot
    got = Target.parse(BASE).admits(url)
    if bad_escape and not expected:
        assert not got
    elif not bad_escape:
        assert got is expected, url
    # and whatever the rest, a foreign URL carrying the base in its query is never admitted
    assert not Target.parse(BASE).admits(f"http://{host}:8443/x?u={BASE}/{'/'.join(segments)}")


@pytest.mark.parametrize(
    ("address", "strict", "dev", "local"),
    [
        ("169.254.169.254", "link-local", "link-local", "link-local"),
        ("169.254.0.1", "link-local", "link-local", "link-local"),
        ("fe80::1", "link-local", "link-local", "link-local"),
        ("fe80::1%eth0", "link-local", "link-local", "link-local"),
        ("::ffff:169.254.169.254", "link-local", "link-local", "link-local"),
        ("fd00:ec2::254", "link-local", "link-local", "link-local"),
        ("100.100.100.200", "link-local", "link-local", "link-local"),
        ("0.0.0.0", "unroutable", "unroutable", "unroutable"),
        ("::", "unroutable", "unroutable", "unroutable"),
        ("224.0.0.1", "unroutable", "unroutable", "unroutable"),
        ("127.0.0.1", "loopback", None, None),
        ("127.8.9.10", "loopback", None, None),
        ("::1", "loopback", None, None),
        ("::ffff:127.0.0.1", "loopback", None, None),
        ("10.0.0.5", "private", "private", None),
        ("172.16.3.4", "private", "private", None),
        ("192.168.1.1", "private", "private", None),
        ("100.64.0.1", "private", "private", None),
        ("fd12:3456::1", "private", "private", None),
        ("93.184.216.34", None, None, None),
        ("2606:2800:220:1:248:1893:25c8:1946", None, None, None),
    ],
)
def test_reach_classifies_addresses(
    address: str, strict: str | None, dev: str | None, local: str | None
) -> None:
    for reach, expected in ((STRICT, strict), (DEV, dev), (LOCAL, local)):
        problem = reach.address_problem(address)
        assert (problem is None) == (expected is None), (reach.name, address, problem)
        if expected is not None:
            assert expected in str(problem)


def test_reach_for_caller() -> None:
    assert Reach.for_caller(dev=False, allow_local=False) is STRICT
    assert Reach.for_caller(dev=True, allow_local=False) is DEV
    assert Reach.for_caller(dev=False, allow_local=True) is LOCAL
    assert Reach.for_caller(dev=True, allow_local=True) is LOCAL
    assert not STRICT.http and DEV.http and LOCAL.http


def test_socket_factory_checks_the_exact_address() -> None:
    """The last check, on the address a socket is about to connect to (IP literals skip resolvers)."""
    for reach in (STRICT, DEV, LOCAL):
        with pytest.raises(AddressRefused, match="link-local"):
            _socket_factory(reach)((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 80)))
        with pytest.raises(AddressRefused, match="link-local"):
            _socket_factory(reach)((socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fe80::1", 80, 0, 2)))
    with pytest.raises(AddressRefused, match="loopback"):
        _socket_factory(STRICT)((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80)))
    sock = _socket_factory(DEV)((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80)))
    sock.close()


# ------------------------------------------------------------------ refusals happen before connect


class MappedResolver(AbstractResolver):
    """Resolves test names to chosen addresses (a DNS name rebound to an internal address)."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[Any]:
        self.asked.append(host)
        address = self.names[host]
        fam = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [{"hostname": host, "host": address, "port": port, "family": fam, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        pass


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every address the event loop is asked to connect a socket to, in any thread; only loopback
    ones are passed on to the real connect."""
    import asyncio.selector_events as se

    seen: list[Any] = []
    original = se.BaseSelectorEventLoop.sock_connect

    async def recording(self: Any, sock: Any, address: Any) -> Any:
        seen.append(address)
        if not is_loopback(address):  # recorded for the assertion, never attempted
            raise ConnectionRefusedError(f"test: a connect to {address!r} was attempted")
        return await original(self, sock, address)

    monkeypatch.setattr(se.BaseSelectorEventLoop, "sock_connect", recording)
    return seen


@pytest.mark.parametrize(
    ("url", "reach", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", DEV, "link-local"),
        ("http://169.254.169.254/latest/meta-data/", LOCAL, "link-local"),
        ("http://[fe80::1]/fhir", LOCAL, "link-local"),
        ("http://[::ffff:169.254.169.254]/fhir", LOCAL, "link-local"),
        ("http://metadata.test/latest/meta-data/", DEV, "link-local"),  # a name resolving there
        ("http://metadata.test/latest/meta-data/", LOCAL, "link-local"),
        ("https://rebound.test/fhir", STRICT, "loopback"),  # DNS rebinding to 127.0.0.1
        ("https://intranet.test/fhir", STRICT, "private"),
        ("https://intranet.test/fhir", DEV, "private"),
        ("https://127.0.0.1:9/fhir", STRICT, "loopback"),
        ("https://localhost:9/fhir", STRICT, "loopback"),
        ("http://public.test/fhir", STRICT, "https only"),
    ],
)
def test_refused_before_any_connection(connects: list[Any], url: str, reach: Reach, reason: str) -> None:
    resolver = MappedResolver(
        {
            "metadata.test": "169.254.169.254",
            "rebound.test": "127.0.0.1",
            "intranet.test": "10.1.2.3",
            "public.test": "93.184.216.34",
        }
    )

    async def run() -> None:
        client = OutboundClient(resolver=resolver)
        try:
            target = Target.parse(url.rsplit("/", 1)[0] if "latest" not in url else url.split("/latest")[0])
            await client.request("GET", url, target=target, reach=reach, max_bytes=1000, timeout=2)
        finally:
            await client.close()

    with pytest.raises(Refused, match=reason) as e:
        asyncio.run(run())
    assert connects == [], "a refused request must not open a connection"
    assert "169.254" not in str(e.value) and "10.1.2.3" not in str(e.value)


def test_dev_mode_hook_never_fetches_link_local(caller: Caller, connects: list[Any]) -> None:
    """Finding 11: dev mode trusts any fhirServer, but never a link-local one (metadata service)."""
    body = patient_view(PID)
    body["fhirServer"] = "http://169.254.169.254/latest"
    resp = caller.post("/cds-services/deterioration", json=body)
    assert resp.status_code == 412, resp.text
    assert "link-local" in resp.text
    assert not [a for a in connects if str(a[0]).startswith("169.254")]


# ------------------------------------------------------------------ the test FHIR server (Medplum)


@pytest.fixture
def evil() -> Iterator[RecordingServer]:
    server = RecordingServer()
    yield server
    server.stop()


@pytest.fixture
def fhir(fresh_fhir_server: Any) -> Any:
    fresh_fhir_server.load([PATIENT, *VITALS])
    fresh_fhir_server.reset()
    return fresh_fhir_server


def evil_links(fhir: Any, evil: RecordingServer) -> list[str]:
    """`next` links a hostile server might send, each on the evil server's port."""
    base = fhir.base_url  # http://127.0.0.1:<port>/fhir/R4
    path = base.split("/", 3)[3]
    return [
        f"{evil.origin}/x?u={base}",  # the finding, on loopback
        f"{evil.origin}/{path}/Observation?_page=2",  # same host and path, another port
        f"http://127.0.0.1:{fhir.port}@127.0.0.1:{evil.port}/{path}/Observation",  # user-info trick
        f"{evil.origin}/{base}",  # the base inside the path
    ]


def test_token_never_follows_a_paging_link_off_the_server(
    caller: Caller, fhir: Any, evil: RecordingServer
) -> None:
    """Finding 1: a `next` link outside fhirServer is refused; the evil server gets NOTHING."""
    for link in evil_links(fhir, evil):
        fhir.reset()
        with fhir.fault("next-link", url=link, match="Observation"):
            resp = caller.post("/cds-services/deterioration", json=with_fhir(fhir, patient_view(PID)))
        assert resp.status_code == 412, (link, resp.text)
        assert "paging link points outside fhirServer" in resp.text
        assert str(evil.port) not in resp.text and fhir.token not in resp.text
    assert evil.connections == 0 and evil.requests == []


def test_paging_links_on_the_server_are_followed(caller: Caller, fhir: Any) -> None:
    """The gate is not just a wall: a next link under fhirServer is followed with the token."""
    link = f"{fhir.base_url}/Observation?patient=Patient/{PID}&_count=1&_offset=1"
    with fhir.fault("next-link", url=link, match="Observation", times=1):
        resp = caller.post("/cds-services/deterioration", json=with_fhir(fhir, patient_view(PID)))
    assert resp.status_code == 200, resp.text
    assert any("_offset=1" in q for q in hook_queries(fhir))
    assert all(r["auth_ok"] for r in fhir.requests())


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_not_followed(caller: Caller, fhir: Any, evil: RecordingServer, status: int) -> None:
    """Finding 2: a 3xx is the server's failure (412); its status and target are not echoed."""
    location = f"{evil.origin}/fhir/R4/Observation"
    with fhir.fault("redirect", status=status, location=location):
        resp = caller.post("/cds-services/deterioration", json=with_fhir(fhir, patient_view(PID)))
    assert resp.status_code == 412, resp.text
    assert "redirect, which is not followed" in resp.text
    assert str(status) not in resp.text and location not in resp.text and str(evil.port) not in resp.text
    assert evil.connections == 0


# ------------------------------------------------------------------ HTTPS FHIR server under a local CA


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path)


def _fetch(outbound: OutboundClient, base: str, reach: Reach, token: str = "secret-token") -> Any:
    settings = Settings(fhir_timeout_seconds=3.0, fhir_max_pages=3)
    req = HookRequest(
        hook="patient-view",
        hook_instance="x",
        service_id="deterioration",
        context={"patientId": PID},
        prefetch={},
        fhir_server=base,
        fhir_authorization={"access_token": token},
    )

    async def run() -> Any:
        try:
            return await FhirFetcher(settings, outbound).fetch(
                req, {"vitals": "Observation?patient={{context.patientId}}"}, ["vitals"], reach
            )
        finally:
            await outbound.close()

    return asyncio.run(run())


def test_https_server_under_a_local_ca(ca: TestCA, evil: RecordingServer) -> None:
    """Pages on the same https server are followed with the token; an https -> http downgrade
    or a hop to another port is refused; an untrusted CA fails; strict reach refuses loopback."""
    from cds.runtime.errors import PreconditionFailed

    state: dict[str, Any] = {"next": None}

    def answer(path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        page = 2 if "_page=2" in path else 1
        link = [{"relation": "next", "url": state["next"]}] if page == 1 and state["next"] else []
        entry = [{"resource": {**VITALS[page - 1], "id": f"v{page}"}}]
        return json_answer({"resourceType": "Bundle", "type": "searchset", "link": link, "entry": entry})

    server = RecordingServer(answer, tls=ca.server_context())
    try:
        base = f"{server.origin}/fhir"
        state["next"] = f"{base}/Observation?patient=Patient/{PID}&_page=2"
        got = _fetch(OutboundClient(ssl_context=ca.client_context()), base, LOCAL)
        assert [e["resource"]["id"] for e in got["vitals"]["entry"]] == ["v1", "v2"]
        assert [h.get("authorization") for _, h in server.requests] == ["Bearer secret-token"] * 2

        for hostile in (
            f"{evil.origin}/fhir/Observation?_page=2",
            f"http://127.0.0.1:{server.port}/fhir/x?_page=2",
        ):
            state["next"] = hostile
            with pytest.raises(PreconditionFailed, match="paging link points outside fhirServer"):
                _fetch(OutboundClient(ssl_context=ca.client_context()), base, LOCAL)
        assert evil.connections == 0

        before = server.connections
        with pytest.raises(PreconditionFailed, match="loopback"):
            _fetch(OutboundClient(ssl_context=ca.client_context()), base, STRICT)
        assert server.connections == before
        with pytest.raises(PreconditionFailed, match="TLS certificate was not accepted"):
            _fetch(OutboundClient(), base, LOCAL)  # the system trust store does not know this CA
    finally:
        server.stop()


def test_body_is_read_whole_up_to_the_cap(evil: RecordingServer) -> None:
    """Bodies are read to the end (many chunks), and one byte over the cap is refused."""
    body = (
        b'{"resourceType":"Bundle","entry":['
        + b",".join([b'{"resource":{"resourceType":"Basic"}}'] * 20000)
        + b"]}"
    )
    server = RecordingServer(lambda p, h: (200, {"Content-Type": "application/json"}, body))

    async def get(cap: int) -> Any:
        client = OutboundClient()
        try:
            return await client.request(
                "GET",
                f"{server.origin}/x",
                target=Target.parse(server.origin),
                reach=DEV,
                max_bytes=cap,
                timeout=5,
            )
        finally:
            await client.close()

    try:
        assert len(asyncio.run(get(len(body))).json()["entry"]) == 20000
        with pytest.raises(Failed, match="larger than"):
            asyncio.run(get(len(body) - 1))
    finally:
        server.stop()


def test_form_post_for_token_endpoints(evil: RecordingServer) -> None:
    """The shape the SMART Backend Services token client uses: a form POST within the target;
    a redirect from the token endpoint is refused like any other."""
    answers = iter(
        [json_answer({"access_token": "t", "expires_in": 300}), (302, {"Location": "http://x.test/"}, b"")]
    )
    server = RecordingServer(lambda p, h: next(answers))

    async def post() -> Any:
        client = OutboundClient()
        try:
            token_url = f"{server.origin}/auth/token"
            return await client.request(
                "POST",
                token_url,
                target=Target.parse(token_url),
                reach=LOCAL,
                data={"grant_type": "client_credentials", "scope": "system/*.read"},
                max_bytes=10_000,
                timeout=5,
            )
        finally:
            await client.close()

    try:
        assert asyncio.run(post()).json()["access_token"] == "t"
        assert server.bodies == [b"grant_type=client_credentials&scope=system%2F%2A.read"]
        with pytest.raises(Refused, match="redirect"):
            asyncio.run(post())
    finally:
        server.stop()


# ------------------------------------------------------------------ production-like: trusted client, local JWKS


def test_production_like_client_token_stays_on_its_server(
    fhir: Any, evil: RecordingServer, tmp_path: Path
) -> None:
    """Finding 1 outside dev mode: a trusted client (keys from a local JWKS server, its test FHIR
    server on loopback via allow_local_fhir, public_base_url set) cannot be made to send its
    token off the server by a paging link; a fhirServer it did not list is never contacted."""
    import time
    import uuid

    import jwt
    from starlette.testclient import TestClient

    from cds.runtime.settings import SettingsError, load_settings
    from cds.web.app import create_app
    from tests.auth.conftest import _key

    key = _key("ES384", "prod-1")
    jwks = RecordingServer(lambda p, h: json_answer({"keys": [key.jwk()]}))
    iss, public = "https://ehr.hospital.example", "http://localhost"
    client = {
        "iss": iss,
        "jwks_url": f"{jwks.origin}/jwks.json",
        "fhir_servers": [fhir.base_url],
        "allow_local_fhir": True,
    }

    def token(path: str) -> str:
        now = int(time.time())
        claims = {"iss": iss, "aud": public + path, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
        return jwt.encode(claims, key.private, algorithm="ES384", headers={"kid": "prod-1"})

    try:
        settings = load_settings(data_dir=tmp_path, public_base_url=public, trusted_clients=[client])
        with TestClient(create_app(settings), base_url=public) as c:
            path = "/cds-services/deterioration"
            auth = {"Authorization": f"Bearer {token(path)}"}
            ok = c.post(path, json=with_fhir(fhir, patient_view(PID)), headers=auth)
            assert ok.status_code == 200, ok.text
            for link in evil_links(fhir, evil):
                with fhir.fault("next-link", url=link, match="Observation"):
                    auth = {"Authorization": f"Bearer {token(path)}"}
                    resp = c.post(path, json=with_fhir(fhir, patient_view(PID)), headers=auth)
                assert resp.status_code == 412 and "paging link points outside fhirServer" in resp.text
            fhir.reset()
            other = with_fhir(fhir, patient_view(PID))
            other["fhirServer"] = f"{evil.origin}/fhir/R4"
            resp = c.post(path, json=other, headers={"Authorization": f"Bearer {token(path)}"})
            assert resp.status_code == 412 and "not allow-listed" in resp.text
        assert evil.connections == 0
        assert [p for p, _ in jwks.requests] == ["/jwks.json"]
        from cds.auth.clients import parse_trusted_clients

        strict = {**client, "allow_local_fhir": False}
        with pytest.raises(SettingsError, match="must use https"):
            parse_trusted_clients(Settings(trusted_clients=[strict]))
        strict_https = {**strict, "jwks_url": "https://ehr.hospital.example/jwks.json"}
        with pytest.raises(SettingsError, match="loopback address"):
            parse_trusted_clients(
                Settings(trusted_clients=[{**strict_https, "fhir_servers": ["https://127.0.0.1:9/fhir"]}])
            )
    finally:
        jwks.stop()
