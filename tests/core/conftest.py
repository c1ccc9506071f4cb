"""An in-process app in development mode, with a helper that signs a token for a URL."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from cds.auth import mint_dev_token
from cds.runtime.settings import Settings, load_settings
from cds.web.app import create_app

BASE = "http://localhost"


def dev_settings(tmp: Path, **overrides: Any) -> Settings:
    return load_settings(dev=True, data_dir=tmp, **overrides)


class Caller:
    """A TestClient that signs every request for the exact URL it calls."""

    def __init__(self, client: TestClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.closed = False

    def close(self) -> None:
        """Stop the app (runs its shutdown: pending writes are flushed)."""
        if not self.closed:
            self.closed = True
            self.client.__exit__(None, None, None)

    def headers(self, path: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = {"Authorization": f"Bearer {mint_dev_token(self.settings, BASE + path)}"}
        h.update(extra or {})
        return h

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, headers=self.headers(path, kw.pop("headers", None)), **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.client.post(path, headers=self.headers(path, kw.pop("headers", None)), **kw)

    def request(self, method: str, path: str, **kw: Any) -> Any:
        return self.client.request(method, path, headers=self.headers(path, kw.pop("headers", None)), **kw)


@pytest.fixture
def make_caller(tmp_path: Path) -> Iterator[Callable[..., Caller]]:
    callers: list[Caller] = []

    def make(**overrides: Any) -> Caller:
        settings = dev_settings(tmp_path, **overrides)
        client = TestClient(create_app(settings), base_url=BASE, raise_server_exceptions=False)
        client.__enter__()
        callers.append(Caller(client, settings))
        return callers[-1]

    yield make
    for c in callers:
        c.close()


@pytest.fixture
def caller(make_caller: Callable[..., Caller]) -> Caller:
    return make_caller()


def patient_view(patient_id: str = "p1", prefetch: dict | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/doc1", "patientId": patient_id},
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    body.update(extra)
    return body


def empty_bundle() -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": []}
