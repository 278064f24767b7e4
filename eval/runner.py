"""The benchmark runner shared by ``eval.caption`` and ``eval.vqa``: batched, resumable, sharded, crash-safe.

- **Outputs** (``{save_path}/{experiment_name}``): ``.jsonl`` answers in dataset order, ``_results.json`` (resolved
  config, versions, commit, seed, manifest hash, counts), ``_manifest.json`` (the ordered sample ids),
  ``_config.json`` (what must not change between a run and its resumption), ``_errors.jsonl`` (skipped samples).
- **Crash-safe**: each batch's answers are appended and flushed as soon as they exist; a torn last line (a kill in
  the middle of a write) is cut off on resume; results and manifests are written atomically.
- **Resumable**: rerunning the same command skips the samples already answered and retries the failed ones; a
  changed generation setting is refused unless ``--overwrite``.
- **Sharded**: under ``accelerate launch`` each process takes every N-th pending sample and appends to its own shard
  file; process 0 merges everything in dataset order at the end.
- **Robust**: a bad image or a failing sample is recorded and skipped; an out-of-memory batch is halved.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from PIL import Image
from tqdm import tqdm

from eval.cli import LoadedModel, environment
from eval.datasets import Sample, manifest
from eval.files import InputError, write_json_atomic, write_text_atomic
from llava.mm_utils import ImageLoadError, load_image

GenerateFn = Callable[[Sequence[Sample], Sequence[Image.Image]], list[dict[str, Any]]]


class ConfigMismatch(InputError):
    """The output folder holds a run with other generation settings."""


@dataclass
class RunPaths:
    """Every file a run writes, from ``save_path`` and ``experiment_name``."""

    folder: Path
    name: str

    @property
    def answers(self) -> Path:
        return self.folder / f"{self.name}.jsonl"

    @property
    def results(self) -> Path:
        return self.folder / f"{self.name}_results.json"

    @property
    def manifest(self) -> Path:
        return self.folder / f"{self.name}_manifest.json"

    @property
    def config(self) -> Path:
        return self.folder / f"{self.name}_config.json"

    @property
    def errors(self) -> Path:
        return self.folder / f"{self.name}_errors.jsonl"

    def shard(self, kind: str, rank: int) -> Path:
        """Per-process file of a sharded run (``kind`` is ``answers`` or ``errors``)."""
        return self.folder / f".{self.name}.{kind}.rank{rank}.jsonl"

    def shards(self, kind: str) -> list[Path]:
        return sorted(self.folder.glob(f".{self.name}.{kind}.rank*.jsonl"))

    def all_outputs(self) -> list[Path]:
        fixed = [self.answers, self.results, self.manifest, self.config, self.errors]
        return fixed + self.shards("answers") + self.shards("errors")


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``, so a changed setting is named precisely."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def read_log(path: Path, key_of: Callable[[dict[str, Any]], str]) -> dict[str, dict[str, Any]]:
    """Records of an append-only jsonl log by key; a torn or unreadable line is ignored (it is redone)."""
    records: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return records
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                record = json.loads(line)
                records[key_of(record)] = record
            except (ValueError, KeyError, TypeError):
                continue
    return records


class AppendLog:
    """An append-only jsonl file: each write is flushed and fsynced; a torn tail is cut before the first append."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._repair()
        self._file = path.open("a", encoding="utf-8")

    def _repair(self) -> None:
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return
        data = self.path.read_bytes()
        if not data.endswith(b"\n"):
            with self.path.open("r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        if not records:
            return
        self._file.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


@dataclass
class Distributed:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    world: int = 1
    barrier: Callable[[], None] = lambda: None

    @classmethod
    def current(cls) -> "Distributed":
        """From ``accelerate`` when launched with it (several processes), else a single process."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        from accelerate import PartialState

        state = PartialState()
        return cls(state.process_index, state.num_processes, state.wait_for_everyone)


@dataclass
class RunReport:
    """Counts of one run."""

    samples: int = 0
    answered_before: int = 0
    answered_now: int = 0
    answered: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    oom_halvings: int = 0


class Runner:
    """Runs ``generate`` over ``samples`` in batches with resume, sharding, error records and OOM halving."""

    def __init__(
        self,
        samples: list[Sample],
        generate: GenerateFn,
        paths: RunPaths,
        identity: dict[str, Any],
        id_field: str,
        batch_size: int = 1,
        overwrite: bool = False,
        distributed: Distributed | None = None,
        description: str = "generating",
    ):
        if not samples:
            raise InputError("no samples to run (empty dataset, or --limit 0)")
        duplicates = sorted(k for k, n in Counter(s.key for s in samples).items() if n > 1)
        if duplicates:
            raise InputError(f"duplicate sample ids: {duplicates[:5]}")
        if batch_size < 1:
            raise InputError(f"--batch-size must be at least 1, got {batch_size}")
        self.samples, self.generate, self.paths = samples, generate, paths
        self.identity, self.id_field = identity, id_field
        self.batch_size, self.overwrite = batch_size, overwrite
        self.dist = distributed or Distributed()
        self.description = description
        self.report = RunReport(samples=len(samples))
        self._warned_oom = False

    def key_of(self, record: dict[str, Any]) -> str:
        return str(record["key"]) if "key" in record else str(record[self.id_field])

    # -- setup -----------------------------------------------------------------------------------------------
    def prepare(self, about: dict[str, Any]) -> None:
        """Check (or reset, with ``--overwrite``) the outputs of an earlier run; write config and manifest.

        Every process checks (so all stop with the same error); process 0 writes.
        """
        if not self.overwrite:
            if self.paths.config.is_file():
                self._check_identity(json.loads(self.paths.config.read_text(encoding="utf-8")))
            elif self.paths.answers.is_file() and self.paths.answers.stat().st_size:
                raise ConfigMismatch(
                    f"{self.paths.answers} exists but has no {self.paths.config.name}: its settings are unknown; "
                    "use another --experiment-name or --overwrite"
                )
        self.dist.barrier()
        if self.dist.rank == 0:
            self.paths.folder.mkdir(parents=True, exist_ok=True)
            if self.overwrite:
                for path in self.paths.all_outputs():
                    path.unlink(missing_ok=True)
            write_json_atomic(self.paths.config, self.identity)
            write_json_atomic(self.paths.manifest, manifest(self.samples, **about))
        self.dist.barrier()

    def _check_identity(self, stored: dict[str, Any]) -> None:
        before, now = _flatten(stored), _flatten(json.loads(json.dumps(self.identity)))  # tuples stored as lists
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        if changed:
            details = "; ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed)
            raise ConfigMismatch(
                f"{self.paths.answers} was produced with other settings ({details}); "
                "rerun with the same settings to resume, or pass --overwrite to start again"
            )

    # -- main loop --------------------------------------------------------------------------------------------
    def run(self) -> RunReport:
        start = time.time()
        done = self.answered()
        self.report.answered_before = len(done)
        self.dist.barrier()  # everyone has read the same state before anyone appends
        pending = [s for s in self.samples if s.key not in done]
        mine = pending[self.dist.rank :: self.dist.world]
        sharded = self.dist.world > 1
        answers = AppendLog(self.paths.shard("answers", self.dist.rank) if sharded else self.paths.answers)
        errors = AppendLog(self.paths.shard("errors", self.dist.rank))
        bar = tqdm(total=len(mine), desc=self.description, unit="sample", position=self.dist.rank,
                   disable=None, dynamic_ncols=True)
        try:
            for batch, images in self._load_ahead(mine):
                ok = [(s, im) for s, im in zip(batch, images) if not isinstance(im, Exception)]
                bad = [self._error(s, str(im)) for s, im in zip(batch, images) if isinstance(im, Exception)]
                records, failed = self._generate_safely([s for s, _ in ok], [im for _, im in ok])
                answers.write(records)
                errors.write(bad + failed)
                self.report.answered_now += len(records)
                self.report.errors.extend(bad + failed)
                bar.update(len(batch))
        finally:
            bar.close()
            answers.close()
            errors.close()
        self.dist.barrier()
        if self.dist.rank == 0:
            self.merge()
        self.report.seconds = time.time() - start
        return self.report

    def answered(self) -> dict[str, dict[str, Any]]:
        """Every answer already written, in the final file or in shard files."""
        done = read_log(self.paths.answers, self.key_of)
        for shard in self.paths.shards("answers"):
            done.update(read_log(shard, self.key_of))
        return done

    def _load_ahead(self, samples: list[Sample]) -> Iterator[tuple[list[Sample], list[Image.Image | Exception]]]:
        """Batches with their images, the next batch's images loading in a thread while this one generates."""
        batches = [samples[i : i + self.batch_size] for i in range(0, len(samples), self.batch_size)]

        def load(batch: list[Sample]) -> list[Image.Image | Exception]:
            loaded: list[Image.Image | Exception] = []
            for sample in batch:
                try:
                    loaded.append(load_image(sample.image_path))
                except ImageLoadError as e:
                    loaded.append(e)
            return loaded

        with ThreadPoolExecutor(max_workers=1) as pool:
            future = pool.submit(load, batches[0]) if batches else None
            for index, batch in enumerate(batches):
                images = future.result()
                if index + 1 < len(batches):
                    future = pool.submit(load, batches[index + 1])
                yield batch, images

    def _generate_safely(
        self, samples: list[Sample], images: list[Image.Image]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Answers for a batch; halves it on out-of-memory, isolates a failing sample, records what fails."""
        if not samples:
            return [], []
        try:
            outputs = self.generate(samples, images)
            return [{**s.fields, **out} for s, out in zip(samples, outputs)], []
        except torch.cuda.OutOfMemoryError:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if len(samples) == 1:
                return [], [self._error(samples[0], "out of GPU memory at batch size 1")]
            self.report.oom_halvings += 1
            if not self._warned_oom:
                print(f"warning: out of GPU memory with a batch of {len(samples)}: halving the batch where it "
                      "happens (lower --batch-size to avoid the retries)", file=sys.stderr)
                self._warned_oom = True
            half = len(samples) // 2
            first = self._generate_safely(samples[:half], images[:half])
            second = self._generate_safely(samples[half:], images[half:])
            return first[0] + second[0], first[1] + second[1]
        except (ValueError, RuntimeError, OSError) as e:
            if len(samples) == 1:
                return [], [self._error(samples[0], f"{type(e).__name__}: {e}")]
            records, failed = [], []
            for sample, image in zip(samples, images):  # find the sample that fails, keep the others
                r, f = self._generate_safely([sample], [image])
                records += r
                failed += f
            return records, failed

    def _error(self, sample: Sample, reason: str) -> dict[str, Any]:
        print(f"skipped {sample.image_path} (id {sample.key}): {reason}", file=sys.stderr)
        return {"key": sample.key, "image": str(sample.image_path), "reason": reason}

    # -- end of run --------------------------------------------------------------------------------------------
    def merge(self) -> None:
        """Write the answers in dataset order (atomically) and the errors still unresolved; drop shard files."""
        done = self.answered()
        order = {s.key: i for i, s in enumerate(self.samples)}
        ordered = sorted(done.values(), key=lambda r: order.get(self.key_of(r), len(order)))
        write_text_atomic(self.paths.answers, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ordered))
        errors = read_log(self.paths.errors, lambda r: str(r["key"]))  # earlier runs' failures not retried now
        for shard in self.paths.shards("errors"):
            errors.update(read_log(shard, lambda r: str(r["key"])))
        unresolved = [e for k, e in errors.items() if k not in done and k in order]
        self.report.answered_now = len(done) - self.report.answered_before  # all processes together
        self.report.answered = sum(1 for key in done if key in order)
        write_text_atomic(self.paths.errors, "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in unresolved))
        for shard in self.paths.shards("answers") + self.paths.shards("errors"):
            shard.unlink(missing_ok=True)
        self.report.errors = unresolved


def write_results(
    paths: RunPaths, identity: dict[str, Any], runtime: dict[str, Any], report: RunReport, device: torch.device,
    dataset_problems: int = 0,
) -> None:
    """``_results.json`` (resolved config, environment, seed, manifest hash, counts, timing) and a summary line."""
    manifest_sha = json.loads(paths.manifest.read_text(encoding="utf-8"))["sha256"]
    answered = report.answered
    write_json_atomic(paths.results, {
        "config": {**identity, **runtime, "device": str(device)},
        "environment": environment(device),
        "seed": identity.get("seed"),
        "manifest_sha256": manifest_sha,
        "counts": {"samples": report.samples, "answered": answered, "answered_this_run": report.answered_now,
                   "skipped": len(report.errors), "dataset_problems": dataset_problems,
                   "oom_halvings": report.oom_halvings},
        "seconds": round(report.seconds, 2),
        "files": {"answers": paths.answers.name, "manifest": paths.manifest.name, "errors": paths.errors.name},
    })
    print(f"{answered}/{report.samples} answers in {paths.answers} ({report.answered_now} new this run, "
          f"{len(report.errors)} skipped{': see ' + paths.errors.name if report.errors else ''})")


def exit_code(report: RunReport, strict: bool) -> int:
    """0, unless samples were skipped under ``--strict`` or no sample has an answer."""
    if report.answered == 0:
        return 1
    return 1 if strict and report.errors else 0


def model_identity(args: argparse.Namespace, loaded: LoadedModel) -> dict[str, Any]:
    """The model settings that decide the outputs (part of every run's identity)."""
    return {
        "model_path": args.model_path, "vision_tower": args.vision_tower, "dtype": str(loaded.model.dtype),
        "attn": loaded.model.config.get_text_config()._attn_implementation,
    }


def run_benchmark(
    args: argparse.Namespace,
    samples: list[Sample],
    generate: GenerateFn,
    identity: dict[str, Any],
    id_field: str,
    about: dict[str, Any],
    dist: Distributed,
    device: torch.device,
    dataset_problems: int,
    description: str,
) -> int:
    """The part of a runner's ``main`` after the model is loaded: run, resume, merge, report; the exit status."""
    paths = RunPaths(Path(args.save_path), args.experiment_name)
    runner = Runner(samples, generate, paths, identity, id_field, args.batch_size, args.overwrite, dist, description)
    runner.prepare(about)
    report = runner.run()
    if dist.rank == 0:
        write_results(paths, identity, {"batch_size": args.batch_size, "limit": args.limit}, report, device,
                      dataset_problems)
    return exit_code(report, args.strict)
