"""The shape of the point-of-care readings file (cds/knowledge/care_gaps_point_of_care.json),
declared once; each measure's parameter file is declared in measures/spec.py.

The file is checked against its Struct when first read, so a typo or a wrong type stops the
service with a message naming the file, entry and field.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from cds.runtime.shapes import NOT_BLANK, ShapeError, knowledge_json

Text = Annotated[str, Meta(pattern=NOT_BLANK)]


class _Shape(msgspec.Struct, forbid_unknown_fields=True):
    pass


# --- care_gaps_point_of_care.json -----------------------------------------------------------------
About = msgspec.field(name="_about", default="")


class PreventiveVisits(_Shape):
    label: Text
    snomed: dict[str, Text]
    cpt_by_age: list[tuple[int, Text]]  # (from age, CPT code), in increasing age


class OfficeVisits(_Shape):
    label: Text
    snomed: dict[str, Text]
    cpt: Text


class VisitCodes(_Shape):
    preventive: PreventiveVisits
    office: OfficeVisits
    about: str = About


class CurrentVisit(_Shape):
    cpt: Text
    display: Text
    about: str = About


class Egfr(_Shape):
    loinc: dict[str, Text]
    as_: Text = msgspec.field(name="as")
    about: str = About


class PointOfCareFile(_Shape):
    visit_codes: VisitCodes
    current_visit: CurrentVisit
    egfr: Egfr
    about: str = About


def check_point_of_care(p: PointOfCareFile) -> None:
    ages = [age for age, _ in p.visit_codes.preventive.cpt_by_age]
    if ages != sorted(set(ages)):
        raise ShapeError("cpt_by_age must be in increasing age", "$.visit_codes.preventive.cpt_by_age")


load = knowledge_json  # the shared loader, under the name the service modules call
