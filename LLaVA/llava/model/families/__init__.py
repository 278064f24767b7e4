"""Model families by name: one registry of what each family is (the ``timm`` ``register_model`` idea).

A family is one package under ``llava/model/families/``: its ``__init__`` registers a light :class:`FamilySpec`
(names, how a checkpoint's ``config.json`` is recognised and how deep its decoder is, the synthetic shapes of
``tiny-*`` / ``7b-*``, the preprocessing modes and protocol settings it offers, how reports name it) and its
``model`` module holds the :class:`~llava.model.families.base.ModelFamily` that does the work (loading, prompts,
images to embeddings, positions, token geometry), imported on first use so that listing families needs no torch.
Every package here is found and registered when this module is imported: a new family is one new package.

>>> [spec.name for spec in list_families()][:3]
['llava', 'llava_next', 'instructblip']
>>> parse_synthetic_name("tiny-next"), parse_synthetic_name("7b-qwen2.5-vl"), parse_synthetic_name("./tiny")
(('tiny', 'llava_next'), ('7b', 'qwen2_5_vl'), None)
>>> get_family("qwen2_vl").display
'Qwen2-VL'
"""
from __future__ import annotations

import importlib
import json
import pkgutil
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

PROMPT_STYLES = ("template", "raw", "chat")
"""How a family builds its prompt: a LLaVA conversation template (``--conv-mode``), the raw question
(InstructBLIP), or the checkpoint's own chat template (Qwen2-VL)."""

SHAPES = ("tiny", "7b")
"""Synthetic model shapes: ``tiny`` for tests and CPU trials, ``7b`` (the real models' shapes) for GPU timing."""

DEFAULT_FAMILY = "llava"
"""The family of a bare synthetic name (``tiny``, ``7b``)."""


def default_num_layers(raw: Mapping[str, Any]) -> int:
    """Decoder depth from a ``config.json``: ``text_config.num_hidden_layers``, else the top-level value (original
    LLaVA and Qwen2-VL checkpoints keep the text settings at the top), else 32."""
    text = raw.get("text_config") or raw
    return int(text.get("num_hidden_layers", raw.get("num_hidden_layers", 32)))


