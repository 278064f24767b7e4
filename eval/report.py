"""Paper-style markdown tables from the metric files that the scorers write, with the published numbers beside ours.

Usage::

    python -m eval.report results/ [more files or folders ...] [--label FILE=MODEL,METHOD[,SEED] ...] [--out table.md]

Folders are searched recursively for ``*.json`` files whose ``"scorer"`` is chair, clair, pope, mme or amber (other
json files, e.g. the runners' ``*_results.json``, are skipped). Each metric file is labelled with a model and a
method, by the first of:

1. ``--label FILE=MODEL,METHOD[,SEED]`` (FILE as given on the command line, or its file name);
2. a ``"run"`` block in the metric file (``model_path`` or ``model``, ``method``, ``seed``);
3. the runner's ``<answers file stem>_results.json`` beside the answers file (its ``"config"`` block);
4. the file names (metric file, then answers file): ``instructblip``, ``llava...1.5``, ``llava...1.6``/``next``
   name the model; ``base``/``baseline``, ``avisc``, ``vcd``, ``m3id``, ``sparc`` the method; ``seed<N>`` the seed.

Files with the same model, method and benchmark (and dataset / setting) are runs of one configuration: the tables
show their mean, and ``± std`` (sample standard deviation, ddof 1) when there are several. A "paper" row follows
each of our rows where the papers publish a number (``eval/paper_numbers.py``).
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from eval import paper_numbers
from eval.files import InputError, write_text_atomic

SCORERS = ("chair", "clair", "pope", "mme", "amber")
METHOD_ORDER = ("base", "VCD", "M3ID", "AvisC", "SPARC")
METHOD_NAMES = {"base": "base", "baseline": "base", "vanilla": "base", "regular": "base", "avisc": "AvisC",
                "vcd": "VCD", "m3id": "M3ID", "sparc": "SPARC"}
CHAIR_COLUMNS = (("CHAIRs", "CHAIRs ↓"), ("CHAIRi", "CHAIRi ↓"), ("Recall", "Recall ↑"), ("Precision", "Precision ↑"),
                 ("F1", "F1 ↑"), ("Len", "Len"))
POPE_COLUMNS = (("accuracy", "Acc"), ("precision", "Prec"), ("recall", "Rec"), ("f1", "F1"))
MME_COLUMNS = (("existence", "Existence"), ("count", "Count"), ("position", "Position"), ("color", "Color"),
               ("hallucination", "Total"))
AMBER_COLUMNS = (("CHAIR", "CHAIR ↓"), ("Cover", "Cover ↑"), ("Hal", "Hal ↓"), ("Cog", "Cog ↓"), ("Accuracy", "Acc"),
                 ("Precision", "Prec"), ("Recall", "Rec"), ("F1", "F1"), ("AMBER", "AMBER ↑"))
AMBER_PAPER_KEYS = {"Accuracy": "Acc", "Precision": "Prec", "Recall": "Rec"}
POPE_DATASETS = ("coco", "aokvqa", "gqa")
POPE_SETTINGS = ("random", "popular", "adversarial")
CLAIR_DATASETS = {"iiw": "IIW-400", "docci": "DOCCI"}


@dataclass(frozen=True)
class Label:
    model: str
    method: str
    seed: str | None = None


@dataclass
class Record:
    """One run's numbers for one table cell group: benchmark, label, sub-key (dataset/setting) and values."""

    benchmark: str
    label: Label
    key: str
    values: dict[str, float | None]
    source: str


# ----------------------------------------------------------------------------------------------------------------
# Labels


def recognise_model(name: str) -> str | None:
    """``InstructBLIP``, ``LLaVA-1.5``, ``LLaVA-NeXT`` or ``LLaVA`` (the paper tables' names) when named in ``name``."""
    lower = name.lower()
    if "instructblip" in lower:
        return "InstructBLIP"
    if "llava" not in lower:
        return None
    if re.search(r"1\.6|v16|next", lower):
        return "LLaVA-NeXT"
    if re.search(r"1\.5|v15|llava15", lower):
        return "LLaVA-1.5"
    return "LLaVA"


def canonical_model(name: str) -> str:
    """The paper tables' name of a model path when recognisable, else its last path component."""
    return recognise_model(name) or name.rstrip("/").rsplit("/", 1)[-1]


def canonical_method(name: str) -> str:
    return METHOD_NAMES.get(name.lower(), name)


def label_from_names(*names: str) -> Label | None:
    """A label read from file names, or None when neither model nor method can be recognised."""
    model = method = seed = None
    for name in names:
        lower = name.lower()
        tokens = re.split(r"[^a-z0-9]+", lower)
        model = model or recognise_model(lower)
        if method is None:
            method = next((METHOD_NAMES[t] for t in tokens if t in METHOD_NAMES), None)
        if seed is None and (match := re.search(r"seed[_-]?(\d+)", lower)):
            seed = match.group(1)
    if model is None and method is None:
        return None
    return Label(model or "?", method or "?", seed)


