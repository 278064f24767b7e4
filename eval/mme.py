"""MME scorer: the official task score (100 * acc + 100 * acc+), Perception / Cognition, the hallucination subset.

Two inputs:

* ``--results_dir D``: the official eval-tool format, one ``{task}.txt`` per task with lines
  ``image<TAB>question<TAB>ground truth<TAB>prediction`` (what ``convert_answer_to_mme.py`` writes).
* ``--answers F --gt_dir G``: our answers jsonl, one line per question. The task is the ``category`` field (else the
  part of ``question_id`` before the first ``/``), the image the ``image`` field (else the part of ``question_id``
  after the last ``/``; only the name up to its first dot is used), the question the ``question`` field (else
  ``prompt``) and the prediction ``text`` (other id / text field names: ``--id_key`` / ``--text_key``). The
  question is matched to the ground truth as ``convert_answer_to_mme.py`` does: "Answer the question using a single
  word or phrase." is removed, and " Please answer yes or no." is appended unless present (with two spaces if the
  one-space key is unknown).
  ``--gt_dir`` holds the ground truth, either in the eval-tool format (``{task}.txt``: image, question, Yes/No) or
  as the MME release folder (``{task}/{image}.txt`` or ``{task}/questions_answers_YN/{image}.txt``: question,
  answer). No ground truth is shipped (its licence is unclear).

How a prediction is read (:mod:`eval.yesno`; the metrics file records it as ``"reading"``) follows the pipeline that
wrote the file. Eval-tool files (``--results_dir``) are read exactly as the official ``calculation.py`` reads them
(``eval_tool``: ``parse_pred_ans`` on the lower-cased field: exactly yes/no, else yes/no within the first 4
characters, else "other"), so "yes, ... the 'no left turn' sign" is yes. Answers files (``--answers``) are cleaned
(strip, cut ``</s>``) and collapsed to yes/no with AvisC's NEG_WORDS ``recorder``, as AvisC's ``mme_llava.py`` does
before ``convert_answer_to_mme.py`` (``avisc``). ``--reading`` overrides either default. acc+ counts the images whose
questions (two per image) are all correct.
Several result sets (one per seed: ``--results_dir D1 D2 ...`` or ``--answers F1 F2 ...``) give mean +- std, where
std is the **sample** standard deviation (ddof = 1), which is what the AvisC tables are consistent with.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from eval import paper_numbers
from eval.benchmarks.mme import (
    COGNITION, HALLUCINATION, ONE_WORD, PERCEPTION, RELEASE_QUESTIONS, SUFFIX, TASKS, GroundTruth, image_stem, read_gt,
    tab_lines,
)
from eval.files import (
    InputError, Problem, RunPaths, check_output_file, read_records, report_problems, run_subset, settings_changes,
    write_json_atomic,
)
from eval.scoring import (
    Column, Published, Repeats, ScoredRun, Scorer, file_digest, files_digest, first_answers, register_scorer,
)
from eval.yesno import READINGS, read_answer, read_prediction_field, require_fields

TOTALS = {"perception": PERCEPTION, "cognition": COGNITION, "hallucination": HALLUCINATION}
STD_DDOF = 1


@dataclass
class Item:
    """One question of one task: the ground truth and the raw prediction (None when unanswered)."""

    image: str
    question: str
    gt: str
    prediction: str | None
    file: str | None = None
    line: int | None = None
    """Where the item stands in an eval-tool file, whose order matters to ``calculation.py`` (None for answers
    files, scored by key)."""


DEFAULT_READING = {"results_dir": "eval_tool", "answers": "avisc"}
"""Input kind -> the reading of the pipeline that writes such files (the eval tool's, AvisC's runners')."""


def label_reader(kind: str, reading: str) -> Callable[[str | None], str | None]:
    """``prediction -> "yes"/"no"/"other"`` (None for an unanswered question) for files of ``kind``
    (``results_dir``: raw eval-tool fields; ``answers``: answer texts, cleaned first)."""
    read = read_prediction_field if kind == "results_dir" else read_answer

    def label(prediction: str | None) -> str | None:
        return None if prediction is None else read(prediction, reading)

    return label


# ----------------------------------------------------------------------------------------------------------------
# Reading


def read_results_dir(folder: Path, problems: list[Problem]) -> dict[str, list[Item]]:
    """Items per task from the eval-tool results folder (``{task}.txt``: image, question, gt, prediction)."""
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    items: dict[str, list[Item]] = {}
    for task in TASKS:
        path = folder / f"{task}.txt"
        if not path.is_file():
            continue
        items[task] = []
        for number, fields in tab_lines(path, 4, problems):
            gt = fields[2].strip().lower()
            if gt not in ("yes", "no"):
                problems.append(Problem(str(path), number, fields[0],
                                        f"ground truth {fields[2]!r} is not Yes/No; skipped"))
                continue
            items[task].append(Item(fields[0], fields[1], gt, fields[3], str(path), number))
        if not items[task]:
            problems.append(Problem(str(path), None, None, "no questions; task left out"))
            del items[task]
    if not items:
        raise InputError(f"{folder}: no task file with questions ({', '.join(t + '.txt' for t in TASKS[:3])}, ...)")
    return items


def gt_question(question: str, task: str, stem: str, gt: GroundTruth) -> str:
    """The ground-truth spelling of ``question``, by the rules of ``convert_answer_to_mme.py``."""
    if ONE_WORD in question:
        question = question.replace(ONE_WORD, "").strip()
    if SUFFIX.strip() not in question:
        question += SUFFIX
        if (stem, question) not in gt.get(task, {}):
            question = question.replace(SUFFIX, " " + SUFFIX)
    return question


def read_answers(answers_file: Path, gt: GroundTruth, problems: list[Problem], id_key: str = "question_id",
                 text_key: str = "text") -> dict[str, list[Item]]:
    """Items per task: every ground-truth question of each task that has at least one answer (of the images the run
    chose, when the runner's manifest lies beside the answers: a ``--limit`` trial).

    Raises :class:`InputError` before reading answers when no record has the answer text field; a file with no
    answer that matches the ground truth gives no items (its scores are null)."""
    chosen = run_subset(answers_file)  # sample keys "task/image#n"
    images = None if chosen is None else {(key.split("/")[0], image_stem(key.rsplit("#", 1)[0])) for key in chosen}
    predictions: dict[str, dict[tuple[str, str], str]] = defaultdict(dict)
    records = read_records(answers_file, problems)
    require_fields(answers_file, records, {"answer": ((text_key,), "--text_key"),
                                           "question id": ((id_key, "category"), "--id_key")})
    for line, record in records:
        qid = record.get(id_key)
        sid = None if qid is None else str(qid)
        task = record.get("category") or (sid.split("/")[0] if sid and "/" in sid else None)
        image = record.get("image") or (sid.rsplit("/", 1)[-1] if sid and "/" in sid else None)
        question = record.get("question") or record.get("prompt")
        text = record.get(text_key)
        if not (isinstance(task, str) and isinstance(image, str) and isinstance(question, str)):
            problems.append(Problem(str(answers_file), line, sid, "cannot tell task, image and question; skipped"))
            continue
        if task not in gt:
            problems.append(Problem(str(answers_file), line, sid, f"task {task!r} not in the ground truth; skipped"))
            continue
        stem = image_stem(image)
        key = (stem, gt_question(question, task, stem, gt))
        if key not in gt[task]:
            problems.append(Problem(str(answers_file), line, sid,
                                    f"no ground truth for {task}/{stem}: {key[1]!r}; skipped"))
            continue
        if not isinstance(text, str):
            problems.append(Problem(str(answers_file), line, sid,
                                    f"no string {text_key!r} field; counted as unanswered"))
            continue
        if key in predictions[task]:
            problems.append(Problem(str(answers_file), line, sid, "duplicate answer; first one kept"))
            continue
        if not text.strip():
            problems.append(Problem(str(answers_file), line, sid, "empty answer; read by the reading rule"))
        predictions[task][key] = text
    items: dict[str, list[Item]] = {}
    for task, answered in predictions.items():
        items[task] = [Item(image, q, label, answered.get((stem, q))) for (stem, q), (image, label) in gt[task].items()
                       if images is None or (task, stem) in images]
        for item in items[task]:
            if item.prediction is None:
                problems.append(Problem(str(answers_file), None, f"{task}/{item.image}",
                                        f"no answer to {item.question!r}; counted as wrong"))
    if not items:
        problems.append(Problem(str(answers_file), None, None, "no answer matched the ground truth; nothing scored"))
    return items


# ----------------------------------------------------------------------------------------------------------------
# Scoring


LabelReader = Callable[[str | None], str | None]
PAIR_WARNING = ("the lines are not in image pairs from this line on: calculation.py, which reads two lines at a time "
                "as one image's pair, would score other pairs; scored by image, as MME defines acc+")


def out_of_pairs(items: list[Item]) -> Item | None:
    """The first line of an eval-tool file that is not in an image pair (``calculation.py`` reads two lines at a time
    as one image's pair), or None when the lines are in pairs (or not from such a file)."""
    for index in range(0, len(items), 2):
        first, second = items[index], items[index + 1] if index + 1 < len(items) else None
        if first.line is None:
            return None
        if second is None or second.image != first.image:
            return first
    return None


def score_task(task: str, items: list[Item], label_of: LabelReader, source: str,
               problems: list[Problem]) -> dict[str, Any]:
    """acc, acc+ and score (100 * acc + 100 * acc+) of one task (``items`` not empty); unanswered questions count as
    wrong; ``missing``: the release's questions of the task that the files do not hold.

    acc+ follows MME's definition: the share of images whose pair of questions (two per image) is answered right;
    an image with one question never has a right pair (``single``, reported). Images are grouped by name, which is
    what ``calculation.py``'s two-lines-at-a-time reading does on files in image pairs; on a file whose lines are
    not in pairs, ``out_of_pairs`` gives the first line out of them (reported: ``calculation.py`` would score
    other pairs)."""
    by_image: dict[str, list[bool]] = {}
    other = 0
    for item in items:
        label = label_of(item.prediction)
        other += label == "other"
        by_image.setdefault(item.image, []).append(label == item.gt)
    where = items[0].file or source  # the task file of an eval-tool folder
    for image, results in by_image.items():
        if len(results) < 2:
            problems.append(Problem(where, None, image, "one question for this image (MME has 2): never a right pair"))
        elif len(results) > 2:
            problems.append(Problem(where, None, image, f"{len(results)} questions for this image (MME has 2)"))
    broken = out_of_pairs(items)
    if broken is not None:
        problems.append(Problem(str(broken.file), broken.line, broken.image, PAIR_WARNING))
    correct = sum(sum(results) for results in by_image.values())
    acc = correct / len(items)
    acc_plus = sum(len(results) >= 2 and all(results) for results in by_image.values()) / len(by_image)
    return {
        "score": 100 * acc + 100 * acc_plus,
        "acc": 100 * acc,
        "acc_plus": 100 * acc_plus,
        "questions": len(items),
        "images": len(by_image),
        "other": other,
        "unanswered": sum(item.prediction is None for item in items),
        "missing": max(RELEASE_QUESTIONS[task] - len(items), 0),
        "single": sum(len(results) < 2 for results in by_image.values()),
        "out_of_pairs": None if broken is None else {"file": broken.file, "line": broken.line},
    }


def score_run(items: dict[str, list[Item]], label_of: LabelReader, source: str,
              problems: list[Problem]) -> dict[str, Any]:
    """Task scores and the totals that are complete (Perception, Cognition, hallucination) of one result set."""
    tasks = {task: score_task(task, items[task], label_of, source, problems) for task in TASKS if items.get(task)}
    totals = {name: sum(tasks[t]["score"] for t in members) if all(t in tasks for t in members) else None
              for name, members in TOTALS.items()}
    return {"source": source, "tasks": tasks, "totals": totals}


def flat_scores(run: dict[str, Any]) -> dict[str, float | None]:
    """Task scores and totals of one run as one flat mapping."""
    return {**{task: info["score"] for task, info in run["tasks"].items()}, **run["totals"]}


def mean_std(runs: list[dict[str, Any]]) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """Mean and sample std (ddof 1; None for one run) of every score present in all runs."""
    flats = [flat_scores(run) for run in runs]
    names = [name for name in flats[0] if all(flat.get(name) is not None for flat in flats)]
    mean = {name: statistics.fmean(flat[name] for flat in flats) for name in names}
    std = {name: statistics.stdev([flat[name] for flat in flats]) if len(flats) > 1 else None for name in names}
    return mean, std


def format_table(runs: list[dict[str, Any]], mean: dict[str, float | None], std: dict[str, float | None]) -> str:
    """Markdown: one row per task and total, one column per run, plus mean +- std when there are several runs."""
    header = ["Task"] + [f"run {i + 1}" for i in range(len(runs))]
    if len(runs) > 1:
        header.append(f"mean ± std (sample, n={len(runs)})")
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in [t for t in TASKS if t in mean] + [t for t in TOTALS if t in mean]:
        cells = [_fmt(flat_scores(run).get(name)) for run in runs]
        if len(runs) > 1:
            cells.append(f"{mean[name]:.2f} ± {std[name]:.2f}")
        label = f"**{name}**" if name in TOTALS else name
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.mme", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--results_dir", "--results-dir", nargs="+",
                        help="official results folder(s): {task}.txt with image, question, gt, prediction; "
                             "one per run")
    source.add_argument("--answers", "--answers_file", "--answers-file", "--output_path", nargs="+",
                        help="answers jsonl file(s) (question_id/category/image/prompt/text); one per run")
    parser.add_argument("--gt_dir", "--gt-dir",
                        help="MME ground truth (eval-tool {task}.txt files or the release folder)")
    parser.add_argument("--reading", choices=tuple(READINGS), default=None,
                        help="how predictions are read (default: eval_tool for --results_dir, as calculation.py; "
                             "avisc for --answers, as AvisC's runners)")
    parser.add_argument("--id_key", "--id-key", default="question_id",
                        help="question id field of the answers file (task/image when category/image are absent)")
    parser.add_argument("--text_key", "--text-key", default="text", help="answer text field of the answers file")
    parser.add_argument("--save_path", "--save-path",
                        help="metrics json (default: <answers>_mme.json or <results_dir>/mme_metrics.json)")
    return parser


