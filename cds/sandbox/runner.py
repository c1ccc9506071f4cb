"""Run scenarios against a CDS service over HTTP, exactly as an EHR calls it: the request is built
from the sample patient and the discovery document, signed with a JWT for the exact URL, and the
answer compared with what the scenario expects.

With no URL, `local_service(create_app)` starts the real app (development settings, throw-away data
directory) with uvicorn on a free loopback port for the duration of the run.
"""

from __future__ import annotations

import contextlib
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from cds.hooks.discovery import Discovery
from cds.runtime.settings import Settings, load_settings
from cds.sandbox.requestbuilder import RequestBuildError, build_request
from cds.sandbox.scenarios import Scenario, compare

if TYPE_CHECKING:
    from starlette.types import ASGIApp

AppFactory = Callable[[Settings], "ASGIApp"]

TokenFor = Callable[[str], str]


@dataclass
class Result:
    scenario: Scenario
    url: str
    differences: list[str] = field(default_factory=list)
    status: int | None = None
    response: Any = None
    seconds: float = 0.0
    error: str | None = None  # could not run (no answer, bad scenario data)

    @property
    def passed(self) -> bool:
        return not self.differences and self.error is None


def _post(url: str, body: dict[str, Any], token: str, timeout: float) -> tuple[int, Any]:
    req = urllib.request.Request(
        url,
        data=orjson.dumps(body),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Authorization": f"Bearer {token}",
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return status, raw.decode("utf-8", "replace")


def run_scenario(
    scenario: Scenario, base_url: str, discovery: Discovery, token_for: TokenFor, timeout: float = 10.0
) -> Result:
    """Build, sign, send and compare one scenario."""
    url = f"{base_url.rstrip('/')}/cds-services/{scenario.service}"
    result = Result(scenario=scenario, url=url)
    try:
        request = build_request(
            discovery,
            scenario.service,
            scenario.patient,
            order_ids=list(scenario.orders) if scenario.orders is not None else None,
            draft_orders=[dict(o) for o in scenario.draft_orders]
            if scenario.draft_orders is not None
            else None,
            extra_context=scenario.context,
            include_prefetch=scenario.prefetch,
        )
    except RequestBuildError as e:
        result.error = f"cannot build the request: {e}"
        return result
    started = time.perf_counter()
    try:
        result.status, result.response = _post(url, request, token_for(url), timeout)
    except (OSError, urllib.error.URLError) as e:
        result.error = f"no answer from {url}: {e}"
        return result
    finally:
        result.seconds = time.perf_counter() - started
    result.differences = compare(scenario, result.status, result.response)
    if result.status == 401 and scenario.status != 401:
        result.differences.append(
            "hint: the service refused the token; pass --token, or run it with --dev on the same --data-dir"
        )
    return result


def run_all(
    scenarios: list[Scenario], base_url: str, discovery: Discovery, token_for: TokenFor, timeout: float = 10.0
) -> list[Result]:
    return [run_scenario(s, base_url, discovery, token_for, timeout) for s in scenarios]


def key_signer(key_file: Path, iss: str, kid: str | None = None) -> TokenFor:
    """Sign a fresh JWT per call (new jti, 5 minutes, aud = the URL) with a PEM private key the
    service trusts for `iss`: ES384 for an EC key, RS384 for an RSA key."""
    import uuid

    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        alg = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}[key.curve.name]
    elif isinstance(key, rsa.RSAPrivateKey):
        alg = "RS384"
    else:
        raise ValueError(f"{key_file}: an EC or RSA private key is needed")
    headers = {"typ": "JWT", **({"kid": kid} if kid else {})}

    def token_for(aud: str) -> str:
        now = int(time.time())
        claims = {"iss": iss, "sub": iss, "aud": aud, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
        return jwt.encode(claims, key, algorithm=alg, headers=headers)

    return token_for


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def local_service(
    app_factory: AppFactory,
    settings: Settings | None = None,
    startup_timeout: float = 60.0,
    port: int | None = None,
    hooks_file: Path | None = None,
) -> Iterator[tuple[str, Settings]]:
    """The app `app_factory(settings)` builds (the caller passes `cds.web.app.create_app`: the
    sandbox sits below the web layer) served by uvicorn on 127.0.0.1:<port> (default: a free one)
    in a background thread.

    Default settings: development mode in a temporary data directory (removed afterwards),
    serving the services of `hooks_file` (default: the shipped hooks.json).
    Yields (base URL, settings).
    """
    import uvicorn

    with contextlib.ExitStack() as stack:
        if settings is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cds-sandbox-")))
            settings = load_settings(
                dev=True,
                data_dir=data_dir,
                database_url=f"sqlite:///{data_dir / 'cds.sqlite3'}",
                hooks_file=hooks_file,
            )
        port = port or _free_port()
        config = uvicorn.Config(
            app_factory(settings),
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            server_header=False,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="cds-sandbox-server", daemon=True)
        thread.start()
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the in-process CDS service failed to start (see the log above)")
            if time.monotonic() > deadline:
                server.should_exit = True
                raise RuntimeError(f"the in-process CDS service did not start within {startup_timeout:.0f} s")
            time.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{port}", settings
        finally:
            server.should_exit = True
            thread.join(timeout=30)
