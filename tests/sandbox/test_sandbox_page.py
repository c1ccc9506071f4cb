"""The /sandbox page in headless Chromium against the live service: fire hooks, see cards, accept
a suggestion and override a card (feedback recorded), and card text never runs as script."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, expect

from cds.auth import mint_dev_token
from cds.runtime.settings import Settings
from tests.shipped_services import services_on

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HOSTILE_DETAIL = (
    "Before <script>window.__pwned = 'script'</script> after.\n\n"
    '<img src="x" onerror="window.__pwned = \'onerror\'">\n\n'
    "[click me](javascript:window.__pwned='link') and [safe](https://example.org/guide)\n\n"
    "**bold** and <b onmouseover=\"window.__pwned='hover'\">not bold</b>\n\n"
    "| a | b |\n|---|---|\n| <svg onload=\"window.__pwned='svg'\"> | 2 |"
)


def _summary(base_url: str, settings: Settings, service: str) -> dict:
    url = f"{base_url}/feedback/summary"
    req = urllib.request.Request(
        f"{url}?service={service}", headers={"Authorization": f"Bearer {mint_dev_token(settings, url)}"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _kind_counts(report: dict, kind: str) -> dict:
    return next((k for k in report["kinds"] if k["kind"] == kind), {"accepted": 0, "overridden": 0})


def _open(page: Page, base_url: str) -> list[str]:
    """Open the sandbox; the returned list collects any alert/confirm the page raises (none may)."""
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{base_url}/sandbox")
    expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=15_000)
    return dialogs


def _choose(page: Page, patient: str, service: str) -> None:
    page.select_option("#patient", patient)
    page.select_option("#service", service)
    expect(page.locator("#request-json")).to_have_value(
        re.compile(f'"patientId": "{patient}"'), timeout=10_000
    )
    expect(page.locator("#status")).to_contain_text(f"Request ready for {patient} → ")


def test_fire_hooks_accept_and_override(
    page: Page, live_service: tuple[str, Settings], artifacts: Path
) -> None:
    base_url, settings = live_service
    dialogs = _open(page, base_url)

    # patient-view: the septic patient gets a critical deterioration card.
    _choose(page, "sbx-sepsis-high", "deterioration")
    page.click("#send")
    card = page.locator("#cards article.card").first
    expect(card).to_have_attribute("data-kind", "deterioration:critical", timeout=15_000)
    expect(card).to_have_class(re.compile("indicator-critical"))
    expect(card.locator(".summary")).to_contain_text("NEWS2")
    expect(card.locator(".detail table")).to_be_visible()  # the NEWS2 table, rendered from Markdown
    expect(page.locator("#elapsed")).to_contain_text("HTTP 200")
    expect(page.locator("#raw-response")).to_contain_text('"cards"')
    before = _kind_counts(_summary(base_url, settings, "deterioration"), "deterioration:critical")

    # Override it with the first reason offered; the feedback call goes through.
    card.locator("select").select_option(index=1)
    card.locator("input[type=text]").fill("seen by the outreach team")
    card.locator("button.override-button").click()
    expect(card.locator(".outcome")).to_have_attribute("data-status", "200", timeout=10_000)
    after = _kind_counts(_summary(base_url, settings, "deterioration"), "deterioration:critical")
    assert after["overridden"] == before["overridden"] + 1
    assert after["top_override_reasons"][0]["code"] == "already-reviewed"

    # order-sign: warfarin + naproxen -> a bleeding interaction card; accept its suggestion.
    _choose(page, "sbx-warfarin-af", "medication-risk")
    # The first stored draft order (naproxen) is the one selected; the request carries only it.
    expect(page.locator("#orders input:checked")).to_have_count(1)
    expect(page.locator("#orders input:checked")).to_have_value("sbx-warfarin-af-naproxen")
    signed = json.loads(page.locator("#request-json").input_value())["context"]["draftOrders"]["entry"]
    assert [e["resource"]["id"] for e in signed] == ["sbx-warfarin-af-naproxen"]
    page.click("#send")
    ddi = page.locator("#cards article.card[data-kind='ddi:anticoagulant-nsaid']")
    expect(ddi).to_be_visible(timeout=15_000)
    kind = ddi.get_attribute("data-kind")
    before = _kind_counts(_summary(base_url, settings, "medication-risk"), kind or "")
    accept = ddi.locator("button.accept").first
    expect(accept).to_be_enabled()
    accept.click()
    expect(ddi.locator(".outcome")).to_have_attribute("data-status", "200", timeout=10_000)
    expect(page.locator("#feedback-log li[data-outcome='accepted']")).to_have_count(1)
    after = _kind_counts(_summary(base_url, settings, "medication-risk"), kind or "")
    assert after["accepted"] == before["accepted"] + 1
    # The accepted suggestion's actions were applied to the draft orders in the request.
    request = json.loads(page.locator("#request-json").input_value())
    drafts = [e["resource"] for e in request["context"]["draftOrders"].get("entry", [])]
    # The recommended suggestion swaps the NSAID for acetaminophen: ONE update of the same draft order.
    accepted = json.loads(page.locator("#raw-response").text_content() or "")["cards"]
    suggestion = next(c for c in accepted if c["uuid"] == ddi.get_attribute("data-uuid"))["suggestions"][0]
    assert [a["type"] for a in suggestion["actions"]] == ["update"]
    updated = suggestion["actions"][0]["resource"]
    assert updated["id"] == "sbx-warfarin-af-naproxen"
    assert [d for d in drafts if d.get("id") == "sbx-warfarin-af-naproxen"] == [updated]
    page.screenshot(path=str(artifacts / "sandbox-order-sign.png"), full_page=True)
    assert dialogs == []


def test_a_hook_calls_every_service_on_it(page: Page, live_service: tuple[str, Settings]) -> None:
    base_url, _ = live_service
    dialogs = _open(page, base_url)
    _choose(page, "sbx-diabetes-gaps", "hook:patient-view")
    expect(page.locator("#hook-url")).to_contain_text("/cds-services/care-gaps")
    requests = json.loads(page.locator("#request-json").input_value())
    assert set(requests) == set(services_on("patient-view"))
    assert all(r["context"]["patientId"] == "sbx-diabetes-gaps" for r in requests.values())
    page.click("#send")
    expect(page.locator("#cards")).to_have_attribute("data-state", "cards", timeout=15_000)
    kinds = page.locator("#cards article.card").evaluate_all(
        "cs => cs.map(c => c.dataset.service + ' ' + c.dataset.kind)"
    )
    assert kinds == ["care-gaps measure:CMS122", "care-gaps measure:CMS951", "care-gaps measure:CMS131"]
    expect(page.locator("#status")).to_contain_text("deterioration HTTP 200")
    expect(page.locator("#status")).to_contain_text("care-gaps HTTP 200")
    assert dialogs == []


def test_card_text_never_runs_as_script(
    page: Page, live_service: tuple[str, Settings], artifacts: Path
) -> None:
    base_url, _ = live_service
    dialogs = _open(page, base_url)
    _choose(page, "sbx-healthy-adult", "deterioration")
    hostile = {
        "cards": [
            {
                "uuid": "7c0f4b8e-0000-4000-8000-000000000001",
                "summary": "<img src=x onerror=\"window.__pwned='summary'\"> summary",
                "indicator": "warning",
                "source": {"label": "<script>window.__pwned='source'</script>", "url": "javascript:alert(1)"},
                "detail": HOSTILE_DETAIL,
                "links": [
                    {"label": "bad link", "url": "javascript:window.__pwned='href'", "type": "absolute"}
                ],
                "suggestions": [{"label": "<b>label</b>", "uuid": "s-1", "actions": []}],
                "selectionBehavior": "at-most-one",
            }
        ]
    }

    def fulfil(route: Route) -> None:
        route.fulfill(status=200, content_type="application/json", body=json.dumps(hostile))

    page.route("**/cds-services/deterioration", fulfil)
    page.click("#send")
    card = page.locator("#cards article.card").first
    expect(card).to_be_visible(timeout=10_000)
    detail = card.locator(".detail")
    # Every hostile fragment is shown as the text it is...
    expect(detail).to_contain_text("<script>window.__pwned = 'script'</script>")
    expect(detail).to_contain_text('<img src="x" onerror=')
    expect(card.locator(".summary")).to_contain_text('<img src=x onerror="window.__pwned=')
    expect(card.locator(".source")).to_contain_text("<script>")
    # ...no element was made from it, Markdown still works, and only the https link is a link.
    assert card.locator("script, img, svg, iframe, object, [onerror], [onload], [onmouseover]").count() == 0
    expect(detail.locator("strong")).to_have_text("bold")
    hrefs = detail.locator("a").evaluate_all("as => as.map(a => a.href)")
    assert hrefs == ["https://example.org/guide"]
    assert card.locator("a[href^='javascript']").count() == 0
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned") is None
    assert dialogs == []
    page.screenshot(path=str(artifacts / "sandbox-hostile-card.png"), full_page=True)


def test_markdown_renderer_in_the_browser(page: Page, live_service: tuple[str, Settings]) -> None:
    base_url, _ = live_service
    _open(page, base_url)
    html = page.evaluate(
        """() => {
            const box = document.createElement('div');
            box.appendChild(window.CdsMarkdown.render(
              "# Title\\n\\n- one **two**\\n- `<i>code</i>`\\n\\n1. first\\n2. second\\n\\n> quoted\\n\\n" +
              "```\\n<script>x</script>\\n```\\n\\nline<br>text [x](data:text/html,hi) <https://a.example/>"));
            return box.innerHTML;
        }"""
    )
    assert "<h3>Title</h3>" in html
    assert "<li>one <strong>two</strong></li>" in html and "<code>&lt;i&gt;code&lt;/i&gt;</code>" in html
    assert "<ol><li>first</li><li>second</li></ol>" in html
    assert "<blockquote><p>quoted</p></blockquote>" in html
    assert "<pre><code>&lt;script&gt;x&lt;/script&gt;</code></pre>" in html
    assert "line&lt;br&gt;text x (data:text/html,hi)" in html
    assert (
        '<a href="https://a.example/" target="_blank" rel="noopener noreferrer">https://a.example/</a>'
        in html
    )
