"""POPE (AvisC's yes/no benchmark): question files (jsonl, CRLF tolerated, or a JSON array) with ``question_id``,
``image``, ``text``, ``label``; the VCD copies AvisC used ship in ``eval/data/pope/vcd``, one per dataset (coco,
aokvqa, gqa) and setting (random, popular, adversarial), chosen with ``--pope-split coco/random``."""
from __future__ import annotations

from pathlib import Path

from eval.benchmarks.protocols import YES_NO
from eval.benchmarks.samples import SampleSet, id_questions
from eval.benchmarks.spec import YESNO, BenchmarkSpec, DataSettings, SplitFlag, register_benchmark
from eval.files import InputError, Problem
from llava.settings import Protocol

DATASETS = ("coco", "aokvqa", "gqa")
SETTINGS = ("random", "popular", "adversarial")
SPLITS = tuple(f"{dataset}/{setting}" for dataset in DATASETS for setting in SETTINGS)
DEFAULT_QUESTION_DIR = Path(__file__).resolve().parents[1] / "data" / "pope" / "vcd"


def find_question_file(question_dir: Path, dataset: str, setting: str) -> Path:
    """The question file of ``dataset``/``setting`` in the VCD layout (``{ds}/{ds}_pope_{s}.json``) or a flat one."""
    stem = f"{dataset}_pope_{setting}"
    candidates = [question_dir / dataset / f"{stem}{ext}" for ext in (".json", ".jsonl")]
    candidates += [question_dir / f"{stem}{ext}" for ext in (".json", ".jsonl")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise InputError(f"{question_dir}: no question file for {dataset}/{setting} (looked for {stem}.json[l])")


def shipped_question_file(split: str) -> Path:
    """The shipped (VCD) question file of a split such as ``coco/random``."""
    dataset, setting = split.split("/")
    return find_question_file(DEFAULT_QUESTION_DIR, dataset, setting)


def pope_questions(spec: BenchmarkSpec, data: DataSettings, protocol: Protocol, problems: list[Problem]) -> SampleSet:
    """POPE questions: each record's ``question_id``, image, text and (kept in the answer line) label."""
    return id_questions(spec.questions(data), data.image_folder, problems,
                        lambda record: {"label": record["label"]} if "label" in record else {})


POPE = register_benchmark(BenchmarkSpec(
    "pope", "POPE (COCO, A-OKVQA, GQA)", YESNO, pope_questions, "pope", YES_NO,
    needs=("image_folder", "question_file"),
    split=SplitFlag("--pope-split", SPLITS, shipped_question_file,
                    "use the shipped POPE question file of this dataset/setting (the VCD copies AvisC used)"),
))
