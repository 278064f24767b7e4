"""``load_pretrained_model``: original LLaVA checkpoints, ``llava-hf/*`` checkpoints and InstructBLIP on
transformers' native classes.

Original checkpoints (``liuhaotian/llava-v1.5-7b``, ``liuhaotian/llava-v1.6-vicuna-7b`` or a local folder in that
layout) are converted on load: their config becomes a ``LlavaConfig`` / ``LlavaNextConfig``, their keys are renamed
(``model.mm_projector.0/2`` -> projector ``linear_1/2``, ``model.*`` -> language model), and the CLIP tower named by
``mm_vision_tower`` is loaded from its own folder or hub id. The 32000-row ``lm_head`` is kept as it is: prompts are
embedded by the family (``llava.model.families``), never through an ``<image>`` vocabulary id.
"""
from __future__ import annotations

import json
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import transformers
from transformers import (
    AutoTokenizer,
    CLIPVisionConfig,
    CLIPVisionModel,
    InstructBlipForConditionalGeneration,
    InstructBlipProcessor,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
)
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.utils import cached_file

from llava.attention import hooked_name
from llava.constants import DTYPE_NAMES
from llava.model.families import family_of

ORIGINAL_KEY_MAPPING = {
    r"^model\.vision_tower\.vision_tower\.vision_model\.": "model.vision_tower.",
    r"^model\.mm_projector\.0\.": "model.multi_modal_projector.linear_1.",
    r"^model\.mm_projector\.2\.": "model.multi_modal_projector.linear_2.",
    r"^model\.(embed_tokens|layers|norm)\.": r"model.language_model.\1.",
}
LLAMA_KEYS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "hidden_act", "max_position_embeddings", "rms_norm_eps", "rope_theta",
    "rope_scaling", "attention_bias", "attention_dropout", "mlp_bias", "pretraining_tp", "bos_token_id",
    "eos_token_id", "pad_token_id", "tie_word_embeddings", "initializer_range",
)
ORIGINAL_SETTINGS = ("image_aspect_ratio", "mm_patch_merge_type", "mm_use_im_start_end", "image_grid_pinpoints")


class CheckpointError(ValueError):
    """A model path that is not a loadable checkpoint; the message says why."""


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' warnings about original configs (``llava_llama`` type, null ``rope_scaling``) and the
    vision tower keys that original checkpoints keep elsewhere; loading errors are checked explicitly instead."""
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        transformers.logging.set_verbosity(verbosity)


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


FAMILY_ASPECTS = {"llava": ("pad", "crop"), "llava_next": ("pad", "crop", "anyres"), "instructblip": ()}
"""The image preprocessing modes each family can run (anyres needs LLaVA-NeXT's grid; InstructBLIP has one fixed
224 resize)."""


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint is, read from its ``config.json`` alone (no weights): the family and the decoder depth."""

    family: str
    num_layers: int

    @property
    def image_aspects(self) -> tuple[str, ...]:
        return FAMILY_ASPECTS[self.family]

    def check_settings(self, image_aspect: str | None = None, conv_mode: str | None = None) -> None:
        """``ValueError`` for what this family cannot apply: a preprocessing it does not have, a conversation
        template for InstructBLIP (which takes the raw question)."""
        if image_aspect is not None and image_aspect not in self.image_aspects:
            has = ", ".join(self.image_aspects) or "only its own fixed 224 resize"
            article = "an" if self.family[0] in "aeiou" else "a"
            raise ValueError(f"--image-aspect {image_aspect}: {article} {self.family} model has {has}")
        if conv_mode is not None and self.family == "instructblip":
            raise ValueError("--conv-mode: InstructBLIP takes the raw question, it has no conversation template")


def inspect_checkpoint(model_path: str) -> CheckpointInfo:
    """The family and number of decoder layers of a checkpoint or synthetic model name, without loading weights, so
    that settings can be checked before a long model load. Raises :class:`CheckpointError`."""
    from llava.model.names import parse_synthetic_name
    from llava.model.synthetic import synthetic_num_layers

    synthetic = parse_synthetic_name(model_path)
    if synthetic is not None:
        shape, family = synthetic
        return CheckpointInfo(family or "llava", synthetic_num_layers(shape))
    raw = read_config(model_path)
    if "mm_vision_tower" in raw:
        anyres = raw.get("image_aspect_ratio") == "anyres" or str(raw.get("mm_patch_merge_type", "flat")).startswith("spatial")
        return CheckpointInfo("llava_next" if anyres else "llava", int(raw.get("num_hidden_layers", 32)))
    model_type = raw.get("model_type")
    if model_type not in ("llava", "llava_next", "instructblip"):
        raise CheckpointError(f"{model_path}: unsupported model (model_type {model_type!r})")
    text = raw.get("text_config") or {}
    return CheckpointInfo(model_type, int(text.get("num_hidden_layers", 32)))