@dataclass(frozen=True)
class FamilySpec:
    """One registered model family (light: no torch; see the module docstring).

    ``implementation``: ``"module:Class"`` of its :class:`~llava.model.families.base.ModelFamily`;
    ``model_types``: the ``config.json`` ``model_type`` values it loads; ``recognise``: a test of a raw config for
    checkpoints that ``model_types`` alone does not tell apart (original LLaVA releases); ``num_layers``: the decoder
    depth of a raw config; ``aliases``: the names ``tiny-<alias>`` / ``7b-<alias>`` accept (any case, ``-`` or
    ``_``); ``shapes``: per synthetic shape, at least ``num_layers`` and the values of :attr:`image_settings`;
    ``image_aspects``: the LLaVA preprocessing modes it can run (``--image-aspect``); ``image_settings``: the
    protocol fields only this family reads (Qwen2-VL's ``min_pixels`` / ``max_pixels``), whose checkpoint values
    :meth:`checkpoint_settings` reads; ``prompt_style``: :data:`PROMPT_STYLES`; ``own_preprocessing``: what it
    does to images when it has no ``image_aspects`` (for messages); ``name_pattern``: a regular
    expression that recognises the family in file and folder names (reports); ``display``: the papers' name.
    """

    name: str
    display: str
    implementation: str
    model_types: tuple[str, ...] = ()
    recognise: Callable[[Mapping[str, Any]], bool] | None = None
    num_layers: Callable[[Mapping[str, Any]], int] = default_num_layers
    aliases: tuple[str, ...] = ()
    shapes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    image_aspects: tuple[str, ...] = ()
    image_settings: tuple[str, ...] = ()
    prompt_style: str = "template"
    own_preprocessing: str = ""
    name_pattern: str = ""
    checkpoint_settings: Callable[[str], dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if self.prompt_style not in PROMPT_STYLES:
            raise ValueError(f"family {self.name}: prompt_style must be one of {', '.join(PROMPT_STYLES)}")
        unknown = set(self.shapes) - set(SHAPES)
        if unknown:
            raise ValueError(f"family {self.name}: unknown synthetic shapes {sorted(unknown)}")

    def matches(self, raw: Mapping[str, Any]) -> bool:
        """Whether a raw ``config.json`` is a checkpoint of this family."""
        if self.recognise is not None:
            return self.recognise(raw)
        return raw.get("model_type") in self.model_types

    def synthetic_settings(self, shape: str) -> dict[str, Any]:
        """What :meth:`checkpoint_settings` gives for a checkpoint, for the synthetic model of ``shape``."""
        return {name: self.shapes[shape][name] for name in self.image_settings}

    def synthetic_num_layers(self, shape: str) -> int:
        if shape not in self.shapes:
            raise ValueError(f"family {self.name} has no synthetic shape {shape!r}; its shapes: {', '.join(self.shapes)}")
        return int(self.shapes[shape]["num_layers"])

    def synthetic_names(self) -> list[str]:
        """The names that build this family's random models (``tiny-qwen2-vl``, ...), first alias per shape."""
        alias = self.aliases[0] if self.aliases else self.name
        return [f"{shape}-{alias}" for shape in self.shapes]

    def create(self) -> Any:
        """The family's :class:`~llava.model.families.base.ModelFamily` (imported on first use, one per process)."""
        return _implementation(self.implementation)


_REGISTRY: dict[str, FamilySpec] = {}


def register_family(spec: FamilySpec) -> FamilySpec:
    """Add ``spec`` to the registry (re-registering a name replaces it, so modules can be reloaded)."""
    _REGISTRY[spec.name] = spec
    return spec


def get_family(name: str) -> FamilySpec:
    """The registered family ``name``; ``ValueError`` lists the registered names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; registered: {', '.join(_REGISTRY)}") from None


def list_families() -> list[FamilySpec]:
    """Registered families, in registration order (the packages' alphabetical order, LLaVA first)."""
    return list(_REGISTRY.values())


def family_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def family_for_config(raw: Mapping[str, Any]) -> FamilySpec | None:
    """The family whose checkpoints look like this raw ``config.json``, or None."""
    return next((spec for spec in _REGISTRY.values() if spec.matches(raw)), None)


def family_of(model: Any) -> Any:
    """The :class:`~llava.model.families.base.ModelFamily` of a loaded model, from its config's ``model_type``."""
    model_type = model.config.model_type
    for spec in _REGISTRY.values():
        if model_type in spec.model_types:
            return spec.create()
    raise ValueError(f"unsupported model type {model_type!r}; supported: {', '.join(_REGISTRY)}")


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_")


SYNTHETIC_NAME = re.compile(r"^(?P<shape>[a-z0-9]+)(?:[-_:](?P<family>.+))?$", re.IGNORECASE)


def parse_synthetic_name(name: str) -> tuple[str, str] | None:
    """``(shape, family)`` for a random model name (``tiny``, ``7b``, ``tiny-next``, ``7b-instructblip``,
    ``tiny-qwen2.5-vl``, ...); None for anything else (a checkpoint path or hub id)."""
    match = SYNTHETIC_NAME.match(name.strip())
    if match is None or match.group("shape").lower() not in SHAPES:
        return None
    shape, alias = match.group("shape").lower(), match.group("family")
    if alias is None:
        return shape, DEFAULT_FAMILY
    wanted = _normalise(alias)
    for spec in _REGISTRY.values():
        if wanted in {_normalise(a) for a in (spec.name, *spec.aliases)} and shape in spec.shapes:
            return shape, spec.name
    return None


def synthetic_names() -> list[str]:
    """Every random model name a user can pass (for help texts)."""
    return ["tiny", "7b"] + [n for spec in _REGISTRY.values() for n in spec.synthetic_names()]


def recognise_family_name(text: str) -> FamilySpec | None:
    """The family a file or folder name names (``..._qwen2.5-vl-7b_...``): the first whose ``name_pattern`` is found
    in it, lower-cased (the patterns of the registered families exclude each other)."""
    lower = text.lower()
    return next((spec for spec in _REGISTRY.values() if spec.name_pattern and re.search(spec.name_pattern, lower)),
                None)


def read_json_file(model_path: str, filename: str) -> dict[str, Any] | None:
    """A JSON file of a local checkpoint folder or a hub id (None when there is none)."""
    path = Path(model_path) / filename
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    if Path(model_path).exists():
        return None
    try:
        from transformers.utils import cached_file  # a hub id: the file from the hub cache

        found = cached_file(model_path, filename, _raise_exceptions_for_missing_entries=False)
    except OSError:
        return None
    return json.loads(Path(found).read_text(encoding="utf-8")) if found else None


_INSTANCES: dict[str, Any] = {}


def _implementation(path: str) -> Any:
    if path not in _INSTANCES:
        module, _, attribute = path.partition(":")
        _INSTANCES[path] = getattr(importlib.import_module(module), attribute)()
    return _INSTANCES[path]


def _register_packages() -> None:
    """Import every family package beside this module (each registers its specs), LLaVA first."""
    names = sorted((info.name for info in pkgutil.iter_modules(__path__) if info.ispkg),
                   key=lambda name: (name != DEFAULT_FAMILY, name))
    for name in names:
        importlib.import_module(f"{__name__}.{name}")


_register_packages()
