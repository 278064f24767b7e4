"""The yes/no reading of free-form answers used by the AvisC code for POPE, MME and AMBER.

The official ``recorder`` removes ``.`` and ``,``, splits on single spaces and calls an answer **no** when any word
is one of ``No``, ``not``, ``no``, ``NO`` or ends with ``n't``; every other answer, the empty one included, is
**yes**. The whole answer is scanned, so "Yes, there is a dog, but not a cat." reads as no.

>>> [to_yes_no(a) for a in ["Yes, there is.", "No.", "There isn't one.", "", "NOT sure"]]
['yes', 'no', 'no', 'yes', 'yes']
"""
from __future__ import annotations

NEG_WORDS = frozenset({"No", "not", "no", "NO"})


def is_no(answer: str) -> bool:
    """True where the official rule reads ``answer`` as a no."""
    words = answer.replace(".", "").replace(",", "").split(" ")
    return any(word in NEG_WORDS or word.endswith("n't") for word in words)


def to_yes_no(answer: str) -> str:
    """``"no"`` or ``"yes"`` by the official rule."""
    return "no" if is_no(answer) else "yes"
