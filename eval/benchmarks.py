"""Benchmark protocols as data (the ``lmms-eval`` task idea): one :class:`BenchmarkSpec` per benchmark.

A spec holds everything that decides a benchmark's outputs apart from the method: its reader and data files, the
prompt and template per model family, the image preprocessing, the decoding, the token budget, the seed and the
scorer. A run is spec x method x model: :func:`resolve_run` merges, in this order (later wins), the spec's protocol
for the model's family, the spec's values under the chosen preset name (MME's seed 55 under the AvisC scripts), the
what the model family decides (no LLaVA template for InstructBLIP's raw question or Qwen2-VL's chat template; the
checkpoint's ``min_pixels`` / ``max_pixels`` for Qwen2-VL), the method preset's protocol settings (a method whose
official code had its own protocol, e.g. PAI), and explicit flags; and it resolves the method's parameters
(:mod:`llava.methods`). Every value records where it came from.

Protocols (``sparc-official.md`` section 2, ``avisc-official.md`` section 3):

- captioning (``coco``, ``iiw``, ``docci``, ``folder``): "Please describe this image in detail.", ``vicuna_v1``, the
  model's own preprocessing (pad for LLaVA-1.5, anyres for LLaVA-NeXT), greedy, 512 new tokens, seed 42;
- yes/no (``pope``, ``mme``, ``amber``): the raw question, ``llava_v1``, CLIP resize + center-crop for LLaVA-1.5,
  sampling at temperature 1 (InstructBLIP: LAVIS' top-k 50 and 63 new tokens), 64 new tokens, seed 42.
- Qwen2-VL / Qwen2.5-VL (no official code of either paper runs them): the same prompts through the checkpoint's chat
  template, the checkpoint's image processor, and each benchmark's decoding.

>>> run = resolve_run("pope", "llava", "avisc", "scripts")
>>> run.protocol["conv_mode"], run.protocol["decoding"], run.params["lamb"], run.sources["lamb"]
('llava_v1', 'sample', 0.99, 'preset:scripts[family=llava|llava_next,benchmark=pope]')
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from eval.methods import get_method
from llava.constants import MIN_TEMPERATURE
from llava.methods import PROTOCOL_FIELDS, check_finite
from llava.model.families import family_names, get_family

DATA = Path(__file__).resolve().parent / "data"
DECODINGS = ("greedy", "sample")
SAMPLING_FIELDS = ("temperature", "top_k", "top_p")
"""Protocol fields that only sampling reads."""
TASKS = ("caption", "yesno")
CAPTION_PROMPT = "Please describe this image in detail."


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
class BenchmarkSpec:
    """One benchmark.

    ``reader``: the dataset reader in :mod:`eval.datasets`; ``num_samples``: the subset drawn (None: all);
    ``question_file``: the default question file (shipped), if any; ``needs``: data arguments without which it cannot
    run; ``protocol``: a value (or :class:`PerFamily`) for every field of :data:`~llava.methods.PROTOCOL_FIELDS`;
    ``by_preset``: protocol values that hold under the named presets only; ``answer_field``: the answer's key in the
    output lines; ``scorer``: the ``eval`` module that scores it.
    """

    name: str
    title: str
    task: str
    reader: str
    scorer: str | None
    protocol: Mapping[str, Any]
    num_samples: int | None = None
    question_file: Path | None = None
    needs: tuple[str, ...] = ()
    by_preset: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = set(PROTOCOL_FIELDS) - set(self.protocol)
        unknown = set(self.protocol) - set(PROTOCOL_FIELDS)
        if missing or unknown or self.task not in TASKS:
            raise ValueError(f"benchmark {self.name}: protocol missing {sorted(missing)}, unknown {sorted(unknown)}")

    @property
    def answer_field(self) -> str:
        return "caption" if self.task == "caption" else "text"

    @property
    def id_field(self) -> str:
        return "image_id" if self.task == "caption" else "question_id"

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


CAPTIONING = {
    "conv_mode": "vicuna_v1",  # for the families with LLaVA templates (the others: see resolve_run)
    "prompt": CAPTION_PROMPT,
    "image_aspect": None,  # the model's own: pad (LLaVA-1.5), anyres (LLaVA-NeXT), 224 (InstructBLIP)
    "min_pixels": None,  # Qwen2-VL: the checkpoint's processor bounds
    "max_pixels": None,
    "decoding": "greedy",
    "temperature": 1.0,
    "top_k": None,
    "top_p": None,
    "max_new_tokens": 512,
    "seed": 42,
    "num_beams": 1,
    "text_cut": None,  # an answer is the whole decoded text (OPERA's own protocol cuts it at "###")
}
YES_NO = {
    "conv_mode": "llava_v1",
    "prompt": None,  # the question of each sample
    "image_aspect": PerFamily("crop", {"llava_next": None}),  # LLaVA-NeXT: its own anyres
    "min_pixels": None,
    "max_pixels": None,
    "decoding": "sample",
    "temperature": 1.0,
    # LAVIS' InstructBLIP generate: top_k left at transformers' default 50; max_length 64 counts the BOS it seeds
    "top_k": PerFamily(None, {"instructblip": 50}),
    "top_p": None,
    "max_new_tokens": PerFamily(64, {"instructblip": 63}),
    "seed": 42,
    "num_beams": 1,
    "text_cut": None,
}
AVISC_SCRIPT_SEED = {"scripts": {"seed": 55}, "official": {"seed": 55}}  # experiments/cd_scripts/mme_eval.sh

BENCHMARKS: dict[str, BenchmarkSpec] = {spec.name: spec for spec in (
    BenchmarkSpec("coco", "COCO val2014 captions (CHAIR)", "caption", "coco", "chair", CAPTIONING, num_samples=500,
                  needs=("image_folder",)),
    BenchmarkSpec("iiw", "IIW-400 captions (CLAIR)", "caption", "iiw", "clair", CAPTIONING,
                  needs=("image_folder", "annotation_file")),
    BenchmarkSpec("docci", "DOCCI captions (CLAIR)", "caption", "docci", "clair", CAPTIONING, num_samples=500,
                  needs=("image_folder", "annotation_file")),
    BenchmarkSpec("folder", "every image of a folder (no scorer)", "caption", "folder", None, CAPTIONING,
                  needs=("image_folder",)),
    BenchmarkSpec("pope", "POPE (COCO, A-OKVQA, GQA)", "yesno", "pope", "pope", YES_NO,
                  needs=("image_folder", "question_file")),
    BenchmarkSpec("mme", "MME (hallucination subset by default)", "yesno", "mme", "mme", YES_NO,
                  question_file=DATA / "mme" / "mme_hallucination.jsonl", needs=("image_folder",),
                  by_preset=AVISC_SCRIPT_SEED),
    BenchmarkSpec("amber", "AMBER (all 15,220 queries)", "yesno", "amber", "amber", YES_NO,
                  question_file=DATA / "amber" / "query_all.json.gz", needs=("image_folder",)),
)}


def get_benchmark(name: str) -> BenchmarkSpec:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}") from None


def benchmarks_of(task: str) -> list[str]:
    return [name for name, spec in BENCHMARKS.items() if spec.task == task]


def check_protocol(values: Mapping[str, Any]) -> None:
    """Clear errors for protocol values that cannot run."""
    check_finite(values)
    if values["decoding"] not in DECODINGS:
        raise ValueError(f"decoding must be one of {', '.join(DECODINGS)}, got {values['decoding']!r}")
    if values["max_new_tokens"] < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {values['max_new_tokens']}")
    if values["num_beams"] < 1:
        raise ValueError(f"num_beams must be at least 1, got {values['num_beams']}")
    if values["num_beams"] > 1 and values["decoding"] != "greedy":
        raise ValueError("beam search (num_beams > 1) needs greedy decoding (--decoding greedy)")
    if not values["temperature"] >= MIN_TEMPERATURE:
        raise ValueError(f"temperature must be at least {MIN_TEMPERATURE} (greedy decoding: --decoding greedy), got "
                         f"{values['temperature']}")
    if values["top_k"] is not None and values["top_k"] < 1:
        raise ValueError(f"top_k must be at least 1, got {values['top_k']}")
    if values["top_p"] is not None and not 0 < values["top_p"] <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {values['top_p']}")
    low, high = values["min_pixels"], values["max_pixels"]
    for name, value in (("min_pixels", low), ("max_pixels", high)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if low is not None and high is not None and low > high:
        raise ValueError(f"min_pixels {low} is above max_pixels {high}")


def apply_family(protocol: dict[str, Any], sources: dict[str, str], family: str,
                 checkpoint_settings: Mapping[str, Any] | None) -> None:
    """What the model family decides of a protocol, in place: no LLaVA template where the family has its own prompt
    (InstructBLIP's raw question, Qwen2-VL's chat template), no LLaVA preprocessing mode where it has none, and the
    checkpoint's values of the family's own image settings (Qwen2-VL's ``min_pixels`` / ``max_pixels``) where the
    run sets none."""
    spec = get_family(family)
    if spec.prompt_style != "template":
        protocol["conv_mode"], sources["conv_mode"] = None, f"family:{family}"
    if not spec.image_aspects:
        protocol["image_aspect"], sources["image_aspect"] = None, f"family:{family}"
    for name in spec.image_settings:
        if protocol[name] is None and checkpoint_settings and checkpoint_settings.get(name) is not None:
            protocol[name], sources[name] = checkpoint_settings[name], "checkpoint"


@dataclass(frozen=True)
class ResolvedRun:
    """A benchmark x method x model-family run: the protocol, the method's parameters, and each value's source."""

    benchmark: BenchmarkSpec
    family: str
    method: str
    preset: str
    protocol: dict[str, Any]
    params: dict[str, Any]
    sources: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """What ``_results.json`` records: the method, preset, resolved parameters and protocol, and the sources."""
        return {"benchmark": self.benchmark.name, "family": self.family, "method": self.method, "preset": self.preset,
                "method_params": self.params, "protocol": self.protocol, "sources": self.sources}


def resolve_run(
    benchmark: str | BenchmarkSpec,
    family: str,
    method: str,
    preset: str | None = None,
    method_overrides: Mapping[str, Any] | None = None,
    protocol_overrides: Mapping[str, Any] | None = None,
    checkpoint_settings: Mapping[str, Any] | None = None,
    num_layers: int | None = None,
) -> ResolvedRun:
    """Resolve every setting of a run (see the module docstring for the order); ``checkpoint_settings`` are the
    checkpoint's values of the family's image settings and ``num_layers`` its depth (both from
    ``llava.model.builder.inspect_checkpoint``; the depth resolves depth-relative method values). ``ValueError`` on a
    bad name or value."""
    spec = benchmark if isinstance(benchmark, BenchmarkSpec) else get_benchmark(benchmark)
    method_spec = get_method(method)
    preset_name, _ = method_spec.preset(preset)
    resolution = method_spec.resolve(preset_name, family=family, benchmark=spec.name, task=spec.task,
                                     overrides=method_overrides, num_layers=num_layers)
    protocol, sources = spec.protocol_for(family, preset_name)
    apply_family(protocol, sources, family, checkpoint_settings)
    for name, value in resolution.protocol.items():
        protocol[name], sources[name] = value, resolution.sources[name]
    for name, value in (protocol_overrides or {}).items():
        if name not in PROTOCOL_FIELDS:
            raise ValueError(f"unknown protocol setting {name!r}")
        protocol[name], sources[name] = value, "flag"
    check_protocol(protocol)
    for name in SAMPLING_FIELDS:
        if sources[name] == "flag" and protocol["decoding"] == "greedy":
            raise ValueError(f"--{name.replace('_', '-')} {protocol[name]} has no effect with greedy decoding "
                             f"(decoding from {sources['decoding']}); drop it or add --decoding sample")
    if spec.task == "yesno" and protocol["prompt"] is not None:
        raise ValueError(f"{spec.name} asks each sample's own question: a prompt does not apply")
    method_spec.check_decoding(resolution.params, protocol["decoding"], protocol["num_beams"])
    if method_spec.search == "beam" and protocol["num_beams"] == 1:  # its own width, recorded as what runs
        protocol["num_beams"] = method_spec.build_config(resolution.params).num_beams
        sources["num_beams"] = f"method:{method_spec.name}"
    sources.update({name: resolution.sources[name] for name in resolution.params})
    return ResolvedRun(spec, family, method_spec.name, preset_name, protocol, resolution.params, sources)


def protocol_table(task: str) -> str:
    """The resolved protocol defaults of the benchmarks of ``task``, one line per benchmark and registered family
    (for ``--help``)."""
    lines = []
    for name in benchmarks_of(task):
        spec = BENCHMARKS[name]
        subset = f"{spec.num_samples} samples" if spec.num_samples else "all samples"
        lines.append(f"  {name}: {spec.title}; {subset}; scorer {spec.scorer or '-'}")
        for family in family_names():
            values, sources = spec.protocol_for(family)
            apply_family(values, sources, family, None)
            shown = ", ".join(f"{k}={v!r}" for k, v in values.items() if v is not None)
            lines.append(f"    {family}: {shown}")
        for preset, values in spec.by_preset.items():
            lines.append(f"    under --preset {preset}: " + ", ".join(f"{k}={v!r}" for k, v in values.items()))
    return "\n".join(lines)
