"""Hooks first: feedback and summaries wait while hook calls are in flight, never for long."""

from __future__ import annotations

import asyncio
import time

import pytest
from starlette.types import Receive, Scope, Send

from cds.web.hooksfirst import HooksFirst, can_wait, is_hook_call


def http(method: str, path: str) -> Scope:
    return {"type": "http", "method": method, "path": path, "headers": []}


class Recorder:
    """An inner app that logs when each request starts and ends; hooks run until released."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.release = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.events.append(f"start {scope['path']}")
        if scope["path"].startswith("/cds-services/") and scope["path"].count("/") == 2:
            await self.release.wait()
            if scope["path"].endswith("boom"):
                raise RuntimeError("hook failed")
        self.events.append(f"end {scope['path']}")


async def noop_receive() -> dict:
    return {"type": "http.request", "body": b""}


async def noop_send(message: dict) -> None:
    return None


def call(app: HooksFirst, method: str, path: str) -> asyncio.Task[None]:
    return asyncio.create_task(app(http(method, path), noop_receive, noop_send))


@pytest.mark.parametrize(
    ("method", "path", "hook", "waits"),
    [
        ("POST", "/cds-services/medication-risk", True, False),
        ("POST", "/cds-services/medication-risk/feedback", False, True),
        ("GET", "/feedback/summary", False, True),
        ("GET", "/cds-services", False, False),
        ("GET", "/cds-services/medication-risk", False, False),
        ("GET", "/healthz", False, False),
    ],
)
def test_classification(method: str, path: str, hook: bool, waits: bool) -> None:
    assert is_hook_call(http(method, path)) is hook
    assert can_wait(http(method, path)) is waits


def test_feedback_waits_for_the_hooks_in_flight() -> None:
    async def run() -> list[str]:
        inner = Recorder()
        app = HooksFirst(inner, max_wait_seconds=10)
        hook = call(app, "POST", "/cds-services/a")
        await asyncio.sleep(0)
        feedback = call(app, "POST", "/cds-services/a/feedback")
        discovery = call(app, "GET", "/cds-services")
        await asyncio.sleep(0.05)
        assert "start /cds-services/a/feedback" not in inner.events  # held at the door
        assert "end /cds-services" in inner.events  # discovery is not held
        inner.release.set()
        await asyncio.gather(hook, feedback, discovery)
        assert app.in_flight == 0
        return inner.events

    events = asyncio.run(run())
    assert events.index("end /cds-services/a") < events.index("start /cds-services/a/feedback")


def test_feedback_is_never_starved() -> None:
    async def run() -> float:
        inner = Recorder()
        app = HooksFirst(inner, max_wait_seconds=0.05)
        hook = call(app, "POST", "/cds-services/a")
        await asyncio.sleep(0)
        t0 = time.perf_counter()
        await call(app, "POST", "/cds-services/a/feedback")
        waited = time.perf_counter() - t0
        assert "end /cds-services/a/feedback" in inner.events and app.in_flight == 1
        inner.release.set()
        await hook
        return waited

    assert 0.04 < asyncio.run(run()) < 1.0


def test_a_failing_hook_does_not_hold_feedback_forever() -> None:
    async def run() -> None:
        inner = Recorder()
        app = HooksFirst(inner, max_wait_seconds=10)
        hook = call(app, "POST", "/cds-services/boom")
        await asyncio.sleep(0)
        inner.release.set()
        with pytest.raises(RuntimeError):
            await hook
        assert app.in_flight == 0
        await asyncio.wait_for(call(app, "POST", "/cds-services/a/feedback"), 1)

    asyncio.run(run())


def test_the_app_puts_hooks_first_outermost(tmp_path) -> None:
    """Outermost, so feedback waits before any of its work (authentication included) is done."""
    from cds.runtime.settings import load_settings
    from cds.web.app import create_app

    app = create_app(load_settings(dev=True, data_dir=tmp_path))
    assert app.user_middleware[0].cls is HooksFirst
