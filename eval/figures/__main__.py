"""``python -m eval.figures {sparc,avisc} ...``: one command per method figure (``--help`` after the name)."""
from __future__ import annotations

import importlib
import sys

FIGURES = {"sparc": "eval.figures.sparc", "avisc": "eval.figures.avisc"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in FIGURES:
        print(f"usage: python -m eval.figures {{{','.join(FIGURES)}}} [--help | options]", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return importlib.import_module(FIGURES[argv[0]]).cli(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
