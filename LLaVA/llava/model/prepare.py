"""Making a loaded (or synthetic) model ready to decode: its language model's attention through the hook point,
its real vocabulary size, eval mode."""
from __future__ import annotations

from typing import Any

import torch

from llava.attention import hooked_name
from llava.model.families import family_of


def attention_settings(model: Any, attn_implementation: str) -> dict[str, str]:
    """The hooked attention for the language model; eager for the vision side (CLIP, ViT, Q-Former, Qwen2-VL's
    vision tower), whose official versions (transformers 4.31 / 4.37) had no SDPA: it runs once per image, so
    exactness costs little."""
    settings = {name: "eager" for name in model.config.sub_configs if name != "text_config"}
    settings["text_config"] = hooked_name(attn_implementation)
    return settings


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
