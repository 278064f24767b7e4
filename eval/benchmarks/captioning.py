"""The captioning benchmarks of SPARC (scored with CHAIR or CLAIR) and any folder of images.

- ``coco``: an image folder (COCO val2014), the image id read from each file name as the official code does;
  500 images drawn with ``Random(seed).sample`` from the sorted file list;
- ``iiw``: IIW-400 ``data.jsonl`` (``image/key`` -> ``<key>.jpg`` in the DOCCI-AAR folder), all 400;
- ``docci``: ``docci_descriptions.jsonl(ines)`` (``image_file``), 500 drawn from all lines;
- ``folder``: every image of a folder (no scorer).
"""
from __future__ import annotations

from pathlib import Path

from eval.benchmarks.protocols import CAPTIONING
from eval.benchmarks.samples import Sample, SampleSet, draw, image_files, jsonl_lines
from eval.benchmarks.spec import CAPTION, BenchmarkSpec, DataSettings, Reader, register_benchmark
from eval.files import InputError, Problem, record_key
from llava.settings import Protocol

COCO_NAME = "COCO_val2014_000000000139.jpg"
"""What a COCO file name looks like: the image id is the last 6 digits before ``.jpg``."""


def coco_image_id(file_name: str) -> int:
    """COCO id from a file name, as the official code: ``int(name.split('.jpg')[0][-6:])``."""
    return int(file_name.split(".jpg")[0][-6:])


def no_coco_images(folder: Path, files: list[str]) -> str:
    """Why a COCO image folder gave no sample, and the likely fix (images of one's own; the folder above val2014)."""
    if files:
        return (f"{folder}: none of its {len(files)} images has a COCO file name (like {COCO_NAME}); for images of "
                "your own use --dataset-type folder (the scripts: scripts/sparc_demo.sh)")
    holders = [p for p in sorted(folder.iterdir()) if p.is_dir() and any(is_coco(n) for n in image_files(p, []))]
    hint = f"; its subfolder {holders[0].name} holds them: use {holders[0]}" if holders else ""
    return f"{folder}: no COCO images (like {COCO_NAME}) in this folder{hint}"


def is_coco(file_name: str) -> bool:
    try:
        coco_image_id(file_name)
    except ValueError:
        return False
    return True


def folder_images(spec: BenchmarkSpec, data: DataSettings, protocol: Protocol, problems: list[Problem]) -> SampleSet:
    """Every image of ``--image-folder``, sorted; the id is the file stem (``folder``)."""
    folder = data.image_folder
    files = image_files(folder, problems)
    names = draw(files, requested(spec, data), protocol.seed)
    samples = [Sample(Path(n).stem, folder / n, protocol.prompt, {"image_id": Path(n).stem}, str(folder / n))
               for n in names]
    return SampleSet(samples, requested(spec, data), len(files))


def coco_images(spec: BenchmarkSpec, data: DataSettings, protocol: Protocol, problems: list[Problem]) -> SampleSet:
    """The images of a COCO folder, drawn from the sorted file list; the id from the file name (``coco``)."""
    folder = data.image_folder
    files = image_files(folder, problems)
    names = draw(files, requested(spec, data), protocol.seed)
    samples = []
    for name in names:
        try:
            image_id = coco_image_id(name)
        except ValueError:
            problems.append(Problem(str(folder / name), None, name,
                                    f"no COCO image id in the file name (COCO names look like {COCO_NAME})"))
            continue
        samples.append(Sample(record_key(image_id), folder / name, protocol.prompt, {"image_id": image_id},
                              str(folder / name)))
    if not samples and not any(map(is_coco, files)):
        raise InputError(no_coco_images(folder, files))
    return SampleSet(samples, requested(spec, data), len(files))


def annotated_images(key: str, file_name: str) -> Reader:
    """A reader of a jsonl annotation file whose ``key`` names each image (``file_name`` formats it into a file name
    in ``--image-folder``), drawn from all usable lines (IIW-400, DOCCI)."""

    def read(spec: BenchmarkSpec, data: DataSettings, protocol: Protocol, problems: list[Problem]) -> SampleSet:
        if data.annotation_file is None:
            raise InputError(f"--annotation-file is required for dataset type {spec.name}")
        path = Path(data.annotation_file)
        lines = jsonl_lines(path, problems, [key], [key])
        samples = []
        for number, record in draw(lines, requested(spec, data), protocol.seed):
            image_id = record[key]
            samples.append(Sample(record_key(image_id), data.image_folder / file_name.format(image_id), protocol.prompt,
                                  {"image_id": image_id}, str(path), number))
        return SampleSet(samples, requested(spec, data), len(lines))

    return read


def requested(spec: BenchmarkSpec, data: DataSettings) -> int | None:
    """The subset size asked for: ``--num-samples``, else the benchmark's; all of a ``--subset-manifest``."""
    if data.subset_manifest:
        return None
    return data.num_samples if data.num_samples is not None else spec.num_samples


COCO = register_benchmark(BenchmarkSpec("coco", "COCO val2014 captions (CHAIR)", CAPTION, coco_images, "chair",
                                        CAPTIONING, num_samples=500, needs=("image_folder",)))
IIW = register_benchmark(BenchmarkSpec("iiw", "IIW-400 captions (CLAIR)", CAPTION,
                                       annotated_images("image/key", "{}.jpg"), "clair", CAPTIONING, num_samples=400,
                                       needs=("image_folder", "annotation_file")))
"""All 400 in file order (a draw of 400 from 400 lines keeps them in order); a shorter file is a short subset."""
DOCCI = register_benchmark(BenchmarkSpec("docci", "DOCCI captions (CLAIR)", CAPTION,
                                         annotated_images("image_file", "{}"), "clair", CAPTIONING, num_samples=500,
                                         needs=("image_folder", "annotation_file")))
FOLDER = register_benchmark(BenchmarkSpec("folder", "every image of a folder (no scorer)", CAPTION, folder_images,
                                          None, CAPTIONING, needs=("image_folder",)))
