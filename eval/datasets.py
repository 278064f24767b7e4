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

from eval.files import InputError, Problem, iter_jsonl, read_records

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
CAPTION_PROMPT = "Please describe this image in detail."
DEFAULT_NUM_SAMPLES = {"coco": 500, "docci": 500, "iiw": None, "folder": None}


@dataclass
class Sample:
    """One unit of work: a unique ``key``, the image, the question, and the fields copied into the answer line."""

    key: str
    image_path: Path
    question: str
    fields: dict[str, Any] = field(default_factory=dict)


def coco_image_id(file_name: str) -> int:
    """COCO id from a file name, as the official code: ``int(name.split('.jpg')[0][-6:])``."""
    return int(file_name.split(".jpg")[0][-6:])


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


def _jsonl_lines(path: Path, problems: list[Problem], required: Iterable[str]) -> list[tuple[int, dict[str, Any]]]:
    lines = []
    for number, record in iter_jsonl(path):
        if isinstance(record, Problem):
            problems.append(record)
            continue
        missing = [k for k in required if k not in record]
        if missing:
            problems.append(Problem(str(path), number, None, f"missing field(s) {', '.join(missing)}"))
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
    prompt: str = CAPTION_PROMPT,
) -> list[Sample]:
    """The captioning samples of a dataset, in generation order (the official sample order)."""
    folder = Path(image_folder)
    if dataset_type in ("coco", "folder"):
        names = draw(image_files(folder), num_samples, seed)
        if dataset_type == "coco":
            samples = []
            for name in names:
                try:
                    samples.append(Sample(str(coco_image_id(name)), folder / name, prompt, {"image_id": coco_image_id(name)}))
                except ValueError:
                    problems.append(Problem(str(folder / name), None, name, "no COCO image id in the file name"))
            return samples
        return [Sample(Path(n).stem, folder / n, prompt, {"image_id": Path(n).stem}) for n in names]
    if annotation_file is None:
        raise InputError(f"--annotation-file is required for dataset type {dataset_type}")
    path = Path(annotation_file)
    if dataset_type == "iiw":
        lines = draw(_jsonl_lines(path, problems, ["image/key"]), num_samples, seed)
        return [Sample(str(r["image/key"]), folder / f"{r['image/key']}.jpg", prompt, {"image_id": r["image/key"]}) for _, r in lines]
    if dataset_type == "docci":
        lines = draw(_jsonl_lines(path, problems, ["image_file"]), num_samples, seed)
        return [Sample(str(r["image_file"]), folder / r["image_file"], prompt, {"image_id": r["image_file"]}) for _, r in lines]
    raise InputError(f"unknown dataset type {dataset_type!r}; expected coco, iiw, docci or folder")


def pope_samples(question_file: Path, image_folder: Path, problems: list[Problem]) -> list[Sample]:
    """POPE questions (jsonl, CRLF tolerated, or a JSON array): ``question_id``, ``image``, ``text``, ``label``."""
    samples = []
    for number, record in read_records(question_file, problems):
        missing = [k for k in ("question_id", "image", "text") if k not in record]
        if missing:
            problems.append(Problem(str(question_file), number, str(record.get("question_id")), f"missing {', '.join(missing)}"))
            continue
        fields = {"question_id": record["question_id"], "prompt": record["text"], "image": record["image"]}
        if "label" in record:
            fields["label"] = record["label"]
        samples.append(Sample(str(record["question_id"]), image_folder / record["image"], record["text"], fields))
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
        records = [(r["question_id"], r["image"], r["text"].split("\n")[0], r.get("category"))
                   for _, r in _jsonl_lines(question_file, problems, ["question_id", "image", "text"])]
    samples, seen = [], {}
    for question_id, image, question, category in records:
        occurrence = seen.get(question_id, 0)
        seen[question_id] = occurrence + 1
        key = f"{question_id}#{occurrence}"
        fields = {"question_id": question_id, "key": key, "prompt": question, "question": question,
                  "category": category or image.split("/")[0], "image": Path(image).name}
        samples.append(Sample(key, mme_image_path(image_folder, image), question, fields))
    return samples


def _mme_questions_from_gt(gt_dir: Path, image_folder: Path, problems: list[Problem]) -> list[tuple[str, str, str, str]]:
    """``(question_id, task/image, question, task)`` for every ground-truth question, its "Please answer yes or no."
    removed (LLaVA's MME questions, which the official runs used, do not have it)."""
    from eval.mme import SUFFIX, read_gt

    records = []
    for task, entries in read_gt(gt_dir, problems).items():
        for (stem, question), (image, _) in entries.items():
            if not Path(image).suffix:  # the release folder names questions by image stem: find the image file
                found = sorted(p.name for d in (image_folder / task, image_folder / task / "images") if d.is_dir()
                               for p in d.glob(f"{stem}.*") if p.suffix.lower() in IMAGE_EXTENSIONS)
                image = found[0] if found else f"{stem}.jpg"
            bare = question.replace(SUFFIX, "").strip()
            records.append((f"{task}/{image}", f"{task}/{image}", bare, task))
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
        if not isinstance(query, dict) or any(k not in query for k in ("id", "image", "query")):
            problems.append(Problem(str(query_file), None, None, f"query {index}: needs id, image and query"))
            continue
        fields = {"question_id": query["id"], "prompt": query["query"], "image": query["image"]}
        samples.append(Sample(str(query["id"]), image_folder / query["image"], query["query"], fields))
    return samples


def select_by_manifest(samples: list[Sample], manifest_file: str | Path) -> list[Sample]:
    """The samples whose keys a manifest lists, in the manifest's order; unknown keys are an error."""
    path = Path(manifest_file)
    try:
        keys = [str(k) for k in json.loads(path.read_text(encoding="utf-8"))["ids"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: not a subset manifest ({e})") from e
    by_key = {s.key: s for s in samples}
    unknown = [k for k in keys if k not in by_key]
    if unknown:
        raise InputError(f"{path}: {len(unknown)} id(s) not in the dataset, e.g. {unknown[:3]}")
    return [by_key[k] for k in keys]


def manifest(samples: list[Sample], **about: Any) -> dict[str, Any]:
    """The ordered ids of a run and their sha256 (what ``--subset-manifest`` takes back)."""
    ids = [s.key for s in samples]
    return {**about, "count": len(ids), "sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(), "ids": ids}