def input_kind(args: argparse.Namespace) -> str:
    """``results_dir`` or ``answers``: which kind of files the command line names."""
    return "results_dir" if args.results_dir else "answers"


def answers_digest(source: str) -> str | None:
    """The content hash of a result set: an answers file's bytes, or an eval-tool folder's task files."""
    path = Path(source)
    return files_digest(path, [f"{task}.txt" for task in TASKS]) if path.is_dir() else file_digest(path)


def distinct_runs(sources: list[str]) -> tuple[list[str], list[str]]:
    """The result sets to score, each run once, and a note for each repeat left out: the same file or folder twice,
    a copy of one (same content), or the same run (same seed and settings in the runner's ``_config.json``, on the
    same samples): averaging it in again would count one run as two seeds."""
    repeats, distinct, repeated = Repeats(), [], []
    for source in sources:
        answers = None if Path(source).is_dir() else source
        why = repeats.check((), source, answers, answers_digest(source))
        if why is None:
            distinct.append(source)
        else:
            repeated.append(f"{source}: {why}; counted once")
    return distinct, repeated


def load_runs(args: argparse.Namespace, reading: str, problems: list[Problem]) -> list[dict[str, Any]]:
    """Score every result set in ``args.sources`` (the distinct ones), reading predictions with ``reading``."""
    label_of = label_reader(input_kind(args), reading)
    if args.results_dir:
        return [score_run(read_results_dir(Path(d), problems), label_of, d, problems) for d in args.sources]
    if not args.gt_dir:
        raise InputError("--answers needs --gt_dir: the MME ground truth is not shipped "
                         "(eval-tool {task}.txt files or MME_Benchmark_release_version)")
    gt = read_gt(Path(args.gt_dir), problems)
    return [score_run(read_answers(Path(f), gt, problems, args.id_key, args.text_key), label_of, f, problems)
            for f in args.sources]


