"""InstructBLIP (Vicuna-7B), the third model of the AvisC paper (implementation: ``model``): the Hugging Face
checkpoints (``Salesforce/instructblip-vicuna-7b``, ``model_type`` ``instructblip``), no chat template, one fixed
224 px resize."""
from __future__ import annotations

from llava.model.families import FamilySpec, register_family
from llava.model.families.llava import TEXT_SHAPES

BLIP_SHAPES = {
    "tiny": dict(
        vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        qformer=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, vocab_size=200),
    ),
    "7b": dict(
        vision=dict(hidden_size=1408, intermediate_size=6144, num_hidden_layers=39, num_attention_heads=16),
        qformer=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, vocab_size=30523),
    ),
}
"""EVA ViT-g/14 with BERT-base Q-Former, and a small pair."""

INSTRUCTBLIP = register_family(FamilySpec(
    name="instructblip",
    display="InstructBLIP",
    implementation="llava.model.families.instructblip.model:InstructBlipFamily",
    model_types=("instructblip",),
    aliases=("instructblip",),
    shapes={shape: {"num_layers": TEXT_SHAPES[shape]["num_hidden_layers"], "text": TEXT_SHAPES[shape],
                    **BLIP_SHAPES[shape]} for shape in TEXT_SHAPES},
    prompt_style="raw",
    own_preprocessing="its own fixed 224 resize",
    name_pattern=r"instructblip",
))
