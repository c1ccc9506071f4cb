"""Map local lab and vital-sign codes to the LOINC codes the service reads, precision first.

For each local row: read the name (`normalize.parse`), score every concept by how closely the
analyte words agree with the concept's names (rapidfuzz; plus MiniLM sentence embeddings when the
model package is installed), then pick the concept's code whose specimen, timing, property/unit and
method fit. Hard checks veto an automatic map whatever the score: a specimen the code does not cover
(urine vs serum), a unit of another dimension (mg/dL vs mmol/L picks 2160-0 vs 14682-9; mmol/mol is
not %), a timed collection, an arterial-only concept from venous blood, a method no code carries.
`equivalent` needs confidence >= threshold, no veto and a clear lead over the next concept;
anything weaker with a plausible candidate is `inexact` (a person reviews it); the rest `unmatched`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cds.fhir.terminology import LOINC
from cds.fhir.terminology.concepts import Concept, LoincCode, concepts
from cds.fhir.terminology.normalize import ParsedName, dictionary, parse
from cds.fhir.units import convert, normalize_unit

DEFAULT_THRESHOLD = 0.90
REVIEW_FLOOR = 0.55  # below this the best candidate is no suggestion at all: unmatched
MARGIN = 0.05  # an automatic map needs this lead over the best other concept
EMBEDDING_WEIGHT = 0.5
EVIDENCE_URL = "urn:cds:fhir:extension:mapping-evidence"  # project-local extension (no public profile)
DEFAULT_SYSTEM = "urn:cds:local-codes"

# Which row specimens a LOINC system covers (LOINC Users' Guide 2.77, section 2.2.5 System).
_BLOOD_SITES = frozenset({"Bld", "BldA", "BldV", "BldC"})
_COVERS: dict[str, frozenset[str]] = {
    "Ser/Plas": frozenset({"SerPl"}),
    "Ser/Plas/Bld": frozenset({"SerPl"}) | _BLOOD_SITES,
    "Bld": _BLOOD_SITES,
    "BldA": frozenset({"BldA"}),
    "BldV": frozenset({"BldV"}),
    "BldC": frozenset({"BldC"}),
    "PPP": frozenset({"PPP", "SerPl"}),
    "Urine": frozenset({"Urine"}),
    "Mouth": frozenset({"Mouth"}),
    "Axillary": frozenset({"Axillary"}),
    "Rectum": frozenset({"Rectum"}),
    "Tympanic membrane": frozenset({"Tympanic membrane"}),
}
_UNITLESS = {
    "",
    "1",
    "{ratio}",
    "ratio",
    "{inr}",
    "inr",
    "{score}",
    "score",
    "points",
    "{index}",
    "ph",
    "[ph]",
}


@dataclass(frozen=True)
class LocalRow:
    code: str
    display: str
    system: str = DEFAULT_SYSTEM
    unit: str = ""
    specimen: str = ""
    category: str = ""


@dataclass
class Decision:
    row: LocalRow
    equivalence: str  # equivalent | inexact | unmatched
    target: LoincCode | None = None
    concept: Concept | None = None
    confidence: float = 0.0
    lexical: float = 0.0
    embedding: float | None = None
    evidence: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Phrase:
    concept: int
    words: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.words)


def _concept_phrases(cs: Sequence[Concept]) -> list[_Phrase]:
    """Names each concept answers to: its table label and its codes' LOINC long and short names."""
    out: dict[tuple[int, tuple[str, ...]], _Phrase] = {}
    for i, c in enumerate(cs):
        names = [c.label] + [n for x in c.codes if x.is_known() for n in (x.name, x.short)]
        for n in names:
            words = parse(n).analyte
            if words:
                out.setdefault((i, tuple(sorted(words))), _Phrase(i, words))
    return list(out.values())


