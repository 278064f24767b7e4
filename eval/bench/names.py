"""The names the benchmark's command line and its measurements share (light: no torch): the rows it times, the
clocks, its error type, and how a model path names a synthetic model."""
from __future__ import annotations

from llava.model.families import SHAPES, parse_synthetic_name

BASELINE = "baseline"
BEAM = "beam"
"""Plain beam search (``--beams`` wide): the reference of the beam-search methods."""
BEAMS = 5  # OPERA's official width
BEAM_METHODS = ("beam", "opera")
CLOCK_NAMES = ("wall", "process")
"""``wall``: elapsed time; ``process``: CPU time of this process (:data:`eval.bench.timing.CLOCKS`)."""


class BenchError(ValueError):
    """A benchmark that cannot run as asked; the message says why."""


def model_name(model_path: str, family: str | None) -> str:
    """``--model-path`` with ``--family`` folded into a synthetic name (``tiny`` + ``llava_next`` -> ``tiny-llava_next``),
    written ``<shape>-<registered family name>``; a checkpoint path is returned as is (its family is read from its
    config)."""
    parsed = parse_synthetic_name(model_path)
    if parsed is None:
        return model_path
    shape, named = parsed
    if model_path.strip().lower() in SHAPES:  # a bare shape: the family is --family's
        named = family or named
    elif family and named != family:
        raise BenchError(f"--model-path {model_path!r} names family {named!r} but --family is {family!r}")
    return f"{shape}-{named}"
