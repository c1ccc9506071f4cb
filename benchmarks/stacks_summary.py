"""Where the server's time went, from py-spy's collapsed stacks (`hooks_load.py --py-spy DIR`).

    python benchmarks/stacks_summary.py DIR/medication-risk.txt [--top 25]

Prints the share of samples per function by own time (the innermost frame) and by total time
(any frame on the stack), and the share of samples under each stage of the hook path named in
STAGES (a stage counts a sample once however deep it recurses).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

# Stages of the hook path, by the function that runs them (module path fragment, function name).
STAGES = {
    "JWT gate (verify + replay)": ("cds/auth/authenticator.py", "authenticate"),
    "body read + parse + depth": ("cds/web/body.py", "read_json"),
    "request validation": ("cds/hooks/validation.py", "validate_hook_request"),
    "record indexing": ("cds/fhir/record.py", "from_resources"),
    "unmapped-code metric": ("cds/fhir/terminology/maps.py", "unmapped_systems"),
    "service evaluate": ("cds/web/app.py", "_evaluate"),
    "feedback store": ("cds/feedback/store.py", "filter_and_record"),
    "card encoding": ("cds/hooks/cards.py", "to_json"),
    "hook handler (all)": ("cds/web/app.py", "hook_endpoint"),
}
FRAME = re.compile(r"^(?P<func>[^ ]+) \((?P<file>[^:]+)(?::\d+)?\)$")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stacks", type=Path)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    samples = 0
    for line in args.stacks.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        samples += n
        names = []
        for f in frames:
            m = FRAME.match(f.strip())
            names.append((m["func"], m["file"]) if m else (f.strip(), ""))
        label = [f"{func} ({_short(file)})" for func, file in names]
        own[label[-1]] += n
        for name in set(label):
            total[name] += n
        for stage, (file, func) in STAGES.items():
            if any((fn == func or fn.endswith("." + func)) and file in fl for fn, fl in names):
                stages[stage] += n
    if not samples:
        print("no samples")
        return 1
    print(f"{samples} samples ({args.stacks.name})")
    print("stage shares:")
    for stage in STAGES:
        print(f"  {stages[stage] / samples:>6.1%}  {stage}")
    for title, counter in (("own time", own), ("total time", total)):
        print(f"top functions by {title}:")
        for name, n in counter.most_common(args.top):
            print(f"  {n / samples:>6.1%}  {name}")
    return 0


def _short(path: str) -> str:
    for marker in ("site-packages/", "/cds/", "/lib/python3"):
        if marker in path:
            return path[path.index(marker) + (len(marker) if marker != "/cds/" else 1) :]
    return path


if __name__ == "__main__":
    sys.exit(main())
