"""Dataset readers for the runners: each turns a benchmark's files into an ordered list of :class:`Sample`.

Captioning (SPARC): ``coco`` (an image folder, ids from file names), ``iiw`` (IIW-400 ``data.jsonl``), ``docci``
(``docci_descriptions.jsonl(ines)``), ``folder`` (every image of a folder). Question answering (AvisC): ``pope``,
``mme``, ``amber``. Subsets are deterministic: sorted file lists and ``random.Random(seed).sample``; the chosen ids
are written as a manifest that can be passed back.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from eval.files import InputError, Problem, RunPaths, iter_jsonl, read_records, record_key, sample_id

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


def coco_image_id(file_name: str) -> int:
    """COCO id from a file name, as the official code: ``int(name.split('.jpg')[0][-6:])``."""
    return int(file_name.split(".jpg")[0][-6:])


def no_coco_images(folder: Path, files: list[str]) -> str:
    """Why a COCO image folder gave no sample, and the likely fix (images of one's own; the folder above val2014)."""
    example = "COCO_val2014_000000000139.jpg"
    if files:
        return (f"{folder}: none of its {len(files)} images has a COCO file name (like {example}); for images of "
                "your own use --dataset-type folder (the scripts: scripts/sparc_demo.sh)")
    holders = [p for p in sorted(folder.iterdir()) if p.is_dir() and any(_is_coco(n) for n in image_files(p))]
    hint = f"; its subfolder {holders[0].name} holds them: use {holders[0]}" if holders else ""
    return f"{folder}: no COCO images (like {example}) in this folder{hint}"


def _is_coco(file_name: str) -> bool:
    try:
        coco_image_id(file_name)
    except ValueError:
        return False
    return True


def image_files(folder: Path) -> list[str]:
    """Image file names of ``folder``, sorted (the official code used unsorted ``os.listdir``)."""
    if not folder.is_dir():
        raise InputError(f"{folder}: no such image folder")
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


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


def _jsonl_lines(path: Path, problems: list[Problem], required: Iterable[str],
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


def caption_samples(
    dataset_type: str,
    image_folder: str | Path,
    annotation_file: str | Path | None,
    num_samples: int | None,
    seed: int,
    problems: list[Problem],
    prompt: str,
) -> SampleSet:
    """The captioning samples of a dataset, in generation order (the official sample order)."""
    folder = Path(image_folder)
    if dataset_type in ("coco", "folder"):
        files = image_files(folder)
        names = draw(files, num_samples, seed)
        if dataset_type == "coco":
            samples = []
            for name in names:
                try:
                    image_id = coco_image_id(name)
                except ValueError:
                    problems.append(Problem(str(folder / name), None, name, "no COCO image id in the file name"))
                    continue
                samples.append(Sample(record_key(image_id), folder / name, prompt, {"image_id": image_id}, str(folder / name)))
            if not samples and not any(map(_is_coco, files)):
                raise InputError(no_coco_images(folder, files))
            return SampleSet(samples, num_samples, len(files))
        samples = [Sample(Path(n).stem, folder / n, prompt, {"image_id": Path(n).stem}, str(folder / n)) for n in names]
        return SampleSet(samples, num_samples, len(files))
    if annotation_file is None:
        raise InputError(f"--annotation-file is required for dataset type {dataset_type}")
    path = Path(annotation_file)
    key = {"iiw": "image/key", "docci": "image_file"}.get(dataset_type)
    if key is None:
        raise InputError(f"unknown dataset type {dataset_type!r}; expected coco, iiw, docci or folder")
    lines = _jsonl_lines(path, problems, [key], [key])
    chosen = draw(lines, num_samples, seed)
    samples = []
    for number, record in chosen:
        image_id = record[key]
        image = folder / (f"{image_id}.jpg" if dataset_type == "iiw" else str(image_id))
        samples.append(Sample(record_key(image_id), image, prompt, {"image_id": image_id}, str(path), number))
    return SampleSet(samples, num_samples, len(lines))


def pope_samples(question_file: Path, image_folder: Path, problems: list[Problem]) -> list[Sample]:
    """POPE questions (jsonl, CRLF tolerated, or a JSON array): ``question_id``, ``image``, ``text``, ``label``."""
    samples = []
    for number, record in read_records(question_file, problems):
        reason = unusable(record, ("question_id", "image", "text"), ("image", "text"))
        key = sample_id(record.get("question_id"))
        if key is None and not reason:
            reason = f"question_id {json.dumps(record['question_id'])} is not an id (a whole number or a text)"
        if reason:
            problems.append(Problem(str(question_file), number, key, reason))
            continue
        fields = {"question_id": record["question_id"], "prompt": record["text"], "image": record["image"]}
        if "label" in record:
            fields["label"] = record["label"]
        samples.append(Sample(key, image_folder / record["image"], record["text"], fields, str(question_file), number))
    return samples


def mme_image_path(root: Path, image: str) -> Path:
    """``<root>/<task>/<image>`` or, in the release layout, ``<root>/<task>/images/<image>``."""
    direct = root / image
    task, _, name = image.partition("/")
    nested = root / task / "images" / name
    return nested if not direct.exists() and nested.exists() else direct


def mme_samples(question_file: Path, image_folder: Path, problems: list[Problem]) -> list[Sample]:
    """MME questions: LLaVA's jsonl format (the question is the first line of ``text``, as the official runner), or
    a ground-truth folder (the eval tool's ``{task}.txt`` files or the MME release folder), every question of it.

    ``question_id`` repeats for the two questions of an image, so each sample's key adds its occurrence number.
    """
    if question_file.is_dir():
        records = _mme_questions_from_gt(question_file, image_folder, problems)
    else:
        records = [(r["question_id"], r["image"], r["text"].split("\n")[0], r.get("category"), (str(question_file), n))
                   for n, r in _jsonl_lines(question_file, problems, ["question_id", "image", "text"], ["image", "text"])]
    samples, seen = [], {}
    for question_id, image, question, category, origin in records:
        occurrence = seen.get(question_id, 0)
        seen[question_id] = occurrence + 1
        key = f"{question_id}#{occurrence}"
        fields = {"question_id": question_id, "key": key, "prompt": question, "question": question,
                  "category": category or image.split("/")[0], "image": Path(image).name}
        samples.append(Sample(key, mme_image_path(image_folder, image), question, fields, *origin))
    return samples


def _mme_questions_from_gt(gt_dir: Path, image_folder: Path, problems: list[Problem]) -> list[tuple[Any, ...]]:
    """``(question_id, task/image, question, task, origin)`` for every ground-truth question, its "Please answer yes or
    no." removed (LLaVA's MME questions, which the official runs used, do not have it)."""
    from eval.mme import SUFFIX, read_gt

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


def amber_samples(query_file: Path, image_folder: Path, problems: list[Problem]) -> list[Sample]:
    """AMBER queries (``id``, ``image``, ``query``): generative ids 1-1004, discriminative after."""
    from eval.amber import read_json  # reads .json and .json.gz

    try:
        queries = read_json(query_file)
    except (OSError, ValueError) as e:
        raise InputError(f"{query_file}: cannot read AMBER queries ({e})") from e
    samples = []
    for index, query in enumerate(queries, start=1):
        reason = unusable(query, ("id", "image", "query"), ("image", "query")) if isinstance(query, dict) else "not an object"
        if reason:
            problems.append(Problem(str(query_file), None, None, f"query {index}: {reason}"))
            continue
        fields = {"question_id": query["id"], "prompt": query["query"], "image": query["image"]}
        samples.append(Sample(record_key(query["id"]), image_folder / query["image"], query["query"], fields, str(query_file)))
    return samples


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


def read_manifest(manifest_file: str | Path, dataset_type: str | None = None) -> list[str]:
    """The ordered ids of a manifest written by :func:`manifest`. Raises :class:`InputError` when the file is
    unreadable or has no list of ids, or (with ``dataset_type``) was written for another dataset type."""
    path = Path(manifest_file)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        ids = data["ids"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: not a subset manifest ({type(e).__name__}: {e})") from None
    if not isinstance(ids, list):
        raise InputError(f"{path}: not a subset manifest ('ids' is not a list)")
    kind = data.get("dataset_type")
    if dataset_type is not None and kind is not None and kind != dataset_type:
        raise InputError(f"{path}: a manifest of dataset type {kind!r}, not {dataset_type!r}")
    return [str(i) for i in ids]


def run_subset(answers_file: str | Path) -> set[str] | None:
    """The sample ids a runner chose for the run whose answers file is ``answers_file`` (its manifest beside it: a
    ``--limit`` trial or a short subset), or None when there is none (answers from another tool). Scorers expect
    answers for exactly these ids."""
    path = RunPaths.of_answers(answers_file).manifest
    return set(read_manifest(path)) if path.is_file() else None


def select_by_manifest(samples: list[Sample], manifest_file: str | Path) -> list[Sample]:
    """The samples whose keys a manifest lists, in the manifest's order; unknown keys are an error."""
    path = Path(manifest_file)
    keys = read_manifest(path)
    by_key = {s.key: s for s in samples}
    unknown = [k for k in keys if k not in by_key]
    if unknown:
        raise InputError(f"{path}: {len(unknown)} id(s) not in the dataset, e.g. {unknown[:3]}")
    return [by_key[k] for k in keys]


def manifest(samples: list[Sample], **about: Any) -> dict[str, Any]:
    """The ordered ids of a run and their sha256 (what ``--subset-manifest`` takes back)."""
    ids = [s.key for s in samples]
    return {**about, "count": len(ids), "sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(), "ids": ids}
