"""Benchmarks as data: one :class:`~eval.benchmarks.spec.BenchmarkSpec` per benchmark, registered by the modules of
this package (``captioning``: COCO, IIW-400, DOCCI, a folder; ``pope``, ``mme``, ``amber``, ``llava_bench``), and the
resolution of a run's settings (:mod:`eval.benchmarks.resolve`). Adding a benchmark: a module here that registers a
spec with its reader (and a scorer module ``eval.<scorer>`` if its scoring is new), imported below.

>>> sorted(BENCHMARKS)[:3], get_benchmark("pope").task.name, get_benchmark("coco").scorer
(['amber', 'coco', 'docci'], 'yesno', 'chair')
"""
from __future__ import annotations

# each module registers its specs; the order here is the order of listings (the papers' order)
from eval.benchmarks import captioning  # noqa: F401
from eval.benchmarks import pope  # noqa: F401
from eval.benchmarks import mme  # noqa: F401
from eval.benchmarks import amber  # noqa: F401
from eval.benchmarks import llava_bench  # noqa: F401
from eval.benchmarks.resolve import ResolvedRun, apply_family, protocol_table, resolve_run
from eval.benchmarks.spec import (
    BENCHMARKS,
    CAPTION,
    OPEN,
    TASK_KINDS,
    YESNO,
    BenchmarkSpec,
    DataSettings,
    PerFamily,
    TaskKind,
    benchmarks_of,
    get_benchmark,
    list_benchmarks,
    register_benchmark,
)

__all__ = ["BENCHMARKS", "CAPTION", "OPEN", "TASK_KINDS", "YESNO", "BenchmarkSpec", "DataSettings", "PerFamily",
           "ResolvedRun", "TaskKind", "apply_family", "benchmarks_of", "get_benchmark", "list_benchmarks",
           "protocol_table", "register_benchmark", "resolve_run"]
