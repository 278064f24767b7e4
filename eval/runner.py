"""The benchmark runner shared by ``eval.caption`` and ``eval.vqa``: batched, resumable, sharded, crash-safe.

- **Outputs** (``{save_path}/{experiment_name}``): ``.jsonl`` answers in dataset order, ``_results.json`` (resolved
  config, versions, commit, seed, manifest hash, counts), ``_manifest.json`` (the ordered sample ids),
  ``_config.json`` (what must not change between a run and its resumption), ``_errors.jsonl`` (skipped samples).
- **Crash-safe**: each batch's answers are appended and flushed as soon as they exist; a torn last line (a kill in
  the middle of a write) is cut off on resume; results and manifests are written atomically.
- **Resumable**: rerunning the same command skips the samples already answered and retries the failed ones; a
  changed generation setting is refused unless ``--overwrite``.
- **Sharded**: under ``torchrun`` / ``accelerate launch`` (rank and world size from the launcher's environment, on
  the CPU too) each process takes every N-th pending sample and appends to its own shard file; process 0 merges
  everything in dataset order at the end and records each rank's count.
- **Robust**: a bad image, a bad input line (duplicate id, empty question, malformed record) or a failing sample is
  recorded in ``_errors.jsonl`` and skipped; an out-of-memory batch is halved, a sample that runs out of memory alone
  is a failed sample; an answers file deleted or replaced during the run is rewritten from what is known.
- **Progress**: a bar in a terminal; when stderr is not a terminal (a cluster job's log), one line every
  ``PROGRESS_EVERY`` seconds.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
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

from eval.benchmarks.samples import Sample
from eval.files import (
    InputError, Problem, RunPaths, dumps_json, manifest, record_key, settings_changes, write_json_atomic,
    write_text_atomic,
)
from eval.provenance import environment
from llava.mm_utils import ImageLoadError, load_image

GenerateFn = Callable[[Sequence[Sample], Sequence[Image.Image]], list[dict[str, Any]]]
INPUT_FIELD = "input_sha256"
"""The field of every answer line that holds the fingerprint of its inputs (:func:`input_fingerprints`)."""


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes; ``missing`` / ``unreadable`` when it cannot be read (a later fix of the file
    changes the fingerprint, so the sample is answered again)."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        return f"unreadable ({e.strerror})"
    return digest.hexdigest()


def input_fingerprints(samples: Sequence[Sample]) -> dict[str, str]:
    """Sample key -> the sha256 of what decides its answer: the question, the fields copied into its answer line,
    the image path and the image file's bytes (each image read once). A resumed run answers again every sample whose
    fingerprint changed (a question file or an image edited in place)."""
    images: dict[Path, str] = {}
    fingerprints = {}
    for sample in samples:
        if sample.image_path not in images:
            images[sample.image_path] = file_sha256(sample.image_path)
        what = {"question": sample.question, "fields": sample.fields, "image": str(sample.image_path),
                "image_sha256": images[sample.image_path]}
        text = json.dumps(what, sort_keys=True, ensure_ascii=False, allow_nan=False, default=str)
        fingerprints[sample.key] = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return fingerprints


class ConfigMismatch(InputError):
    """The output folder holds a run with other generation settings."""


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
    """An append-only jsonl file: each write is flushed and fsynced; a torn tail is cut before the first append.

    Before each append the path is checked to still name the open file: if the file (or its folder) was deleted or
    replaced during the run, it is recreated with everything this log held and wrote, so no count is ever reported
    that is not on disk.
    """

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._held = self._repair()
        self._written: list[str] = []
        self._file = path.open("a", encoding="utf-8")
        self.recreated = 0

    def _repair(self) -> bytes:
        """Cut a torn last line; return the complete lines the file holds."""
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return b""
        data = self.path.read_bytes()
        if not data.endswith(b"\n"):
            data = data[: data.rfind(b"\n") + 1]
            with self.path.open("r+b") as f:
                f.truncate(len(data))
        return data

    def _still_there(self) -> bool:
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return False
        open_file = os.fstat(self._file.fileno())
        return (on_disk.st_dev, on_disk.st_ino) == (open_file.st_dev, open_file.st_ino)

    def _recreate(self) -> None:
        self._file.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("wb") as f:
            f.write(self._held + "".join(self._written).encode("utf-8"))
        self._file = self.path.open("a", encoding="utf-8")
        self.recreated += 1
        print(f"warning: {self.path} was deleted or replaced during the run: recreated with the "
              f"{len(self._written)} record(s) of this run and what it held before", file=sys.stderr)

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        if not records:
            return
        if not self._still_there():
            self._recreate()
        text = "".join(dumps_json(r) + "\n" for r in records)
        self._file.write(text)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._written.append(text)

    def close(self) -> None:
        self._file.close()


RANK_WAIT = float(os.environ.get("RANK_WAIT_SECONDS", "3600"))
"""Seconds a process of a multi-process run waits for the others at a synchronisation point (the end of the model
load, the end of its share of the samples) before it names the ranks that did not come and stops."""


@dataclass
class Distributed:
    """This process's place in a (possibly single-process) run.

    Rank and world size come from the launcher's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, set by
    ``torchrun`` and ``accelerate launch``) on every device; several processes synchronise through
    ``torch.distributed``: monitored barriers on a gloo group (bounded by :data:`RANK_WAIT`, naming the ranks that
    did not come) and a gather of each rank's count.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    group: Any = None

    @classmethod
    def current(cls) -> "Distributed":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as dist

        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend, timeout=datetime.timedelta(hours=12))
        group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None  # monitored barriers: gloo
        return cls(dist.get_rank(), dist.get_world_size(), local_rank, group)

    def barrier(self, what: str) -> None:
        """Wait for every process to reach ``what``; :class:`InputError` naming the ranks that did not come within
        :data:`RANK_WAIT` seconds (a rank that died, or one far slower than the others)."""
        if self.world <= 1:
            return
        import torch.distributed as dist

        try:
            dist.monitored_barrier(group=self.group, timeout=datetime.timedelta(seconds=RANK_WAIT), wait_all_ranks=True)
        except RuntimeError as e:
            found = re.search(r"Ranks? ([\d, ]+) failed", str(e))
            who = f"rank(s) {found.group(1).strip()}" if found else "some rank"
            raise InputError(f"rank {self.rank}: {who} did not reach {what} within {RANK_WAIT / 60:.0f} min (stopped? "
                             "see their logs); the answers written so far are kept: rerun the same command to resume "
                             "(RANK_WAIT_SECONDS sets the wait)") from None

    def gather(self, value: Any) -> list[Any]:
        """``value`` of every rank, in rank order."""
        if self.world <= 1:
            return [value]
        import torch.distributed as dist

        values: list[Any] = [None] * self.world
        dist.all_gather_object(values, value, group=self.group)
        return values

    def close(self) -> None:
        """Leave the process group (after the last barrier)."""
        if self.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()

    def device(self) -> str | None:
        """This process's GPU under a multi-process launch (None: the default device)."""
        if self.world > 1 and torch.cuda.is_available():
            return f"cuda:{self.local_rank % torch.cuda.device_count()}"
        return None


