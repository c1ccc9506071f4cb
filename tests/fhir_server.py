"""A real FHIR R4 server for tests: Medplum's FHIR engine in memory (tests/fhirserver/server.js).

The suite starts one Node process per session (`fhir_server` fixture in conftest.py) on a free
port with a random bearer token, and stops it at the end; the process also exits by itself when
its stdin pipe closes, so a killed pytest leaves no orphan. Tests load data, switch faults and
read the server's request log through its /_control endpoints.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

SERVER_DIR = Path(__file__).resolve().parent / "fhirserver"
STARTUP_TIMEOUT_S = 60.0
# Straight to 127.0.0.1, whatever http_proxy says.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
FAULT_MODES = (
    "none",
    "slow",
    "hang",
    "error500",
    "garbage",
    "huge",
    "page-forever",
    "reset",
    "truncate",
    "ignore-include",
    "next-link",
    "redirect",
)


class FhirServerError(RuntimeError):
    """The test FHIR server could not be installed, started or driven."""


def _installed(server_dir: Path) -> bool:
    """Whether node_modules holds exactly the versions package.json pins."""
    wanted = json.loads((server_dir / "package.json").read_text())["dependencies"]
    for name, version in wanted.items():
        manifest = server_dir / "node_modules" / name / "package.json"
        if not manifest.exists() or json.loads(manifest.read_text()).get("version") != version:
            return False
    return True


def ensure_node_modules(server_dir: Path = SERVER_DIR) -> None:
    """Run `npm ci` (locked against parallel workers) when node_modules is missing or stale."""
    if _installed(server_dir):
        return
    npm = shutil.which("npm")
    if npm is None:
        raise FhirServerError("npm not found: install Node.js 20 to run the FHIR server tests")
    with open(Path(tempfile.gettempdir()) / "cds-fhirserver-npm-ci.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed(server_dir):
            return
        proc = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=server_dir,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0:
            raise FhirServerError(f"npm ci failed in {server_dir}:\n{proc.stdout}\n{proc.stderr}")


def read_json(path: str | Path) -> Any:
    """A JSON file, gzip-compressed or not."""
    raw = Path(path).read_bytes()
    return json.loads(gzip.decompress(raw) if str(path).endswith(".gz") else raw)


_HELD_PORTS: list[socket.socket] = []


def dead_base_url() -> str:
    """A FHIR base URL on a local port where nothing listens ("server down"). The port stays bound
    (never listening) for the whole test session, so no other process can start listening on it
    and connections to it are refused."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    _HELD_PORTS.append(s)
    return f"http://127.0.0.1:{s.getsockname()[1]}/fhir/R4"


