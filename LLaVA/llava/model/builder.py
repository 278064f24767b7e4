"""The one model factory: checkpoints of every registered family (``load_pretrained_model``, upstream LLaVA's API)
and the random ``tiny-*`` / ``7b-*`` models (:func:`load_model` takes both), plus what can be known of a checkpoint
from its ``config.json`` alone (:func:`inspect_checkpoint`), so that settings are checked before a long load.

Which family loads a checkpoint is decided by its ``config.json`` (:func:`llava.model.families.family_for_config`);
the family does the loading (``ModelFamily.load``): original LLaVA releases converted on load, ``llava-hf/*``,
InstructBLIP, Qwen2-VL and Qwen2.5-VL on transformers' native classes.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers.utils import cached_file

from llava.constants import DTYPE_NAMES
from llava.model.families import FamilySpec, family_for_config, family_of, get_family, list_families, parse_synthetic_name
from llava.model.loading import CheckpointError
from llava.model.prepare import prepare_model
from llava.model.synthetic import CONTEXT_LENGTH, synthetic_model

__all__ = ["CheckpointError", "CheckpointInfo", "LoadedModel", "inspect_checkpoint", "load_model",
           "load_pretrained_model", "read_config", "resolve_device", "resolve_dtype"]

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}


def resolve_dtype(name: str | None, device: str | torch.device) -> torch.dtype:
    """The dtype called ``name``, else float16 on a GPU (as the official code) and float32 on the CPU."""
    if name:
        return DTYPES[name]
    return torch.float16 if torch.device(device).type == "cuda" else torch.float32


def default_dtype() -> torch.dtype:
    """float16 when a GPU is available (as the official code), float32 otherwise."""
    return resolve_dtype(None, "cuda" if torch.cuda.is_available() else "cpu")


def _not_found(model_path: str, reason: str) -> CheckpointError:
    """The one-line error for a model path that is neither a local checkpoint nor a reachable hub id."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(model_path)
    except HFValidationError:
        return CheckpointError(f"{model_path}: no such checkpoint folder, and not a hub id")
    first_line = reason.strip().splitlines()[0] if reason.strip() else "not found"
    return CheckpointError(f"{model_path}: no such checkpoint folder, and the hub could not provide it ({first_line})")


