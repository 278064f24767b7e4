"""What every scorer tells the report: one :class:`Scorer` object per scorer, registered by name.

A scorer module (``eval.chair``, ``eval.pope``, ...) writes a metrics json whose ``"scorer"`` field names it, and
declares, next to the code that writes that json, a :class:`Scorer` subclass that reads it back:

- ``name``: the ``"scorer"`` field of its metrics files;
- :meth:`Scorer.runs`: the runs a metrics file holds (POPE: one per setting, MME: one per seed run, the others
  one), each a :class:`ScoredRun` with its key (``coco/random``; ``""`` for a file of one run), its answers file,
  its values and how much of the benchmark it covers (missing of expected samples);
- :meth:`Scorer.benchmark`: the benchmark a run belongs to when the run's ``_results.json`` does not say
  (``config.benchmark``): CHAIR's is ``coco``, CLAIR's its ``data_type``;
- :meth:`Scorer.notes`: the caveats a metrics file calls for (AMBER's exact-only matching, unparsable judge
  replies);
- ``columns``: the metrics shown, each a :class:`Column` (metric key, header, scale: CHAIR's fractions x100);
  ``description``: what the numbers are, for the table's title; ``key_headers`` / :meth:`Scorer.key_order`: the
  headers of a run key's ``/``-separated parts and their order;
- :meth:`Scorer.paper`: the published numbers (``eval.paper_numbers``) of a row, with ``paper_runs`` (how many
  runs they are); :meth:`Scorer.digest`: the content hash of a run's answers (a copied run counts once);
- :meth:`Scorer.score`: score one answers file with the module's own ``main`` (``answers_flag``, ``default_args``),
  what a sweep (``eval.sweep``) calls; ``headline`` / ``plane``: the metric, or the trade-off plane, its figure
  draws.

Adding a scorer: a module ``eval.<name>`` that writes ``{"scorer": "<name>", "answers_file": ..., "metrics": {...}}``
and ends with ``register_scorer(MyScorer())``; a benchmark spec that names it (``scorer="<name>"``) lets the report
import it when it meets one of its files. This module is in the scorer layer: it imports the files layer, and the
benchmark specs only when asked for the scorers they name (DESIGN decision 12; importing a scorer loads no spec).
"""
from __future__ import annotations

import hashlib
import importlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from eval.files import InputError, RunPaths

Published = Mapping[str, "float | tuple[float, float] | None"]
"""Published numbers of one row by metric key: a value, or (mean, std) over seeds."""


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table of text cells (the report's and the sweeps' tables).

    >>> print(markdown_table(["a", "b"], [["1", "2"]]))
    | a | b |
    |---|---|
    | 1 | 2 |
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass(frozen=True)
class Column:
    """One metric shown in a table: its key in a run's values, its header and the factor it is shown with."""

    key: str
    header: str
    scale: float = 1.0

    def shown(self, value: Any) -> float | None:
        return None if value is None else self.scale * float(value)


@dataclass
class ScoredRun:
    """One run of a metrics file: its key within the benchmark (a dataset / setting; ``""`` for a file of one run),
    its answers file (or folder), its values by metric key, and its coverage: ``missing`` of ``expected`` samples
    (counted in ``unit``) have no answer (``missing`` None: the scorer has no expected set)."""

    key: str
    answers: str | None
    values: dict[str, Any]
    missing: int | None = None
    expected: int | None = None
    unit: str = "samples"

    def coverage_notes(self) -> list[str]:
        """A footnote when samples of the benchmark (or of the run's manifest) have no answer."""
        if not self.missing:
            return []
        expected = "?" if self.expected is None else self.expected
        return [f"incomplete: {self.missing} of {expected} {self.unit} have no answer: not the benchmark's result"]


