"""Warn about environment variables that look like a script's knob but are not one (``ALHPA=1.5``, ``tau=2``,
``MAX_NEW_TOKEN=8``): one line each, naming the closest knob. Called by scripts/lib/run.sh with the names the script
reads; the names of the ``<METHOD>_ARGS`` variables come from the method registry, and a variable of another script
(``SEEDS`` of the MME scripts, set while a captioning script runs) is not taken for a typo.

A variable is suspicious when its name is not a knob and, compared in upper case, equals a knob without its
underscores or is one edit (a letter added, dropped, changed, or two neighbours swapped) away from a knob of four or
more letters. Nothing else is reported: unrelated variables (PATH, LANG, DATA_PATH, ...) stay silent.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path


def edits(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and swaps of neighbours."""
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def closest(name: str, knobs: set[str]) -> str | None:
    """The knob ``name`` was probably meant to be, or None."""
    upper = name.upper()
    for knob in sorted(knobs):
        if upper == knob or upper.replace("_", "") == knob.replace("_", ""):
            return knob
    near = sorted((edits(upper, knob), knob) for knob in knobs if len(knob) >= 4)
    return near[0][1] if near and near[0][0] <= 1 else None


def method_args_names() -> set[str]:
    try:
        from eval.methods import list_methods
    except ImportError:  # the warnings are a courtesy: never the reason a script stops
        return set()
    return {f"{name.upper()}_ARGS" for name in list_methods()}


def every_scripts_variables() -> set[str]:
    """The knobs and own variables of every script: one meant for another script is no typo."""
    scripts = Path(__file__).resolve().parents[1]
    names = set()
    for path in scripts.glob("**/*.sh"):
        for line in path.read_text(encoding="utf-8").splitlines():
            words = line.split()
            if words[:1] in (["knob"], ["describe"]) and len(words) > 1:
                names.add(words[1])
            elif words[:1] == ["defaults"]:
                names.update(word.split("=")[0] for word in words[1:])
    return names


def main(argv: list[str]) -> int:
    script, knobs = argv[0], set(argv[1:]) | method_args_names() | every_scripts_variables()
    for name in sorted(os.environ):
        if name in knobs:
            continue
        knob = closest(name, knobs)
        if knob:
            print(f"warning: {name} is set but is not a variable of this script (did you mean {knob}?); it is "
                  f"ignored (bash {script} --help lists the variables)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
