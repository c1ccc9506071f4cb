"""`cds sandbox check`: the shipped scenarios pass against the real service, cover every sample
patient and card kind, and an edited expectation fails with a diff that says what changed."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from cds.cli import main
from cds.commands.sandbox import SHIPPED
from cds.hooks.cards import CARD_KIND_SYSTEM
from cds.sandbox.patients import sample_patients
from cds.sandbox.scenarios import (
    ExpectedCard,
    ExpectedSuggestion,
    Scenario,
    ScenarioError,
    compare,
    load_scenarios,
)

# Card kinds (or kind prefixes) the shipped scenarios must show between them: both deterioration
# bands, each medication-risk family and every care-gap measure.
REQUIRED_KINDS = [
    "deterioration:critical",
    "deterioration:warning",
    "ddi:",
    "renal:",
    "beers:",
    "allergy:",
    "duplicate:",
    "lab:",
    *(f"measure:CMS{n}" for n in (122, 124, 125, 130, 131, 165, 347, 951)),
]


def test_shipped_scenarios_cover_every_patient_and_card_kind() -> None:
    scenarios = load_scenarios([SHIPPED])
    assert {s.patient for s in scenarios} == {p.id for p in sample_patients()}
    kinds = {c.kind for s in scenarios for c in s.cards if c.kind}
    for required in REQUIRED_KINDS:
        assert any(k == required or (required.endswith(":") and k.startswith(required)) for k in kinds), (
            required
        )
    assert any(not s.cards for s in scenarios), "some scenarios must expect no card"
    families = {k.split(":", 1)[1] for k in kinds if k.startswith("ddi:")}
    assert len(families) >= 5, f"too few interaction families covered: {sorted(families)}"


def test_shipped_scenarios_pass_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junit = tmp_path / "junit.xml"
    code = main(["sandbox", "check", str(SHIPPED), "--junit", str(junit)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "0 failed" in out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert int(suite.get("tests", "0")) == len(load_scenarios([SHIPPED]))
    assert suite.get("failures") == "0" and suite.get("errors") == "0"


def _edited(tmp_path: Path) -> Path:
    """The septic-patient scenario, edited to expect an info card of another kind and an extra card."""
    raw = yaml.safe_load((SHIPPED / "deterioration.yaml").read_text())["scenarios"][0]
    raw["expect"]["cards"][0]["indicator"] = "info"
    raw["expect"]["cards"].append({"kind": "measure:CMS130", "summary": "colorectal"})
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump({"scenarios": [raw]}))
    return path


def test_edited_scenario_fails_with_a_readable_diff(
    live_service: tuple[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base_url, settings = live_service
    junit = tmp_path / "junit.xml"
    code = main(
        [
            "sandbox",
            "check",
            str(_edited(tmp_path)),
            "--url",
            base_url,
            "--data-dir",
            str(settings.data_dir),
            "--junit",
            str(junit),  # type: ignore[attr-defined]
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL  edited :: septic patient gets a critical deterioration card" in out
    assert "indicator: expected info, got critical" in out
    assert "missing card: kind=measure:CMS130" in out
    assert "got 2 card(s):" in out and "kind=deterioration:critical" in out  # + the sepsis prompt
    failure = ET.parse(junit).getroot().find("testsuite/testcase/failure")
    assert failure is not None and "indicator: expected info, got critical" in (failure.text or "")


def test_bad_scenario_files_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\npatient: sbx-healthy-adult\nservice: deterioration\nexpect: {cards: [{indicator: red}]}\n"
    )
    assert main(["sandbox", "check", str(bad)]) == 2
    assert "indicator must be one of" in capsys.readouterr().err
    assert main(["sandbox", "check", str(tmp_path / "missing.yaml")]) == 2


# --- compare(), without a server -----------------------------------------------------------------
def _card(kind: str, indicator: str = "warning", summary: str = "Something", **extra: object) -> dict:
    return {
        "uuid": "u-" + kind,
        "summary": summary,
        "indicator": indicator,
        "source": {"label": "cds", "topic": {"system": CARD_KIND_SYSTEM, "code": kind}},
        **extra,
    }


def _scenario(*cards: ExpectedCard, status: int = 200, allow: bool = False) -> Scenario:
    return Scenario(
        name="s",
        file=Path("x.yaml"),
        patient="p",
        service="s",
        cards=cards,
        status=status,
        allow_other_cards=allow,
    )


def test_compare_reports_each_kind_of_difference() -> None:
    exp = ExpectedCard(
        kind="ddi:anticoagulant-nsaid",
        indicator="critical",
        summary="bleeding",
        suggestions=(ExpectedSuggestion("Cancel", ("delete",)),),
    )
    got = _card(
        "ddi:anticoagulant-nsaid",
        "warning",
        "Warfarin with ibuprofen",
        suggestions=[{"label": "Cancel ibuprofen", "uuid": "s1", "actions": [{"type": "create"}]}],
        selectionBehavior="at-most-one",
    )
    diffs = compare(_scenario(exp), 200, {"cards": [got, _card("beers:nsaid")]})
    assert (
        "card kind=ddi:anticoagulant-nsaid, indicator=critical, summary~/bleeding/, suggestions=[Cancel]: "
        "indicator: expected critical, got warning" in diffs
    )
    assert any("summary: expected to match /bleeding/" in d for d in diffs)
    assert any("actions expected ['delete'], got ['create']" in d for d in diffs)
    assert 'unexpected card: [warning] kind=beers:nsaid "Something"' in diffs
    assert compare(_scenario(exp, allow=True), 200, {"cards": [_card("lab:x")]}) == [
        "missing card: kind=ddi:anticoagulant-nsaid, indicator=critical, summary~/bleeding/, suggestions=[Cancel]"
    ]


def test_compare_passes_matching_answers_and_checks_the_spec() -> None:
    exp = ExpectedCard(kind="measure:CMS130", indicator="info", summary="colorectal")
    ok = _card("measure:CMS130", "info", "Colorectal cancer screening is due")
    assert compare(_scenario(exp), 200, {"cards": [ok]}) == []
    assert compare(_scenario(), 200, {"cards": []}) == []
    long = _card("measure:CMS130", "info", "x" * 140, links=[])
    diffs = compare(_scenario(allow=True), 200, {"cards": [long]})
    assert any("must be under 140" in d for d in diffs) and any("links is empty" in d for d in diffs)
    outcome = {"resourceType": "OperationOutcome", "issue": [{"diagnostics": "prefetch is missing labs"}]}
    assert compare(_scenario(), 200, outcome) == ['response is not a CDS Hooks answer ({"cards": [...]})']
    assert compare(_scenario(status=412), 200, {"cards": []}) == ["HTTP status: expected 412, got 200"]
    assert compare(_scenario(), 412, outcome) == [
        "HTTP status: expected 200, got 412: prefetch is missing labs"
    ]


def test_scenario_validation_names_the_problem(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("- name: a\n  patient: p\n  service: s\n  expect: {}\n")
    with pytest.raises(ScenarioError, match="write `cards: none`"):
        load_scenarios([f])
    f.write_text("- name: a\n  patient: p\n  service: s\n  expect: {cards: [{summary: '('}]}\n")
    with pytest.raises(ScenarioError, match="invalid regular expression"):
        load_scenarios([f])
    f.write_text("- name: a\n  patient: p\n  service: s\n  colour: red\n  expect: {cards: none}\n")
    with pytest.raises(ScenarioError, match="unknown field"):
        load_scenarios([f])


def test_check_a_service_that_trusts_a_qa_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Against a non-development service: a fresh JWT per call, signed with the key of a client it trusts."""
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    from cds.runtime.settings import load_settings
    from cds.sandbox.runner import local_service
    from cds.web.app import create_app

    key = ec.generate_private_key(ec.SECP384R1())
    pem = tmp_path / "qa.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key())) | {"kid": "qa-1", "alg": "ES384", "use": "sig"}
    (tmp_path / "qa-jwks.json").write_text(json.dumps({"keys": [jwk]}))
    settings = load_settings(  # dev mode: the audience is the free port's URL, known only later
        dev=True,
        data_dir=tmp_path / "data",
        trusted_clients=[{"iss": "qa-ci", "jwks_file": str(tmp_path / "qa-jwks.json")}],
    )
    scenarios = SHIPPED / "nothing-to-say.yaml"
    with local_service(create_app, settings) as (base_url, _):
        args = ["sandbox", "check", str(scenarios), "--url", base_url]
        assert main([*args, "--key", str(pem), "--iss", "qa-ci", "--kid", "qa-1"]) == 0
        assert "3 passed, 0 failed" in capsys.readouterr().out
        assert main([*args, "--key", str(pem), "--iss", "someone-else"]) == 1
        out = capsys.readouterr().out
        assert "HTTP status: expected 200, got 401" in out and "hint: the service refused the token" in out