def _word_match(a: str, b: str) -> bool:
    """One word standing for another: equal, or a typo of a long word ("potasium")."""
    if a == b:
        return True
    from rapidfuzz.distance import Levenshtein

    return min(len(a), len(b)) >= 6 and Levenshtein.distance(a, b) <= 1


def _words_differ(row: Sequence[str], phrase: Sequence[str]) -> str:
    """The words of either side with no counterpart on the other ("hdl" vs "ldl"); empty if none.

    Character similarity alone maps HDL to LDL and QT to QTc: short words must agree exactly.
    """
    extra = [w for w in row if not any(_word_match(w, q) for q in phrase)]
    missing = [q for q in phrase if not any(_word_match(w, q) for w in row)]
    return ", ".join([*(f"+{w}" for w in extra), *(f"-{w}" for w in missing)])


def _unit_fits(unit: str | None, code: LoincCode) -> tuple[bool, str]:
    rules = dictionary()["exact_unit_properties"]["properties"]
    if not unit:
        return True, "no unit given"
    u = normalize_unit(unit) or unit
    target = code.unit or ""
    if code.property in rules:
        ok = u in rules[code.property]
        return (
            ok,
            f"unit {unit} {'is' if ok else 'is not'} the {code.property} unit {'/'.join(rules[code.property])}",
        )
    if target.lower() in _UNITLESS or target.startswith("{") or target == "[pH]":
        ok = u.lower() in _UNITLESS
        return ok, f"unit {unit} {'fits' if ok else 'does not fit'} unitless {code.property or code.scale}"
    ok = convert(1.0, u, target) is not None
    return ok, f"unit {unit} {'converts to' if ok else 'does not convert to'} {target} ({code.property})"


