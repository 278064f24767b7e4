"""Samples: what a benchmark's reader gives the runner, and the helpers readers share (sorted image files, the
official seeded draw, field checks, duplicate and empty-question handling, manifests).

Subsets are deterministic: sorted file lists and ``random.Random(seed).sample``; the chosen ids are written as a
manifest (:func:`eval.files.manifest`) that can be passed back.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from eval.files import InputError, Problem, iter_jsonl, read_manifest, read_records, sample_id

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass
class Sample:
    """One unit of work: a unique ``key``, the image, the question, the fields copied into the answer line, and where
    it was read (``file`` and ``line``, for error records)."""

    key: str
    image_path: Path
    question: str
    fields: dict[str, Any] = field(default_factory=dict)
    file: str = ""
    line: int | None = None

    @property
    def origin(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else self.file


@dataclass
class SampleSet:
    """A benchmark's samples in generation order, with the subset that was asked for: ``requested`` (None: all) and
    ``available`` (how many there were to draw from)."""

    samples: list[Sample]
    requested: int | None
    available: int

    @property
    def short(self) -> bool:
        """Fewer samples than the benchmark asks for (an incomplete dataset silently changes the benchmark)."""
        return self.requested is not None and self.available < self.requested

    def subset(self, used: int) -> dict[str, Any]:
        """What ``_results.json`` records about the subset."""
        return {"requested": self.requested, "available": self.available, "used": used, "short": self.short}


def image_files(folder: Path, problems: list[Problem]) -> list[str]:
    """Image file names of ``folder``, sorted (the official code used unsorted ``os.listdir``); a name that is not
    UTF-8 text (it could be written into no answer line) is a problem, skipped."""
    if not folder.is_dir():
        raise InputError(f"{folder}: no such image folder")
    names = []
    for path in folder.iterdir():
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        try:
            path.name.encode("utf-8")
        except UnicodeEncodeError:
            shown = path.name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            problems.append(Problem(str(folder), None, None, f"file name '{shown}' is not UTF-8 text: skipped"))
            continue
        names.append(path.name)
    return sorted(names)


def draw(items: list[Any], num_samples: int | None, seed: int) -> list[Any]:
    """``random.Random(seed).sample(items, n)`` (the official draw), or all items when ``n`` is None or too large."""
    if num_samples is None or num_samples >= len(items):
        return list(items)
    return random.Random(seed).sample(items, num_samples)


def unusable(record: dict[str, Any], required: Iterable[str], strings: Iterable[str] = ()) -> str | None:
    """Why a record cannot be a sample (a required field missing, a text field that is not a string), or None."""
    missing = [k for k in required if k not in record]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    wrong = [k for k in strings if not isinstance(record[k], str)]
    if wrong:
        return ", ".join(f"{k!r} is not a string (got {json.dumps(record[k])})" for k in wrong)
    return None


def jsonl_lines(path: Path, problems: list[Problem], required: Iterable[str],
                 strings: Iterable[str] = ()) -> list[tuple[int, dict[str, Any]]]:
    lines = []
    for number, record in iter_jsonl(path):
        if isinstance(record, Problem):
            problems.append(record)
            continue
        reason = unusable(record, required, strings)
        if reason:
            problems.append(Problem(str(path), number, None, reason))
            continue
        lines.append((number, record))
    return lines


def drop_unusable(samples: list[Sample], problems: list[Problem]) -> list[Sample]:
    """The samples to run: the first occurrence of each key, and only those with a question. A repeated key or an
    empty question is recorded as a problem (file, line, id) and skipped."""
    first: dict[str, Sample] = {}
    kept = []
    for sample in samples:
        if sample.key in first:
            problems.append(Problem(sample.file, sample.line, sample.key,
                                    f"duplicate id (first at {first[sample.key].origin}): skipped"))
            continue
        first[sample.key] = sample
        if not sample.question.strip():
            problems.append(Problem(sample.file, sample.line, sample.key, "empty question text: skipped"))
            continue
        kept.append(sample)
    return kept


def select_by_manifest(samples: list[Sample], manifest_file: str | Path) -> list[Sample]:
    """The samples whose keys a manifest lists, in the manifest's order; unknown keys are an error."""
    path = Path(manifest_file)
    keys = read_manifest(path)
    by_key = {s.key: s for s in samples}
    unknown = [k for k in keys if k not in by_key]
    if unknown:
        raise InputError(f"{path}: {len(unknown)} id(s) not in the dataset, e.g. {unknown[:3]}")
    return [by_key[k] for k in keys]


def id_questions(question_file: Path, image_folder: Path, problems: list[Problem],
                 extra: Callable[[dict[str, Any]], dict[str, Any]] = lambda record: {}) -> SampleSet:
    """Samples of a question file (jsonl, CRLF tolerated, or a JSON array) of records with ``question_id``, ``image``
    and ``text``, in file order: the id read as :func:`eval.files.sample_id` does (5, 5.0, "5" alike), each answer
    line keeping ``question_id``, ``prompt`` (the question), ``image`` and what ``extra(record)`` adds."""
    samples = []
    for number, record in read_records(question_file, problems):
        reason = unusable(record, ("question_id", "image", "text"), ("image", "text"))
        key = sample_id(record.get("question_id"))
        if key is None and not reason:
            reason = f"question_id {json.dumps(record['question_id'])} is not an id (a whole number or a text)"
        if reason:
            problems.append(Problem(str(question_file), number, key, reason))
            continue
        fields = {"question_id": record["question_id"], "prompt": record["text"], "image": record["image"],
                  **extra(record)}
        samples.append(Sample(key, image_folder / record["image"], record["text"], fields, str(question_file), number))
    return SampleSet(samples, None, len(samples))
