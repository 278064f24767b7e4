"""POPE scorer: yes/no answers against the POPE labels, as AvisC scores them.

Each answer (LLaVA answer-file line ``{"question_id", "text", ...}``; other field names with ``--id_key`` /
``--text_key``) is cleaned and read as yes or no as the AvisC runners read it (:mod:`eval.yesno`: strip, cut
``</s>``, then the NEG_WORDS ``recorder``) and paired with its question **by question_id**. Labels come from the
question file (``'no'`` -> 0, anything else -> 1). Yes is the positive class; accuracy, precision, recall, F1 and
the yes ratio are reported x100; a metric whose denominator is 0 (no answers, no yes predicted...) is null.

Usage::

    python -m eval.pope --answers results/coco_pope_random.jsonl                  # question file from the run / name
    python -m eval.pope --answers A.jsonl --question_file Q.json
    python -m eval.pope --answers_dir results/pope --question_dir eval/data/pope/vcd   # up to 9 settings

Without ``--question_file`` the question file is the one the runner recorded in the run's ``_results.json``; for
answers from another tool the dataset (coco, aokvqa, gqa) and setting (random, popular, adversarial) are read
from the answers file name (e.g. ``llava_avisc_coco_pope_random.jsonl``) and the question file is looked up in
``--question_dir`` (default: the VCD copies shipped in ``eval/data/pope/vcd``, the files AvisC used). In
``--answers_dir`` only answers files are read: hidden files (the runners' shard and temporary files), the runners'
``<name>_errors.jsonl`` and files whose records lack the answer fields are left out; two answers files of one
setting are refused, naming both.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval import paper_numbers
from eval.benchmarks.pope import DATASETS, DEFAULT_QUESTION_DIR, SETTINGS, find_question_file
from eval.files import (
    InputError, Problem, RunPaths, check_output_file, iter_jsonl, read_records, report_problems, run_subset, sample_id,
    write_json_atomic,
)
from eval.scoring import Column, Published, ScoredRun, Scorer, first_answers, register_scorer
from eval.yesno import READINGS, read_answer, require_fields

METRIC_NAMES = ("accuracy", "precision", "recall", "f1", "yes_ratio")
_NAME_PATTERN = re.compile(rf"({'|'.join(DATASETS)}).*?({'|'.join(SETTINGS)})", re.IGNORECASE)
READING = "avisc"


@dataclass
class SettingResult:
    """The confusion counts of one answers file against one question file."""

    key: str
    dataset: str | None
    setting: str | None
    answers_file: str
    question_file: str
    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def metrics(self) -> dict[str, float | None]:
        """Accuracy, precision, recall, F1 and yes ratio, x100 (None where a denominator is 0)."""
        return confusion_metrics(self.tp, self.fp, self.tn, self.fn)

    def empty_reason(self) -> str | None:
        """Why some metrics are null (None when every metric has a value)."""
        metrics = self.metrics()
        if self.tp + self.fp + self.tn + self.fn == 0:
            return f"{self.key}: no answer could be scored ({self.counts.get('answers', 0)} answer records)"
        why = {"precision": "no answer read as yes", "recall": "no question labelled yes",
               "f1": "precision or recall undefined or both 0"}
        nulls = [f"{name} ({why[name]})" for name in why if metrics[name] is None]
        return f"{self.key}: {', '.join(nulls)} undefined" if nulls else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "setting": self.setting,
            "answers_file": self.answers_file,
            "question_file": self.question_file,
            "confusion": {"TP": self.tp, "FP": self.fp, "TN": self.tn, "FN": self.fn},
            "metrics": self.metrics(),
            "counts": self.counts,
        }


def _ratio(numerator: float, denominator: float) -> float | None:
    return 100.0 * numerator / denominator if denominator else None


def confusion_metrics(tp: int, fp: int, tn: int, fn: int) -> dict[str, float | None]:
    """POPE metrics x100 from the confusion counts (yes is positive), as ``print_acc`` computes them."""
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = None
    if precision is not None and recall is not None and precision + recall > 0:
        f1 = 2 * precision * recall / (precision + recall)
    total = tp + fp + tn + fn
    return {
        "accuracy": _ratio(tp + tn, total),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": _ratio(tp + fp, total),
    }


def infer_setting(name: str) -> tuple[str | None, str | None]:
    """``(dataset, setting)`` named in a file name such as ``coco_pope_random.jsonl``, or ``(None, None)``."""
    match = _NAME_PATTERN.search(Path(name).name)
    if match is None:
        return None, None
    return match.group(1).lower(), match.group(2).lower()


def setting_of(answers_file: Path, question_file: Path) -> tuple[str, str | None, str | None]:
    """``(key, dataset, setting)`` of a pair: from the answers file name, else the question file name; the key is
    ``dataset/setting``, or the answers file stem when neither name tells."""
    dataset, setting = infer_setting(answers_file.name)
    if dataset is None:
        dataset, setting = infer_setting(question_file.name)
    return (f"{dataset}/{setting}" if dataset else answers_file.stem), dataset, setting


def read_labels(question_file: Path, label_key: str, problems: list[Problem]) -> dict[str, int]:
    """``question_id -> 0/1`` from a POPE question file (jsonl, CRLF or not, or a JSON array)."""
    labels: dict[str, int] = {}
    for index, (line, record) in enumerate(read_records(question_file, problems), start=1):
        where = line if line is not None else index
        qid = sample_id(record.get("question_id"))
        label = record.get(label_key)
        if qid is None or not isinstance(label, str):
            problems.append(Problem(str(question_file), where, qid,
                                    f"question without a 'question_id' or a string '{label_key}'; skipped"))
            continue
        if qid in labels:
            problems.append(Problem(str(question_file), where, qid, "duplicate question_id; first one kept"))
            continue
        if label not in ("yes", "no"):
            problems.append(Problem(str(question_file), where, qid, f"label {label!r} is read as yes (official rule)"))
        labels[qid] = 0 if label == "no" else 1
    if not labels:
        raise InputError(f"{question_file}: no usable questions (need 'question_id' and '{label_key}')")
    return labels


@dataclass(frozen=True)
class AnswerFields:
    """The answers file's field names: the question id and the answer text (``--id_key`` / ``--text_key``)."""

    id_key: str = "question_id"
    text_key: str = "text"

    def needed(self) -> dict[str, tuple[tuple[str, ...], str]]:
        """For :func:`eval.yesno.require_fields`."""
        return {"question id": ((self.id_key,), "--id_key"), "answer": ((self.text_key,), "--text_key")}