class Mapper:
    """Scores local rows against the concept list; `threshold` is the confidence for `equivalent`."""

    def __init__(
        self,
        threshold: float = DEFAULT_THRESHOLD,
        embeddings: bool = True,
        concept_list: Sequence[Concept] | None = None,
        word_gate: bool = True,
    ) -> None:
        """`word_gate=False` drops the word-agreement check: only for measuring what it buys."""
        from rapidfuzz import fuzz, process

        self._fuzz, self._process = fuzz, process
        self.threshold = threshold
        self.word_gate = word_gate
        self.concepts = tuple(c for c in (concept_list or concepts()) if any(x.is_known() for x in c.codes))
        self.phrases = _concept_phrases(self.concepts)
        self._phrase_texts = [p.text for p in self.phrases]
        d = dictionary()
        self._site_sensitive = set(d["site_sensitive"]["concepts"])
        self.encoder: Any = None
        self.embedding_note = "lexical only"
        if embeddings:
            from cds.fhir.terminology.embedding import Encoder, ModelUnavailable

            try:
                self.encoder = Encoder()
                self._phrase_vecs = self.encoder.encode(self._phrase_texts)
                self.embedding_note = "all-MiniLM-L6-v2 (sha256-checked)"
            except ModelUnavailable as e:
                self.embedding_note = f"lexical only: {e}"

    # --- scoring ------------------------------------------------------------------------------
    def _lexical(self, analytes: list[str]) -> Any:
        import numpy as np

        scores = self._process.cdist(
            analytes, self._phrase_texts, scorer=self._fuzz.token_sort_ratio, workers=1
        )
        return np.asarray(scores, dtype=np.float32) / 100.0

    def _concept_scores(
        self, lex_row: Any, emb_row: Any | None
    ) -> list[tuple[float, float, float | None, int, int]]:
        """Per concept: (confidence, lexical, embedding, concept index, phrase index), best first."""
        best: dict[int, tuple[float, float, float | None, int]] = {}
        for j, p in enumerate(self.phrases):
            lx = float(lex_row[j])
            em = float(emb_row[j]) if emb_row is not None else None
            conf = (
                lx
                if em is None or lx >= 1.0
                else max(lx, (1 - EMBEDDING_WEIGHT) * lx + EMBEDDING_WEIGHT * em)
            )
            if p.concept not in best or conf > best[p.concept][0]:
                best[p.concept] = (conf, lx, em, j)
        return sorted(((v[0], v[1], v[2], k, v[3]) for k, v in best.items()), key=lambda t: -t[0])

    def map_rows(
        self, rows: Sequence[LocalRow], progress: Callable[[int], None] | None = None
    ) -> list[Decision]:
        """One decision per row, in order."""
        parsed = [parse(r.display, r.unit, r.specimen) for r in rows]
        uniq = sorted({p.analyte_text for p in parsed})
        index = {a: i for i, a in enumerate(uniq)}
        lex = self._lexical(uniq) if uniq else None
        emb = None
        if self.encoder is not None and lex is not None:
            # Only analytes without an exact lexical match need the model (it cannot change those).
            need = [i for i, a in enumerate(uniq) if a and float(lex[i].max()) < 1.0]
            emb = {}
            if need:
                vecs = self.encoder.encode([uniq[i] for i in need])
                sims = vecs @ self._phrase_vecs.T
                emb = {i: sims[k] for k, i in enumerate(need)}
        out = []
        decided: dict[ParsedName, Decision] = {}  # rows that read the same get the same decision
        for n, (row, p) in enumerate(zip(rows, parsed, strict=True)):
            if p not in decided:
                i = index[p.analyte_text]
                emb_row = emb.get(i) if emb is not None else None
                decided[p] = self._decide(row, p, lex[i] if lex is not None else None, emb_row)
            d = decided[p]
            out.append(replace(d, row=row, evidence=list(d.evidence)))
            if progress is not None and (n + 1) % 500 == 0:
                progress(500)
        if progress is not None:
            progress(len(rows) % 500)
        return out

    def _decide(self, row: LocalRow, p: ParsedName, lex_row: Any, emb_row: Any | None) -> Decision:
        if not p.analyte or lex_row is None:
            return Decision(row, "unmatched", evidence=["no analyte words in the name"])
        ranked = self._concept_scores(lex_row, emb_row)
        conf, lx, em, ci, pi = ranked[0]
        second = ranked[1][0] if len(ranked) > 1 else 0.0
        concept = self.concepts[ci]
        ev = [
            f"analyte '{p.analyte_text}' ~ {concept.id} (lexical {lx:.2f}"
            + (f", embedding {em:.2f}" if em is not None else "")
            + ")"
        ]
        if conf < REVIEW_FLOOR:
            return Decision(row, "unmatched", None, None, conf, lx, em, [*ev, "no concept close enough"])
        target, vetoes, notes = self._pick_code(concept, p)
        ev += notes
        differ = _words_differ(p.analyte, self.phrases[pi].words) if self.word_gate else ""
        if differ:
            vetoes.append(f"words differ from '{self.phrases[pi].text}': {differ}")
        auto = conf >= self.threshold and not vetoes and conf - second >= MARGIN
        if conf - second < MARGIN:
            vetoes.append(f"next concept {self.concepts[ranked[1][3]].id} scores {second:.2f}")
        if conf < self.threshold:
            vetoes.append(f"confidence {conf:.2f} below threshold {self.threshold:.2f}")
        decision = "equivalent" if auto else "inexact"
        return Decision(row, decision, target, concept, conf, lx, em, ev + [f"review: {v}" for v in vetoes])

    def _pick_code(self, concept: Concept, p: ParsedName) -> tuple[LoincCode, list[str], list[str]]:
        """The concept's code that fits the row; vetoes say why none fits automatically."""
        site = concept.id in self._site_sensitive
        vetoes: list[str] = []
        notes: list[str] = []
        known = [c for c in concept.codes if c.is_known()]
        if site and "BldA" not in p.specimens:
            vetoes.append(f"{concept.id} is read as arterial; the name does not say arterial")
        concept_methods = {c.method for c in known if c.method}
        for m in sorted(p.methods - concept_methods - {"Automated count", "Calculated"}):
            vetoes.append(f"method '{m}' is not one of {concept.id}'s codes")
        survivors = []
        for order, c in enumerate(known):
            covers = _COVERS.get(c.system)
            if p.specimens:
                if covers is None or not p.specimens <= covers:
                    continue
                if site and c.system == "Bld":
                    continue
            if (c.time == "24H") != (p.timing == "24H"):
                continue
            ok, _ = _unit_fits(p.unit, c)
            if not ok:
                continue
            exact = (
                0
                if covers is not None
                and c.system in ("Ser/Plas", "Bld", "BldA", "BldC")
                and ({"Ser/Plas": "SerPl"}.get(c.system, c.system) in p.specimens)
                else 1
            )
            generic = 0 if p.specimens or covers is None else 1  # no specimen named: prefer generic sites
            # the most specific method named wins ("CKD-EPI 2021" over "CKD-EPI"); none beats another
            method = -len(c.method) if c.method and c.method in p.methods else (1 if not c.method else 2)
            survivors.append(((exact, generic, method, order), c))
        if not survivors:
            best = known[0]
            if p.specimens:
                notes.append(
                    f"specimen {'/'.join(sorted(p.specimens))} is not covered by any {concept.id} code"
                )
            if p.timing:
                notes.append(f"timing {p.timing} matches no {concept.id} code")
            for c in known:
                ok, why = _unit_fits(p.unit, c)
                if not ok:
                    notes.append(why)
                    break
            vetoes.append("no code of the concept fits specimen, timing and unit")
            return best, vetoes, notes
        survivors.sort(key=lambda t: t[0])
        code = survivors[0][1]
        props = {c.property for _, c in survivors}
        if not p.unit and len(props) > 1:
            vetoes.append(f"no unit: {concept.id} has codes of properties {', '.join(sorted(props))}")
        notes.append(
            f"specimen {'/'.join(sorted(p.specimens)) or 'not stated'} -> {code.system}; "
            + _unit_fits(p.unit, code)[1]
            + (f"; timing {p.timing}" if p.timing else "")
        )
        return code, vetoes, notes