def label_from_config(config: dict[str, Any]) -> Label | None:
    model = config.get("model_path") or config.get("model")
    method = config.get("method")
    if not model and not method:
        return None
    seed = config.get("seed")
    return Label(canonical_model(str(model or "?")), canonical_method(str(method or "?")),
                 None if seed is None else str(seed))


def parse_label_option(option: str) -> tuple[str, Label]:
    """``FILE=MODEL,METHOD[,SEED]`` -> (FILE, Label)."""
    path, sep, spec = option.partition("=")
    parts = spec.split(",")
    if not sep or len(parts) not in (2, 3) or not all(parts[:2]):
        raise InputError(f"--label {option!r}: expected FILE=MODEL,METHOD[,SEED]")
    return path, Label(canonical_model(parts[0]), canonical_method(parts[1]), parts[2] if len(parts) == 3 else None)


def answers_files(data: dict[str, Any]) -> list[str]:
    value = data.get("answers_file")
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)] if value else []


def resolve_label(path: Path, data: dict[str, Any], given: dict[str, Label]) -> Label:
    """The label of one metric file (see the module doc for the order)."""
    for key in (str(path), path.name):
        if key in given:
            return given[key]
    run = data.get("run")
    if isinstance(run, dict) and (label := label_from_config(run.get("config", run))):
        return label
    for answers in answers_files(data)[:1]:
        runner = Path(answers).with_name(Path(answers).name.removesuffix(".jsonl") + "_results.json")
        if runner.is_file():
            try:
                config = json.loads(runner.read_text(encoding="utf-8")).get("config", {})
            except (json.JSONDecodeError, AttributeError):
                config = {}
            if isinstance(config, dict) and (label := label_from_config(config)):
                return label
    return label_from_names(path.name, *(Path(a).name for a in answers_files(data))) or Label("?", path.stem)


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


def records_of(path: Path, data: dict[str, Any], label: Label) -> list[Record]:
    """The records one metric file contributes (POPE: one per setting; MME: one per run)."""
    scorer, metrics = data["scorer"], data.get("metrics") or {}
    source = str(path)
    if scorer == "pope":
        return [Record("pope", label, key, dict(values), source) for key, values in metrics.items()]
    if scorer == "mme":
        runs = data.get("runs") or [{"tasks": {}, "totals": metrics}]
        return [Record("mme", label, "", _mme_values(run), source) for run in runs]
    if scorer == "clair":
        return [Record("clair", label, str(data.get("data_type", "?")), dict(metrics), source)]
    if scorer == "chair":
        return [Record("chair", label, "", {k: _scaled(v) for k, v in metrics.items()}, source)]
    return [Record(scorer, label, "", dict(metrics), source)]


def _mme_values(run: dict[str, Any]) -> dict[str, float | None]:
    values = {task: info.get("score") for task, info in run.get("tasks", {}).items()}
    values.update(run.get("totals", {}))
    return values


def _scaled(value: Any) -> float | None:
    """CHAIR's fractions as percentages (Len x100 is the mean caption length in tokens)."""
    return None if value is None else 100 * float(value)


def load_records(inputs: list[str], label_options: list[str]) -> tuple[list[Record], list[str]]:
    """Records from every metric file, and notes about files that were skipped or reported problems."""
    given = dict(parse_label_option(option) for option in label_options)
    records: list[Record] = []
    notes: list[str] = []
    for path in find_metric_files(inputs):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            notes.append(f"{path}: not valid JSON ({e}); skipped")
            continue
        if not isinstance(data, dict) or data.get("scorer") not in SCORERS:
            continue
        label = resolve_label(path, data, given)
        records.extend(records_of(path, data, label))
        problems = data.get("problems") or []
        if problems:
            notes.append(f"{path}: {len(problems)} problem(s) reported by the scorer (see the file)")
    if not records:
        raise InputError(f"no metric files (json with \"scorer\": {', '.join(SCORERS)}) in {' '.join(inputs)}")
    return records, notes


# ----------------------------------------------------------------------------------------------------------------
# Tables


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


def group(records: list[Record], benchmark: str) -> dict[tuple[Label, str], list[Record]]:
    """Records of one benchmark by (label without seed, key), in a stable order (model, method order, key)."""
    groups: dict[tuple[Label, str], list[Record]] = defaultdict(list)
    for record in records:
        if record.benchmark == benchmark:
            groups[(Label(record.label.model, record.label.method), record.key)].append(record)
    return dict(sorted(groups.items(), key=lambda item: (item[0][0].model, method_rank(item[0][0].method), item[0][1])))


def method_rank(method: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(method), "") if method in METHOD_ORDER else (len(METHOD_ORDER), method)


def runs_cell(runs: list[Record]) -> str:
    seeds = sorted({r.label.seed for r in runs if r.label.seed is not None})
    if not seeds:
        return str(len(runs))
    return f"{len(runs)} (seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)})"


