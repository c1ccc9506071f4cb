"""The shipped discovery document (hooks.json) for tests that loop over its services instead of
naming them: a service added there is covered by these tests without editing them."""

from __future__ import annotations

from cds.hooks.discovery import Discovery
from cds.runtime.settings import Settings
from cds.sandbox.scenarios import load_scenarios

DISCOVERY = Discovery.load(Settings().hooks_file)
SERVICE_IDS: tuple[str, ...] = tuple(DISCOVERY.services)
SHIPPED_SCENARIOS = Settings().hooks_file.parent / "cds" / "sandbox" / "scenarios"


def services_on(hook: str) -> tuple[str, ...]:
    """The shipped services answering `hook`, in discovery order."""
    return tuple(sid for sid, e in DISCOVERY.services.items() if e.hook == hook)


def carded_patients() -> dict[str, str]:
    """For each shipped service, the sample patient of its first sandbox scenario that expects a
    card (every service must have one: the sandbox is where QA sees it answer)."""
    found: dict[str, str] = {}
    for s in load_scenarios([SHIPPED_SCENARIOS]):
        if s.cards and s.status == 200 and s.prefetch and s.service not in found:
            found[s.service] = s.patient
    missing = [sid for sid in SERVICE_IDS if sid not in found]
    assert not missing, f"no shipped sandbox scenario expects a card from {missing}"
    return {sid: found[sid] for sid in SERVICE_IDS}