def keep_leading_space(tokenizer: Any) -> Any:
    """Make a Llama tokenizer tokenise a text that starts with a space as transformers 4.x did (what the official code
    ran): "▁" prepended to every text, so " Please" is ``▁``, ``▁Please`` (29871, 3529), not ``▁Please``.

    transformers 5 rebuilds Llama tokenizers with ``Metaspace(prepend_scheme="always"|"first", split=False)``, which
    skips the prefix when the text already starts with a space; the checkpoints' own ``tokenizer.json`` is
    ``Prepend("▁") + Replace(" ", "▁")`` with no pre-tokenizer. Prompts whose image is followed by a space (PAI's and
    OPERA's templates) need it; the other templates tokenise the same either way. Other tokenizers are returned as
    they are.
    """
    from tokenizers import normalizers, pre_tokenizers

    backend = getattr(tokenizer, "backend_tokenizer", None)
    pre = getattr(backend, "pre_tokenizer", None)
    if (isinstance(pre, pre_tokenizers.Metaspace) and pre.prepend_scheme in ("always", "first") and not pre.split
            and backend.normalizer is None):
        backend.normalizer = normalizers.Sequence([normalizers.Prepend(pre.replacement),
                                                   normalizers.Replace(" ", pre.replacement)])
        backend.pre_tokenizer = None
    return tokenizer


def resolve_vision_tower(model_path: str, name: str) -> str:
    """``mm_vision_tower`` as a folder relative to the checkpoint, then to the working directory, else a hub id."""
    for base in (Path(model_path), Path.cwd()):
        candidate = base / name
        if base.exists() and (candidate / "config.json").is_file():
            return str(candidate)
    if Path(name).is_dir():
        return name
    return name


def original_llava_config(raw: dict[str, Any], tower_config: CLIPVisionConfig) -> LlavaConfig | LlavaNextConfig:
    """Convert an original LLaVA config to transformers' LLaVA / LLaVA-NeXT config."""
    projector = raw.get("mm_projector_type", "linear")
    if projector != "mlp2x_gelu":
        raise CheckpointError(f"unsupported mm_projector_type {projector!r} (only mlp2x_gelu, as LLaVA-1.5 and 1.6)")
    text = LlamaConfig(**{k: raw[k] for k in LLAMA_KEYS if raw.get(k) is not None})
    common = dict(
        vision_config=tower_config.to_dict(),
        text_config=text.to_dict(),
        projector_hidden_act="gelu",
        vision_feature_layer=raw.get("mm_vision_select_layer", -2),
        vision_feature_select_strategy="default" if raw.get("mm_vision_select_feature", "patch") == "patch" else "full",
        multimodal_projector_bias=True,
        tie_word_embeddings=raw.get("tie_word_embeddings", False),
        image_token_index=raw.get("vocab_size", 32000),
    )
    if raw.get("image_aspect_ratio") == "anyres" or str(raw.get("mm_patch_merge_type", "flat")).startswith("spatial"):
        config = LlavaNextConfig(image_grid_pinpoints=raw.get("image_grid_pinpoints"), **common)
    else:
        config = LlavaConfig(**common)
    for key in ORIGINAL_SETTINGS:
        if raw.get(key) is not None:
            setattr(config, key, raw[key])
    return config


def _check_loading(info: dict[str, list[str]], model_path: str, allowed_missing: str) -> bool:
    """Fail on keys that did not load (except ``allowed_missing``); return whether those were missing."""
    missing = info.get("missing_keys", [])
    unexpected = [k for k in info.get("unexpected_keys", []) if "rotary_emb.inv_freq" not in k]
    bad = [k for k in missing if not k.startswith(allowed_missing)]
    if bad or unexpected:
        raise CheckpointError(f"{model_path}: checkpoint keys do not match (missing {bad[:5]}, unexpected {unexpected[:5]})")
    return any(k.startswith(allowed_missing) for k in missing)


def load_original_llava(model_path: str, raw: dict[str, Any], dtype: torch.dtype, device_map: Any, vision_tower: str | None):
    tower_path = resolve_vision_tower(model_path, vision_tower or raw["mm_vision_tower"])
    config = original_llava_config(raw, CLIPVisionConfig.from_pretrained(tower_path))
    model_class = LlavaNextForConditionalGeneration if isinstance(config, LlavaNextConfig) else LlavaForConditionalGeneration
    with quiet_transformers():  # the tower lives outside the checkpoint: its keys are reported "missing"
        model, info = model_class.from_pretrained(
            model_path, config=config, key_mapping=ORIGINAL_KEY_MAPPING, dtype=dtype, device_map=device_map,
            output_loading_info=True,
        )
    if _check_loading(info, model_path, "model.vision_tower."):
        device = model.model.multi_modal_projector.linear_1.weight.device
        model.model.vision_tower = CLIPVisionModel.from_pretrained(tower_path, dtype=dtype).to(device)
        model.config.vision_config = model.model.vision_tower.config
    return model, CLIPImageProcessorPil.from_pretrained(tower_path)


