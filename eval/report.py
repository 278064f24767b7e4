"""Paper-style markdown tables from the metric files that the scorers write, with the published numbers beside ours.

Usage::

    python -m eval.report results/ [more files or folders ...] [--label FILE=MODEL,METHOD[,SEED] ...] [--out table.md]

Folders are searched recursively for ``*.json`` files whose ``"scorer"`` is chair, clair, pope, mme or amber (other
json files, e.g. the runners' ``*_results.json``, are skipped). Every run in a metric file (a POPE setting, an MME
seed, a CHAIR / CLAIR / AMBER file) is labelled with a model, a method and a seed, by the first of:

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
and seeds. A "paper" row follows each of our rows where the papers publish a number (``eval/paper_numbers.py``).

A row is never shown as a plain result when it is not one: a metric the scorer left null (no samples) is ``-`` and
the row's footnote says why; runs on a short subset (fewer samples than the benchmark asks for) or limited by
``--limit`` (trial runs), and AMBER scored with exact word matching only (no spaCy vectors), carry a footnote marker
``[n]`` in the Runs column, explained under the tables.
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
from eval.files import InputError, RunPaths, write_text_atomic
from llava.model.families import parse_synthetic_name, recognise_family_name

SCORERS = ("chair", "clair", "pope", "mme", "amber")
BASELINE = "baseline"
METHOD_ALIASES = {"base": BASELINE, "vanilla": BASELINE, "regular": BASELINE}
"""Older names of plain decoding (AvisC scripts: ``base``; the bench: ``vanilla``), read as ``baseline``."""
METHOD_DISPLAY = {BASELINE: "baseline", "vcd": "VCD", "m3id": "M3ID", "opera": "OPERA", "pai": "PAI",
                  "volcano": "VOLCANO", "avisc": "AvisC", "sparc": "SPARC"}
"""Method name -> its name in the tables, in the tables' row order (the papers': baseline, then the compared methods,
then the paper's own); other methods follow in alphabetical order under their own names."""
METHOD_ORDER = tuple(METHOD_DISPLAY.values())
CHAIR_COLUMNS = (("CHAIRs", "CHAIRs ↓"), ("CHAIRi", "CHAIRi ↓"), ("Recall", "Recall ↑"), ("F1", "F1 ↑"),
                 ("Len", "Len (words)"))
POPE_COLUMNS = (("accuracy", "Acc"), ("precision", "Prec"), ("recall", "Rec"), ("f1", "F1"))
MME_COLUMNS = (("existence", "Existence"), ("count", "Count"), ("position", "Position"), ("color", "Color"),
               ("hallucination", "Total"))
AMBER_COLUMNS = (("CHAIR", "CHAIR ↓"), ("Cover", "Cover ↑"), ("Hal", "Hal ↓"), ("Cog", "Cog ↓"), ("Accuracy", "Acc"),
                 ("Precision", "Prec"), ("Recall", "Rec"), ("F1", "F1"), ("AMBER", "AMBER ↑"))
AMBER_PAPER_KEYS = {"Accuracy": "Acc", "Precision": "Prec", "Recall": "Rec"}
POPE_DATASETS = ("coco", "aokvqa", "gqa")
POPE_SETTINGS = ("random", "popular", "adversarial")
CLAIR_DATASETS = {"iiw": "IIW-400", "docci": "DOCCI"}
EXACT_ONLY_NOTE = ("AMBER generative metrics scored with exact word matching only (spaCy en_core_web_lg not "
                   "available): CHAIR and Hal can be higher, Cover and Cog lower than the official scorer's")


@dataclass(frozen=True)
class Label:
    model: str
    method: str
    seed: str | None = None


@dataclass
class Record:
    """One run's numbers for one table cell group: benchmark, label, sub-key (dataset/setting) and values; ``notes``
    are the caveats that keep the run from being a plain result (each becomes a footnote of its row)."""

    benchmark: str
    label: Label
    key: str
    values: dict[str, float | None]
    source: str
    notes: list[str] = field(default_factory=list)
    empty_reason: str | None = None
    answers: str | None = None


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


def scorer_notes(metric_file: Path, data: dict[str, Any]) -> list[str]:
    """Footnotes a metric file calls for: AMBER's exact-only fallback, CLAIR replies left out."""
    notes = []
    if data["scorer"] == "amber" and data.get("similarity") == "exact-only":
        notes.append(EXACT_ONLY_NOTE)
    if data["scorer"] == "clair":
        counts = {**(data.get("metrics") or {}), **(data.get("counts") or {})}
        bad = [f"{int(counts[name])} {name}" for name in ("unparsable", "failed") if counts.get(name)]
        if bad:
            notes.append(f"CLAIR: {' and '.join(bad)} judge replies (see {metric_file.with_suffix('.jsonl')})")
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


