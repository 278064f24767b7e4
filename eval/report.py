"""Paper-style markdown tables from the metric files that the scorers write, with the published numbers beside ours.

Usage::

    python -m eval.report results/ [more files or folders ...] [--label FILE=MODEL,METHOD[,SEED] ...] [--out table.md]

Folders are searched recursively for ``*.json`` files whose ``"scorer"`` names a scorer (:mod:`eval.scoring`: the
scorers of the benchmark specs, chair, clair, pope, mme, amber, llava_bench, and any other registered one; other json
files, e.g. the runners' ``*_results.json``, are skipped). The scorer's interface says which runs a metric file holds
(a POPE setting, an MME seed, a CHAIR / CLAIR / AMBER / LLaVA-Bench file), their values and columns. Each run belongs
to a benchmark: the one its runner's ``_results.json`` names (``config.benchmark``), else the scorer's (CHAIR: COCO;
CLAIR: its ``data_type``). Tables are by benchmark: the captioning benchmarks side by side in one table (SPARC's
comparison), every other benchmark in a table of its own (the AvisC tables: POPE per dataset and setting, MME,
AMBER; LLaVA-Bench; a new benchmark or scorer gets its table from its interface). Every run is labelled with a model,
a method and a seed, by the first of:

1. ``--label FILE=MODEL,METHOD[,SEED]`` (FILE as given on the command line, or its file name);
2. a ``"run"`` block in the metric file (``model_path`` or ``model``, ``method``, ``seed``);
3. the runner's ``<answers file stem>_results.json`` beside that run's answers file (its ``"config"``: ``method``,
   ``model_path``, ``seed``);
4. the file names (metric file, then answers file): ``instructblip``, ``llava...1.5``, ``llava...1.6``/``next``
   name the model; a method name (``baseline``, ``sparc``, ``vcd``, ``m3id``, ``avisc``, ``pai``, ``opera``, ...)
   the method; ``seed<N>`` the seed.

Plain decoding is ``baseline`` (the older names ``base``, ``vanilla`` and ``regular`` are read as ``baseline``).
Runs with the same model, method and benchmark (and dataset / setting) are one configuration: the tables show their
mean, and ``± std`` (sample standard deviation, ddof 1) when there are several; the Runs column gives their number
and seeds. A repeated run (the same answers scored twice, a copy of them, or the same seed and settings run twice)
is counted once, and a note says so. A "paper" row follows each of our rows where the papers publish a number
(``eval/paper_numbers.py``, looked up through the scorer).

A row is never shown as a plain result when it is not one: a metric the scorer left null (no samples) is ``-`` and
the row's footnote says why; runs on a short subset (fewer samples than the benchmark asks for) or limited by
``--limit`` (trial runs), runs that leave samples of the benchmark unanswered, and the caveats a scorer declares
(AMBER scored with exact word matching only, judge replies left out) carry a footnote marker ``[n]`` in the Runs
column, explained under the tables.
"""
from __future__ import annotations

import argparse
import functools
import json
import re
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from eval import paper_numbers
from eval.amber import EXACT_ONLY_NOTE  # noqa: F401 - where callers of earlier versions read it
from eval.benchmarks import CAPTION, BenchmarkSpec, get_benchmark, list_benchmarks
from eval.benchmarks.resolve import SWEEP_SOURCE
from eval.files import InputError, RunPaths, write_text_atomic
from eval.scoring import Repeats, Scorer, get_scorer, known_scorers, markdown_table
from llava.model.families import parse_synthetic_name, recognise_family_name

BASELINE = "baseline"
METHOD_ALIASES = {"base": BASELINE, "vanilla": BASELINE, "regular": BASELINE}
"""Older names of plain decoding (AvisC scripts: ``base``; the bench: ``vanilla``), read as ``baseline``."""
METHOD_DISPLAY = {BASELINE: "baseline", "vcd": "VCD", "m3id": "M3ID", "opera": "OPERA", "pai": "PAI",
                  "volcano": "VOLCANO", "avisc": "AvisC", "sparc": "SPARC"}
