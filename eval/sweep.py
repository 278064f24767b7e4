"""Sweeps: the product of parameter grids, each point a normal run of a runner, scored, tabled and drawn.

Usage::

    python -m eval.sweep caption --grid alpha=1.05,1.1,1.2 --grid tau=1,1.5,2 \\
        --dataset-type coco --image-folder data/coco/val2014 --model-path liuhaotian/llava-v1.5-7b --method sparc \\
        --save-path results/sweeps --experiment-name sparc_coco
    python -m eval.sweep vqa --grid masking_scheme=zeros,ones,noise --benchmark pope --pope-split coco/random ...
    python -m eval.sweep caption --grid method=baseline,sparc,vcd --dataset-type coco ...

``--grid NAME=V1,V2,...`` (repeatable) varies a parameter of the method (its official name), a protocol field
(``max_new_tokens``, ``temperature``, ...), the ``preset`` or the ``method`` itself; every other flag is the runner's
(``eval.caption`` or ``eval.vqa``) and holds for every point. Each point is a normal, resumable run named
``<experiment-name>__<name>=<value>_...`` under ``--save-path``, whose ``_results.json`` records the point's values
with the source ``sweep``; it is scored with its benchmark's scorer (``--score-args="..."`` passes what that scorer
needs beyond the answers file, e.g. MME's ``--gt_dir``, a judge's ``--base_url``). Then ``<experiment-name>_sweep.json``
and ``_sweep.md`` (one row per point: the varied values and the benchmark's metrics, the baseline first) and a
figure ``<experiment-name>_sweep.png`` (CHAIR: precision against recall with the Pareto front; other benchmarks: the
headline metric against the swept values, a heatmap for two grids).

Every point is resolved and checked (names, types, ranges, layers against the model, files, the output folder)
before the first run starts. A failed point is reported and the others go on; rerunning the same command resumes:
a finished point is neither decoded nor scored again. A reference run with plain decoding (``<name>__baseline``) is
added unless the grid varies the method or ``--no-baseline`` is given.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import importlib
import io
import itertools
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from eval.benchmarks.resolve import SWEEP_SOURCE
from eval.files import InputError, read_json, write_json_atomic, write_text_atomic

RUNNERS = {"caption": "eval.caption", "vqa": "eval.vqa"}
BASELINE = "baseline"
VALUE = re.compile(r"(?!.*__)[A-Za-z0-9._+\-]+")
"""What a grid value may hold (it is part of the point's file names; ``__`` separates the experiment's name)."""


@dataclass(frozen=True)
class Grid:
    """One ``--grid NAME=V1,V2,...``: a setting and its values (as written)."""

    name: str
    values: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> "Grid":
        name, sep, raw = text.partition("=")
        name = name.strip().replace("-", "_")
        values = tuple(v.strip() for v in raw.split(",") if v.strip())
        if not sep or not name or not values:
            raise InputError(f"--grid {text!r}: expected NAME=V1,V2,...")
        for value in values:
            if not VALUE.fullmatch(value):
                raise InputError(f"--grid {name}: value {value!r} may hold letters, digits, '.', '_', '+' and '-' "
                                 "only, and no '__' (it is part of the point's file names)")
        if len(set(values)) != len(values):
            raise InputError(f"--grid {name}: a value is given twice")
        return cls(name, values)


@dataclass
class Point:
    """One point of a sweep: its values, its run, and what became of it."""

    values: dict[str, str]
    name: str
    spec: Any = None
    status: str = "pending"
    reason: str | None = None
    metrics_file: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    baseline: bool = False

    @property
    def answers(self) -> Path:
        from eval.files import RunPaths

        return RunPaths(self.spec.output.save_path, self.spec.output.experiment_name).answers

    def label(self) -> str:
        return "baseline" if self.baseline else " ".join(f"{k}={v}" for k, v in self.values.items())


def point_name(experiment: str, values: dict[str, str]) -> str:
    return experiment + "__" + "_".join(f"{name}={value}" for name, value in values.items())


def flag_of(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def without_flags(argv: list[str], names: set[str]) -> list[str]:
    """``argv`` without the flags (and their values) of ``names`` (dash or underscore spellings)."""
    spellings = {f"--{n.replace('_', '-')}" for n in names} | {f"--{n}" for n in names}
    kept, skip = [], False
    for item in argv:
        if skip:
            skip = False
            continue
        flag = item.split("=", 1)[0]
        if flag in spellings:
            skip = "=" not in item
            continue
        kept.append(item)
    return kept


def plan(runner: str, grids: list[Grid], argv: list[str], baseline: bool) -> tuple[str, list[Point]]:
    """The sweep's experiment name and every point of the grids (and the baseline), each resolved and checked as its
    run will be; ``InputError`` listing every point that cannot run, before anything runs."""
    from eval.cli import parse_args, run_spec
    from eval.methods import get_method
    from llava.settings import PROTOCOL_FIELDS

    module = importlib.import_module(runner)
    prog, default_method = f"python -m {runner}", module.DEFAULT_METHOD
    names = [g.name for g in grids]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise InputError(f"--grid {', '.join(twice)} is given twice: give each name once, with all its values")
    given = {item.split("=", 1)[0] for item in argv if item.startswith("--")}
    for name in names:
        if flag_of(name) in given or f"--{name}" in given:
            raise InputError(f"{name} is both a --grid and a flag: give it once")
    base = parse_args(runner, prog, module.__doc__, default_method, argv)
    experiment = base.experiment_name
    base_knobs = {"method", "method_args", "preset", *get_method(base.method).param_names()}

    def point_argv(values: dict[str, str], name: str) -> list[str]:
        extra = [item for n, v in values.items() for item in (flag_of(n), v)]
        return [*without_flags(argv, {"experiment_name"}), *extra, "--experiment-name", name]

    points = [Point(dict(zip(names, combo)), "") for combo in itertools.product(*(g.values for g in grids))]
    for point in points:
        point.name = point_name(experiment, point.values)
    if baseline:
        points.insert(0, Point({}, f"{experiment}__{BASELINE}", baseline=True))
    problems: dict[str, list[str]] = {}  # message -> the points it concerns (one line per distinct message)
    for point in points:
        point_args = point_argv(point.values, point.name)
        if point.baseline:
            point_args = [*without_flags(point_args, base_knobs), "--method", BASELINE]
        refused = io.StringIO()
        try:
            method = get_method(point.values.get("method", base.method))
            for name in point.values:
                if name not in ("method", "preset") and name not in PROTOCOL_FIELDS and name not in method.param_names():
                    close = difflib.get_close_matches(name.lower(), [*method.param_names(), *PROTOCOL_FIELDS], 1)
                    raise InputError(f"{name} is not a parameter of {method.name} nor a protocol setting"
                                     + (f" (did you mean {close[0]}?)" if close else " (the grid varies method "
                                        "parameters, protocol fields, the preset or the method)"))
            with contextlib.redirect_stderr(refused):  # argparse's usage block, once per point, says nothing more
                args = parse_args(runner, prog, module.__doc__, default_method, point_args)
            spec = run_spec(args)
        except SystemExit:
            errors = [line for line in refused.getvalue().splitlines() if ": error: " in line]
            message = errors[-1].split(": error: ", 1)[1] if errors else "the runner refused these flags"
            problems.setdefault(message, []).append(point.label())
            continue
        except (InputError, ValueError) as e:  # ValueError: an unknown method name
            problems.setdefault(str(e), []).append(point.label())
            continue
        swept = {n: SWEEP_SOURCE for n in point.values}
        if point.baseline:  # the sweep chose plain decoding for this point: not a result of the papers' settings
            swept["method"] = SWEEP_SOURCE
        sources = {**spec.run.sources, **swept}
        point.spec = dataclasses.replace(spec, run=dataclasses.replace(spec.run, sources=sources))
    if problems:
        lines = [f"{', '.join(labels) if len(labels) < len(points) else 'every point'}: {message}"
                 for message, labels in problems.items()]
        raise InputError("points that cannot run (nothing was started):\n  " + "\n  ".join(lines))
    return experiment, points


def check_scoring(points: list[Point], score_args: list[str]) -> None:
    """``InputError`` before anything runs when the benchmark's scorer refuses its arguments (``--score-args``)."""
    from eval.scoring import get_scorer

    scorer = get_scorer(points[0].spec.run.benchmark.scorer)
    if scorer is not None:
        try:
            scorer.check_arguments(score_args)
        except InputError as e:
            raise InputError(f"{e}; give what it needs with --score-args=\"...\" (nothing was started)") from e