def score_file(answers_file: Path, question_file: Path, label_key: str, problems: list[Problem],
               fields: AnswerFields = AnswerFields()) -> SettingResult:
    """Pair the answers with the labels by question id and count TP/FP/TN/FN.

    Raises :class:`InputError` before scoring when no record has the answer fields."""
    key, dataset, setting = setting_of(answers_file, question_file)
    result = SettingResult(key, dataset, setting, str(answers_file), str(question_file))
    records = read_records(answers_file, problems)
    require_fields(answers_file, records, fields.needed())
    labels = read_labels(question_file, label_key, problems)
    subset = run_subset(answers_file)
    if subset is not None:  # the questions the run chose (a --limit trial, say): only those are expected
        labels = {qid: label for qid, label in labels.items() if qid in subset}
    counts = {"questions": len(labels), "answers": 0, "scored": 0, "missing": 0, "extra": 0, "duplicate": 0,
              "unparsable": 0, "empty": 0}
    seen: set[str] = set()
    for line, record in records:
        counts["answers"] += 1
        qid = record.get(fields.id_key)
        text = record.get(fields.text_key)
        sid = sample_id(qid)
        if sid is None or sid not in labels:
            counts["extra"] += 1
            reason = (f"no usable {fields.id_key!r} ({qid!r})" if sid is None
                      else f"{fields.id_key} not in the question file")
            problems.append(Problem(str(answers_file), line, sid, f"{reason}; skipped"))
            continue
        if sid in seen:
            counts["duplicate"] += 1
            problems.append(Problem(str(answers_file), line, sid, "duplicate answer; first one kept"))
            continue
        if not isinstance(text, str):
            counts["unparsable"] += 1
            problems.append(Problem(str(answers_file), line, sid, f"no string {fields.text_key!r} field; not scored"))
            continue
        seen.add(sid)
        if not text.strip():
            counts["empty"] += 1
            problems.append(Problem(str(answers_file), line, sid, "empty answer; read as yes (official rule)"))
        _count(result, predicted_yes=read_answer(text, READING) == "yes", label_yes=labels[sid] == 1)
        counts["scored"] += 1
    for qid in (q for q in labels if q not in seen):
        counts["missing"] += 1
        problems.append(Problem(str(answers_file), None, qid, "no answer for this question; not scored"))
    result.counts = counts
    return result


def _count(result: SettingResult, predicted_yes: bool, label_yes: bool) -> None:
    if predicted_yes:
        if label_yes:
            result.tp += 1
        else:
            result.fp += 1
    elif label_yes:
        result.fn += 1
    else:
        result.tn += 1


