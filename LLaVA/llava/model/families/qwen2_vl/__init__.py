"""Qwen2-VL and Qwen2.5-VL (implementation: ``model``), on transformers' native classes.

Checkpoints in the Hub layout of ``Qwen/Qwen2-VL-7B-Instruct`` / ``Qwen/Qwen2.5-VL-7B-Instruct`` (``model_type``
``qwen2_vl`` / ``qwen2_5_vl``): the checkpoint's chat template builds the prompt, its image processor resizes each
image to its own grid between ``min_pixels`` and ``max_pixels`` (protocol values a run may override; the
checkpoint's values otherwise), and positions are 3-D (M-RoPE).
"""
from __future__ import annotations

from typing import Any

from llava.model.families import FamilySpec, read_json_file, register_family

QWEN_FAMILIES = ("qwen2_vl", "qwen2_5_vl")
"""The names this package registers (method presets give them their family defaults)."""
IMAGE_SETTINGS = ("min_pixels", "max_pixels")
"""The processor's bounds on an image's pixel count after resizing (each side a multiple of 28)."""

QWEN2_VL_7B = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                   num_key_value_heads=4, vocab_size=152064, rope_theta=1000000.0, mrope_section=[16, 24, 24],
                   initializer_range=0.02)
"""Qwen2-VL-7B's decoder (Qwen2.5-VL-7B's is the same)."""
TINY_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=8, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=1024, rope_theta=1000000.0, mrope_section=[2, 3, 3],
                 initializer_range=0.2)
"""A small decoder with grouped-query heads (4 over 2) and M-RoPE sections, weights of std 0.2, as the golden tiny
checkpoints (at transformers' 0.02 a random model's attention is flat: SPARC would select nothing)."""
VISION = {
    "qwen2_vl": {
        "tiny": dict(depth=2, embed_dim=32, num_heads=2, mlp_ratio=2),
        "7b": dict(depth=32, embed_dim=1280, num_heads=16, mlp_ratio=4),
    },
    "qwen2_5_vl": {
        "tiny": dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, window_size=56,
                     fullatt_block_indexes=[1]),
        "7b": dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, window_size=112,
                   fullatt_block_indexes=[7, 15, 23, 31]),
    },
}
"""The vision towers (patch 14, temporal patch 2, 2x2 merge): Qwen2-VL's ViT-675M / Qwen2.5-VL's windowed ViT, and
small ones."""
PIXELS = {"tiny": dict(min_pixels=3136, max_pixels=50176), "7b": dict(min_pixels=3136, max_pixels=12845056)}
"""The processors' bounds: the released checkpoints' (4 to 16384 image tokens), and the tiny ones' (4 to 64)."""


def shapes(family: str) -> dict[str, dict[str, Any]]:
    text = {"tiny": TINY_TEXT, "7b": QWEN2_VL_7B}
    return {shape: {"num_layers": text[shape]["num_hidden_layers"], "text": text[shape],
                    "vision": VISION[family][shape], **PIXELS[shape]} for shape in text}


def checkpoint_pixels(model_path: str) -> dict[str, Any]:
    """``min_pixels`` / ``max_pixels`` of a checkpoint's ``preprocessor_config.json`` (``size.shortest_edge`` /
    ``longest_edge`` in transformers 5, ``min_pixels`` / ``max_pixels`` in older files); the processor's defaults
    when the file has neither."""
    config = read_json_file(model_path, "preprocessor_config.json") or {}
    size = config.get("size") or {}
    found = {"min_pixels": size.get("shortest_edge") or size.get("min_pixels") or config.get("min_pixels"),
             "max_pixels": size.get("longest_edge") or size.get("max_pixels") or config.get("max_pixels")}
    return {name: int(value or PIXELS["7b"][name]) for name, value in found.items()}


QWEN2_VL = register_family(FamilySpec(
    name="qwen2_vl",
    display="Qwen2-VL",
    implementation="llava.model.families.qwen2_vl.model:Qwen2VLFamily",
    model_types=("qwen2_vl",),
    aliases=("qwen2-vl", "qwen2_vl"),
    shapes=shapes("qwen2_vl"),
    image_settings=IMAGE_SETTINGS,
    prompt_style="chat",
    own_preprocessing="its own resize of each image to its own grid (--min-pixels, --max-pixels)",
    name_pattern=r"qwen2[-_]?vl",
    checkpoint_settings=checkpoint_pixels,
))

QWEN2_5_VL = register_family(FamilySpec(
    name="qwen2_5_vl",
    display="Qwen2.5-VL",
    implementation="llava.model.families.qwen2_vl.model:Qwen25VLFamily",
    model_types=("qwen2_5_vl",),
    aliases=("qwen2.5-vl", "qwen2_5_vl", "qwen25-vl"),
    shapes=shapes("qwen2_5_vl"),
    image_settings=IMAGE_SETTINGS,
    prompt_style="chat",
    own_preprocessing="its own resize of each image to its own grid (--min-pixels, --max-pixels)",
    name_pattern=r"qwen2[._-]?5[-_]?vl",
    checkpoint_settings=checkpoint_pixels,
))