"""Method name -> its name in the tables, in the tables' row order (the papers': baseline, then the compared methods,
then the paper's own); other methods follow in alphabetical order under their own names."""
METHOD_ORDER = tuple(METHOD_DISPLAY.values())
SIDE_BY_SIDE = {CAPTION.name: "captioning"}
"""Task kinds whose benchmarks share one table, with its name: one row per model and method, each benchmark's
columns side by side (SPARC's captioning comparison). Every other benchmark has a table of its own, one row per
model, run key (POPE's dataset and setting) and method."""


@dataclass(frozen=True)
class Label:
    model: str
    method: str
    seed: str | None = None


@dataclass
class Record:
    """One run's numbers for one table cell group: benchmark, label, sub-key (dataset/setting) and values (as shown:
    scaled by the scorer's columns); ``notes`` are the caveats that keep the run from being a plain result (each
    becomes a footnote of its row); ``scorer`` names the scorer that wrote it."""

    benchmark: str
    label: Label
    key: str
    values: dict[str, float | None]
    source: str
    notes: list[str] = field(default_factory=list)
    empty_reason: str | None = None
    answers: str | None = None
    scorer: str = ""


# ----------------------------------------------------------------------------------------------------------------
# Labels


def recognise_model(name: str) -> str | None:
    """The paper tables' name (``LLaVA-1.5``, ``LLaVA-NeXT``, ``InstructBLIP``, ``Qwen2-VL``, ...) of the model family
    that ``name`` names (each family's ``name_pattern``, :mod:`llava.model.families`), or None."""
    spec = recognise_family_name(name)
    return spec.display if spec is not None else None


def canonical_model(name: str) -> str:
    """The paper tables' name of a model path when recognisable, else its last path component; a random model
    (``tiny-instructblip``, :func:`llava.model.families.parse_synthetic_name`) keeps its own name, so it never passes for the real one."""
    if parse_synthetic_name(name.rstrip("/")) is not None:
        return name.rstrip("/")
    return recognise_model(name) or name.rstrip("/").rsplit("/", 1)[-1]


def canonical_method(name: str) -> str:
    """The tables' name of a method: ``base``/``vanilla`` -> ``baseline``, ``avisc`` -> ``AvisC``, ...; a method
    the report does not know keeps its own name."""
    lower = name.lower()
    lower = METHOD_ALIASES.get(lower, lower)
    return METHOD_DISPLAY.get(lower, name)


def _known_method(token: str) -> str | None:
    token = METHOD_ALIASES.get(token, token)
    return METHOD_DISPLAY.get(token)


def label_from_names(*names: str) -> Label | None:
    """A label read from file names, or None when neither model nor method can be recognised."""
    model = method = seed = None
    for name in names:
        lower = name.lower()
        model = model or recognise_model(lower)
        if method is None:
            method = next((m for t in re.split(r"[^a-z0-9]+", lower) if (m := _known_method(t))), None)
        if seed is None and (match := re.search(r"seed[_-]?(\d+)", lower)):
            seed = match.group(1)
    if model is None and method is None:
        return None
    return Label(model or "?", method or "?", seed)


def variant(config: dict[str, Any]) -> str:
    """What sets a run apart from its method in the ``paper`` preset: another preset, and every parameter or
    protocol value set by a flag (the seed aside: runs over seeds are averaged). Runs of different variants are
    different rows, never averaged together."""
    parts = []
    preset = config.get("preset")
    if isinstance(preset, str) and preset != "paper":
        parts.append(preset)
    sources = config.get("sources") if isinstance(config.get("sources"), dict) else {}
    values = {**(config.get("protocol") or {}), **(config.get("method_params") or {})}
    parts += [f"{name}={values[name]}" for name in sorted(sources)
              if sources[name] == "flag" and name != "seed" and name in values]
    return "; ".join(parts)


def label_from_config(config: dict[str, Any], seed: Any = None) -> Label | None:
    """A label from a runner config (``model_path``/``model``, ``method`` (a string) with its :func:`variant`,
    ``seed``)."""
    model = config.get("model_path") or config.get("model")
    method = config.get("method") if isinstance(config.get("method"), str) else None
    if not model and not method:
        return None
    seed = config.get("seed", seed)
    name = canonical_method(method or "?")
    if kind := variant(config):
        name = f"{name} ({kind})"
    return Label(canonical_model(str(model or "?")), name, None if seed is None else str(seed))