class Scorer:
    """The interface: a scorer module subclasses it, sets the class attributes and overrides what differs."""

    name: str = ""
    columns: tuple[Column, ...] = ()
    description: str = ""
    key_headers: tuple[str, ...] = ()
    paper_runs: str = "-"
    default_benchmark: str | None = None
    answers_flag: str = "--answers"
    """The flag of the scorer's command line that takes one answers file."""
    default_args: tuple[str, ...] = ()
    """What :meth:`score` passes besides the answers and the metrics path (before the caller's arguments)."""
    headline: str | None = None
    """The key of the metric a sweep draws against the swept values."""
    plane: tuple[Column, Column] | None = None
    """A trade-off a sweep draws instead (x, y: higher is better on both), e.g. CHAIR's recall and precision."""

    def command(self, answers: Path, extra: Sequence[str] = ()) -> list[str]:
        """The scorer's arguments for one answers file, its metrics where the report looks for them
        (``<answers stem>_<name>.json``); ``extra``: what the scorer needs beyond the answers (MME's ``--gt_dir``,
        CLAIR's ``--annotation_file``, a judge's ``--base_url``)."""
        metrics = RunPaths.of_answers(answers).metrics(self.name)
        return [self.answers_flag, str(answers), "--save_path", str(metrics), *self.default_args, *extra]

    def check_arguments(self, extra: Sequence[str]) -> None:
        """``InputError`` when the scorer's command line refuses ``extra`` (a missing or unknown argument), so a
        caller can say so before anything runs."""
        module = importlib.import_module(type(self).__module__)
        parse = getattr(module, "parse_args", None) or module.build_parser().parse_args
        try:
            parse(self.command(Path("answers.jsonl"), extra))
        except SystemExit as e:
            raise InputError(f"python -m {module.__name__} refuses the scoring arguments {list(extra)} (its message "
                             "above)") from e

    def score(self, answers: Path, extra: Sequence[str] = ()) -> int:
        """Score one answers file with the scorer's own command line (``python -m eval.<name>``); its exit status.
        Raises what the scorer's ``main`` raises on bad input (``InputError``)."""
        module = importlib.import_module(type(self).__module__)
        return int(module.main(self.command(answers, extra)) or 0)

    def runs(self, data: dict[str, Any]) -> list[ScoredRun]:
        """The runs a metrics file holds (default: one, its ``metrics``)."""
        return [ScoredRun("", first_answers(data), dict(data.get("metrics") or {}))]

    def benchmark(self, data: dict[str, Any]) -> str | None:
        """The benchmark of a metrics file's runs when their ``_results.json`` does not name one."""
        return self.default_benchmark

    def notes(self, metric_file: Path, data: dict[str, Any]) -> list[str]:
        """Caveats of a metrics file that keep its runs from being plain results (each a footnote)."""
        return []

    def key_order(self, key: str) -> tuple[Any, ...]:
        """The sort order of run keys (default: by name)."""
        return (key,)

    def paper(self, benchmark: str, key: str, model: str, method: str) -> Published | None:
        """The published numbers of a row (``eval.paper_numbers``), or None."""
        return None

    def digest(self, answers: str) -> str | None:
        """The content hash of a run's answers (None when they cannot be read)."""
        return file_digest(Path(answers))


def answers_files(data: dict[str, Any]) -> list[str]:
    """The ``answers_file`` of a metrics file as a list (scorers of several runs write a list)."""
    value = data.get("answers_file")
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)] if value else []


def first_answers(data: dict[str, Any]) -> str | None:
    return next(iter(answers_files(data)), None)


def judge_notes(judge: str, counts: Mapping[str, Any], where: Path | str) -> list[str]:
    """A footnote for the replies of an LLM judge that are not in the scores (unparsable or failed)."""
    bad = [f"{int(counts[name])} {name}" for name in ("unparsable", "failed") if counts.get(name)]
    return [f"{judge}: {' and '.join(bad)} judge replies (see {where})"] if bad else []


# ----------------------------------------------------------------------------------------------------------------
# Registry

