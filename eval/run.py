"""One run of a benchmark with a method on a model, from a :class:`RunSpec`: the driver behind ``eval.caption`` and
``eval.vqa`` (see :mod:`eval.cli` for how the command line becomes a spec, :mod:`eval.runner` for the loop).

>>> spec = RunSpec(resolve_run("folder", "llava", "sparc"), ModelSettings("tiny"), DataSettings(Path("photos")),
...                OutputSettings(Path("out"), "sparc"))                                         # doctest: +SKIP
>>> execute(spec)                                                                            # doctest: +SKIP
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.benchmarks import DataSettings, ResolvedRun
from eval.benchmarks.samples import Sample, SampleSet, drop_unusable, select_by_manifest
from eval.files import ExclusiveLock, InputError, Problem, output_error, report_problems
from eval.methods import get_method


@dataclass(frozen=True)
class ModelSettings:
    """Which model, and how to load it (None: the default of :func:`llava.model.builder.load_model`)."""

    model_path: str
    vision_tower: str | None = None
    dtype: str | None = None
    device: str | None = None
    attn: str | None = None


@dataclass(frozen=True)
class OutputSettings:
    """Where the outputs go and how the run behaves."""

    save_path: Path
    experiment_name: str
    batch_size: int = 1
    overwrite: bool = False
    strict: bool = False


@dataclass(frozen=True)
class RunSpec:
    """Everything one run needs: the resolved benchmark x method settings, the model, the data and the outputs.
    ``num_layers`` (when known before loading) lets the method's layer settings be checked early."""

    run: ResolvedRun
    model: ModelSettings
    data: DataSettings
    output: OutputSettings
    num_layers: int | None = None

    @property
    def description(self) -> str:
        return f"{self.run.benchmark.name} ({self.run.method})"


def check_spec(spec: RunSpec) -> None:
    """Errors that need no model: the template, the method's layers, the data files. Raises :class:`InputError`."""
    from llava.conversation import get_conv_template

    run, data, benchmark = spec.run, spec.data, spec.run.benchmark
    try:
        if run.protocol.conv_mode is not None:
            get_conv_template(run.protocol.conv_mode)
        config = get_method(run.method).build_config(run.params)
        if spec.num_layers is not None and hasattr(config, "validate"):
            config.validate(spec.num_layers)
    except ValueError as e:
        raise InputError(str(e)) from None
    if spec.output.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {spec.output.batch_size}")
    for name, value in (("--limit", data.limit), ("--num-samples", data.num_samples)):
        if value is not None and value < 1:
            raise InputError(f"{name} must be at least 1, got {value}")
    if data.num_samples is not None and data.subset_manifest:
        raise InputError("--num-samples and --subset-manifest both choose the subset: give one")
    if data.split is not None:
        if benchmark.split is None:
            raise InputError(f"a question-file split is not a setting of --benchmark {benchmark.name}")
        if data.question_file:
            raise InputError(f"{benchmark.split.flag} and --question-file both name the questions: give one")
    name = spec.output.experiment_name
    if not name.strip() or "/" in name or "\\" in name or name.startswith("."):
        raise InputError(f"--experiment-name {name!r}: a file stem, not empty, without slashes or a leading dot")
    if not data.image_folder.is_dir():
        raise InputError(f"{data.image_folder}: no such image folder")
    if benchmark.task.own_question:
        questions = benchmark.questions(data)
        if questions is None:
            raise InputError(f"{benchmark.name} needs --question-file" +
                             (f" or {benchmark.split.flag} (e.g. {benchmark.split.choices[0]})" if benchmark.split else ""))
        if not questions.exists():
            raise InputError(f"{questions}: no such question file")
    elif "annotation_file" in benchmark.needs:
        if data.annotation_file is None:
            raise InputError(f"--annotation-file is required for dataset type {benchmark.name}")
        if not Path(data.annotation_file).is_file():
            raise InputError(f"{data.annotation_file}: no such annotation file")


def read_samples(spec: RunSpec, problems: list[Problem]) -> SampleSet:
    """The samples of the run, in generation order, without duplicates and empty questions (recorded as problems),
    after ``--subset-manifest`` and ``--limit``."""
    data = spec.data
    found = spec.run.benchmark.read(data, spec.run.protocol, problems)
    if data.subset_manifest:  # the manifest's ids, drawn from the whole dataset
        chosen = select_by_manifest(found.samples, data.subset_manifest)
        found = SampleSet(chosen, len(chosen), len(found.samples))
    samples = drop_unusable(found.samples, problems)
    samples = outside_image_folder(samples, data.image_folder, spec.output.strict, problems)
    if data.limit is not None:
        samples = samples[: data.limit]
    return SampleSet(samples, found.requested, found.available)


