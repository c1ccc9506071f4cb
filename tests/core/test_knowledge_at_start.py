"""Every knowledge file a service uses is read when it loads (so a broken one stops that service
at start-up and `/readyz` names it), never on the first request: with every cache of the package
emptied before start-up, a first request per service reads no file at all."""

from __future__ import annotations

import builtins
import io
import sys
from pathlib import Path
from typing import Any

import pytest

from cds.sandbox.requestbuilder import build_request
from tests.core.conftest import Caller
from tests.shipped_services import DISCOVERY, SERVICE_IDS, carded_patients


def _empty_every_cache() -> None:
    """Forget what any cds module has read (functools caches), as in a fresh process."""
    for name, module in list(sys.modules.items()):
        if name == "cds" or name.startswith("cds."):
            for obj in list(vars(module).values()):
                if getattr(obj, "__module__", None) == name and callable(getattr(obj, "cache_clear", None)):
                    obj.cache_clear()


@pytest.mark.parametrize("sid", SERVICE_IDS)
def test_a_first_request_reads_no_file(sid: str, make_caller: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    body = build_request(DISCOVERY, sid, carded_patients()[sid])
    _empty_every_cache()
    caller: Caller = make_caller()  # start-up: every service loads here
    assert caller.get("/readyz").status_code == 200
    path = f"/cds-services/{sid}"
    headers = caller.headers(path)
    read: list[str] = []

    def no_io(*args: Any, **kwargs: Any) -> Any:
        read.append(str(args[0]))
        raise AssertionError(f"{sid}: read {args[0]} on its first request")

    with monkeypatch.context() as m:
        m.setattr(builtins, "open", no_io)
        m.setattr(io, "open", no_io)
        for method in ("open", "read_bytes", "read_text"):
            m.setattr(Path, method, no_io)
        resp = caller.client.post(path, json=body, headers=headers)
    assert read == [], read
    assert resp.status_code == 200, resp.text
    assert resp.json()["cards"], f"{sid}: the sample patient should get a card"