def run_point(point: Point, models: dict[Any, Any]) -> None:
    """Decode one point (a normal resumable run; the model loaded once per sweep), recording a failure."""
    from eval.run import execute

    try:
        code = execute(point.spec, models)
        point.status = "answered" if code == 0 else "incomplete"
    except InputError as e:
        point.status, point.reason = "failed", str(e)
    except Exception as e:  # noqa: BLE001 - one point's failure must not stop the others
        point.status, point.reason = "failed", f"{type(e).__name__}: {e}"


def score_point(point: Point, score_args: list[str]) -> None:
    """Score one point with its benchmark's scorer, unless its metrics file is newer than its answers."""
    from eval.files import RunPaths
    from eval.scoring import get_scorer

    scorer_name = point.spec.run.benchmark.scorer
    if scorer_name is None or point.status == "failed":
        return
    scorer = get_scorer(scorer_name)
    if scorer is None:
        point.reason = f"no scorer named {scorer_name!r} is registered"
        return
    metrics = RunPaths.of_answers(point.answers).metrics(scorer_name)
    if not (metrics.is_file() and metrics.stat().st_mtime >= point.answers.stat().st_mtime):
        try:
            code = scorer.score(point.answers, score_args)
        except InputError as e:
            point.status, point.reason = "not scored", str(e)
            return
        except SystemExit as e:  # the scorer's command line refused its arguments (its message is above)
            point.status, point.reason = "not scored", f"the {scorer_name} scorer exited with {e.code}"
            return
        if not metrics.is_file():
            point.status, point.reason = "not scored", f"the {scorer_name} scorer wrote no metrics (exit {code})"
            return
    try:
        data = read_json(metrics)
    except InputError as e:
        point.status, point.reason = "not scored", str(e)
        return
    runs = scorer.runs(data)
    point.metrics_file = str(metrics)
    point.metrics = {k: v for run in runs[:1] for k, v in run.values.items() if not isinstance(v, (dict, list))}
    if point.status == "answered":
        point.status = "scored"