def answers_files(data: dict[str, Any]) -> list[str]:
    value = data.get("answers_file")
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)] if value else []


def runs_of(data: dict[str, Any]) -> list[tuple[str, str | None, dict[str, float | None]]]:
    """``(key, answers file, values)`` of every run a metric file holds (POPE: one per setting; MME: one per seed)."""
    scorer, metrics = data["scorer"], data.get("metrics") or {}
    first = next(iter(answers_files(data)), None)
    if scorer == "pope":
        settings = data.get("settings") or {}
        return [(key, (settings.get(key) or {}).get("answers_file", first), dict(values))
                for key, values in metrics.items()]
    if scorer == "mme":
        runs = data.get("runs") or [{"tasks": {}, "totals": metrics, "source": first}]
        return [("", run.get("source", first), _mme_values(run)) for run in runs]
    if scorer == "clair":
        return [(str(data.get("data_type", "?")), first, dict(metrics))]
    if scorer == "chair":
        return [("", first, {k: _scaled(v) for k, v in metrics.items()})]
    return [("", first, dict(metrics))]


def coverage_notes(data: dict[str, Any]) -> list[list[str]]:
    """For each run of :func:`runs_of`: a footnote when the scorer found samples of the benchmark (or of the run's
    manifest) without an answer, so a partial run never reads as a plain result. CHAIR scores what it is given (no
    expected set)."""
    scorer, counts = data["scorer"], data.get("counts") or {}
    if scorer == "pope":
        settings = data.get("settings") or {}
        found = [((settings.get(key) or {}).get("counts") or {}) for key in (data.get("metrics") or {})]
        gaps = [(c.get("missing"), c.get("questions"), "questions") for c in found]
    elif scorer == "mme":
        runs = data.get("runs") or [{}]
        tasks = [list(run.get("tasks", {}).values()) for run in runs]
        gaps = [(sum(t.get("unanswered", 0) + t.get("missing", 0) for t in found),
                 sum(t.get("questions", 0) + t.get("missing", 0) for t in found), "questions of its tasks")
                for found in tasks]
    elif scorer == "amber":
        missing = counts.get("missing_ids")
        gaps = [(missing, (counts.get("scored") or 0) + (missing or 0), "queries")]
    elif scorer == "clair":
        missing = counts.get("not_answered")
        gaps = [(missing, (data.get("subset") or {}).get("count"), "images")]
    else:
        gaps = [(None, None, "")]
    return [[f"incomplete: {missing} of {expected if expected is not None else '?'} {unit} have no answer: not the "
             f"benchmark's result"] if missing else [] for missing, expected, unit in gaps]


def _mme_values(run: dict[str, Any]) -> dict[str, float | None]:
    values = {task: info.get("score") for task, info in run.get("tasks", {}).items()}
    values.update(run.get("totals", {}))
    return values


def _scaled(value: Any) -> float | None:
    """CHAIR's fractions as percentages (Len x100 is the mean caption length in words)."""
    return None if value is None else 100 * float(value)


def locate_answers(metric_file: Path, answers: str | None) -> str | None:
    """The answers file a metric file names: the path as written when it exists, else the file of that name beside
    the metric file (a results folder moved, or the report run from another directory)."""
    if not answers or Path(answers).is_file():
        return answers
    beside = metric_file.parent / Path(answers).name
    return str(beside) if beside.is_file() else answers


def records_of(path: Path, data: dict[str, Any], given: dict[str, Label]) -> list[Record]:
    """The records one metric file contributes, each labelled and annotated from its own answers file."""
    records = []
    for (key, answers, values), coverage in zip(runs_of(data), coverage_notes(data)):
        answers = locate_answers(path, answers)
        label = resolve_label(path, data, answers, given)
        trial = subset_notes(answers)  # a trial or short subset already says it is not the benchmark's result
        notes = trial + ([] if trial else coverage) + scorer_notes(path, data)
        records.append(Record(data["scorer"], label, key, values, str(path), notes, data.get("empty_reason"), answers))
    return records


