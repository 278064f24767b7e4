"""Names of the random models of :mod:`llava.model.synthetic` (``tiny``, ``tiny-next``, ``tiny-instructblip``,
``7b``, ...), which every entry point accepts in place of a checkpoint. Light: no torch import.

>>> parse_synthetic_name("tiny-next"), parse_synthetic_name("7b-instructblip"), parse_synthetic_name("./tiny")
(('tiny', 'llava_next'), ('7b', 'instructblip'), None)
"""
from __future__ import annotations

import re

SYNTHETIC_NAME = re.compile(
    r"^(?P<shape>tiny|7b)(?:[-_:](?P<family>llava|llava[-_]next|next|instructblip))?$", re.IGNORECASE
)


def parse_synthetic_name(name: str) -> tuple[str, str | None] | None:
    """``(shape, family or None)`` for names like ``tiny``, ``7b``, ``tiny-next``, ``7b-instructblip``; None for
    anything else (a checkpoint path)."""
    match = SYNTHETIC_NAME.match(name.strip())
    if match is None:
        return None
    family = (match.group("family") or "").lower().replace("-", "_") or None
    return match.group("shape").lower(), "llava_next" if family == "next" else family