def parse_label_option(option: str) -> tuple[str, Label]:
    """``FILE=MODEL,METHOD[,SEED]`` -> (FILE, Label)."""
    path, sep, spec = option.partition("=")
    parts = spec.split(",")
    if not sep or len(parts) not in (2, 3) or not all(parts[:2]):
        raise InputError(f"--label {option!r}: expected FILE=MODEL,METHOD[,SEED]")
    return path, Label(canonical_model(parts[0]), canonical_method(parts[1]), parts[2] if len(parts) == 3 else None)


@functools.lru_cache(maxsize=None)
def runner_results(answers: str) -> dict[str, Any]:
    """The runner's ``<stem>_results.json`` beside an answers file (``{}`` when there is none or it is unreadable)."""
    try:
        data = json.loads(RunPaths.of_answers(answers).results.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def resolve_label(metric_file: Path, data: dict[str, Any], answers: str | None, given: dict[str, Label]) -> Label:
    """The label of one run (see the module doc for the order); the seed comes from the run's own answers file
    unless ``--label`` gives one."""
    results = runner_results(answers) if answers else {}
    config = results.get("config") if isinstance(results.get("config"), dict) else {}
    names = [metric_file.name] + ([Path(answers).name] if answers else [])
    from_names = label_from_names(*names)
    own_seed = config.get("seed", results.get("seed"))
    if own_seed is None and from_names is not None:
        own_seed = from_names.seed
    for key in (str(metric_file), metric_file.name):
        if key in given:
            label = given[key]
            return Label(label.model, label.method, label.seed or (None if own_seed is None else str(own_seed)))
    run = data.get("run")
    if isinstance(run, dict) and (label := label_from_config(run.get("config", run), own_seed)):
        return label
    if label := label_from_config(config, own_seed):
        return label
    return from_names or Label("?", metric_file.stem)


# ----------------------------------------------------------------------------------------------------------------
# Caveats


def subset_notes(answers: str | None) -> list[str]:
    """Footnotes for a run on a short subset or limited by ``--limit``, from its runner ``_results.json``."""
    if not answers:
        return []
    results = runner_results(answers)
    config = results.get("config") if isinstance(results.get("config"), dict) else {}
    subset = results.get("subset") or config.get("subset") or {}
    notes = []
    used, requested, available = subset.get("used"), subset.get("requested"), subset.get("available")
    if subset.get("short"):
        notes.append(f"short subset: {used} samples used of the {requested} the benchmark asks for "
                     f"({available} available): not the benchmark's result")
    if config.get("limit") is not None:
        asked = f"of {available}" if requested is None and available is not None else (
            "of all" if requested is None else f"of the {requested} requested")
        notes.append(f"trial run (--limit {config['limit']}): {used if used is not None else '?'} samples used "
                     f"{asked}: not the benchmark's result")
    return notes



# ----------------------------------------------------------------------------------------------------------------
# Reading


def find_metric_files(inputs: Iterable[str]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files.extend(sorted(path.rglob("*.json")))
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"{path}: no such file or folder")
    return files


def is_sweep_point(answers: str | None) -> bool:
    """Whether a run is a point of a sweep (a value's source is ``sweep``): not a result of the papers' settings."""
    config = runner_results(answers).get("config") if answers else None
    sources = config.get("sources") if isinstance(config, dict) else None
    return isinstance(sources, dict) and SWEEP_SOURCE in sources.values()


def is_sweep_table(data: dict[str, Any]) -> bool:
    """Whether a json is a sweep's table (``<experiment>_sweep.json``)."""
    return isinstance(data.get("sweep"), str) and isinstance(data.get("table"), dict)


def sweep_table(path: Path, data: dict[str, Any]) -> str:
    """A sweep's own table (one row per point), as the sweep wrote it."""
    table = data["table"]
    return f"### {table['title']}\n\n({path})\n\n" + markdown_table(table["header"], table["rows"])


def run_benchmark(answers: str | None) -> str | None:
    """The benchmark a run's ``_results.json`` names (``config.benchmark``), or None."""
    config = runner_results(answers).get("config") if answers else None
    benchmark = config.get("benchmark") if isinstance(config, dict) else None
    return str(benchmark) if benchmark else None


def locate_answers(metric_file: Path, answers: str | None) -> str | None:
    """The answers file a metric file names: the path as written when it exists, else the file of that name beside
    the metric file (a results folder moved, or the report run from another directory)."""
    if not answers or Path(answers).is_file():
        return answers
    beside = metric_file.parent / Path(answers).name
    return str(beside) if beside.is_file() else answers


def records_of(path: Path, data: dict[str, Any], scorer: Scorer, given: dict[str, Label]) -> list[Record]:
    """The records one metric file contributes (the runs its scorer finds in it), each labelled, put under its
    benchmark and annotated from its own answers file."""
    records = []
    for run in scorer.runs(data):
        answers = locate_answers(path, run.answers)
        label = resolve_label(path, data, answers, given)
        trial = subset_notes(answers)  # a trial or short subset already says it is not the benchmark's result
        notes = trial + ([] if trial else run.coverage_notes()) + scorer.notes(path, data)
        benchmark = run_benchmark(answers) or scorer.benchmark(data) or scorer.name
        values = {**run.values, **{column.key: column.shown(run.values.get(column.key)) for column in scorer.columns}}
        records.append(Record(benchmark, label, run.key, values, str(path), notes, data.get("empty_reason"), answers,
                              scorer.name))
    return records


def load_records(inputs: list[str], label_options: list[str]) -> tuple[list[Record], list[str], list[str]]:
    """Records from every metric file; notes about files that were skipped or reported problems, about repeated
    runs counted once, and about runs whose answers no metric file scores yet (a captioning run without a judge
    key, say); the tables of the sweeps found (whose points are not records: they are not the papers' settings)."""
    given = dict(parse_label_option(option) for option in label_options)
    runner_results.cache_clear()  # files may have changed since an earlier call in this process
    records: list[Record] = []
    notes: list[str] = []
    scored: set[Path] = set()
    runs: list[tuple[Path, dict[str, Any]]] = []
    sweeps: list[str] = []
    repeats = Repeats()
    for path in find_metric_files(inputs):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            notes.append(f"{path}: not valid JSON ({e}); skipped")
            continue
        if not isinstance(data, dict):
            continue
        if is_sweep_table(data):
            sweeps.append(sweep_table(path, data))
            continue
        try:
            scorer = get_scorer(data.get("scorer"))
        except ImportError as e:  # a scorer module whose dependencies are not installed here
            notes.append(f"{path}: the scorer {data.get('scorer')} cannot be loaded ({e}); skipped")
            continue
        if scorer is None:
            if path.name.endswith("_results.json") and isinstance(data.get("config"), dict):
                runs.append((path, data))
            continue
        for record in records_of(path, data, scorer, given):
            if record.answers:
                scored.add(Path(record.answers).resolve())
            if is_sweep_point(record.answers):
                continue  # in its sweep's table
            digest = scorer.digest(record.answers) if record.answers else None
            why = repeats.check((record.benchmark, record.key), str(path), record.answers, digest)
            if why is not None:
                notes.append(f"{path} scores {why} ({record.answers}): counted once")
                continue
            records.append(record)
        problems = data.get("problems") or []
        if problems:
            notes.append(f"{path}: {counted(len(problems), 'problem')} reported by the scorer (see the file)")
    unscored = [unscored_note(path, data) for path, data in runs
                if (answers := (data.get("files") or {}).get("answers"))
                and (path.parent / str(answers)).resolve() not in scored
                and not is_sweep_point(str(path.parent / str(answers)))]
    if not records and not unscored and not sweeps:
        raise InputError(f"no metric files (json with \"scorer\": {', '.join(known_scorers())}), no sweeps and no "
                         f"runs in {' '.join(inputs)}")
    return records, notes + unscored, sweeps


def counted(count: Any, noun: str) -> str:
    """``"1 answer"``, ``"3 answers"``, ``"? answers"`` (count unknown)."""
    return f"{count} {noun}" if count == 1 else f"{'?' if count is None else count} {noun}s"


def unscored_note(path: Path, data: dict[str, Any]) -> str:
    """One line about a run whose answers are not scored yet: what it is and the scorer its benchmark names."""
    config, counts = data["config"], data.get("counts") or {}
    answers = path.parent / str((data.get("files") or {}).get("answers", "?"))
    benchmark = str(config.get("benchmark", "?"))
    spec = benchmark_spec(benchmark)
    how = (f"python -m eval.{spec.scorer} --help" if spec is not None and spec.scorer
           else f"the benchmark {benchmark} names no scorer")
    return (f"{answers}: {canonical_method(str(config.get('method', '?')))} on {benchmark}, "
            f"{counted(counts.get('answered'), 'answer')}, not scored yet ({how})")


# ----------------------------------------------------------------------------------------------------------------
# Benchmarks


def benchmark_spec(name: str) -> BenchmarkSpec | None:
    """The spec of a registered benchmark, or None (a benchmark this checkout does not know)."""
    try:
        return get_benchmark(name)
    except ValueError:
        return None


def short_name(benchmark: str) -> str:
    """A benchmark's name in column headers and run counts: its title's first word when that is a name (``COCO``,
    ``IIW-400``, ``POPE``, ``LLaVA-Bench``), else the benchmark's own name (``folder``)."""
    spec = benchmark_spec(benchmark)
    word = spec.title.split()[0] if spec is not None and spec.title.strip() else ""
    return word if word[:1].isupper() else benchmark


def benchmark_rank(benchmark: str) -> tuple[int, str]:
    """Benchmarks in registration order (the papers'), unknown ones after them by name."""
    names = [spec.name for spec in list_benchmarks()]
    return (names.index(benchmark), "") if benchmark in names else (len(names), benchmark)


def papers_of(benchmarks: Iterable[str]) -> str:
    """``"SPARC: "``: the papers that report these benchmarks (``paper_numbers.PAPERS``), or ``""``."""
    papers = dict.fromkeys(p for b in benchmarks if (p := paper_numbers.PAPERS.get(b)))
    return f"{' / '.join(papers)}: " if papers else ""


# ----------------------------------------------------------------------------------------------------------------
# Tables


class Footnotes:
    """Numbered footnotes: each distinct text gets one number, in order of first use."""

    def __init__(self) -> None:
        self.texts: dict[str, int] = {}

    def marks(self, texts: Iterable[str]) -> str:
        """`` [1][3]`` for the given texts (numbering new ones), or ``""``."""
        numbers = []
        for text in dict.fromkeys(texts):
            numbers.append(self.texts.setdefault(text, len(self.texts) + 1))
        return "".join(f" [{n}]" for n in numbers)

    def render(self) -> str:
        return "".join(f"[{n}] {text}\n" for text, n in self.texts.items())


def aggregate(values: list[float | None]) -> str:
    """``mean`` or ``mean ± std`` (sample std) of the runs; ``-`` if any run lacks the value."""
    if not values or any(v is None for v in values):
        return "-"
    mean = statistics.fmean(values)
    return f"{mean:.2f}" if len(values) == 1 else f"{mean:.2f} ± {statistics.stdev(values):.2f}"


def paper_cell(value: float | tuple[float, float] | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, tuple):
        return f"{value[0]:.2f} ± {value[1]:.2f}"
    return f"{value:.2f}"


def method_rank(method: str) -> tuple[int, str]:
    """Rows in the papers' method order (a variant right after its method), unknown methods after them by name."""
    base = method.split(" (")[0]
    return (METHOD_ORDER.index(base), method) if base in METHOD_ORDER else (len(METHOD_ORDER), method)


def runs_cell(runs: list[Record]) -> str:
    """``n`` runs and their seeds: ``1 (seed 42)``, ``2 (seeds 42, 43)``, ``3 (seeds 1, 2; 1 without seed)``."""
    seeds = sorted((r.label.seed for r in runs if r.label.seed is not None), key=lambda s: (len(s), s))
    unknown = len(runs) - len(seeds)
    if not seeds:
        return str(len(runs))
    text = f"seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}"
    if unknown:
        text += f"; {unknown} without seed"
    return f"{len(runs)} ({text})"


def row_notes(runs: list[Record], columns: Iterable[str]) -> list[str]:
    """The caveats of a row's runs, plus why cells are empty where the runs' metrics are null."""
    notes = [note for run in runs for note in run.notes]
    columns = list(columns)
    for run in runs:
        if all(run.values.get(c) is None for c in columns):
            reason = run.empty_reason or "the metrics file has no value for these columns"
            notes.append(f"no score ({run.source}): {reason}")
        elif any(run.values.get(c) is None for c in columns) and run.empty_reason:
            notes.append(f"some metrics undefined ({run.source}): {run.empty_reason}")
    return notes


def ours_cells(runs: list[Record], columns: Iterable[str]) -> list[str]:
    return [aggregate([r.values.get(c) for r in runs]) for c in columns]


@dataclass(frozen=True)
class Part:
    """The runs of one benchmark and key scored by one scorer: a group of columns of a side-by-side table."""

    benchmark: str
    scorer: Scorer
    key: str = ""

    @property
    def name(self) -> str:
        return short_name(self.benchmark) + (f" {self.key}" if self.key else "")

    def order(self) -> tuple[Any, ...]:
        return (benchmark_rank(self.benchmark), self.scorer.name, self.scorer.key_order(self.key))


def by_label(records: list[Record]) -> list[tuple[Label, list[Record]]]:
    """Records by label without seed, in the tables' order: by model, then in the papers' method order."""
    groups: dict[Label, list[Record]] = defaultdict(list)
    for record in records:
        groups[Label(record.label.model, record.label.method)].append(record)
    return sorted(groups.items(), key=lambda item: (item[0].model, method_rank(item[0].method)))


def shared_table(benchmark: str) -> str | None:
    """The name of the table a benchmark shares with the others of its task kind (:data:`SIDE_BY_SIDE`), or None."""
    spec = benchmark_spec(benchmark)
    return SIDE_BY_SIDE.get(spec.task.name) if spec is not None else None


def layout(records: list[Record]) -> list[tuple[str | None, list[Record]]]:
    """Each table's shared name (None for a benchmark's own table) and records, tables in the benchmarks' order: the
    benchmarks of a :data:`SIDE_BY_SIDE` task kind together, every other benchmark (with its scorer) alone."""
    tables: dict[tuple[str | None, ...], list[Record]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (benchmark_rank(r.benchmark), r.scorer)):
        shared = shared_table(record.benchmark)
        tables[(shared,) if shared else (None, record.benchmark, record.scorer)].append(record)
    return [(key[0], table) for key, table in tables.items()]


def title(name: str, benchmarks: Iterable[str], described: Iterable[tuple[Scorer, list[str]]]) -> str:
    """``### PAPER: NAME (WHAT THE NUMBERS ARE)``: each scorer's description after the benchmarks it is given for
    (none for a table of one benchmark, whose title it follows after a colon)."""
    texts = [f"{', '.join(shorts) + ' ' if shorts else ''}{scorer.description}" for scorer, shorts in described
             if scorer.description]
    if not texts:
        return f"### {papers_of(benchmarks)}{name}"
    alone = all(not shorts for _, shorts in described)
    return f"### {papers_of(benchmarks)}{name}" + (f": {'; '.join(texts)}" if alone else f" ({'; '.join(texts)})")


def published_cells(published: dict[str, Any] | None, columns: Iterable[str]) -> list[str]:
    return [paper_cell(published.get(c)) if published else "-" for c in columns]


def side_by_side_table(records: list[Record], notes: Footnotes, name: str) -> str:
    """One row per model and method, the columns of each benchmark (and run key) side by side."""
    scorers = {r.scorer: get_scorer(r.scorer) for r in records}
    parts = sorted({Part(r.benchmark, scorers[r.scorer], r.key) for r in records}, key=Part.order)
    rows = []
    for label, runs in by_label(records):
        cells, caveats, runs_text, published, paper_runs = [], [], [], [], []
        for part in parts:
            columns = [c.key for c in part.scorer.columns]
            found = [r for r in runs if (r.benchmark, r.scorer, r.key) == (part.benchmark, part.scorer.name, part.key)]
            cells += ours_cells(found, columns) if found else ["-"] * len(columns)
            if found:
                caveats += row_notes(found, columns)
                runs_text.append((part.name, runs_cell(found)))
            paper = part.scorer.paper(part.benchmark, part.key, label.model, label.method) if found else None
            published += published_cells(paper, columns)
            if paper:
                paper_runs.append(part.scorer.paper_runs)
        runs_label = runs_text[0][1] if len(runs_text) == 1 else "; ".join(f"{p}: {r}" for p, r in runs_text)
        rows.append([label.model, label.method, "ours", runs_label + notes.marks(caveats)] + cells)
        if paper_runs:
            rows.append([label.model, label.method, "paper", "; ".join(dict.fromkeys(paper_runs))] + published)
    header = ["Model", "Method", "Source", "Runs"] + [f"{part.name} {c.header}" for part in parts
                                                      for c in part.scorer.columns]
    described: dict[str, tuple[Scorer, list[str]]] = {}
    for part in parts:
        described.setdefault(part.scorer.name, (part.scorer, []))[1].append(part.name)
    return title(name, [p.benchmark for p in parts], described.values()) + "\n\n" + markdown_table(header, rows)


def benchmark_table(records: list[Record], notes: Footnotes) -> str:
    """One benchmark scored by one scorer: one row per model, run key (its parts in the scorer's key columns) and
    method, in that order."""
    benchmark, scorer = records[0].benchmark, get_scorer(records[0].scorer)
    columns = [c.key for c in scorer.columns]
    key_headers = list(scorer.key_headers) or (["Run"] if any(r.key for r in records) else [])
    groups: dict[tuple[Label, str], list[Record]] = defaultdict(list)
    for record in records:
        groups[(Label(record.label.model, record.label.method), record.key)].append(record)
    order = sorted(groups.items(), key=lambda item: (item[0][0].model, scorer.key_order(item[0][1]),
                                                     method_rank(item[0][0].method)))
    rows = []
    for (label, key), runs in order:
        parts = key_parts(key, len(key_headers))
        rows.append([label.model, *parts, label.method, "ours", runs_cell(runs) + notes.marks(row_notes(runs, columns))]
                    + ours_cells(runs, columns))
        published = scorer.paper(benchmark, key, label.model, label.method)
        if published:
            rows.append([label.model, *parts, label.method, "paper", scorer.paper_runs]
                        + published_cells(published, columns))
    header = ["Model", *key_headers, "Method", "Source", "Runs"] + [c.header for c in scorer.columns]
    spec = benchmark_spec(benchmark)
    return (title(spec.title if spec is not None else benchmark, [benchmark], [(scorer, [])]) + "\n\n"
            + markdown_table(header, rows))


def key_parts(key: str, count: int) -> list[str]:
    """A run key's ``/``-separated parts for ``count`` key columns (``-`` where a part is absent)."""
    if not count:
        return []
    parts = key.split("/", count - 1)
    return [part or "-" for part in parts] + ["-"] * (count - len(parts))


def build_report(records: list[Record], notes: list[str], sweeps: Iterable[str] = ()) -> str:
    footnotes = Footnotes()
    tables = [side_by_side_table(table, footnotes, shared) if shared else benchmark_table(table, footnotes)
              for shared, table in layout(records)]
    tables += list(sweeps)
    text = "\n\n".join(tables) + "\n" if tables else "No scores yet.\n"
    if footnotes.texts:
        text += "\n" + footnotes.render()
    if notes:
        text += "\nNotes:\n\n" + "".join(f"- {note}\n" for note in notes)
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="FILES_OR_DIRS", help="metric json files or folders")
    parser.add_argument("--label", action="append", default=[], metavar="FILE=MODEL,METHOD[,SEED]",
                        help="label one metric file (repeatable)")
    parser.add_argument("--out", help="also write the markdown here (atomically)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        records, notes, sweeps = load_records(args.inputs, args.label)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = build_report(records, notes, sweeps)
    print(text, end="")
    if args.out:
        try:
            write_text_atomic(args.out, text)
        except OSError as e:
            print(f"error: cannot write {args.out}: {e.strerror or e}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