class FhirTestServer:
    """Handle on a running test FHIR server: .base_url, .token, load(), requests(), fault()..."""

    def __init__(self, server_dir: Path = SERVER_DIR, base_path: str = "/fhir/R4") -> None:
        self.server_dir = server_dir
        self.base_path = base_path
        self.token = secrets.token_urlsafe(24)
        self.port = 0
        self.base_url = ""
        self.control_url = ""
        self.startup_s = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server

    # ------------------------------------------------------------ lifecycle

    def start(self) -> FhirTestServer:
        node = shutil.which("node")
        if node is None:
            raise FhirServerError("node not found: install Node.js 20 to run the FHIR server tests")
        ensure_node_modules(self.server_dir)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_")}
        env.update(FHIR_TOKEN=self.token, FHIR_BASE_PATH=self.base_path)
        started = time.monotonic()
        self._proc = subprocess.Popen(
            [node, "server.js", "--host", "127.0.0.1", "--port", "0", "--exit-on-stdin-eof"],
            cwd=self.server_dir,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            start_new_session=True,  # Ctrl-C in the terminal goes to pytest, which stops us cleanly
        )
        try:
            ready = self._read_ready_line()
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started
        self.port = int(ready["port"])
        self.base_url = ready["base_url"]
        self.control_url = f"http://127.0.0.1:{self.port}/_control"
        return self

    def _read_ready_line(self) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        result: dict[str, Any] = {}
        stdout = self._proc.stdout

        def read() -> None:
            line = stdout.readline()
            with contextlib.suppress(ValueError):
                result.update(json.loads(line))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(STARTUP_TIMEOUT_S)
        if not result.get("ready"):
            raise FhirServerError(f"test FHIR server did not start: {self.stderr_text()[-2000:]}")
        return result

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def __enter__(self) -> FhirTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ control API

    def _control(self, method: str, action: str, body: Any = None, timeout: float = 120) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.control_url}/{action}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with OPENER.open(req, timeout=timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:
            raise FhirServerError(f"{method} /_control/{action}: {err.code} {err.read()[:500]!r}") from err

    def load(self, data: dict[str, Any] | Iterable[dict[str, Any]] | str | Path) -> dict[str, int]:
        """Store resources as-is (ids kept): a Bundle of any type, one resource, a list of
        resources, or a path to such a JSON file (.json or .json.gz). urn:uuid references
        between the entries of a Bundle become Type/id. Returns counts per resource type."""
        if isinstance(data, str | Path):
            payload: Any = read_json(data)
        elif isinstance(data, dict):
            payload = data
        else:
            payload = list(data)
        return self._control("POST", "load", payload)["loaded"]

    def load_synthea(self, path: str | Path) -> str:
        """Load one Synthea R4 patient bundle (../shared/data/synthea-r4/*.json.gz: a transaction
        Bundle whose entries reference each other by urn:uuid) with its ids kept; returns the
        Patient id, ready for `Observation?patient=Patient/<id>`."""
        bundle = read_json(path)
        patients = [
            e["resource"]["id"] for e in bundle.get("entry", []) if e["resource"]["resourceType"] == "Patient"
        ]
        if len(patients) != 1:
            raise FhirServerError(f"{path}: expected one Patient, found {len(patients)}")
        self.load(bundle)
        return patients[0]

    def requests(self) -> list[dict[str, Any]]:
        """The FHIR requests seen since the last reset: method, path (with query), auth_present,
        auth_ok, status (0 when the fault dropped the answer), fault, time. Never the token."""
        return self._control("GET", "requests")

    def reset(self) -> None:
        """Clear the request log and switch faults off (data stay)."""
        self._control("POST", "reset", {})

    def accept_tokens(
        self, add: Iterable[str] = (), revoke: Iterable[str] = (), revoke_all: bool = False
    ) -> None:
        """Accept (or stop accepting) further bearer tokens, as issued by a test authorization server."""
        self._control("POST", "tokens", {"add": list(add), "revoke": list(revoke), "revoke_all": revoke_all})

    def smart(self, configuration: dict[str, Any] | None = None, token_proxy: str | None = None) -> None:
        """Serve `configuration` at <base>/.well-known/smart-configuration and forward POST /oauth2/token
        on this server's origin to `token_proxy`; no arguments: neither."""
        body: dict[str, Any] = {}
        if configuration is not None:
            body["configuration"] = configuration
        if token_proxy is not None:
            body["token_proxy"] = token_proxy
        self._control("POST", "smart", body)

    def clear(self) -> None:
        """Delete every stored resource."""
        self._control("POST", "clear", {})

    def stats(self) -> dict[str, int]:
        """Stored resources per type."""
        return self._control("GET", "stats")

    def fault(self, mode: str, **params: Any) -> _FaultContext:
        """Switch a fault on for the FHIR endpoints. Params: delay_ms (slow), status (error500),
        count (huge), body (garbage), match (regex on path+query: only matching requests are hit),
        times (fault only the next N matching requests). Usable as a context manager that
        switches the fault off again on exit."""
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; one of {FAULT_MODES}")
        self._control("POST", "fault", {"mode": mode, **params})
        return _FaultContext(self)

    def get(self, path: str, token: str | bool | None = True, timeout: float = 30) -> tuple[int, Any]:
        """GET base_url/path; token=True sends the right token, a string sends that, None none.
        Returns (status, parsed JSON body or raw text)."""
        req = urllib.request.Request(f"{self.base_url}/{path.lstrip('/')}")
        if token is True:
            req.add_header("Authorization", f"Bearer {self.token}")
        elif isinstance(token, str):
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with OPENER.open(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode("utf-8", "replace")


class _FaultContext:
    def __init__(self, server: FhirTestServer) -> None:
        self.server = server

    def __enter__(self) -> FhirTestServer:
        return self.server

    def __exit__(self, *exc: object) -> None:
        self.server.fault("none")


@contextlib.contextmanager
def running_fhir_server() -> Iterator[FhirTestServer]:
    """Start a test FHIR server and stop it however the block ends."""
    server = FhirTestServer()
    try:
        yield server.start()
    finally:
        server.stop()