def chair_table(records: list[Record]) -> str | None:
    groups = group(records, "chair")
    if not groups:
        return None
    rows = []
    for (label, _), runs in groups.items():
        rows.append([label.model, label.method, "ours", runs_cell(runs)]
                    + [aggregate([r.values.get(k) for r in runs]) for k, _ in CHAIR_COLUMNS])
        published = paper_numbers.SPARC_CHAIR_F1.get((label.model, label.method))
        if published is not None:
            rows.append([label.model, label.method, "paper", "-"] + ["-"] * 4 + [paper_cell(published), "-"])
    header = ["Model", "Method", "Source", "Runs"] + [title for _, title in CHAIR_COLUMNS]
    return ("### SPARC: CHAIR on COCO (x100; Precision = 1 - CHAIRi; Len = mean tokens)\n\n"
            + markdown_table(header, rows))


def clair_table(records: list[Record]) -> str | None:
    groups = group(records, "clair")
    if not groups:
        return None
    datasets = sorted({key for _, key in groups}, key=lambda k: (k not in CLAIR_DATASETS, k))
    by_label: dict[Label, dict[str, list[Record]]] = defaultdict(dict)
    for (label, key), runs in groups.items():
        by_label[label][key] = runs
    rows = []
    for label, per_dataset in by_label.items():
        cells = []
        for dataset in datasets:
            runs = per_dataset.get(dataset, [])
            cells.append(aggregate([r.values.get("clair") for r in runs]) if runs else "-")
            cells.append(str(sum(int(r.values.get("unparsable") or 0) for r in runs)) if runs else "-")
        rows.append([label.model, label.method] + cells)
    header = ["Model", "Method"]
    for dataset in datasets:
        header += [f"{CLAIR_DATASETS.get(dataset, dataset)} CLAIR", "unparsable"]
    return ("### SPARC: CLAIR (mean x100, unparsable judge replies count as 0; the paper's absolute values are not "
            "available to us)\n\n" + markdown_table(header, rows))


def pope_table(records: list[Record]) -> str | None:
    groups = group(records, "pope")
    if not groups:
        return None

    def order(item: tuple[tuple[Label, str], list[Record]]) -> tuple[Any, ...]:
        (label, key), _ = item
        dataset, _, setting = key.partition("/")
        return (label.model, _rank(dataset, POPE_DATASETS), _rank(setting, POPE_SETTINGS), key,
                method_rank(label.method))

    rows = []
    for (label, key), runs in sorted(groups.items(), key=order):
        dataset, _, setting = key.partition("/")
        rows.append([label.model, dataset, setting or "-", label.method, "ours", runs_cell(runs)]
                    + [aggregate([r.values.get(k) for r in runs]) for k, _ in POPE_COLUMNS])
        published = paper_numbers.POPE.get((label.model, dataset, setting, label.method))
        if published is not None:
            rows.append([label.model, dataset, setting, label.method, "paper", "1"]
                        + [paper_cell(v) for v in published])
    header = ["Model", "Dataset", "Setting", "Method", "Source", "Runs"] + [title for _, title in POPE_COLUMNS]
    return "### AvisC: POPE (x100)\n\n" + markdown_table(header, rows)


def _rank(value: str, order: tuple[str, ...]) -> int:
    return order.index(value) if value in order else len(order)


def mme_table(records: list[Record]) -> str | None:
    groups = group(records, "mme")
    if not groups:
        return None
    rows = []
    for (label, _), runs in groups.items():
        rows.append([label.model, label.method, "ours", runs_cell(runs)]
                    + [aggregate([r.values.get(k) for r in runs]) for k, _ in MME_COLUMNS])
        published = paper_numbers.MME_HALLUCINATION.get((label.model, label.method))
        if published is not None:
            rows.append([label.model, label.method, "paper", "several seeds"]
                        + [paper_cell(published[k]) for k, _ in MME_COLUMNS])
    header = ["Model", "Method", "Source", "Runs"] + [title for _, title in MME_COLUMNS]
    return ("### AvisC: MME hallucination subset (score = acc + acc+, max 200 per task, 800 total; "
            "mean ± sample std over runs)\n\n" + markdown_table(header, rows))


def amber_table(records: list[Record]) -> str | None:
    groups = group(records, "amber")
    if not groups:
        return None
    rows = []
    for (label, _), runs in groups.items():
        rows.append([label.model, label.method, "ours", runs_cell(runs)]
                    + [aggregate([r.values.get(k) for r in runs]) for k, _ in AMBER_COLUMNS])
        published = paper_numbers.AMBER.get((label.model, label.method))
        if published is not None:
            rows.append([label.model, label.method, "paper", "-"]
                        + [paper_cell(published[AMBER_PAPER_KEYS.get(k, k)]) for k, _ in AMBER_COLUMNS])
    header = ["Model", "Method", "Source", "Runs"] + [title for _, title in AMBER_COLUMNS]
    return ("### AvisC: AMBER (generative CHAIR/Cover/Hal/Cog, discriminative Acc/Prec/Rec/F1 with \"no\" as the "
            "positive class; AMBER = (100 - CHAIR + F1) / 2)\n\n" + markdown_table(header, rows))


def build_report(records: list[Record], notes: list[str]) -> str:
    tables = [t for t in (chair_table(records), clair_table(records), pope_table(records), mme_table(records),
                          amber_table(records)) if t]
    text = "\n\n".join(tables) + "\n"
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
        write_text_atomic(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