def is_answers_file(path: Path, fields: AnswerFields) -> bool:
    """Whether ``path`` is an answers file: its first JSON record has the question id and the answer fields."""
    for _, record in iter_jsonl(path):
        if isinstance(record, dict):
            return fields.id_key in record and fields.text_key in record
    return False


def answers_in_folder(folder: Path, fields: AnswerFields, problems: list[Problem]) -> list[Path]:
    """The answers files of a folder: ``*.jsonl``, not hidden (the runners' shards and temporary files start with a
    dot), not a runner side file (``<name>_errors.jsonl``), and holding answer records (other files are noted)."""
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    answers = []
    for path in sorted(folder.glob("*.jsonl")):
        if RunPaths.is_side_file(path):
            continue
        if is_answers_file(path, fields):
            answers.append(path)
        else:
            problems.append(Problem(str(path), None, None, f"not an answers file (its first record lacks "
                                    f"{fields.id_key!r} or {fields.text_key!r}); skipped"))
    return answers


def refuse_collisions(pairs: list[tuple[Path, Path]]) -> None:
    """Raise :class:`InputError` naming the files when two answers files map to the same dataset/setting."""
    by_setting: dict[str, list[str]] = {}
    for answers_file, question_file in pairs:
        by_setting.setdefault(setting_of(answers_file, question_file)[0], []).append(str(answers_file))
    clashes = [f"{key}: {', '.join(files)}" for key, files in by_setting.items() if len(files) > 1]
    if clashes:
        raise InputError("several answers files map to the same setting (" + "; ".join(clashes)
                         + "); score them separately with --answers")