def load_records(inputs: list[str], label_options: list[str]) -> tuple[list[Record], list[str]]:
    """Records from every metric file, and notes about files that were skipped or reported problems, and about runs
    whose answers no metric file scores yet (a captioning run without a judge key, say)."""
    given = dict(parse_label_option(option) for option in label_options)
    runner_results.cache_clear()  # files may have changed since an earlier call in this process
    records: list[Record] = []
    notes: list[str] = []
    scored: set[Path] = set()
    runs: list[tuple[Path, dict[str, Any]]] = []
    counted_once: dict[tuple[str, str, Path], Path] = {}
    for path in find_metric_files(inputs):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            notes.append(f"{path}: not valid JSON ({e}); skipped")
            continue
        if not isinstance(data, dict):
            continue
        if data.get("scorer") not in SCORERS:
            if path.name.endswith("_results.json") and isinstance(data.get("config"), dict):
                runs.append((path, data))
            continue
        for record in records_of(path, data, given):
            if record.answers:
                scored.add(Path(record.answers).resolve())
            found = record.answers and Path(record.answers).is_file()
            same = (record.benchmark, record.key, Path(record.answers).resolve()) if found else None
            if same in counted_once:
                notes.append(f"{path} scores the same answers as {counted_once[same]} ({record.answers}): "
                             "counted once")
                continue
            if same:
                counted_once[same] = path
            records.append(record)
        problems = data.get("problems") or []
        if problems:
            notes.append(f"{path}: {counted(len(problems), 'problem')} reported by the scorer (see the file)")
    unscored = [unscored_note(path, data) for path, data in runs
                if (answers := (data.get("files") or {}).get("answers"))
                and (path.parent / str(answers)).resolve() not in scored]
    if not records and not unscored:
        raise InputError(f"no metric files (json with \"scorer\": {', '.join(SCORERS)}) and no runs in {' '.join(inputs)}")
    return records, notes + unscored


def counted(count: Any, noun: str) -> str:
    """``"1 answer"``, ``"3 answers"``, ``"? answers"`` (count unknown)."""
    return f"{count} {noun}" if count == 1 else f"{'?' if count is None else count} {noun}s"


def unscored_note(path: Path, data: dict[str, Any]) -> str:
    """One line about a run whose answers are not scored yet: what it is and the scorer to run."""
    config, counts = data["config"], data.get("counts") or {}
    answers = path.parent / str((data.get("files") or {}).get("answers", "?"))
    benchmark = str(config.get("benchmark", "?"))
    scorer = {"coco": "chair", "iiw": "clair", "docci": "clair"}.get(benchmark, benchmark)
    return (f"{answers}: {canonical_method(str(config.get('method', '?')))} on {benchmark}, "
            f"{counted(counts.get('answered'), 'answer')}, not scored yet (python -m eval.{scorer} --help)")


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


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


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


def group(records: list[Record], benchmarks: tuple[str, ...]) -> dict[tuple[Label, str], list[Record]]:
    """Records of the benchmarks by (label without seed, key), in a stable order (model, method order, key)."""
    groups: dict[tuple[Label, str], list[Record]] = defaultdict(list)
    for record in records:
        if record.benchmark in benchmarks:
            groups[(Label(record.label.model, record.label.method), record.key)].append(record)
    return dict(sorted(groups.items(), key=lambda item: (item[0][0].model, method_rank(item[0][0].method),
                                                         item[0][1])))


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


def captioning_table(records: list[Record], notes: Footnotes) -> str | None:
    """SPARC's comparison: one row per model and method; COCO CHAIR columns, then CLAIR per dataset."""
    groups = group(records, ("chair", "clair"))
    if not groups:
        return None
    datasets = sorted({key for (_, key), runs in groups.items() if runs[0].benchmark == "clair"},
                      key=lambda k: (k not in CLAIR_DATASETS, k))
    by_label: dict[Label, dict[str, list[Record]]] = defaultdict(dict)
    for (label, key), runs in groups.items():
        by_label[label]["COCO" if runs[0].benchmark == "chair" else key] = runs
    chair_keys = [k for k, _ in CHAIR_COLUMNS]
    rows = []
    for label, parts in by_label.items():
        chair_runs, caveats, runs_text = parts.get("COCO", []), [], []
        cells = ours_cells(chair_runs, chair_keys) if chair_runs else ["-"] * len(chair_keys)
        if chair_runs:
            caveats += row_notes(chair_runs, chair_keys)
        for dataset in datasets:
            clair_runs = parts.get(dataset, [])
            cells.append(aggregate([r.values.get("clair") for r in clair_runs]) if clair_runs else "-")
            caveats += row_notes(clair_runs, ["clair"]) if clair_runs else []
        for part, runs in parts.items():
            runs_text.append((CLAIR_DATASETS.get(part, part), runs_cell(runs)))
        runs_label = runs_text[0][1] if len(runs_text) == 1 else "; ".join(f"{p}: {r}" for p, r in runs_text)
        rows.append([label.model, label.method, "ours", runs_label + notes.marks(caveats)] + cells)
        published = paper_numbers.SPARC_CHAIR_F1.get((label.model, label.method))
        if published is not None:
            rows.append([label.model, label.method, "paper", "-"]
                        + [paper_cell(published) if k == "F1" else "-" for k in chair_keys] + ["-"] * len(datasets))
    header = (["Model", "Method", "Source", "Runs"] + [f"COCO {title}" for _, title in CHAIR_COLUMNS]
              + [f"{CLAIR_DATASETS.get(d, d)} CLAIR" for d in datasets])
    return ("### SPARC: captioning (COCO CHAIR x100, F1 of precision 1 - CHAIRi and recall; Len = mean caption length "
            "in words (NLTK tokens, punctuation included), not generated tokens; CLAIR x100)\n\n"
            + markdown_table(header, rows))