def columns_of(points: list[Point]) -> list[Any]:
    """The scorer's columns of the sweep's benchmark (those a point has a value for)."""
    from eval.scoring import get_scorer

    scorer_name = points[0].spec.run.benchmark.scorer
    if scorer_name is None:
        return []
    scorer = get_scorer(scorer_name)
    return [c for c in scorer.columns if any(p.metrics.get(c.key) is not None for p in points)]


def fmt(value: Any, scale: float = 1.0) -> str:
    return "-" if value is None else f"{scale * float(value):.2f}"


@dataclass(frozen=True)
class SweepTables:
    """What :func:`write_tables` wrote: the json's content and the Markdown text, and their files."""

    data: dict[str, Any]
    markdown: str
    json_file: Path
    markdown_file: Path


def write_tables(points: list[Point], grids: list[Grid], folder: Path, experiment: str) -> SweepTables:
    """``<experiment>_sweep.json`` and ``_sweep.md``: one row per point (the baseline first)."""
    from eval.scoring import markdown_table

    columns = columns_of(points)
    header = [g.name for g in grids] + [c.header for c in columns] + ["status"]
    rows = []
    for point in points:
        cells = ["baseline" if point.baseline and i == 0 else ("" if point.baseline else point.values[g.name])
                 for i, g in enumerate(grids)]
        cells += [fmt(point.metrics.get(c.key), c.scale) for c in columns]
        cells.append(point.status if point.reason is None else f"{point.status}: {point.reason.splitlines()[0][:80]}")
        rows.append(cells)
    benchmark = points[0].spec.run.benchmark
    methods = ", ".join(dict.fromkeys(p.spec.run.method for p in points if not p.baseline))
    limit = points[0].spec.data.limit
    title = f"Sweep {experiment}: {benchmark.title}, {methods}" + (f" (trial run: --limit {limit})" if limit else "")
    markdown = f"### {title}\n\n{markdown_table(header, rows)}\n"
    md = folder / f"{experiment}_sweep.md"
    write_text_atomic(md, markdown)
    data = {
        "sweep": experiment, "benchmark": benchmark.name, "scorer": benchmark.scorer,
        "table": {"title": title, "header": header, "rows": rows},
        "grids": {g.name: list(g.values) for g in grids},
        "columns": [{"key": c.key, "header": c.header, "scale": c.scale} for c in columns],
        "points": [{"name": p.name, "values": p.values, "baseline": p.baseline, "status": p.status,
                    "reason": p.reason, "answers": p.answers.name, "metrics_file": p.metrics_file,
                    "metrics": p.metrics} for p in points],
    }
    out = folder / f"{experiment}_sweep.json"
    write_json_atomic(out, data)
    return SweepTables(data, markdown, out, md)