def outside_image_folder(samples: list[Sample], image_folder: Path, strict: bool,
                         problems: list[Problem]) -> list[Sample]:
    """The samples to run, recording those whose image lies outside ``--image-folder`` (an absolute path, ``../``, a
    symbolic link leading out): a notice (run all the same), or, with ``--strict``, a problem (skipped)."""
    root = image_folder.resolve()
    kept = []
    for sample in samples:
        try:
            inside = sample.image_path.resolve().is_relative_to(root)
        except (OSError, RuntimeError):  # a name the file system refuses, a link loop: loading it will say so
            inside = True
        if not inside:
            problems.append(Problem(sample.file, sample.line, sample.key,
                                    f"image {sample.image_path} is outside the image folder {image_folder}"
                                    + (": refused (--strict)" if strict else ": run all the same"), skipped=strict))
            if strict:
                continue
        kept.append(sample)
    return kept


def _disk_error(e: OSError) -> InputError:
    """One line for an output that could not be written: what happened and what to do (:func:`eval.files.output_error`)."""
    return output_error(e, "the answers written so far are kept")


def execute(spec: RunSpec, models: dict[ModelSettings, Any] | None = None) -> int:
    """Read the samples, load the model, generate (resumable, sharded, crash-safe), write the results; the exit
    status (0; 1 when no sample has an answer or, with ``strict``, when any was skipped). ``models`` keeps loaded
    models by their settings across calls (a sweep loads its model once)."""
    from eval.generation_setup import Decoder
    from eval.runner import Distributed, RunPaths, Runner, exit_code, write_results
    from llava.model.builder import CheckpointError, load_model

    problems: list[Problem] = []
    sample_set = read_samples(spec, problems)
    report_problems(problems)
    if sample_set.short:
        print(f"warning: {spec.run.benchmark.name}: {sample_set.available} samples available, fewer than the "
              f"{sample_set.requested} the benchmark asks for: results are not comparable (recorded in _results.json)",
              file=sys.stderr)
    dist = Distributed.current()
    paths = RunPaths(spec.output.save_path, spec.output.experiment_name)
    lock = ExclusiveLock(paths.answers if dist.rank == 0 else paths.shard("answers", dist.rank),
                         f"the run {paths.answers}" + (f" (rank {dist.rank})" if dist.world > 1 else ""))
    try:
        with lock:  # two runs writing one experiment would mix their answers: the second is refused at once
            model = spec.model
            loaded = (models or {}).get(model)
            if loaded is None:
                try:
                    loaded = load_model(model.model_path, model.device or dist.device(), model.dtype, model.attn,
                                        model.vision_tower)
                except (CheckpointError, OSError) as e:
                    raise InputError(str(e)) from None
                if models is not None:
                    models[model] = loaded
            decoder = Decoder(loaded, spec.run)
            identity = {**decoder.identity(spec), "data": about_data(spec)}
            runner = Runner(sample_set.samples, decoder, paths, identity, spec.run.benchmark.id_field,
                            spec.output.batch_size, spec.output.overwrite, dist, spec.description, problems,
                            decoder.load_image)
            runner.prepare(about_data(spec))
            report = runner.run()
            if dist.rank == 0:
                config = {**identity, **spec.run.to_dict(), **runtime(spec)}
                write_results(paths, config, report, loaded.device, sample_set.subset(len(sample_set.samples)))
    except OSError as e:
        raise _disk_error(e) from None
    finally:
        dist.close()
    return exit_code(report, spec.output.strict) if dist.rank == 0 else 0  # rank 0 holds the merged counts


def about_data(spec: RunSpec) -> dict[str, Any]:
    """The data part of a run's identity (also written into the manifest): the benchmark under the name of the flag
    that chose it, the image folder, and the question file or the captioning subset (annotations, size, seed,
    manifest)."""
    data, benchmark = spec.data, spec.run.benchmark
    about: dict[str, Any] = {benchmark.task.selector.lstrip("-").replace("-", "_"): benchmark.name,
                             "image_folder": str(data.image_folder.resolve())}
    if benchmark.task.own_question:
        return {**about, "question_file": str(benchmark.questions(data).resolve())}
    num_samples = None if data.subset_manifest else (data.num_samples if data.num_samples is not None
                                                     else benchmark.num_samples)
    return {**about, "annotation_file": str(Path(data.annotation_file).resolve()) if data.annotation_file else None,
            "num_samples": num_samples, "seed": spec.run.protocol.seed, "subset_manifest": data.subset_manifest}


def runtime(spec: RunSpec) -> dict[str, Any]:
    """Settings that may change between a run and its resumption (recorded, not checked)."""
    return {"batch_size": spec.output.batch_size, "limit": spec.data.limit}
