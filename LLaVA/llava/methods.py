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

from llava.settings import PROTOCOL_FIELDS, check_finite

STANDARD_PRESETS = ("paper", "scripts", "official")
"""Preset names every method of this project defines (aliases where the official code makes no difference)."""

SEARCHES = ("loop", "loop+beam", "beam")
"""How a method decodes: in the greedy / sampling loop only (``loop``); also as plain beam search (``loop+beam``:
plain decoding); or as its own beam search (``beam``: its config's ``num_beams`` is its width, decoding is greedy)."""


@dataclass(frozen=True)
class ByDepth:
    """A layer index that depends on the model's depth ``n``: ``floor(n * fraction) + offset``, resolved when the
    depth is known (from the checkpoint's ``config.json``, before loading). ``text`` says what it means.

    >>> LAST_LAYER.resolve(28), ALL_LAYERS_END.resolve(8), ByDepth(0.625, 0, "20 of 32, scaled").resolve(28)
    (27, 8, 17)
    """

    fraction: float
    offset: int
    text: str

    def resolve(self, num_layers: int) -> int:
        value = math.floor(num_layers * self.fraction) + self.offset
        if not 0 <= value <= num_layers:
            raise ValueError(f"{self.text} is layer {value}, outside a model of {num_layers} layers")
        return value


LAST_LAYER = ByDepth(1.0, -1, "the last layer")
"""An inclusive end layer that means "every layer" (SPARC's 31 on a 32-layer model)."""
ALL_LAYERS_END = ByDepth(1.0, 0, "the model's depth")
"""An exclusive end layer that means "every layer" (PAI's ``range(start, 32)`` on a 32-layer model)."""


@dataclass(frozen=True)
class FamilyDefault:
    """A method's settings on model families that no paper gives values for (Qwen2-VL: neither SPARC's nor AvisC's
    nor PAI's authors published any). ``values`` replace what is family-specific in every preset (layer indices,
    relative to the depth with :class:`ByDepth`), applied after the preset's own values and rules; every setting of
    such a run that is not a flag records ``note`` in its source, so a result never passes for a published
    configuration."""

    families: tuple[str, ...]
    values: Mapping[str, Any] = field(default_factory=dict)
    note: str = "family default, not from a paper"


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
    family_defaults: tuple[FamilyDefault, ...] = ()

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
        for default in self.family_defaults:
            unknown = set(default.values) - params
            if unknown:
                raise ValueError(f"method {self.name}, default of {'|'.join(default.families)}: unknown parameters "
                                 f"{sorted(unknown)}")

    def family_default(self, family: str | None) -> FamilyDefault | None:
        """The default this method has for ``family`` when no paper gives values for it, else None."""
        return next((d for d in self.family_defaults if family in d.families), None)

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
        num_layers: int | None = None,
    ) -> Resolution:
        """The parameters (and protocol overrides) of this method under ``preset`` for a run; ``overrides`` are
        explicit parameter values (recorded as ``flag``); ``num_layers``, the model's depth, resolves depth-relative
        values (:class:`ByDepth`; without it they stay unresolved and the parameters are not validated). Raises
        ``ValueError`` for an unknown parameter or preset and for values the config rejects."""
        preset_name, chosen = self.preset(preset)
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for name, value in self.defaults().items():
            values[name], sources[name] = value, "default"
        layers = [(f"preset:{preset_name}", chosen.values)]
        layers += [(f"preset:{preset_name}[{rule.label()}]", rule.values) for rule in chosen.rules
                   if rule.matches(family, benchmark, task)]
        unpublished = self.family_default(family)
        if unpublished is not None:
            layers.append((f"family-default[{'|'.join(unpublished.families)}]", unpublished.values))
        for source, layer in layers:
            for name, value in layer.items():
                values[name], sources[name] = value, source
        if unpublished is not None:
            sources = {name: f"{source} ({unpublished.note})" for name, source in sources.items()}
        for name, value in (overrides or {}).items():
            if name not in self.param_names():
                raise ValueError(self.unknown_param_message(name))
            values[name], sources[name] = value, "flag"
        for name, value in values.items():
            if isinstance(value, ByDepth) and num_layers is not None:
                values[name] = value.resolve(num_layers)
                sources[name] += f" [{value.text} of {num_layers}]"
        params = {k: v for k, v in values.items() if k in self.param_names()}
        if not any(isinstance(v, ByDepth) for v in params.values()):
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
        """The config for ``params``; ``ValueError`` for a value it rejects, for any non-finite number
        (:func:`check_finite`) and for a depth-relative value not yet resolved."""
        check_finite(params)
        unresolved = [f"{k} ({v.text})" for k, v in params.items() if isinstance(v, ByDepth)]
        if unresolved:
            raise ValueError(f"method {self.name}: {', '.join(unresolved)} depend(s) on the model's depth: resolve "
                             "with num_layers")
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
                  task: str | None = None, num_layers: int | None = None, **params: Any) -> Any:
    """Build method ``name`` with ``preset`` resolved for the given run and ``params`` overriding it."""
    spec = get_method(name)
    resolution = spec.resolve(preset, family=family, benchmark=benchmark, task=task, overrides=params,
                              num_layers=num_layers)
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
