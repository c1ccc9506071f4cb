"""`cds serve --dev` in a subprocess on a free loopback port, for tests that need the real server
(HTTP parsing, uvicorn, signals): schemathesis, fault injection, graceful shutdown.

    with LiveServer(tmp_path) as server:
        server.get("/readyz"); server.post("/cds-services/x", json=...)  # each call signed for its URL
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from cds.auth import mint_dev_token
from cds.runtime.settings import REPO_ROOT, Settings, load_settings

STARTUP_TIMEOUT_S = 60.0


PORT_ATTEMPTS = 3  # a free port found here can be taken by another process before the server binds it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lost_port_race(log: str) -> bool:
    """The server exited because another process bound its port first (uvicorn's message)."""
    return "address already in use" in log.lower()


class LiveServer:
    """One `cds serve --dev` process; `env` adds CDS_* settings (e.g. CDS_MODELS_DIR)."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, wait_ready: bool = False) -> None:
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.extra_env = env or {}
        self.wait_ready = wait_ready
        self.log_path = self.data_dir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.settings: Settings = load_settings(dev=True, data_dir=self.data_dir)
        self.client = httpx.Client(base_url=self.base_url, timeout=30)

    def start(self) -> LiveServer:
        for attempt in range(PORT_ATTEMPTS):
            try:
                return self._start_once()
            except RuntimeError:
                if attempt == PORT_ATTEMPTS - 1 or not lost_port_race(self.log()):
                    raise
                self.port = free_port()
                self.base_url = f"http://127.0.0.1:{self.port}"
                self.client = httpx.Client(base_url=self.base_url, timeout=30)
        raise AssertionError("unreachable")

    def _start_once(self) -> LiveServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
        env.update(self.extra_env)
        env["PYTHONUNBUFFERED"] = "1"
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cds",
                "serve",
                "--dev",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cds serve exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                r = self.client.get("/readyz" if self.wait_ready else "/healthz", timeout=1)
                if r.status_code == 200 or (not self.wait_ready and r.status_code < 500):
                    return self
                last = f"HTTP {r.status_code} {r.text[:500]}"
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"cds serve not ready within {STARTUP_TIMEOUT_S} s ({last}):\n{self.log()[-3000:]}"
        )

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def token(self, path: str) -> str:
        """A fresh signed JWT whose aud is this server's URL for `path` (no query)."""
        return mint_dev_token(self.settings, self.base_url + path.split("?", 1)[0])

    def headers(self, path: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(path)}"}

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.client.get(path, headers={**self.headers(path), **kw.pop("headers", {})}, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.client.post(path, headers={**self.headers(path), **kw.pop("headers", {})}, **kw)

    def terminate(self) -> None:
        """SIGTERM (what systemd, Docker and Kubernetes send)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        self.client.close()
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
