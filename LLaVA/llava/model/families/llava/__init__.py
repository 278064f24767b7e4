"""LLaVA-1.5 and LLaVA-NeXT (1.6): the families SPARC and AvisC were published on (implementation: ``model``).

Checkpoints: the original releases (``liuhaotian/llava-v1.5-7b``, ``liuhaotian/llava-v1.6-vicuna-7b``: a
``config.json`` with ``mm_vision_tower``, converted on load) and ``llava-hf/*`` (``model_type`` ``llava`` /
``llava_next``). An original config is LLaVA-NeXT when it asks for ``anyres`` images or a ``spatial*`` merge.
"""
from __future__ import annotations

from typing import Any, Mapping

from llava.model.families import FamilySpec, register_family

TEXT_SHAPES = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=32, num_attention_heads=4, num_key_value_heads=4,
                 initializer_range=0.2),
    "7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32),
}
"""Vicuna-7B's decoder and a small one of the same depth (so the official layer numbers 20 and 31 exist), whose
weights are drawn ten times wider than transformers' default (std 0.2, as the golden tiny checkpoints'): at 0.02 its
attention is flat and its answers repeat one token, so SPARC selects nothing and a trial shows nothing."""
CLIP_SHAPES = {
    "tiny": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, projection_dim=32),
    "7b": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, projection_dim=768),
}
"""CLIP ViT-L/14 at 336 px and a small tower with the same 24x24 patch grid."""
SHAPES = {shape: {"num_layers": TEXT_SHAPES[shape]["num_hidden_layers"], "text": TEXT_SHAPES[shape],
                  "vision": CLIP_SHAPES[shape]} for shape in TEXT_SHAPES}


def is_original(raw: Mapping[str, Any]) -> bool:
    """An original LLaVA release config (the CLIP tower named, not built in)."""
    return "mm_vision_tower" in raw


def asks_for_anyres(raw: Mapping[str, Any]) -> bool:
    """An original config of LLaVA-NeXT: ``anyres`` images or a ``spatial*`` tile merge."""
    return raw.get("image_aspect_ratio") == "anyres" or str(raw.get("mm_patch_merge_type", "flat")).startswith("spatial")


LLAVA = register_family(FamilySpec(
    name="llava",
    display="LLaVA-1.5",
    implementation="llava.model.families.llava.model:LlavaFamily",
    model_types=("llava",),
    recognise=lambda raw: not asks_for_anyres(raw) if is_original(raw) else raw.get("model_type") == "llava",
    aliases=("llava",),
    shapes=SHAPES,
    image_aspects=("pad", "crop"),
    prompt_style="template",
    name_pattern=r"^(?=.*llava)(?!.*(1\.6|v16|next))(?=.*(1\.5|v15))",  # LLaVA-1.5, not -NeXT
))

LLAVA_NEXT = register_family(FamilySpec(
    name="llava_next",
    display="LLaVA-NeXT",
    implementation="llava.model.families.llava.model:LlavaNextFamily",
    model_types=("llava_next",),
    recognise=lambda raw: asks_for_anyres(raw) if is_original(raw) else raw.get("model_type") == "llava_next",
    aliases=("next", "llava_next"),
    shapes=SHAPES,
    image_aspects=("pad", "crop", "anyres"),
    prompt_style="template",
    name_pattern=r"^(?=.*llava)(?=.*(1\.6|v16|next))",
))
