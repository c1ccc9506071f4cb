"""Local lab and vital-sign names, read into analyte words, specimen, timing and unit.

"CREAT SER/PL (mg/dL)" -> analyte "creatinine", specimen SerPl, unit mg/dL. Abbreviations come from
`abbreviations.json` (sources listed there); words the dictionary does not know stay in the analyte,
so a name with a qualifier the mapper does not understand ("ionized", "clearance") never matches a
concept exactly and goes to a person's review.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
# Units written into a display: "(mg/dL)", "%", "mmol/L", "x10^3/uL", "bpm"
_UNIT_IN_TEXT = re.compile(
    r"\(?\b((?:mg|g|mmol|umol|µmol|meq|ng|ug|iu|u|ml|l|mosm|k|x10\^?\d|10\*\d)"
    r"/(?:dl|l|ml|ul|mol|g|min|kg|24h|d)(?:/1\.73\s?m2)?|mm\s?hg|mmhg|bpm|msec|ms)\b\)?|%"
    r"|\((ml|l|kg|g|cm|mmhg|bpm|ms|sec|s)\)",
    re.IGNORECASE,
)
_SPLIT = re.compile(r"[^a-z0-9+%]+")


@lru_cache(maxsize=1)
def dictionary() -> dict[str, Any]:
    return json.loads((_HERE / "abbreviations.json").read_text())


@dataclass(frozen=True)
class ParsedName:
    """What a local name says, word by word."""

    analyte: tuple[str, ...]  # expanded analyte words, in order, neutral words dropped
    specimens: frozenset[str]  # LOINC system classes named (SerPl, Bld, BldA, Urine, ...)
    timing: str | None  # "24H" for a timed collection
    methods: frozenset[str]  # LOINC method names hinted ("Pulse oximetry", "Glucometer", ...)
    unit: str | None  # the unit column, else one written in the name

    @property
    def analyte_text(self) -> str:
        return " ".join(self.analyte)


def _tokens(text: str) -> list[str]:
    return [t for t in _SPLIT.split(text.lower()) if t]


@lru_cache(maxsize=65536)
def parse(display: str, unit: str = "", specimen: str = "") -> ParsedName:
    """Read a local display (and its optional unit and specimen columns)."""
    d = dictionary()
    # "[Mass/volume]", "[#/Vol]": LOINC-style property brackets, read from the unit instead
    # ("[Partial pressure]" names the analyte: kept). "/Hemoglobin.total" is HbA1c's denominator.
    text = re.sub(r"\[(?!Partial)[^\]]*\]", " ", display).replace("/Hemoglobin.total", " ")
    text = text.replace("µ", "u").replace("μ", "u")
    found_unit = unit.strip() or None
    if found_unit is None:
        m = _UNIT_IN_TEXT.search(text)
        if m:
            found_unit = (m.group(1) or m.group(2) or m.group(0)).strip("() ")
    text = _UNIT_IN_TEXT.sub(" ", text)
    low = " " + " ".join(_tokens(text.replace("+", "+ "))) + " "
    low = low.replace(" + ", " ")  # a lone "+" left by "K +"
    for phrase in sorted(d["phrases"], key=len, reverse=True):
        low = low.replace(f" {phrase} ", f" {d['phrases'][phrase]} ")
    specimens: set[str] = set()
    methods: set[str] = set()
    timing = None
    analyte: list[str] = []
    neutral = set(d["neutral"])
    for tok in low.split():
        if tok in d["methods"]:
            methods.add(d["methods"][tok])
        if tok in d["timing"]:
            timing = d["timing"][tok]
        elif tok in d["specimens"]:
            specimens.add(d["specimens"][tok])
        elif tok in neutral or tok == "%" or tok in d["methods"]:
            continue
        else:
            expansion = d["words"].get(tok, tok)
            words = [w2 for w in expansion.split() for w2 in d["words"].get(w, w).split()]
            for word in words:
                if word in d["methods"]:
                    methods.add(d["methods"][word])
                if word == "pulseox":
                    specimens.add(d["specimens"][word])
                    continue
                if word in neutral or word in d["methods"]:
                    continue
                if word == "arterial":
                    specimens.add("BldA")
                elif word not in analyte:
                    analyte.append(word)
    # Phrases once more over the expanded words: "microalbumin/creat ratio" is a phrase only after
    # "creat" became "creatinine".
    joined = " " + " ".join(analyte) + " "
    for phrase in sorted(d["phrases"], key=len, reverse=True):
        joined = joined.replace(f" {phrase} ", f" {d['phrases'][phrase]} ")
    again: list[str] = []
    for w in joined.split():
        for word in d["words"].get(w, w).split():
            if word not in again and word not in neutral and word not in d["methods"]:
                again.append(word)
    analyte = again
    for tok in _tokens(specimen):
        if tok in d["specimens"]:
            specimens.add(d["specimens"][tok])
    if "Urine" in specimens and analyte[-1:] == ["output"]:
        specimens.discard("Urine")  # "urine output" is a vital sign, not a urine specimen
        analyte.insert(len(analyte) - 1, "urine")
    return ParsedName(tuple(analyte), frozenset(specimens), timing, frozenset(methods), found_unit)