PROGRESS_EVERY = float(os.environ.get("PROGRESS_EVERY", "60"))
"""Seconds between progress lines when stderr is not a terminal."""


class Progress:
    """A tqdm bar in a terminal; otherwise a line every ``every`` seconds and one at the end (cluster logs)."""

    def __init__(self, total: int, description: str, rank: int = 0, every: float = PROGRESS_EVERY):
        self.total, self.description, self.every = total, description, every
        self.prefix = f"[rank {rank}] " if rank else ""
        self.done, self.start, self.last = 0, time.time(), time.time()
        self.bar = tqdm(total=total, desc=description, unit="sample", position=rank, dynamic_ncols=True) \
            if sys.stderr.isatty() else None

    def update(self, count: int) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
        elif time.time() - self.last >= self.every:
            self._line()

    def _line(self) -> None:
        self.last = time.time()
        elapsed = self.last - self.start
        rate = elapsed / self.done if self.done else 0.0
        left = rate * (self.total - self.done)
        percent = 100 * self.done / self.total if self.total else 100.0
        print(f"{self.prefix}{self.description}: {self.done}/{self.total} ({percent:.0f}%), {rate:.1f} s/sample, "
              f"{elapsed / 60:.1f} min elapsed, about {left / 60:.0f} min left", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.total:
            self._line()


@dataclass
class RunReport:
    """Counts of one run."""

    samples: int = 0
    answered_before: int = 0
    answered_now: int = 0
    answered: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    input_problems: int = 0
    input_notices: int = 0
    seconds: float = 0.0
    oom_halvings: int = 0
    world_size: int = 1
    per_rank: list[int] = field(default_factory=list)


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
        input_problems: Sequence[Problem] = (),
        image_loader: Callable[[Path], Image.Image] = load_image,
    ):
        """``samples`` have unique keys (see :func:`eval.benchmarks.samples.drop_unusable`); ``input_problems`` are the bad
        input records found while reading them, written to ``_errors.jsonl`` and counted as skipped;
        ``image_loader`` opens an image (raising :class:`~llava.mm_utils.ImageLoadError`), e.g. ``load_image`` with
        the run's preprocessing bound."""
        if not samples:
            raise InputError("no samples to run (empty dataset, every line unusable, or --limit 0)")
        duplicates = sorted(k for k, n in Counter(s.key for s in samples).items() if n > 1)
        if duplicates:
            raise ValueError(f"duplicate sample ids: {duplicates[:5]} (drop them with eval.benchmarks.samples.drop_unusable)")
        if batch_size < 1:
            raise InputError(f"--batch-size must be at least 1, got {batch_size}")
        self.samples, self.generate, self.paths = samples, generate, paths
        self.identity, self.id_field = identity, id_field
        self.batch_size, self.overwrite = batch_size, overwrite
        self.dist = distributed or Distributed()
        self.description = description
        self.input_problems = [{"kind": "input", **p.to_dict()} for p in input_problems]
        self.image_loader = image_loader
        self.report = RunReport(samples=len(samples), input_problems=sum(p.skipped for p in input_problems),
                                input_notices=sum(not p.skipped for p in input_problems), world_size=self.dist.world)
        self._warned_oom = False
        self.fingerprints = input_fingerprints(samples)

    def key_of(self, record: dict[str, Any]) -> str:
        return str(record["key"]) if "key" in record else record_key(record[self.id_field])

    # -- setup -----------------------------------------------------------------------------------------------
    def prepare(self, about: dict[str, Any]) -> None:
        """Check (or reset, with ``--overwrite``) the outputs of an earlier run; write config and manifest.

        Every process checks (so all stop with the same error); process 0 writes.
        """
        if not self.overwrite and self.written():  # settings matter only where answers exist
            if self.paths.config.is_file():
                self._check_identity(json.loads(self.paths.config.read_text(encoding="utf-8")))
            else:
                raise ConfigMismatch(
                    f"{self.paths.answers} exists but has no {self.paths.config.name}: its settings are unknown; "
                    "use another --experiment-name or --save-path (scripts: SAVE_PATH), or --overwrite (scripts: "
                    "OVERWRITE=1)"
                )
        self.dist.barrier("the settings check of the outputs")
        self.about = about
        if self.dist.rank == 0:
            self.paths.folder.mkdir(parents=True, exist_ok=True)
            if self.overwrite:
                for path in self.paths.all_outputs():
                    path.unlink(missing_ok=True)
            self._write_config_and_manifest()
        self.dist.barrier("the start of the run")

    def _write_config_and_manifest(self) -> None:
        write_json_atomic(self.paths.config, self.identity)
        write_json_atomic(self.paths.manifest, manifest([s.key for s in self.samples], **self.about))

    def _check_identity(self, stored: dict[str, Any]) -> None:
        changed = settings_changes(stored, json.loads(json.dumps(self.identity)))  # tuples stored as lists
        if changed:
            details = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in changed)
            raise ConfigMismatch(
                f"{self.paths.answers} was produced with other settings ({details}); "
                "rerun with the same settings to resume, or start again with --overwrite (scripts: OVERWRITE=1) or "
                "another --save-path (scripts: SAVE_PATH)"
            )

    # -- main loop --------------------------------------------------------------------------------------------
    def run(self) -> RunReport:
        start = time.time()
        written = self.written()  # read once: what still answers its sample, and what changed
        done = self.answered(written)
        self.report_changed_inputs(written)
        self.report.answered_before = len(done)
        self.dist.barrier("the start of generation")  # everyone has read the same state before anyone appends
        pending = [s for s in self.samples if s.key not in done]
        mine = pending[self.dist.rank :: self.dist.world]
        sharded = self.dist.world > 1
        answers = AppendLog(self.paths.shard("answers", self.dist.rank) if sharded else self.paths.answers)
        errors = AppendLog(self.paths.shard("errors", self.dist.rank))
        bar = Progress(len(mine), self.description, self.dist.rank)
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
        self.dist.barrier("the end of its share of the samples")
        self.report.per_rank = self.dist.gather(self.report.answered_now)
        if self.dist.rank == 0:
            self.merge()
        self.report.seconds = time.time() - start
        return self.report

    def written(self) -> dict[str, dict[str, Any]]:
        """Every answer on disk: in the final file, in shard files, or kept from an earlier, larger run."""
        done = read_log(self.paths.kept, self.key_of)
        done.update(read_log(self.paths.answers, self.key_of))
        for shard in self.paths.shards("answers"):
            done.update(read_log(shard, self.key_of))
        return done

    def answered(self, written: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
        """The answers already written (``written``: :meth:`written`, read here when not given) that still answer
        their sample: a sample of this run whose question, fields or image (its bytes) changed since it was answered
        is answered again; answers of samples outside this run are kept as they are."""
        written = self.written() if written is None else written
        return {key: record for key, record in written.items()
                if key not in self.fingerprints or record.get(INPUT_FIELD) == self.fingerprints[key]}

    def report_changed_inputs(self, written: dict[str, dict[str, Any]]) -> None:
        """One warning naming the samples of this run whose inputs changed since they were answered (``written``:
        :meth:`written`)."""
        changed = [key for key, fingerprint in self.fingerprints.items()
                   if key in written and written[key].get(INPUT_FIELD) != fingerprint]
        if changed and self.dist.rank == 0:
            shown = ", ".join(changed[:10]) + (f" and {len(changed) - 10} more" if len(changed) > 10 else "")
            print(f"warning: {len(changed)} sample(s) changed since they were answered (question, fields or image "
                  f"bytes; or answered by a version that did not record its inputs): answered again: ids {shown}",
                  file=sys.stderr)

    def _load_ahead(self, samples: list[Sample]) -> Iterator[tuple[list[Sample], list[Image.Image | Exception]]]:
        """Batches with their images, the next batch's images loading in a thread while this one generates."""
        batches = [samples[i : i + self.batch_size] for i in range(0, len(samples), self.batch_size)]

        def load(batch: list[Sample]) -> list[Image.Image | Exception]:
            loaded: list[Image.Image | Exception] = []
            for sample in batch:
                try:
                    loaded.append(self.image_loader(sample.image_path))
                except ImageLoadError as e:
                    loaded.append(e)
                except MemoryError:
                    loaded.append(ImageLoadError(f"{sample.image_path}: out of memory while decoding the image"))
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
            return [{**s.fields, **out, INPUT_FIELD: self.fingerprints[s.key]} for s, out in zip(samples, outputs)], []
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
        except (ValueError, RuntimeError, OSError, MemoryError) as e:
            if isinstance(e, OSError) and e.errno is not None and e.filename:  # an output file: not the sample's fault
                raise
            if len(samples) == 1:
                reason = "out of memory" if isinstance(e, MemoryError) else f"{type(e).__name__}: {e}"
                return [], [self._error(samples[0], reason)]
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
        """Write the answers in dataset order (atomically) and the errors still unresolved (this run's bad input
        records first); count each rank's answers; drop shard files."""
        done = self.answered()
        order = {s.key: i for i, s in enumerate(self.samples)}
        ordered = sorted((r for k, r in done.items() if k in order), key=lambda r: order[self.key_of(r)])
        kept = [r for k, r in done.items() if k not in order]
        write_text_atomic(self.paths.answers, "".join(dumps_json(r) + "\n" for r in ordered), keep_if_same=True)
        if kept or self.paths.kept.is_file():
            write_text_atomic(self.paths.kept, "".join(dumps_json(r) + "\n" for r in kept))
        errors = {k: e for k, e in read_log(self.paths.errors, lambda r: str(r["key"])).items()
                  if e.get("kind") != "input"}  # earlier runs' failures not retried now
        for shard in self.paths.shards("errors"):
            errors.update(read_log(shard, lambda r: str(r["key"])))
        unresolved = [e for k, e in errors.items() if k not in done and k in order]
        self.report.answered_now = len(done) - self.report.answered_before  # all processes together
        self.report.answered = sum(1 for key in done if key in order)
        records = self.input_problems + unresolved
        write_text_atomic(self.paths.errors, "".join(dumps_json(e) + "\n" for e in records))
        for shard in self.paths.shards("answers") + self.paths.shards("errors"):
            shard.unlink(missing_ok=True)
        self._write_config_and_manifest()  # again: the folder may have been emptied during the run
        self.report.errors = unresolved


def write_results(paths: RunPaths, config: dict[str, Any], report: RunReport, device: torch.device,
                  subset: dict[str, Any]) -> None:
    """``_results.json`` (resolved config, environment, seed, subset, manifest hash, counts per rank, timing) and a
    summary line. Counts come from what is on disk after the merge."""
    manifest_sha = json.loads(paths.manifest.read_text(encoding="utf-8"))["sha256"]
    answered = report.answered
    skipped = len(report.errors) + report.input_problems
    write_json_atomic(paths.results, {
        "config": {**config, "device": str(device)},
        "environment": environment(device),
        "seed": config.get("protocol", {}).get("seed"),
        "subset": subset,
        "manifest_sha256": manifest_sha,
        "counts": {"samples": report.samples, "answered": answered, "answered_this_run": report.answered_now,
                   "skipped": skipped, "failed_samples": len(report.errors), "input_problems": report.input_problems,
                   "input_notices": report.input_notices,
                   "oom_halvings": report.oom_halvings},
        "distributed": {"world_size": report.world_size,
                        "answered_per_rank": report.per_rank},
        "seconds": round(report.seconds, 2),
        "files": {"answers": paths.answers.name, "manifest": paths.manifest.name, "errors": paths.errors.name},
    })
    detail = []
    if report.errors:
        detail.append(f"{len(report.errors)} failed")
    if report.input_problems:
        detail.append(f"{report.input_problems} bad input record(s)")
    notices = f"; {report.input_notices} input notice(s) in {paths.errors.name}" if report.input_notices else ""
    print(f"{answered}/{report.samples} answers in {paths.answers} ({report.answered_now} new this run, "
          f"{skipped} skipped{' (' + ', '.join(detail) + '): see ' + paths.errors.name if skipped else ''}{notices})")


def exit_code(report: RunReport, strict: bool) -> int:
    """0, unless samples were skipped under ``--strict`` or no sample has an answer."""
    if report.answered == 0:
        return 1
    return 1 if strict and (report.errors or report.input_problems) else 0