def run_question_file(answers_file: Path) -> Path | None:
    """The question file a runner recorded for the run whose answers are ``answers_file`` (``_results.json``
    ``config.data.question_file``), when it still exists; None for answers from another tool."""
    try:
        results = json.loads(RunPaths.of_answers(answers_file).results.read_text(encoding="utf-8"))
        path = Path(results["config"]["data"]["question_file"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return path if path.is_file() else None


def collect_pairs(args: argparse.Namespace, fields: AnswerFields, problems: list[Problem]) -> list[tuple[Path, Path]]:
    """``(answers_file, question_file)`` pairs from the command line; refuses two files of one setting."""
    question_dir = Path(args.question_dir)
    if args.answers_dir:
        answers = answers_in_folder(Path(args.answers_dir), fields, problems)
    else:
        answers = [Path(a) for a in args.answers]
        missing = [str(a) for a in answers if not a.is_file()]
        if missing:  # before its name is read for a setting, and before any output folder is made
            raise InputError(f"{', '.join(missing)}: no such file")
    if args.question_file:
        if len(args.question_file) != len(answers):
            raise InputError(f"{len(args.question_file)} --question_file for {len(answers)} answers files")
        pairs = list(zip(answers, (Path(q) for q in args.question_file)))
        refuse_collisions(pairs)
        return pairs
    pairs = []
    for answers_file in answers:
        used = run_question_file(answers_file)
        if used is not None:  # the question file the runner used (recorded in its _results.json)
            pairs.append((answers_file, used))
            continue
        dataset, setting = infer_setting(answers_file.name)
        if dataset is None:
            if args.answers_dir:
                problems.append(Problem(str(answers_file), None, None, "no dataset/setting in the name; skipped"))
                continue
            raise InputError(f"{answers_file}: cannot tell dataset and setting from the name; pass --question_file")
        pairs.append((answers_file, find_question_file(question_dir, dataset, setting)))
    if not pairs:
        raise InputError(f"{args.answers_dir}: no answers files named like '<dataset>_pope_<setting>.jsonl'")
    refuse_collisions(pairs)
    return pairs


def format_table(results: list[SettingResult]) -> str:
    """A markdown table: one row per dataset/setting, in the paper's order."""
    def order(result: SettingResult) -> tuple[int, int, str]:
        ds = DATASETS.index(result.dataset) if result.dataset in DATASETS else len(DATASETS)
        st = SETTINGS.index(result.setting) if result.setting in SETTINGS else len(SETTINGS)
        return ds, st, result.key

    rows = ["| Dataset | Setting | Acc | Prec | Rec | F1 | Yes % | Scored | Missing |",
            "|---|---|---|---|---|---|---|---|---|"]
    for result in sorted(results, key=order):
        m = result.metrics()
        cells = [_fmt(m[name]) for name in METRIC_NAMES]
        rows.append(f"| {result.dataset or result.key} | {result.setting or '-'} | " + " | ".join(cells)
                    + f" | {result.counts['scored']} | {result.counts['missing']} |")
    return "\n".join(rows)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.pope", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--answers", "--answers_file", "--answers-file", nargs="+",
                        help="answers jsonl file(s) ({question_id, text} per line)")
    source.add_argument("--answers_dir", "--answers-dir", help="a folder of answers files, one per dataset/setting")
    parser.add_argument("--question_file", "--question-file", "--pope_path", nargs="+",
                        help="question file(s), one per answers file (default: the one the run recorded, else found "
                             "from the answers file name)")
    parser.add_argument("--question_dir", "--question-dir", default=str(DEFAULT_QUESTION_DIR),
                        help="where to look for {dataset}/{dataset}_pope_{setting}.json (default: shipped VCD copies)")
    parser.add_argument("--label_key", "--label-key", default="label", help="label field of the question file")
    parser.add_argument("--id_key", "--id-key", default="question_id", help="question id field of the answers file")
    parser.add_argument("--text_key", "--text-key", default="text", help="answer text field of the answers file")
    parser.add_argument("--save_path", "--save-path",
                        help="metrics json (default: <answers>_pope.json, or pope_metrics.json beside several files)")
    return parser


def default_save_path(pairs: list[tuple[Path, Path]]) -> Path:
    first = pairs[0][0]
    if len(pairs) == 1:
        return RunPaths.of_answers(first).metrics("pope")
    return first.parent / "pope_metrics.json"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problems: list[Problem] = []
    fields = AnswerFields(args.id_key, args.text_key)
    try:
        pairs = collect_pairs(args, fields, problems)
        save_path = check_output_file(args.save_path or default_save_path(pairs))
        results = [score_file(a, q, args.label_key, problems, fields) for a, q in pairs]
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    reasons = [reason for r in results if (reason := r.empty_reason())]
    totals: dict[str, int] = {}
    for result in results:
        for name, value in result.counts.items():
            totals[name] = totals.get(name, 0) + value
    write_json_atomic(save_path, {
        "scorer": "pope",
        "answers_file": [str(a) for a, _ in pairs] if len(pairs) > 1 else str(pairs[0][0]),
        "metrics": {r.key: r.metrics() for r in results},
        "counts": totals,
        "problems": [p.to_dict() for p in problems],
        "settings": {r.key: r.to_dict() for r in results},
        "reading": READING,
        "reading_rule": READINGS[READING],
        "empty_reason": "; ".join(reasons) or None,
        "label_key": args.label_key,
    })
    print(format_table(results))
    report_problems(problems)
    for reason in reasons:
        print(f"null metrics: {reason}", file=sys.stderr)
    print(f"metrics written to {save_path}")
    return 0 if totals.get("scored") else 1


class PopeScorer(Scorer):
    """What the report reads from POPE's metrics json: one run per setting (``coco/random``, ...), each with its
    own answers file and the questions of its question file that have no answer."""

    name = "pope"
    default_benchmark = "pope"
    headline = "accuracy"
    columns = (Column("accuracy", "Acc"), Column("precision", "Prec"), Column("recall", "Rec"), Column("f1", "F1"))
    description = "accuracy, precision, recall and F1 x100, yes the positive class"
    key_headers = ("Dataset", "Setting")
    paper_runs = "1"

    def runs(self, data: dict[str, Any]) -> list[ScoredRun]:
        settings = data.get("settings") or {}
        runs = []
        for key, values in (data.get("metrics") or {}).items():
            setting = settings.get(key) or {}
            counts = setting.get("counts") or {}
            runs.append(ScoredRun(key, setting.get("answers_file", first_answers(data)), dict(values),
                                  counts.get("missing"), counts.get("questions"), "questions"))
        return runs

    def key_order(self, key: str) -> tuple[Any, ...]:
        dataset, _, setting = key.partition("/")
        return (_rank(dataset, DATASETS), _rank(setting, SETTINGS), key)

    def paper(self, benchmark: str, key: str, model: str, method: str) -> Published | None:
        dataset, _, setting = key.partition("/")
        published = paper_numbers.POPE.get((model, dataset, setting, method)) if benchmark == "pope" else None
        return None if published is None else dict(zip(paper_numbers.POPE_METRICS, published))


def _rank(value: str, order: tuple[str, ...]) -> int:
    return order.index(value) if value in order else len(order)


SCORER = register_scorer(PopeScorer())


if __name__ == "__main__":
    sys.exit(main())
