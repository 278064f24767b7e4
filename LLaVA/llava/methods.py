"""Decoding methods by name: one registry of every method's settings, presets and factory (the ``timm`` idea).

A method is registered once, as a :class:`MethodSpec`: its name, its config dataclass (the official parameter names;
validation in ``__post_init__``, so an out-of-range value is a clear error before any model is loaded), its named
:class:`Preset` s and a factory that builds the :class:`~llava.generation.DecodingMethod` from a config. Presets may
also set **protocol** fields (template, prompt, preprocessing, decoding) where a method's own official code used its
own protocol (PAI, OPERA); those are merged over the benchmark's protocol by the runner.

Resolution order of every setting, later wins, each with its source recorded: the config dataclass default
(``default``), the preset's ``values`` (``preset:<name>``), each matching :class:`Rule` of the preset in order
(``preset:<name>[family=llava]``), then explicit overrides (``flag``).

Methods register themselves when their package's config module is imported; ``eval.methods`` imports them all.

>>> spec = get_method("baseline")
>>> spec.resolve("paper", family="llava", benchmark="coco").params
{}
>>> create_method("baseline")   # doctest: +ELLIPSIS
<llava.generation.DecodingMethod object at ...>
"""
from __future__ import annotations

import dataclasses
import importlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

PROTOCOL_FIELDS = (
    "conv_mode", "prompt", "image_aspect", "decoding", "temperature", "top_k", "top_p", "max_new_tokens", "seed",
    "num_beams", "text_cut",
)
"""Benchmark-protocol settings a preset may override (see ``eval.benchmarks``)."""

STANDARD_PRESETS = ("paper", "scripts", "official")
"""Preset names every method of this project defines (aliases where the official code makes no difference)."""

SEARCHES = ("loop", "loop+beam", "beam")
"""How a method decodes: in the greedy / sampling loop only (``loop``); also as plain beam search (``loop+beam``:
plain decoding); or as its own beam search (``beam``: its config's ``num_beams`` is its width, decoding is greedy)."""


def check_finite(values: Mapping[str, Any]) -> None:
    """``ValueError`` naming the first float of ``values`` that is NaN or infinite: no method parameter or protocol
    value means anything there, and NaN would never compare equal when a run is resumed."""
    for name, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value}")


@dataclass(frozen=True)
class Rule:
    """Values that apply only to runs matching every given selector (``None`` matches anything).

    ``family``: model family names (``llava``, ``llava_next``, ``instructblip``); ``benchmark``: benchmark names
    (``coco``, ``pope``, ...); ``task``: ``caption`` or ``yesno``.
    """

    values: Mapping[str, Any]
    family: tuple[str, ...] | None = None
    benchmark: tuple[str, ...] | None = None
    task: tuple[str, ...] | None = None

    def matches(self, family: str | None, benchmark: str | None, task: str | None) -> bool:
        return all(
            allowed is None or value in allowed
            for allowed, value in ((self.family, family), (self.benchmark, benchmark), (self.task, task))
        )

    def label(self) -> str:
        parts = [f"{name}={'|'.join(allowed)}" for name, allowed in
                 (("family", self.family), ("benchmark", self.benchmark), ("task", self.task)) if allowed]
        return ",".join(parts)


@dataclass(frozen=True)
class Preset:
    """Named settings: ``values`` for every run, then the matching ``rules`` in order."""

    description: str
    values: Mapping[str, Any] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class Resolution:
    """A method's resolved settings: ``params`` (config fields), ``protocol`` (protocol overrides the preset makes)
    and, for each key of both, where its value came from."""

    method: str
    preset: str
    params: dict[str, Any]
    protocol: dict[str, Any]
    sources: dict[str, str]


