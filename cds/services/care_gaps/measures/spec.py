"""A measure's parameters as data: cds/knowledge/measures/<CMS id>.json.

Each file (declared by MeasureFile, checked when first read) names the CQL library and version it follows, the value sets by CQL name and OID, the
direct codes, ages, lookbacks and thresholds, and the point-of-care content (guideline, orders).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from cds.knowledge import KNOWLEDGE_DIR
from cds.runtime.shapes import NOT_BLANK, ShapeError, checked_json

MEASURES_DIR = KNOWLEDGE_DIR / "measures"
Text = Annotated[str, Meta(pattern=NOT_BLANK)]
Url = Annotated[str, Meta(pattern=r"^https?://", title="absolute URL")]
Oid = Annotated[str, Meta(pattern=r"^[0-2](\.(0|[1-9][0-9]*))+$", title="value set OID")]
CodeRef = tuple[Text, Text]  # (system, code)


class _Shape(msgspec.Struct, forbid_unknown_fields=True):
    pass


# --- the declaration of a measure file ---------------------------------------------------------------------------
class AgeRange(_Shape):
    min: int
    max: int | None = None
    at: Literal["start", "end"] = "end"


class Guideline(_Shape):
    label: Text
    url: Url


class OrderResource(_Shape):
    """A resource a care-gap suggestion creates: its type, category and codings (system, code, display)."""

    resourceType: Literal["ServiceRequest", "MedicationRequest"]
    coding: Annotated[list[tuple[Url, Text, Text]], Meta(min_length=1)]
    category: str | None = None
    dosage: str | None = None
    intent: Literal["proposal", "plan", "order"] | None = None
    note: str | None = None


class CareGapOrder(_Shape):
    label: Text
    resources: Annotated[list[OrderResource], Meta(min_length=1)]
    groups: list[int] = []
    min_age: int | None = None


class CareGapComponent(_Shape):
    """One test of a multi-test measure (CMS951): its value set, the LOINC it orders, its short name."""

    valueset: Text
    order_code: Text
    short: Text


class CareGap(_Shape):
    importance: Annotated[int, Meta(ge=0, le=100)]
    due: Text
    test_label: Text
    guideline: Guideline
    window_text: Text
    orders: list[CareGapOrder] = []
    out_of_control_text: str | None = None
    group_labels: list[Text] = []  # one per population group, in order
    due_no_reading: str | None = None
    due_out_of_control: str | None = None
    out_of_control_orders: list[CareGapOrder] = []
    treatment_guideline: Guideline | None = None
    # The service's card text, as templates ({value}, {date}) and tables rather than code per measure.
    out_of_control_summary: str | None = None
    evidence_summaries: dict[str, Text] = {}
    last_text: str | None = None
    due_no_reading_values: list[Text] = []
    components: list[CareGapComponent] = []


class MeasureFile(msgspec.Struct):  # measure-specific parameters beside these are allowed
    id: Annotated[str, Meta(pattern=r"^CMS[0-9]+$", title="CMS measure id")]
    title: Text
    library: Text
    library_version: Text
    measure_url: Url
    ecqi_url: Url
    citation: Text
    improvement: Literal["increase", "decrease"]
    valuesets: dict[str, Oid]
    care_gap: CareGap
    groups: Annotated[int, Meta(ge=1)] = 1
    age: AgeRange | None = None
    codes: dict[str, CodeRef] = {}
    sex: Literal["female", "male"] | None = None


def check_measure(m: MeasureFile, file_id: str) -> None:
    if m.id != file_id:
        raise ShapeError(f"id {m.id!r} differs from the file name ({file_id})", "$.id")
    if m.age is not None and m.age.max is not None and m.age.max < m.age.min:
        raise ShapeError("age.max is below age.min", "$.age")
    if m.care_gap.group_labels and len(m.care_gap.group_labels) != m.groups:
        raise ShapeError(
            f"group_labels must have one label per group ({m.groups})", "$.care_gap.group_labels"
        )
    for order in m.care_gap.orders:
        bad = [g for g in order.groups if not 1 <= g <= m.groups]
        if bad:
            raise ShapeError(
                f"order {order.label!r} names group {bad[0]}, not one of 1-{m.groups}", "$.care_gap"
            )


@dataclass(frozen=True)
class MeasureSpec:
    id: str
    title: str
    data: dict[str, Any]

    @property
    def library(self) -> str:
        return self.data["library"]

    @property
    def measure_url(self) -> str:
        return self.data["measure_url"]

    @property
    def groups(self) -> int:
        return int(self.data.get("groups", 1))

    def vs(self, name: str) -> str:
        """The OID of a value set, by its CQL name."""
        return self.data["valuesets"][name]

    def vss(self, names: list[str]) -> tuple[str, ...]:
        return tuple(self.vs(n) for n in names)

    def code(self, name: str) -> tuple[str, str]:
        """A direct-reference code (CQL `code "..."`) as (system, code)."""
        system, code = self.data["codes"][name]
        return system, code

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


# --- ecqm-libraries.json: the shared CQL libraries the measures include ------------------------------
class Library(_Shape):
    version: Text
    valuesets: dict[str, Oid]
    codes: dict[str, CodeRef] = {}


class FrailtyLibrary(Library, kw_only=True):
    age_at_least: int
    frailty_only_age_at_least: int
    advanced_illness_lookback_years: Annotated[int, Meta(ge=1)]


class LibrariesFile(_Shape):
    source: Text
    Hospice: Library
    PalliativeCare: Library
    AdvancedIllnessandFrailty: FrailtyLibrary
    AdultOutpatientEncounters: Library


def check_libraries(f: LibrariesFile) -> None:
    frailty = f.AdvancedIllnessandFrailty
    if not frailty.age_at_least < frailty.frailty_only_age_at_least:
        raise ShapeError(
            "age_at_least must be below frailty_only_age_at_least", "$.AdvancedIllnessandFrailty"
        )


@lru_cache(maxsize=32)
def load_spec(measure_id: str) -> MeasureSpec:
    """A measure's parameters, checked against MeasureFile; ShapeError naming the file otherwise."""
    path = MEASURES_DIR / f"{measure_id}.json"
    data = checked_json(path, MeasureFile, lambda m: check_measure(m, measure_id))
    return MeasureSpec(id=data["id"], title=data["title"], data=data)