def read_config(model_path: str) -> dict[str, Any]:
    """The raw ``config.json`` of a local folder or hub id, with a one-line error when there is none."""
    path = Path(model_path)
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"{model_path}: not a model checkpoint (a file, not a folder)")
    if path.is_dir() and not (path / "config.json").is_file():
        raise CheckpointError(f"{model_path}: not a model checkpoint (no config.json)")
    try:
        config_file = cached_file(model_path, "config.json")
    except OSError as e:
        raise _not_found(model_path, str(e)) from None
    if config_file is None:
        raise _not_found(model_path, "no config.json")
    try:
        with open(config_file, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{model_path}: unreadable config.json ({e})") from None


def family_spec_of(model_path: str, raw: dict[str, Any]) -> FamilySpec:
    """The registered family of a checkpoint's raw config; :class:`CheckpointError` names the supported ones."""
    spec = family_for_config(raw)
    if spec is None:
        supported = ", ".join(s.display for s in list_families())
        raise CheckpointError(f"{model_path}: unsupported model (model_type {raw.get('model_type')!r}; supported: "
                              f"{supported})")
    return spec


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint is, read from its files alone (no weights): the family, the decoder depth, and the
    checkpoint's values of the family's own image settings (``settings``, e.g. Qwen2-VL's ``min_pixels``)."""

    family: str
    num_layers: int
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> FamilySpec:
        return get_family(self.family)

    @property
    def image_aspects(self) -> tuple[str, ...]:
        return self.spec.image_aspects

    def check_settings(self, image_aspect: str | None = None, conv_mode: str | None = None, **image_settings: Any) -> None:
        """``ValueError`` for what this family cannot apply: a preprocessing mode it does not have, a conversation
        template where it takes the raw question or its own chat template, an image setting of another family."""
        spec = self.spec
        article = "an" if spec.name[0] in "aeiou" else "a"
        if image_aspect is not None and image_aspect not in spec.image_aspects:
            has = ", ".join(spec.image_aspects) or f"only {spec.own_preprocessing}"
            raise ValueError(f"--image-aspect {image_aspect}: {article} {spec.name} model has {has}")
        if conv_mode is not None and spec.prompt_style != "template":
            how = "the raw question" if spec.prompt_style == "raw" else "its checkpoint's chat template"
            raise ValueError(f"--conv-mode: {spec.display} takes {how}, it has no conversation template")
        for name, value in image_settings.items():
            if value is not None and name not in spec.image_settings:
                owners = ", ".join(s.display for s in list_families() if name in s.image_settings)
                raise ValueError(f"--{name.replace('_', '-')}: {article} {spec.name} model does not read it (a setting "
                                 f"of {owners})")


def inspect_checkpoint(model_path: str) -> CheckpointInfo:
    """The family, decoder depth and image settings of a checkpoint or synthetic model name, without loading
    weights, so that settings can be checked before a long model load. Raises :class:`CheckpointError`."""
    synthetic = parse_synthetic_name(model_path)
    if synthetic is not None:
        shape, family = synthetic
        spec = get_family(family)
        return CheckpointInfo(family, spec.synthetic_num_layers(shape), spec.synthetic_settings(shape))
    raw = read_config(model_path)
    spec = family_spec_of(model_path, raw)
    settings = spec.checkpoint_settings(model_path) if spec.checkpoint_settings else {}
    return CheckpointInfo(spec.name, spec.num_layers(raw), settings)


def load_pretrained_model(
    model_path: str | os.PathLike,
    model_base: str | None = None,
    model_name: str | None = None,
    device_map: Any = "auto",
    dtype: torch.dtype | str | None = None,
    *,
    vision_tower: str | None = None,
    attn_implementation: str | None = None,
) -> tuple[Any, torch.nn.Module, Any, int]:
    """Load a checkpoint; return ``(tokenizer, model, image_processor, context_len)`` as upstream LLaVA does.

    ``model_name`` is accepted for upstream compatibility; the family is read from the config. ``vision_tower``
    overrides the config's ``mm_vision_tower`` (folder or hub id) for original LLaVA checkpoints.
    ``attn_implementation`` is ``"sdpa"`` or ``"eager"``, both through the hook point of ``llava.attention``; by
    default SDPA on a GPU (fast) and eager on the CPU (the official arithmetic, which the golden tests check token for
    token). The ``image_processor`` is the family's (InstructBLIP: an ``InstructBlipProcessor`` with the Q-Former
    tokenizer).
    """
    if model_base is not None:
        raise CheckpointError("model_base (LoRA or projector-only checkpoints) is not supported: merge the weights first")
    model_path = str(model_path)
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else (dtype or default_dtype())
    raw = read_config(model_path)
    family = family_spec_of(model_path, raw).create()
    try:
        tokenizer = family.load_tokenizer(model_path)
        model, image_processor = family.load(model_path, raw, tokenizer, dtype, device_map, vision_tower)
    except CheckpointError:
        raise
    except (OSError, ValueError, RuntimeError) as e:  # transformers' refusals (unsafe weights, missing files, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{model_path}: cannot be loaded ({first})") from None
    prepare_model(model, tokenizer, attn_implementation)
    context = raw.get("max_sequence_length") or (raw.get("text_config") or raw).get("max_position_embeddings")
    return tokenizer, model, image_processor, int(context or CONTEXT_LENGTH)


@dataclass
class LoadedModel:
    """A model ready to decode: what :func:`load_pretrained_model` returns, its family and device."""

    tokenizer: Any
    model: torch.nn.Module
    image_processor: Any
    family: Any
    device: torch.device
    context_len: int
    model_path: str
    synthetic: bool = False


def resolve_device(requested: str | torch.device | None, rank: int = 0) -> torch.device:
    """``requested``, else this process's GPU (``rank`` modulo the GPUs) when there is one, else the CPU. A CUDA
    device without CUDA is a :class:`CheckpointError`."""
    if requested:
        try:
            device = torch.device(requested)
        except RuntimeError:
            raise CheckpointError(f"unknown device {str(requested)!r} (cpu, cuda or cuda:N)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise CheckpointError(f"device {requested}: no CUDA device is available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", rank % torch.cuda.device_count())
    return torch.device("cpu")


def load_model(
    model_path: str,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    attn_implementation: str | None = None,
    vision_tower: str | None = None,
) -> LoadedModel:
    """The one model factory of the project (runners, benchmark, figures, ``llava.run``): a checkpoint of any
    registered family (local folder or hub id) or a random model named like ``tiny``, ``tiny-next``,
    ``tiny-qwen2-vl``, ``7b-instructblip`` (:func:`llava.model.families.synthetic_names`), on ``device`` (default:
    a GPU when there is one) in ``dtype`` (default: float16 on a GPU, float32 on the CPU). Raises
    :class:`CheckpointError` with one line."""
    device = resolve_device(device)
    torch_dtype = dtype if isinstance(dtype, torch.dtype) else resolve_dtype(dtype, device)
    synthetic = parse_synthetic_name(model_path)
    if synthetic is not None:
        shape, family = synthetic
        tokenizer, model, processor, context_len = synthetic_model(
            family, shape, dtype=torch_dtype, device=device, attn_implementation=attn_implementation
        )
    else:
        tokenizer, model, processor, context_len = load_pretrained_model(
            model_path, device_map={"": str(device)}, dtype=torch_dtype, vision_tower=vision_tower,
            attn_implementation=attn_implementation,
        )
    return LoadedModel(tokenizer, model, processor, family_of(model), device, context_len, str(model_path),
                       synthetic is not None)