# --- FHIR ConceptMap --------------------------------------------------------------------------
def concept_map(decisions: Iterable[Decision], name: str = "LocalToLoinc", note: str = "") -> dict[str, Any]:
    """A FHIR R4 ConceptMap: one group per local system, one element per row, at most one target."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for d in decisions:
        element: dict[str, Any] = {"code": d.row.code}
        if d.row.display:
            element["display"] = d.row.display
        comment = f"confidence {d.confidence:.2f}; " + "; ".join(d.evidence)
        ext = [
            {"url": "confidence", "valueDecimal": round(d.confidence, 3)},
            {"url": "lexical", "valueDecimal": round(d.lexical, 3)},
        ]
        if d.embedding is not None:
            ext.append({"url": "embedding", "valueDecimal": round(d.embedding, 3)})
        ext += [{"url": "evidence", "valueString": e} for e in d.evidence]
        target: dict[str, Any] = {"equivalence": d.equivalence, "comment": comment}
        if d.target is not None and d.equivalence != "unmatched":
            target = {"code": d.target.code, "display": d.target.name} | target
        target["extension"] = [{"url": EVIDENCE_URL, "extension": ext}]
        element["target"] = [target]
        groups.setdefault(d.row.system or DEFAULT_SYSTEM, []).append(element)
    out: dict[str, Any] = {
        "resourceType": "ConceptMap",
        "name": name,
        "status": "draft",
        "description": "Local codes mapped to LOINC by `cds terminology map`; "
        "'inexact' targets need a person's review before use. " + note,
        "targetUri": LOINC,
        "group": [{"source": s, "target": LOINC, "element": els} for s, els in groups.items()],
    }
    return out