def mixed_settings(answers: list[str]) -> list[str]:
    """The settings, other than the seed, in which runs scored together differ (read from the runner's
    ``_config.json`` beside each answers file; files without one are not compared): their mean and std would not be
    a spread over seeds."""
    configs = []
    for f in answers:
        path = RunPaths.of_answers(f).config
        try:
            config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            config = None
        if isinstance(config, dict):
            if isinstance(config.get("protocol"), dict):
                config["protocol"].pop("seed", None)
            configs.append((f, config))
    return [f"{name}: {a!r} ({configs[0][0]}) vs {b!r} ({other})" for other, config in configs[1:]
            for name, a, b in settings_changes(configs[0][1], config)]


def empty_reason(runs: list[dict[str, Any]]) -> str | None:
    """Why scores are null: runs with no scored task, the tasks each incomplete total misses (None when every
    total of every run has a value)."""
    reasons = [f"{run['source']}: no answer matched the ground truth" for run in runs if not run["tasks"]]
    missing = {name: [t for t in members if t not in run["tasks"]]
               for run in runs if run["tasks"] for name, members in TOTALS.items() if run["totals"][name] is None}
    reasons += [f"{name}: no score for {', '.join(tasks)}" for name, tasks in missing.items()]
    return "; ".join(reasons) or None


