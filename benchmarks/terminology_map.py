"""`cds terminology map` on 10,000 local rows: wall time with and without the embedding model, and
the evaluation figures (with a threshold sweep) on the labelled sets.

    python benchmarks/terminology_map.py [--rows 10000] [--seed 7]

Target (issue 20): 10,000 rows in under a minute on this machine (2 cores). The rows are built from
the labelled sets' names (tests/terminology/*.csv) plus ~100 more out-of-scope test names, each
spelled in several local styles (case, specimen words, unit, site suffixes), so a file has a
realistic mix of repeated and distinct analytes. The embedding model runs once per distinct analyte
without an exact lexical match, so its cost grows with that number (printed).
"""

from __future__ import annotations

import argparse
import csv
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cds.fhir.terminology.evaluation import evaluate, read_labelled
from cds.fhir.terminology.mapper import LocalRow, Mapper
from cds.fhir.terminology.normalize import parse

HERE = Path(__file__).resolve().parents[1] / "tests" / "terminology"
MORE = """Amylase;Lipase;Ferritin;Iron;Transferrin;TIBC;Vitamin B12;Folate;Vitamin D 25-OH;PTH intact;
TSH;Free T3;Free T4;Cortisol AM;ACTH;Prolactin;Testosterone total;Estradiol;FSH;LH;HCG quant;PSA total;
CEA;CA 19-9;CA-125;AFP;Troponin I hs;CK total;CK-MB;Myoglobin;NT-proBNP;BNP;D-dimer;Fibrinogen;
aPTT;Anti-Xa heparin;Antithrombin III;Protein C activity;Protein S free;Factor VIII;von Willebrand Ag;
Haptoglobin;LDH;Reticulocytes;ESR;CRP high sensitivity;Procalcitonin;Interleukin 6;Ammonia;Osmolality;
Uric acid;Phosphorus;Magnesium;Calcium total;Chloride;Bicarbonate;Anion gap;Total protein;Globulin;
AST;ALT;GGT;Alkaline phosphatase;Bilirubin indirect;Cholesterol total;HDL cholesterol;Triglycerides;
Apolipoprotein B;Lipoprotein(a);Homocysteine;Vancomycin trough;Gentamicin peak;Tacrolimus;Cyclosporine;
Digoxin;Lithium;Valproic acid;Phenytoin;Carbamazepine;Acetaminophen;Salicylate;Ethanol;Urine drug screen;
Blood culture;Urine culture;MRSA PCR;COVID-19 PCR;Influenza A Ag;HIV 1/2 Ab;Hepatitis B surface Ag;
Hepatitis C Ab;RPR;Blood type ABO;Antibody screen;Neutrophils absolute;Lymphocytes absolute;Monocytes;
Eosinophils;Basophils;MCV;MCH;MCHC;RDW;Hemoglobin;RBC count;Nucleated RBC;Band neutrophils""".replace(
    "\n", ""
)
SPECIMENS = ["", "SER", "SERUM", "PLASMA", "WB", "BLOOD", "URINE", "POC", "ART", "VEN", "CSF"]
STYLES = ["{n}", "{N}", "{N}, {S}", "{n} ({s})", "{N} {S} - STAT", "{S} {n}", "{n} #2", "{N} (REF LAB)"]


def rows(n: int, seed: int) -> list[LocalRow]:
    rnd = random.Random(seed)
    names = [
        (i.row.display, i.row.unit)
        for f in ("evaluation.csv", "heldout.csv")
        for i in read_labelled(HERE / f)
    ]
    names += [(m.strip(), "") for m in MORE.split(";") if m.strip()]
    out, seen = [], set()
    while len(out) < n:
        name, unit = rnd.choice(names)
        spec = rnd.choice(SPECIMENS)
        text = rnd.choice(STYLES).format(n=name, N=name.upper(), s=spec.lower(), S=spec).strip(" ,-()")
        key = (text, unit)
        if key in seen and rnd.random() < 0.7:
            continue
        seen.add(key)
        out.append(LocalRow(f"L{len(out):05d}", text, system="urn:bench:lab", unit=unit))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    data = rows(args.rows, args.seed)
    analytes = {parse(r.display, r.unit).analyte_text for r in data}
    print(
        f"{len(data)} rows, {len({r.display for r in data})} distinct names, {len(analytes)} distinct analytes"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "local.csv"
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["code", "display", "system", "unit"])
            w.writerows((r.code, r.display, r.system, r.unit) for r in data)
        for extra in (["--no-embeddings"], []):
            started = time.perf_counter()
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "cds",
                    "terminology",
                    "map",
                    str(path),
                    "--out",
                    str(Path(tmp) / "cm.json"),
                    *extra,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            wall = time.perf_counter() - started
            print(
                f"cds terminology map {' '.join(extra) or '(with embeddings)'}: {wall:.1f} s wall (process start included)"
            )
            print("   " + done.stdout.strip().replace("\n", "\n   "))
    print(
        "\nevaluation (precision of automatic maps / in-scope coverage / review rate / near misses auto-mapped)"
    )
    for emb in (False, True):
        for t in (0.80, 0.85, 0.90, 0.95):
            m = Mapper(threshold=t, embeddings=emb)
            for f in ("evaluation.csv", "heldout.csv"):
                s = evaluate(HERE / f, m)
                print(
                    f"  {'embeddings' if m.encoder is not None else 'lexical   '} T={t:.2f} {f:15} "
                    f"auto {s.auto:3}/{s.rows:3}  precision {s.precision:.3f}  coverage {s.coverage:.3f} "
                    f"({s.in_scope_auto_correct}/{s.in_scope})  review {s.review_rate:.3f}  near-miss auto {len(s.near_auto)}"
                )
    print("\nablation, lexical: without the word-agreement check the threshold alone must hold precision")
    for t in (0.80, 0.85, 0.90, 0.95, 0.99):
        m = Mapper(threshold=t, embeddings=False, word_gate=False)
        for f in ("evaluation.csv", "heldout.csv"):
            s = evaluate(HERE / f, m)
            print(
                f"  no word gate T={t:.2f} {f:15} auto {s.auto:3}/{s.rows:3}  precision {s.precision:.3f}  "
                f"coverage {s.coverage:.3f}  near-miss auto {len(s.near_auto)}  wrong: {'; '.join(s.wrong[:4])}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
