"""QA scenarios: a sample patient, a service, its context and draft orders, and the cards expected
(or none). Loaded from YAML (or JSON) files, each scenario decoded against its declaration
(`ScenarioFile`), the rules between fields checked after; `compare` turns an actual answer into a list of
readable differences, empty when the scenario passes.

A file holds one scenario, a list of them, or `{scenarios: [...]}`. One scenario:

    name: Septic patient gets a critical deterioration card
    patient: sbx-sepsis-high          # a sample patient id (cds/sandbox/patients/catalog.yaml)
    service: deterioration            # a service id from the discovery document
    orders: [order-id, ...]           # order-sign: stored draft orders (default: all of them)
    draft_orders: [{...}, ...]        # or inline FHIR request resources instead
    context: {encounterId: ...}       # extra context fields (override the built ones)
    prefetch: true                    # false: send no prefetch (tests the FHIR fallback / 412)
    expect:
      status: 200                     # HTTP status (default 200)
      cards: none                     # or a list of expected cards:
        - kind: ddi:warfarin-nsaid    # the card kind (source.topic code)
          indicator: warning
          summary: "warfarin.*ibuprofen"   # regular expression, searched case-insensitively
          detail: "bleeding"               # optional regex on the detail
          suggestions:                     # optional; listed suggestions must all be present
            - label: "Cancel ibuprofen"    # regex on the label
              actions: [delete]            # action types, in order
      other_cards: forbid             # forbid (default): any card not listed is a difference
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import orjson
import yaml
from msgspec import UNSET, Meta, UnsetType

from cds.hooks.cards import CARD_KIND_SYSTEM, ActionType, Indicator, WireCard
from cds.runtime.shapes import NOT_BLANK, ShapeError, convert


class ScenarioError(ValueError):
    """A scenario file is malformed; the message names the file, scenario and field."""


@dataclass(frozen=True)
class ExpectedSuggestion:
    label: str | None = None  # regex
    actions: tuple[str, ...] | None = None  # action types in order


@dataclass(frozen=True)
class ExpectedCard:
    kind: str | None = None
    indicator: str | None = None
    summary: str | None = None  # regex
    detail: str | None = None  # regex
    suggestions: tuple[ExpectedSuggestion, ...] | None = None

    def describe(self) -> str:
        parts = []
        if self.kind:
            parts.append(f"kind={self.kind}")
        if self.indicator:
            parts.append(f"indicator={self.indicator}")
        if self.summary:
            parts.append(f"summary~/{self.summary}/")
        if self.suggestions:
            parts.append("suggestions=[" + ", ".join(s.label or "*" for s in self.suggestions) + "]")
        return ", ".join(parts) or "any card"


@dataclass(frozen=True)
class Scenario:
    name: str
    file: Path
    patient: str
    service: str
    orders: tuple[str, ...] | None = None
    draft_orders: tuple[dict[str, Any], ...] | None = None
    context: dict[str, Any] = field(default_factory=dict)
    prefetch: bool = True
    status: int = 200
    cards: tuple[ExpectedCard, ...] = ()
    allow_other_cards: bool = False

    @property
    def id(self) -> str:
        return f"{self.file.stem} :: {self.name}"


# --- the file's shape (decoded with cds.runtime.shapes; the rules between fields follow) ---------
Text = Annotated[str, Meta(pattern=NOT_BLANK)]
_ONE_OF = re.compile(r"is not allowed; \S+ must be ")


class _Shape(msgspec.Struct, forbid_unknown_fields=True):
    pass


class SuggestionFile(_Shape):
    """A suggestion is {label: regex, actions: [create|update|delete]}"""

    label: str | None = None  # regex
    actions: list[ActionType] | None = None  # action types, in order


class CardFile(_Shape):
    """An expected card: {kind, indicator, summary, detail, suggestions}"""

    kind: str | None = None
    indicator: Indicator | None = None
    summary: str | None = None  # regex
    detail: str | None = None  # regex
    suggestions: list[SuggestionFile | str] | None = None  # a bare string is a label regex


class ExpectFile(_Shape):
    """The expected answer: {cards: [...] | none, status: 200, other_cards: forbid | allow}"""

    status: Annotated[int, Meta(ge=100, le=599)] = 200  # HTTP status
    cards: list[CardFile] | Literal["none", "no card", "no cards"] | UnsetType | None = UNSET
    other_cards: Literal["forbid", "allow"] = "forbid"


class ScenarioFile(_Shape):
    """A scenario: {name, patient, service, orders, draft_orders, context, prefetch, expect}"""

    name: Text
    patient: Text  # a sample patient id
    service: Text  # a service id
    expect: ExpectFile
    orders: list[str] | None = None  # draft order ids
    draft_orders: list[dict[str, Any]] | None = None  # FHIR request resources
    context: dict[str, Any] | None = None
    prefetch: bool = True


def _regex(value: str | None, where: str) -> str | None:
    """A regular expression of the file, compiled once here so a typo is found on load."""
    if value is not None:
        try:
            re.compile(value)
        except re.error as e:
            raise ScenarioError(f"{where}: invalid regular expression: {e}") from None
    return value


def _card(c: CardFile, where: str) -> ExpectedCard:
    suggestions = None
    if c.suggestions is not None:
        suggestions = tuple(
            ExpectedSuggestion(_regex(s, f"{where}.suggestions[{j}].label"))
            if isinstance(s, str)
            else ExpectedSuggestion(
                _regex(s.label, f"{where}.suggestions[{j}].label"),
                tuple(s.actions) if s.actions is not None else None,
            )
            for j, s in enumerate(c.suggestions)
        )
    return ExpectedCard(
        kind=c.kind,
        indicator=c.indicator,
        summary=_regex(c.summary, f"{where}.summary"),
        detail=_regex(c.detail, f"{where}.detail"),
        suggestions=suggestions,
    )


def _expected_cards(expect: ExpectFile, where: str) -> tuple[ExpectedCard, ...]:
    """The listed cards; a 200 answer must say which cards it expects, or `none` (silence is not
    a passing check by accident)."""
    if expect.status == 200 and expect.cards in (UNSET, None):
        raise ScenarioError(f"{where}.expect.cards: list the expected cards, or write `cards: none`")
    if not isinstance(expect.cards, list):
        return ()
    return tuple(_card(c, f"{where}.expect.cards[{i}]") for i, c in enumerate(expect.cards))


def _parse_scenario(raw: Any, file: Path, index: int) -> Scenario:
    where = f"{file}: scenario {index + 1}"
    if isinstance(raw, dict) and isinstance(raw.get("name"), str):
        where = f"{file}: scenario {raw['name']!r}"
    try:
        sf = convert(raw, ScenarioFile)
    except ShapeError as e:  # a value outside a choice keeps the wording scenario authors know
        problem = _ONE_OF.sub(r"\g<0>one of ", str(e))
        raise ScenarioError(f"{where}: {problem}") from None
    return Scenario(
        name=sf.name,
        file=file,
        patient=sf.patient,
        service=sf.service,
        orders=tuple(sf.orders) if sf.orders is not None else None,
        draft_orders=tuple(sf.draft_orders) if sf.draft_orders is not None else None,
        context=sf.context or {},
        prefetch=sf.prefetch,
        status=sf.expect.status,
        cards=_expected_cards(sf.expect, where),
        allow_other_cards=sf.expect.other_cards == "allow",
    )


def load_scenarios(paths: list[Path]) -> list[Scenario]:
    """Scenarios from files and directories (every *.yaml, *.yml, *.json inside, sorted)."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix in (".yaml", ".yml", ".json"))
        elif p.exists():
            files.append(p)
        else:
            raise ScenarioError(f"{p}: no such file or directory")
    out: list[Scenario] = []
    for f in files:
        try:
            data = orjson.loads(f.read_bytes()) if f.suffix == ".json" else yaml.safe_load(f.read_text())
        except (yaml.YAMLError, orjson.JSONDecodeError) as e:
            raise ScenarioError(f"{f}: cannot parse: {e}") from None
        if isinstance(data, dict) and "scenarios" in data:
            data = data["scenarios"]
        items = data if isinstance(data, list) else [data]
        out += [_parse_scenario(raw, f, i) for i, raw in enumerate(items)]
    names = [s.id for s in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ScenarioError(f"duplicate scenario names: {', '.join(dupes)}")
    return out


# --- comparison ---------------------------------------------------------------------------------
_HTML = re.compile(r"<(?!https?://)[A-Za-z!/?]")


def card_kind(card: dict[str, Any]) -> str | None:
    """A card's kind, from source.topic when it is in the card-kind code system."""
    topic = (card.get("source") or {}).get("topic") or {}
    return topic.get("code") if topic.get("system") == CARD_KIND_SYSTEM else None


def describe_card(card: dict[str, Any]) -> str:
    return f'[{card.get("indicator")}] kind={card_kind(card) or "?"} "{card.get("summary")}"'


# Plain words for the commonest breaks (the declaration's own message is used for the rest).
_SAYS: dict[str, Callable[[Any], str | None]] = {
    "summary": lambda v: (
        "summary is missing"
        if not isinstance(v, str) or not v.strip()
        else f"summary is {len(v)} characters (must be under 140)"
    ),
    "indicator": lambda v: f"indicator {v!r} is not info, warning or critical",
    "source": lambda v: None if isinstance(v, dict) and v.get("label") else "source.label is missing",
    "uuid": lambda v: "no uuid (feedback impossible)",
    "selectionBehavior": lambda v: "suggestions without a valid selectionBehavior",
}
_CARD_FIELDS = {f.encode_name: f for f in msgspec.structs.fields(WireCard)}


def spec_problems(card: dict[str, Any]) -> list[str]:
    """CDS Hooks 2.0 rules a card breaks (what would make an EHR or the official sandbox fail):
    each field decoded against the card declaration (`cds.hooks.cards.WireCard`), then the card as
    a whole for the rules that span fields; plus raw HTML in `detail`, which the official sandbox
    passes through."""
    problems = []
    for name, f in _CARD_FIELDS.items():
        if name not in card:
            if f.required:
                problems.append(_SAYS.get(name, lambda v: None)(None) or f"{name} is missing")
            continue
        value = card[name]
        if value is None or value == [] or value == {} or value == "":
            problems.append(f"{name} is empty/null (optional fields must be omitted)")
            continue
        try:
            msgspec.convert(value, f.type)
        except msgspec.ValidationError as e:
            problems.append(_SAYS.get(name, lambda v: None)(value) or f"{name}: {e}")
    problems += [f"{key} is not a card field" for key in card if key not in _CARD_FIELDS]
    if not problems:
        try:
            msgspec.convert(card, WireCard)
        except msgspec.ValidationError as e:
            problems.append(
                "suggestions without a valid selectionBehavior" if "selectionBehavior" in str(e) else str(e)
            )
    if isinstance(card.get("detail"), str) and _HTML.search(card["detail"]):
        problems.append(
            "detail contains HTML markup (detail is Markdown; some clients pass raw HTML through)"
        )
    return problems


def _suggestion_diffs(expected: tuple[ExpectedSuggestion, ...], actual: list[dict[str, Any]]) -> list[str]:
    diffs = []
    used: set[int] = set()
    for es in expected:
        found = None
        for i, s in enumerate(actual):
            if i in used:
                continue
            if es.label and not re.search(es.label, str(s.get("label", "")), re.IGNORECASE):
                continue
            found = i
            break
        if found is None:
            labels = ", ".join(repr(s.get("label")) for s in actual) or "none"
            diffs.append(f"suggestion ~/{es.label}/ missing (suggestions: {labels})")
            continue
        used.add(found)
        if es.actions is not None:
            got = tuple(a.get("type") for a in actual[found].get("actions") or [])
            if got != es.actions:
                diffs.append(
                    f"suggestion {actual[found].get('label')!r}: actions expected {list(es.actions)}, got {list(got)}"
                )
    return diffs


def card_diffs(expected: ExpectedCard, card: dict[str, Any]) -> list[str]:
    """How one actual card differs from one expected card (empty: it matches)."""
    diffs = []
    kind = card_kind(card)
    if expected.kind is not None and expected.kind != kind:
        diffs.append(f"kind: expected {expected.kind}, got {kind or 'none (no card-kind source.topic)'}")
    if expected.indicator is not None and expected.indicator != card.get("indicator"):
        diffs.append(f"indicator: expected {expected.indicator}, got {card.get('indicator')}")
    if expected.summary is not None and not re.search(expected.summary, str(card.get("summary", "")), re.I):
        diffs.append(f"summary: expected to match /{expected.summary}/, got {card.get('summary')!r}")
    if expected.detail is not None and not re.search(expected.detail, str(card.get("detail", "")), re.I):
        diffs.append(f"detail: expected to match /{expected.detail}/")
    if expected.suggestions is not None:
        diffs += _suggestion_diffs(expected.suggestions, list(card.get("suggestions") or []))
    return diffs


def compare(scenario: Scenario, status: int, body: Any) -> list[str]:
    """Every difference between what the scenario expects and what the service answered."""
    if status != scenario.status:
        detail = ""
        if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
            detail = ": " + "; ".join(str(i.get("diagnostics", "")) for i in body.get("issue") or [])
        return [f"HTTP status: expected {scenario.status}, got {status}{detail}"]
    if status != 200:
        return []
    if not isinstance(body, dict) or not isinstance(body.get("cards"), list):
        return ['response is not a CDS Hooks answer ({"cards": [...]})']
    actual: list[dict[str, Any]] = [c for c in body["cards"] if isinstance(c, dict)]
    diffs: list[str] = []
    for card in actual:
        diffs += [f"card {describe_card(card)} breaks the spec: {p}" for p in spec_problems(card)]
    remaining = list(range(len(actual)))
    for exp in scenario.cards:
        exact = next((i for i in remaining if not card_diffs(exp, actual[i])), None)
        if exact is not None:
            remaining.remove(exact)
            continue
        # The nearest card (same kind first, then fewest differences) explains what changed.
        near = sorted(
            remaining,
            key=lambda i: (
                exp.kind is not None and card_kind(actual[i]) != exp.kind,
                len(card_diffs(exp, actual[i])),
            ),
        )
        if near and (exp.kind is None or card_kind(actual[near[0]]) == exp.kind):
            i = near[0]
            remaining.remove(i)
            diffs += [f"card {exp.describe()}: {d}" for d in card_diffs(exp, actual[i])]
        else:
            diffs.append(f"missing card: {exp.describe()}")
    if not scenario.allow_other_cards:
        diffs += [f"unexpected card: {describe_card(actual[i])}" for i in remaining]
    return diffs