def pope_table(records: list[Record], notes: Footnotes) -> str | None:
    groups = group(records, ("pope",))
    if not groups:
        return None

    def order(item: tuple[tuple[Label, str], list[Record]]) -> tuple[Any, ...]:
        (label, key), _ = item
        dataset, _, setting = key.partition("/")
        return (label.model, _rank(dataset, POPE_DATASETS), _rank(setting, POPE_SETTINGS), key,
                method_rank(label.method))

    columns = [k for k, _ in POPE_COLUMNS]
    rows = []
    for (label, key), runs in sorted(groups.items(), key=order):
        dataset, _, setting = key.partition("/")
        rows.append([label.model, dataset, setting or "-", label.method, "ours",
                     runs_cell(runs) + notes.marks(row_notes(runs, columns))] + ours_cells(runs, columns))
        published = paper_numbers.POPE.get((label.model, dataset, setting, label.method))
        if published is not None:
            rows.append([label.model, dataset, setting, label.method, "paper", "1"]
                        + [paper_cell(v) for v in published])
    header = ["Model", "Dataset", "Setting", "Method", "Source", "Runs"] + [title for _, title in POPE_COLUMNS]
    return "### AvisC: POPE (x100)\n\n" + markdown_table(header, rows)


def _rank(value: str, order: tuple[str, ...]) -> int:
    return order.index(value) if value in order else len(order)


def mme_table(records: list[Record], notes: Footnotes) -> str | None:
    groups = group(records, ("mme",))
    if not groups:
        return None
    columns = [k for k, _ in MME_COLUMNS]
    rows = []
    for (label, _), runs in groups.items():
        rows.append([label.model, label.method, "ours", runs_cell(runs) + notes.marks(row_notes(runs, columns))]
                    + ours_cells(runs, columns))
        published = paper_numbers.MME_HALLUCINATION.get((label.model, label.method))
        if published is not None:
            rows.append([label.model, label.method, "paper", "several seeds"]
                        + [paper_cell(published[k]) for k in columns])
    header = ["Model", "Method", "Source", "Runs"] + [title for _, title in MME_COLUMNS]
    return ("### AvisC: MME hallucination subset (score = acc + acc+, max 200 per task, 800 total; "
            "mean ± sample std over runs)\n\n" + markdown_table(header, rows))


def amber_table(records: list[Record], notes: Footnotes) -> str | None:
    groups = group(records, ("amber",))
    if not groups:
        return None
    columns = [k for k, _ in AMBER_COLUMNS]
    rows = []
    for (label, _), runs in groups.items():
        rows.append([label.model, label.method, "ours", runs_cell(runs) + notes.marks(row_notes(runs, columns))]
                    + ours_cells(runs, columns))
        published = paper_numbers.AMBER.get((label.model, label.method))
        if published is not None:
            rows.append([label.model, label.method, "paper", "-"]
                        + [paper_cell(published[AMBER_PAPER_KEYS.get(k, k)]) for k in columns])
    header = ["Model", "Method", "Source", "Runs"] + [title for _, title in AMBER_COLUMNS]
    return ("### AvisC: AMBER (generative CHAIR/Cover/Hal/Cog, discriminative Acc/Prec/Rec/F1 with \"no\" as the "
            "positive class; AMBER = (100 - CHAIR + F1) / 2)\n\n" + markdown_table(header, rows))


def build_report(records: list[Record], notes: list[str]) -> str:
    footnotes = Footnotes()
    tables = [table for build in (captioning_table, pope_table, mme_table, amber_table)
              if (table := build(records, footnotes))]
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
        records, notes = load_records(args.inputs, args.label)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = build_report(records, notes)
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