_REGISTRY: dict[str, Scorer] = {}
_NAME = re.compile(r"[a-z][a-z0-9_]*")


def register_scorer(scorer: Scorer) -> Scorer:
    """Add ``scorer`` to the registry under its ``name`` (re-registering a name replaces it)."""
    if not _NAME.fullmatch(scorer.name):
        raise ValueError(f"scorer name {scorer.name!r}: lower-case letters, digits and _ only")
    _REGISTRY[scorer.name] = scorer
    return scorer


def unregister_scorer(name: str) -> None:
    _REGISTRY.pop(name, None)


def known_scorers() -> list[str]:
    """Registered scorers and the scorers the benchmark specs name, in that order."""
    from eval.benchmarks import list_benchmarks  # here: a scorer that needs no benchmark spec does not load them

    named = [spec.scorer for spec in list_benchmarks() if spec.scorer]
    return list(dict.fromkeys([*_REGISTRY, *named]))


def get_scorer(name: Any) -> Scorer | None:
    """The scorer of a metrics file's ``"scorer"`` field: registered, or the module ``eval.<name>`` of a scorer a
    benchmark spec names (imported on first use); None for anything else (not a metrics file)."""
    if not isinstance(name, str):
        return None
    if name not in _REGISTRY and name in known_scorers():
        importlib.import_module(f"eval.{name}")
    return _REGISTRY.get(name)


# ----------------------------------------------------------------------------------------------------------------
# Repeated runs


def file_digest(path: Path) -> str | None:
    """sha256 of a file's bytes, or None when it is not a readable file."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    except OSError:
        return None


def files_digest(folder: Path, names: Iterable[str]) -> str | None:
    """sha256 over the named files present in a folder (name and bytes of each), or None when there is none."""
    digest, found = hashlib.sha256(), False
    for name in sorted(names):
        content = file_digest(folder / name)
        if content is not None:
            digest.update(f"{name}\0{content}\0".encode())
            found = True
    return digest.hexdigest() if found else None


def run_identity(answers: str) -> str | None:
    """What makes two runs the same run: the runner's ``_config.json`` beside the answers (model, method, its
    parameters, the protocol with its seed, the data) and the samples of its ``_manifest.json``; None without a
    readable config (answers from another tool)."""
    paths = RunPaths.of_answers(answers)
    try:
        config = json.loads(paths.config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    try:
        samples = json.loads(paths.manifest.read_text(encoding="utf-8")).get("sha256")
    except (OSError, ValueError, AttributeError):
        samples = None
    return hashlib.sha256(json.dumps([config, samples], sort_keys=True).encode()).hexdigest()


class Repeats:
    """Runs seen so far, to count a repeated run once, within a scope (the report: a benchmark and run key):

    - the same answers content: the same file twice, or a run copied to another path; unless the runner's configs
      beside both say they are different runs (another seed of a deterministic method can write the same bytes);
    - the same run: the same seed and settings on the same samples (:func:`run_identity`), e.g. a run done again
      into another folder, whose answers may differ in a few bytes (GPU nondeterminism)."""

    def __init__(self) -> None:
        self.contents: dict[tuple[Any, ...], list[tuple[str | None, str]]] = {}
        self.identities: dict[tuple[Any, ...], str] = {}

    def check(self, scope: tuple[Any, ...], source: str, answers: str | None, digest: str | None) -> str | None:
        """None for a new run (now remembered); else why it repeats an earlier one, naming that one."""
        identity = run_identity(answers) if answers else None
        for earlier, first in self.contents.get((scope, digest), []) if digest is not None else []:
            if identity is None or earlier is None or identity == earlier:
                return f"the same answers as {first}"
        if identity is not None and (scope, identity) in self.identities:
            return f"the same run as {self.identities[(scope, identity)]} (same seed and settings)"
        if digest is not None:
            self.contents.setdefault((scope, digest), []).append((identity, source))
        if identity is not None:
            self.identities[(scope, identity)] = source
        return None