_OK = {"name": "a", "patient": "p", "service": "s", "expect": {"cards": "none"}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"expect": None}, "`expect`"),
        ({"patient": None}, "`patient`"),
        ({"patient": " "}, "missing patient: it must not be blank"),
        ({"colour": "red"}, "unknown field `colour`"),
        ({"orders": [1]}, "$.orders[0]"),
        ({"draft_orders": ["x"]}, "$.draft_orders[0]"),
        ({"context": ["x"]}, "$.context"),
        ({"prefetch": "no"}, "$.prefetch"),
        ({"expect": {"status": "ok", "cards": "none"}}, "$.expect.status"),
        ({"expect": {"status": 42, "cards": "none"}}, "$.expect.status"),
        ({"expect": {"cards": "some"}}, "cards 'some' is not allowed"),
        ({"expect": {"cards": "none", "other_cards": "maybe"}}, "other_cards must be one of allow or forbid"),
        ({"expect": {"cards": [{"indicator": "high"}]}}, "indicator must be one of critical, info or warning"),
        ({"expect": {"cards": [{"colour": "red"}]}}, "unknown field `colour`"),
        ({"expect": {"cards": [{"suggestions": [{"actions": ["remove"]}]}]}}, "must be one of create, delete or update"),
        ({"expect": {"cards": [{"suggestions": [{"label": "("}]}]}}, "suggestions[0].label: invalid regular"),
        ({"expect": {"cards": [{"detail": "("}]}}, "cards[0].detail: invalid regular expression"),
        ({"expect": {"status": 200}}, "write `cards: none`"),
        ({"expect": {"cards": None}}, "write `cards: none`"),
    ],
)  # fmt: skip
def test_each_declared_field_of_a_scenario_is_checked(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    """The scenario file is decoded against its declaration (ScenarioFile): one broken field is
    refused with a message naming the file, the scenario and the field."""
    f = tmp_path / "s.json"
    f.write_text(json.dumps([{k: v for k, v in (_OK | change).items() if v is not None}]))
    with pytest.raises(ScenarioError) as e:
        load_scenarios([f])
    assert str(e.value).startswith(f"{f}: scenario 'a'") and message in str(e.value), str(e.value)


def test_the_forms_a_scenario_file_may_take(tmp_path: Path) -> None:
    """One scenario, a list, or {scenarios: [...]}; a bare string suggestion is a label; a non-200
    status needs no cards."""
    card = {"kind": "k", "suggestions": ["Cancel.*", {"label": "x", "actions": ["delete"]}]}
    one = _OK | {"expect": {"cards": [card], "other_cards": "allow"}}
    for i, doc in enumerate((one, [one], {"scenarios": [one]})):
        f = tmp_path / f"s{i}.json"
        f.write_text(json.dumps(doc))
        (s,) = load_scenarios([f])
        assert s.allow_other_cards and s.cards == (
            ExpectedCard(
                kind="k", suggestions=(ExpectedSuggestion("Cancel.*"), ExpectedSuggestion("x", ("delete",)))
            ),
        )
    f = tmp_path / "e.json"
    f.write_text(json.dumps(_OK | {"expect": {"status": 412}, "prefetch": False}))
    (s,) = load_scenarios([f])
    assert (s.status, s.cards, s.prefetch, s.context, s.orders) == (412, (), False, {}, None)
