"""What a benchmark is: one :class:`BenchmarkSpec` (the ``lmms-eval`` task idea), registered by name.

A spec owns everything that decides a benchmark's outputs apart from the method: its task kind (what its answers
are: captions, yes/no answers or open-ended answers), its reader (a callable that turns the benchmark's files into
ordered samples), its protocol per model family, its subset size and default question file, and the name of the
scorer its answers are scored with. Adding a benchmark is one module under ``eval/benchmarks/`` that registers a
spec (with a reader, and a scorer module if the scoring is new).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from llava.settings import PROTOCOL_FIELDS

if TYPE_CHECKING:
    from eval.benchmarks.samples import SampleSet
    from eval.files import Problem
    from llava.settings import Protocol


@dataclass(frozen=True)
class TaskKind:
    """What differs between captioning, yes/no and open-ended benchmarks.

    ``runner``: the module that runs them (``eval.caption`` or ``eval.vqa``); ``selector``: its flag that names the
    benchmark; ``answer_field`` / ``id_field``: the keys of an answer line; ``own_question``: each sample carries
    its question (else the protocol's ``prompt`` is asked of every image); ``answer_file_fields``: answer lines also
    carry LLaVA's answer-file fields (``model_id``, ``method``); ``unit``: how samples are counted in messages.
    """

    name: str
    runner: str
    selector: str
    answer_field: str
    id_field: str
    own_question: bool
    answer_file_fields: bool
    unit: str


CAPTION = TaskKind("caption", "eval.caption", "--dataset-type", "caption", "image_id", False, False, "images")
YESNO = TaskKind("yesno", "eval.vqa", "--benchmark", "text", "question_id", True, True, "questions")
OPEN = TaskKind("open", "eval.vqa", "--benchmark", "text", "question_id", True, True, "questions")
TASK_KINDS = {kind.name: kind for kind in (CAPTION, YESNO, OPEN)}


@dataclass(frozen=True)
class DataSettings:
    """Where a benchmark's data are, and which part of them to run (what a reader reads)."""

    image_folder: Path
    annotation_file: str | None = None
    question_file: str | None = None
    split: str | None = None
    num_samples: int | None = None
    subset_manifest: str | None = None
    limit: int | None = None


@dataclass(frozen=True)
class PerFamily:
    """A setting that differs between model families: ``default``, unless ``by_family`` names the family."""

    default: Any
    by_family: Mapping[str, Any] = field(default_factory=dict)

    def get(self, family: str) -> tuple[Any, bool]:
        """``(value, whether it is family-specific)``."""
        if family in self.by_family:
            return self.by_family[family], True
        return self.default, False


@dataclass(frozen=True)
class SplitFlag:
    """A benchmark whose question files ship in named splits (POPE's ``coco/random``, ...): the runner's flag that
    picks one (``--pope-split``), its choices, and how a split names its file."""

    flag: str
    choices: tuple[str, ...]
    question_file: Callable[[str], Path]
    help: str


Reader = Callable[["BenchmarkSpec", DataSettings, "Protocol", list["Problem"]], "SampleSet"]
"""``reader(spec, data, protocol, problems) -> SampleSet``: the samples in generation order, bad records appended
to ``problems`` (file, line, id, reason) and skipped; ``InputError`` for files that cannot be used at all."""


@dataclass(frozen=True)
class BenchmarkSpec:
    """One benchmark.

    ``task``: its :class:`TaskKind`; ``reader``: see :data:`Reader`; ``scorer``: the name of the scorer module that
    scores it (``eval.<scorer>``), or None; ``protocol``: a value (or :class:`PerFamily`) for every field of
    :class:`~llava.settings.Protocol`; ``num_samples``: the subset drawn (None: all); ``question_file``: the shipped
    default, if any; ``needs``: data settings without which it cannot run; ``by_preset``: protocol values that hold
    under the named presets only; ``split``: named question-file splits (POPE); ``data_note``: what its
    ``--image-folder`` / files are, for help texts.
    """

    name: str
    title: str
    task: TaskKind
    reader: Reader
    scorer: str | None
    protocol: Mapping[str, Any]
    num_samples: int | None = None
    question_file: Path | None = None
    needs: tuple[str, ...] = ()
    by_preset: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    split: SplitFlag | None = None

    def __post_init__(self) -> None:
        missing = set(PROTOCOL_FIELDS) - set(self.protocol)
        unknown = set(self.protocol) - set(PROTOCOL_FIELDS)
        if missing or unknown:
            raise ValueError(f"benchmark {self.name}: protocol missing {sorted(missing)}, unknown {sorted(unknown)}")

    @property
    def answer_field(self) -> str:
        return self.task.answer_field

    @property
    def id_field(self) -> str:
        return self.task.id_field

    def protocol_for(self, family: str, preset: str | None = None) -> tuple[dict[str, Any], dict[str, str]]:
        """The protocol values for a model family (and preset), with their sources."""
        values, sources = {}, {}
        for name, value in self.protocol.items():
            specific = False
            if isinstance(value, PerFamily):
                value, specific = value.get(family)
            values[name] = value
            sources[name] = f"benchmark:{self.name}" + (f"[family={family}]" if specific else "")
        for name, value in self.by_preset.get(preset or "", {}).items():
            values[name], sources[name] = value, f"benchmark:{self.name}[preset={preset}]"
        return values, sources

    def questions(self, data: DataSettings) -> Path | None:
        """The question file of a run: ``--question-file``, the shipped file of a named split, or the default."""
        if data.question_file:
            return Path(data.question_file)
        if data.split and self.split is not None:
            return self.split.question_file(data.split)
        return self.question_file

    def read(self, data: DataSettings, protocol: "Protocol", problems: list["Problem"]) -> "SampleSet":
        return self.reader(self, data, protocol, problems)


_REGISTRY: dict[str, BenchmarkSpec] = {}


def register_benchmark(spec: BenchmarkSpec) -> BenchmarkSpec:
    """Add ``spec`` to the registry (re-registering a name replaces it)."""
    _REGISTRY[spec.name] = spec
    return spec


def get_benchmark(name: str) -> BenchmarkSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(_REGISTRY)}") from None


def list_benchmarks() -> list[BenchmarkSpec]:
    """Registered benchmarks, in registration order."""
    return list(_REGISTRY.values())


def benchmarks_of(runner: str) -> list[str]:
    """The names of the benchmarks a runner (``eval.caption`` or ``eval.vqa``) runs."""
    return [spec.name for spec in _REGISTRY.values() if spec.task.runner == runner]


BENCHMARKS = _REGISTRY
"""Every registered benchmark by name (read-only use)."""
