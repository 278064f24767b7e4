"""A run is benchmark x method x model: :func:`resolve_run` merges, in this order (later wins), the benchmark's
protocol for the model's family, the benchmark's values under the chosen preset name (MME's seed 55 under the AvisC
scripts), what the model family decides (no LLaVA template for InstructBLIP's raw question or Qwen2-VL's chat
template; the checkpoint's ``min_pixels`` / ``max_pixels`` for Qwen2-VL), the method preset's protocol settings (a
method whose official code had its own protocol, e.g. PAI), and explicit flags; and it resolves the method's
parameters (:mod:`llava.methods`). Every value records where it came from.

>>> run = resolve_run("pope", "llava", "avisc", "scripts")
>>> run.protocol.conv_mode, run.protocol.decoding, run.params["lamb"], run.sources["lamb"]
('llava_v1', 'sample', 0.99, 'preset:scripts[family=llava|llava_next,benchmark=pope]')
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from eval.benchmarks.spec import BenchmarkSpec, benchmarks_of, get_benchmark
from eval.methods import get_method
from llava.model.families import family_names, get_family
from llava.settings import PROTOCOL_FIELDS, Protocol

SAMPLING_FIELDS = ("temperature", "top_k", "top_p")
"""Protocol fields that only sampling reads."""
SWEEP_SOURCE = "sweep"
"""The source of a value a sweep (``eval.sweep``) varies; the report keeps such runs out of the papers' tables."""


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
    protocol: Protocol
    params: dict[str, Any]
    sources: dict[str, str]

    @property
    def method_config(self) -> Any:
        """The method's config dataclass for :attr:`params` (validated)."""
        return get_method(self.method).build_config(self.params)

    def to_dict(self) -> dict[str, Any]:
        """What ``_results.json`` records: the method, preset, resolved parameters and protocol, and the sources."""
        return {"benchmark": self.benchmark.name, "family": self.family, "method": self.method, "preset": self.preset,
                "method_params": self.params, "protocol": self.protocol.to_dict(), "sources": self.sources}


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
    resolution = method_spec.resolve(preset_name, family=family, benchmark=spec.name, task=spec.task.name,
                                     overrides=method_overrides, num_layers=num_layers)
    values, sources = spec.protocol_for(family, preset_name)
    apply_family(values, sources, family, checkpoint_settings)
    for name, value in resolution.protocol.items():
        values[name], sources[name] = value, resolution.sources[name]
    for name, value in (protocol_overrides or {}).items():
        if name not in PROTOCOL_FIELDS:
            raise ValueError(f"unknown protocol setting {name!r}")
        values[name], sources[name] = value, "flag"
    protocol = Protocol(**values)
    for name in SAMPLING_FIELDS:
        if sources[name] == "flag" and not protocol.sampling:
            raise ValueError(f"--{name.replace('_', '-')} {values[name]} has no effect with greedy decoding "
                             f"(decoding from {sources['decoding']}); drop it or add --decoding sample")
    if spec.task.own_question and protocol.prompt is not None:
        raise ValueError(f"{spec.name} asks each sample's own question: a prompt does not apply")
    method_spec.check_decoding(resolution.params, protocol.decoding, protocol.num_beams)
    if method_spec.search == "beam" and protocol.num_beams == 1:  # its own width, recorded as what runs
        protocol = protocol.replace(num_beams=method_spec.build_config(resolution.params).num_beams)
        sources["num_beams"] = f"method:{method_spec.name}"
    sources.update({name: resolution.sources[name] for name in resolution.params})
    return ResolvedRun(spec, family, method_spec.name, preset_name, protocol, resolution.params, sources)


def protocol_table(runner: str) -> str:
    """The resolved protocol defaults of the benchmarks a runner runs, one line per benchmark and registered family
    (for ``--help``)."""
    lines = []
    for name in benchmarks_of(runner):
        spec = get_benchmark(name)
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