def default_save_path(args: argparse.Namespace) -> Path:
    if args.results_dir:
        return Path(args.results_dir[0]) / "mme_metrics.json"
    return RunPaths.of_answers(args.answers[0]).metrics("mme")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problems: list[Problem] = []
    reading = args.reading or DEFAULT_READING[input_kind(args)]
    args.sources, repeated = distinct_runs(args.results_dir or args.answers)
    try:
        save_path = check_output_file(args.save_path or default_save_path(args))
        runs = load_runs(args, reading, problems)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for note in repeated:
        print(f"warning: a repeated run: {note}", file=sys.stderr)
    for run in runs:
        for task, info in run["tasks"].items():
            if info["out_of_pairs"]:
                where = info["out_of_pairs"]
                print(f"warning: {where['file']}:{where['line']}: {PAIR_WARNING}", file=sys.stderr)
    mixed = mixed_settings(args.sources if args.answers else [])
    if mixed:
        print(f"warning: the runs averaged are not a spread over seeds ({'; '.join(mixed)}); score them apart",
              file=sys.stderr)
    mean, std = mean_std(runs)
    sources = [run["source"] for run in runs]
    counts = {
        "runs": len(runs),
        "questions": sum(t["questions"] for run in runs for t in run["tasks"].values()),
        "unanswered": sum(t["unanswered"] for run in runs for t in run["tasks"].values()),
        "missing": sum(t["missing"] for run in runs for t in run["tasks"].values()),
        "other": sum(t["other"] for run in runs for t in run["tasks"].values()),
        "problems": len(problems),
    }
    write_json_atomic(save_path, {
        "scorer": "mme",
        "answers_file": sources[0] if len(sources) == 1 else sources,
        "metrics": mean,
        "std": std,
        "std_ddof": STD_DDOF,
        "counts": counts,
        "problems": [p.to_dict() for p in problems],
        "reading": reading,
        "reading_rule": READINGS[reading],
        "empty_reason": empty_reason(runs),
        "mixed_settings": mixed,
        "repeated_runs": repeated,
        "runs": runs,
    })
    print(format_table(runs, mean, std))
    if any(value is None for run in runs for value in run["totals"].values()):
        print("(totals over incomplete task sets are left out)")
    if counts["missing"]:
        print(f"{counts['missing']} questions of the scored tasks are not in the answers (the MME release has "
              f"{', '.join(f'{t} {RELEASE_QUESTIONS[t]}' for t in sorted({t for r in runs for t in r['tasks']}))}): "
              "these scores are not the benchmark's result")
    report_problems(problems)
    print(f"metrics written to {save_path}")
    return 0 if all(run["tasks"] for run in runs) else 1