def load_hf_llava(model_path: str, raw: dict[str, Any], dtype: torch.dtype, device_map: Any):
    model_class = LlavaNextForConditionalGeneration if raw["model_type"] == "llava_next" else LlavaForConditionalGeneration
    model = model_class.from_pretrained(model_path, dtype=dtype, device_map=device_map)
    return model, CLIPImageProcessorPil.from_pretrained(model_path)


def load_instructblip(model_path: str, dtype: torch.dtype, device_map: Any, tokenizer: Any):
    model = InstructBlipForConditionalGeneration.from_pretrained(model_path, dtype=dtype, device_map=device_map)
    processor = InstructBlipProcessor(
        image_processor=BlipImageProcessorPil.from_pretrained(model_path),
        tokenizer=tokenizer,
        qformer_tokenizer=AutoTokenizer.from_pretrained(model_path, subfolder="qformer_tokenizer"),
        num_query_tokens=model.config.num_query_tokens,
    )
    return model, processor


def attention_settings(model: Any, attn_implementation: str) -> dict[str, str]:
    """The hooked attention for the language model; eager for the vision side (CLIP, ViT, Q-Former), whose
    official versions (transformers 4.31 / 4.37) had no SDPA: it runs once per image, so exactness costs little."""
    settings = {name: "eager" for name in model.config.sub_configs if name != "text_config"}
    settings["text_config"] = hooked_name(attn_implementation)
    return settings


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
    overrides the config's ``mm_vision_tower`` (folder or hub id) for original checkpoints. ``attn_implementation``
    is ``"sdpa"`` or ``"eager"``, both through the hook point of ``llava.attention``; by default SDPA on a GPU (fast)
    and eager on the CPU (the official arithmetic, which the golden tests check token for token). For InstructBLIP the
    returned ``image_processor`` is an ``InstructBlipProcessor`` (image processor plus Q-Former tokenizer).
    """
    if model_base is not None:
        raise CheckpointError("model_base (LoRA or projector-only checkpoints) is not supported: merge the weights first")
    model_path = str(model_path)
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else (dtype or default_dtype())
    raw = read_config(model_path)
    with quiet_transformers():
        tokenizer = keep_leading_space(AutoTokenizer.from_pretrained(model_path))
    if "mm_vision_tower" in raw:
        model, image_processor = load_original_llava(model_path, raw, dtype, device_map, vision_tower)
    elif raw.get("model_type") in ("llava", "llava_next"):
        model, image_processor = load_hf_llava(model_path, raw, dtype, device_map)
    elif raw.get("model_type") == "instructblip":
        model, image_processor = load_instructblip(model_path, dtype, device_map, tokenizer)
    else:
        raise CheckpointError(f"{model_path}: unsupported model (model_type {raw.get('model_type')!r})")
    prepare_model(model, tokenizer, attn_implementation)
    return tokenizer, model, image_processor, raw.get("max_sequence_length", 2048)


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
    """The one model factory of the project (runners, benchmark, figures, ``llava.run``): a checkpoint (local folder
    or hub id: original LLaVA, ``llava-hf``, InstructBLIP) or a random model named like ``tiny``, ``tiny-next``,
    ``tiny-instructblip``, ``7b-llava`` (:mod:`llava.model.synthetic`), on ``device`` (default: a GPU when there is
    one) in ``dtype`` (default: float16 on a GPU, float32 on the CPU). Raises :class:`CheckpointError` with one line."""
    from llava.model.names import parse_synthetic_name
    from llava.model.synthetic import synthetic_model

    device = resolve_device(device)
    torch_dtype = dtype if isinstance(dtype, torch.dtype) else resolve_dtype(dtype, device)
    synthetic = parse_synthetic_name(model_path)
    if synthetic is not None:
        shape, family = synthetic
        tokenizer, model, processor, context_len = synthetic_model(
            family or "llava", shape, dtype=torch_dtype, device=device, attn_implementation=attn_implementation
        )
    else:
        tokenizer, model, processor, context_len = load_pretrained_model(
            model_path, device_map={"": str(device)}, dtype=torch_dtype, vision_tower=vision_tower,
            attn_implementation=attn_implementation,
        )
    return LoadedModel(tokenizer, model, processor, family_of(model), device, context_len, str(model_path),
                       synthetic is not None)


def prepare_model(model: torch.nn.Module, tokenizer: Any, attn_implementation: str | None = None) -> None:
    """Route the language model's attention through the hook point, set the real vocabulary size, eval mode.

    ``attn_implementation=None`` picks SDPA when the language model is on a GPU and eager on the CPU.
    """
    family = family_of(model)
    if attn_implementation is None:
        on_gpu = next(family.decoder(model).parameters()).device.type == "cuda"
        attn_implementation = "sdpa" if on_gpu else "eager"
    model.set_attn_implementation(attention_settings(model, attn_implementation))
    model.config.output_vocab_size = family.output_vocab_size(model, tokenizer)
    model.eval().requires_grad_(False)