@dataclass(frozen=True)
class MethodSpec:
    """One registered decoding method.

    ``config``: a dataclass whose fields are the method's parameters under their official names (validated in
    ``__post_init__``, raising ``ValueError``); ``factory``: ``"module:callable"`` taking a config and returning a
    ``DecodingMethod`` (imported on first use, so listing methods stays cheap); ``source``: the official code it
    follows; ``search``: how it decodes (:data:`SEARCHES`).
    """

    name: str
    config: type
    factory: str
    presets: Mapping[str, Preset]
    description: str = ""
    source: str = ""
    default_preset: str = "paper"
    search: str = "loop"

    def __post_init__(self) -> None:
        if self.search not in SEARCHES:
            raise ValueError(f"method {self.name}: search must be one of {', '.join(SEARCHES)}")
        if not dataclasses.is_dataclass(self.config):
            raise TypeError(f"method {self.name}: config must be a dataclass")
        if self.default_preset not in self.presets:
            raise ValueError(f"method {self.name}: default preset {self.default_preset!r} is not defined")
        params = set(self.param_names())
        for preset_name, preset in self.presets.items():
            for values in (preset.values, *(rule.values for rule in preset.rules)):
                unknown = set(values) - params - set(PROTOCOL_FIELDS)
                if unknown:
                    raise ValueError(f"method {self.name}, preset {preset_name}: unknown settings {sorted(unknown)}")

    def param_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.config))

    def param_fields(self) -> tuple[dataclasses.Field, ...]:
        return dataclasses.fields(self.config)

    def defaults(self) -> dict[str, Any]:
        """The config dataclass defaults (every field must have one)."""
        return {f.name: f.default for f in self.param_fields()}

    def preset(self, name: str | None) -> tuple[str, Preset]:
        name = name or self.default_preset
        if name not in self.presets:
            raise ValueError(f"method {self.name} has no preset {name!r}; its presets: {', '.join(self.presets)}")
        return name, self.presets[name]

    def resolve(
        self,
        preset: str | None = None,
        *,
        family: str | None = None,
        benchmark: str | None = None,
        task: str | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Resolution:
        """The parameters (and protocol overrides) of this method under ``preset`` for a run; ``overrides`` are
        explicit parameter values (recorded as ``flag``). Raises ``ValueError`` for an unknown parameter or preset and
        for values the config rejects."""
        preset_name, chosen = self.preset(preset)
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for name, value in self.defaults().items():
            values[name], sources[name] = value, "default"
        layers = [(f"preset:{preset_name}", chosen.values)]
        layers += [(f"preset:{preset_name}[{rule.label()}]", rule.values) for rule in chosen.rules
                   if rule.matches(family, benchmark, task)]
        for source, layer in layers:
            for name, value in layer.items():
                values[name], sources[name] = value, source
        for name, value in (overrides or {}).items():
            if name not in self.param_names():
                raise ValueError(self.unknown_param_message(name))
            values[name], sources[name] = value, "flag"
        params = {k: v for k, v in values.items() if k in self.param_names()}
        self.build_config(params)  # validation
        protocol = {k: v for k, v in values.items() if k in PROTOCOL_FIELDS}
        return Resolution(self.name, preset_name, params, protocol, sources)

    def check_decoding(self, params: Mapping[str, Any], decoding: str, num_beams: int) -> None:
        """``ValueError`` when the method cannot decode this way (see :data:`SEARCHES`)."""
        if self.search == "loop" and num_beams > 1:
            raise ValueError(f"method {self.name} decodes in the greedy / sampling loop: it has no beam search "
                             f"(--num-beams {num_beams}); plain beam search is --method baseline --num-beams K")
        if self.search == "beam":
            width = self.build_config(params).num_beams
            if decoding != "greedy":
                raise ValueError(f"method {self.name} is a beam search: it cannot sample (--decoding {decoding})")
            if num_beams not in (1, width):
                raise ValueError(f"method {self.name} searches with {width} beams (its own parameter), not "
                                 f"--num-beams {num_beams}; set its width with --method-args")

    def unknown_param_message(self, name: str) -> str:
        known = ", ".join(self.param_names()) or "none"
        return f"method {self.name} has no parameter {name!r} (its parameters: {known})"

    def build_config(self, params: Mapping[str, Any]) -> Any:
        """The config for ``params``; ``ValueError`` for a value it rejects and for any non-finite number
        (:func:`check_finite`)."""
        check_finite(params)
        return self.config(**params)

    def create(self, params: Mapping[str, Any] | Any) -> Any:
        """The ``DecodingMethod`` for ``params`` (a mapping of parameters or a config instance)."""
        config = params if isinstance(params, self.config) else self.build_config(params)
        return _import(self.factory)(config)


_REGISTRY: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> MethodSpec:
    """Add ``spec`` to the registry (re-registering the same name replaces it, so modules can be reloaded)."""
    _REGISTRY[spec.name] = spec
    return spec


def get_method(name: str) -> MethodSpec:
    """The registered method ``name``; ``ValueError`` lists the registered names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; registered: {', '.join(list_methods())}") from None


def list_methods() -> list[str]:
    """Registered method names, in registration order."""
    return list(_REGISTRY)


def create_method(name: str, preset: str | None = None, *, family: str | None = None, benchmark: str | None = None,
                  task: str | None = None, **params: Any) -> Any:
    """Build method ``name`` with ``preset`` resolved for the given run and ``params`` overriding it."""
    spec = get_method(name)
    resolution = spec.resolve(preset, family=family, benchmark=benchmark, task=task, overrides=params)
    return spec.create(resolution.params)


def _import(path: str) -> Callable[..., Any]:
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class BaselineConfig:
    """Plain decoding has no parameters."""


def plain_decoding(config: BaselineConfig) -> Any:
    """Factory of the ``baseline`` method: the decoding loop without any method."""
    from llava.generation import DecodingMethod

    return DecodingMethod()


_NO_CHANGE = Preset("plain decoding: nothing to set")
BASELINE = register_method(MethodSpec(
    name="baseline",
    config=BaselineConfig,
    factory="llava.methods:plain_decoding",
    presets={name: _NO_CHANGE for name in STANDARD_PRESETS},
    description="plain decoding (greedy, sampling or beam search as the benchmark protocol says)",
    search="loop+beam",
))
