"""MME: the task names, the question count of each task in the release, the ground-truth formats (the eval tool's
``{task}.txt`` files and the release folder), and the reader of its questions (LLaVA's jsonl, by default the shipped
240-question hallucination subset, or every question of a ground-truth folder). No ground truth is shipped (its
licence is unclear); the scorer (``eval.mme``) reads the same formats."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from eval.benchmarks.protocols import AVISC_SCRIPT_SEED, YES_NO
from eval.benchmarks.samples import IMAGE_EXTENSIONS, Sample, SampleSet, jsonl_lines
from eval.benchmarks.spec import YESNO, BenchmarkSpec, DataSettings, register_benchmark
from eval.files import InputError, Problem
from llava.settings import Protocol

PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
HALLUCINATION = ("existence", "count", "position", "color")
TASKS = PERCEPTION + COGNITION
RELEASE_QUESTIONS = {"existence": 60, "count": 60, "position": 60, "color": 60, "posters": 294, "celebrity": 340,
                     "scene": 400, "landmark": 400, "artwork": 400, "OCR": 40, "commonsense_reasoning": 140,
                     "numerical_calculation": 40, "text_translation": 40, "code_reasoning": 40}
"""Questions of each task in the MME release (two per image); a task scored on fewer is marked ``missing``."""
SUFFIX = " Please answer yes or no."
ONE_WORD = "Answer the question using a single word or phrase."


def image_stem(name: str) -> str:
    """``color/000000338560.jpg`` -> ``000000338560`` (file name up to its first dot, as the official code keys it)."""
    return name.replace("\\", "/").rsplit("/", 1)[-1].split(".")[0]


def tab_lines(path: Path, n_fields: int, problems: list[Problem]) -> Iterable[tuple[int, list[str]]]:
    """Non-blank lines of a tab-separated file split into ``n_fields`` fields (the last one keeps any tabs)."""
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t", n_fields - 1)
            if len(fields) != n_fields:
                problems.append(Problem(str(path), number, None,
                                        f"expected {n_fields} tab-separated fields, got {len(fields)}"))
                continue
            yield number, fields


GroundTruth = dict[str, dict[tuple[str, str], tuple[str, str]]]
"""task -> (image stem, question) -> (image name, "yes"/"no"), in file order."""


def read_gt(gt_dir: Path, problems: list[Problem]) -> GroundTruth:
    """Ground truth from the eval-tool format or the MME release folder."""
    if not gt_dir.is_dir():
        raise InputError(f"{gt_dir}: no such folder (pass the MME ground truth with --gt_dir)")
    if any((gt_dir / f"{task}.txt").is_file() for task in TASKS):
        gt = _read_gt_tool(gt_dir, problems)
    elif any((gt_dir / task).is_dir() for task in TASKS):
        gt = _read_gt_release(gt_dir, problems)
    else:
        raise InputError(f"{gt_dir}: neither {{task}}.txt files nor MME task folders (existence/, count/, ...)")
    return gt


def _add_gt(gt: GroundTruth, task: str, image: str, question: str, answer: str,
            where: tuple[Path, int], problems: list[Problem]) -> None:
    label = answer.strip().lower()
    if label not in ("yes", "no"):
        problems.append(Problem(str(where[0]), where[1], image, f"ground truth {answer!r} is not Yes/No; skipped"))
        return
    gt.setdefault(task, {})[(image_stem(image), question)] = (image, label)


def _read_gt_tool(gt_dir: Path, problems: list[Problem]) -> GroundTruth:
    gt: GroundTruth = {}
    for task in TASKS:
        path = gt_dir / f"{task}.txt"
        if path.is_file():
            for number, (image, question, answer) in tab_lines(path, 3, problems):
                _add_gt(gt, task, image, question, answer, (path, number), problems)
    return gt


def _read_gt_release(gt_dir: Path, problems: list[Problem]) -> GroundTruth:
    gt: GroundTruth = {}
    for task in TASKS:
        qa_dir = gt_dir / task / "questions_answers_YN"
        if not qa_dir.is_dir():
            qa_dir = gt_dir / task
        if not qa_dir.is_dir():
            continue
        for path in sorted(qa_dir.glob("*.txt")):
            for number, (question, answer) in tab_lines(path, 2, problems):
                _add_gt(gt, task, path.stem, question.strip(), answer, (path, number), problems)
    return gt


def mme_image_path(root: Path, image: str) -> Path:
    """``<root>/<task>/<image>`` or, in the release layout, ``<root>/<task>/images/<image>``."""
    direct = root / image
    task, _, name = image.partition("/")
    nested = root / task / "images" / name
    return nested if not direct.exists() and nested.exists() else direct


def mme_questions(spec: BenchmarkSpec, data: DataSettings, protocol: Protocol, problems: list[Problem]) -> SampleSet:
    """MME questions: LLaVA's jsonl format (the question is the first line of ``text``, as the official runner), or
    a ground-truth folder (the eval tool's ``{task}.txt`` files or the MME release folder), every question of it.

    ``question_id`` repeats for the two questions of an image, so each sample's key adds its occurrence number.
    """
    question_file, image_folder = spec.questions(data), data.image_folder
    if question_file.is_dir():
        records = _mme_questions_from_gt(question_file, image_folder, problems)
    else:
        records = [(r["question_id"], r["image"], r["text"].split("\n")[0], r.get("category"), (str(question_file), n))
                   for n, r in jsonl_lines(question_file, problems, ["question_id", "image", "text"], ["image", "text"])]
    samples, seen = [], {}
    for question_id, image, question, category, origin in records:
        occurrence = seen.get(question_id, 0)
        seen[question_id] = occurrence + 1
        key = f"{question_id}#{occurrence}"
        fields = {"question_id": question_id, "key": key, "prompt": question, "question": question,
                  "category": category or image.split("/")[0], "image": Path(image).name}
        samples.append(Sample(key, mme_image_path(image_folder, image), question, fields, *origin))
    return SampleSet(samples, None, len(samples))


def _mme_questions_from_gt(gt_dir: Path, image_folder: Path, problems: list[Problem]) -> list[tuple[Any, ...]]:
    """``(question_id, task/image, question, task, origin)`` for every ground-truth question, its "Please answer yes or
    no." removed (LLaVA's MME questions, which the official runs used, do not have it)."""
    records = []
    for task, entries in read_gt(gt_dir, problems).items():
        for (stem, question), (image, _) in entries.items():
            if not Path(image).suffix:  # the release folder names questions by image stem: find the image file
                found = sorted(p.name for d in (image_folder / task, image_folder / task / "images") if d.is_dir()
                               for p in d.glob(f"{stem}.*") if p.suffix.lower() in IMAGE_EXTENSIONS)
                image = found[0] if found else f"{stem}.jpg"
            bare = question.replace(SUFFIX, "").strip()
            records.append((f"{task}/{image}", f"{task}/{image}", bare, task, (str(gt_dir / task), None)))
    return records


MME = register_benchmark(BenchmarkSpec(
    "mme", "MME (hallucination subset by default)", YESNO, mme_questions, "mme", YES_NO,
    question_file=Path(__file__).resolve().parents[1] / "data" / "mme" / "mme_hallucination.jsonl",
    needs=("image_folder",), by_preset=AVISC_SCRIPT_SEED,
))