class MmeScorer(Scorer):
    """What the report reads from MME's metrics json: one run per result set scored (a seed), each with its task
    scores and totals, and the questions of its tasks that the MME release holds but the run does not answer."""

    name = "mme"
    default_benchmark = "mme"
    headline = "hallucination"
    columns = (Column("existence", "Existence"), Column("count", "Count"), Column("position", "Position"),
               Column("color", "Color"), Column("hallucination", "Total"))
    description = "hallucination subset: score = acc + acc+, max 200 per task, 800 total; mean ± sample std over runs"
    paper_runs = "several seeds"

    def runs(self, data: dict[str, Any]) -> list[ScoredRun]:
        first = first_answers(data)
        scored = []
        for run in data.get("runs") or [{"tasks": {}, "totals": data.get("metrics") or {}, "source": first}]:
            tasks = list((run.get("tasks") or {}).values())
            missing = sum(t.get("unanswered", 0) + t.get("missing", 0) for t in tasks)
            expected = sum(t.get("questions", 0) + t.get("missing", 0) for t in tasks)
            scored.append(ScoredRun("", run.get("source", first), flat_scores({"tasks": {}, "totals": {}, **run}),
                                    missing, expected, "questions of its tasks"))
        return scored

    def paper(self, benchmark: str, key: str, model: str, method: str) -> Published | None:
        return paper_numbers.MME_HALLUCINATION.get((model, method)) if benchmark == "mme" else None

    def digest(self, answers: str) -> str | None:
        return answers_digest(answers)


SCORER = register_scorer(MmeScorer())


if __name__ == "__main__":
    sys.exit(main())