def build_parser(kind: str) -> argparse.ArgumentParser:
    """The sweep's own flags; every other flag is the runner's (``python -m eval.<runner> --help``)."""
    parser = argparse.ArgumentParser(
        prog=f"python -m eval.sweep {kind}", add_help=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"The sweep's own flags. Every other flag is {RUNNERS[kind]}'s and holds for every point: "
                    f"python -m {RUNNERS[kind]} --help lists them.")
    parser.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                        help="a method parameter (official name), a protocol field, preset or method, and its "
                             "values; repeatable (the product of the grids is run)")
    parser.add_argument("--score-args", default="", metavar="'FLAGS'",
                        help="what the benchmark's scorer needs beyond the answers file, as one string; write it "
                             "with '=' when it starts with a dash: --score-args='--gt_dir data/MME'")
    parser.add_argument("--no-baseline", action="store_true",
                        help="no reference point with plain decoding (added unless the grid varies the method)")
    parser.add_argument("--check-only", action="store_true",
                        help="resolve and check every point (and the scorer's arguments), run nothing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    kind, rest = argv[0], argv[1:]
    if kind not in RUNNERS:
        raise InputError(f"{kind!r}: the first argument is the runner, caption or vqa")
    parser = build_parser(kind)
    if "-h" in rest or "--help" in rest:
        parser.print_help()
        return 0
    args, runner_argv = parser.parse_known_args(rest)
    if not args.grid:
        raise InputError("no --grid NAME=V1,V2,...: nothing to sweep")
    grids = [Grid.parse(text) for text in args.grid]
    baseline = not args.no_baseline and "method" not in {g.name for g in grids}
    experiment, points = plan(RUNNERS[kind], grids, runner_argv, baseline)
    score_args = shlex.split(args.score_args)
    check_scoring(points, score_args)
    folder = points[0].spec.output.save_path
    print(f"sweep {experiment}: {len(points)} runs ({' x '.join(f'{len(g.values)} {g.name}' for g in grids)}"
          f"{' + baseline' if baseline else ''}), all checked", file=sys.stderr)
    if args.check_only:
        return 0
    models: dict[Any, Any] = {}
    started = time.time()
    for index, point in enumerate(points, start=1):
        print(f"[{index}/{len(points)}] {point.label()}", file=sys.stderr, flush=True)
        run_point(point, models)
        score_point(point, score_args)
        if point.reason:
            print(f"  {point.status}: {point.reason}", file=sys.stderr)
    tables = write_tables(points, grids, folder, experiment)
    from eval.figures.sweep import draw_sweep

    figure = draw_sweep(tables.data, folder / f"{experiment}_sweep.png")
    print(tables.markdown)
    print(f"sweep written: {tables.json_file}, {tables.markdown_file}, {figure} "
          f"({(time.time() - started) / 60:.1f} min)")
    failed = [p for p in points if p.status not in ("scored", "answered")]
    return 1 if failed else 0


if __name__ == "__main__":
    from eval.cli import run_main

    run_main(main)
