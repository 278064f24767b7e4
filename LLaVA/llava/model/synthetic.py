"""Random models of the supported families, built from configs (no download): ``tiny`` for tests and CPU
benchmarks, ``7b`` (Vicuna-7B with CLIP-L/336 or EVA-g shapes) for GPU timing without weights.

They come with an in-memory word-level tokenizer (BOS 1, EOS 2, 32000 ids) and the same image processors as the
real checkpoints, and go through the same :func:`~llava.model.builder.prepare_model` as loaded checkpoints, so every
code path that serves ``load_pretrained_model`` serves them too.

>>> tokenizer, model, processor, _ = synthetic_model("llava", "tiny")   # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import (
    BertTokenizerFast,
    CLIPVisionConfig,
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    InstructBlipProcessor,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    PreTrainedTokenizerFast,
)
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from llava.model.builder import prepare_model

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
VOCAB_SIZE = 32000
QFORMER_INIT = 0.2
"""Weight scale of a random Q-Former: at transformers' 0.02 its cross-attention averages the image away and a random
InstructBLIP answers the same whatever the image (tests of the image paths need answers that depend on it)."""
GRID_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
WORDS = (
    "a an the is are there in on of and to with this that image picture photo describe please detail detailed "
    "chat between curious user human artificial intelligence assistant gives helpful polite answers questions "
    "user's human's USER ASSISTANT yes no dog cat man woman table car tree sky . , ? : ' \n"
).split(" ")

TEXT_SHAPES = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=32, num_attention_heads=4, num_key_value_heads=4),
    "7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32),
}
CLIP_SHAPES = {
    "tiny": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, projection_dim=32),
    "7b": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, projection_dim=768),
}
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


def synthetic_num_layers(shape: str) -> int:
    """Decoder layers of a synthetic model of ``shape``."""
    if shape not in TEXT_SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(TEXT_SHAPES)}")
    return TEXT_SHAPES[shape]["num_hidden_layers"]


def toy_tokenizer(vocab_size: int = VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over a few prompt words plus filler ids; adds BOS like the Llama tokenizer."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for word in WORDS:
        vocab.setdefault(word, len(vocab))
    for index in range(len(vocab), vocab_size):
        vocab[f"w{index}"] = index
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def toy_qformer_tokenizer(vocab_size: int) -> BertTokenizerFast:
    """A small BERT-style tokenizer for the Q-Former's copy of the question."""
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}
    for word in WORDS:
        vocab.setdefault(word.lower(), len(vocab))
    for index in range(len(vocab), vocab_size):
        vocab[f"q{index}"] = index
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)  # as BERT's uncased tokenizer, saved or not
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return BertTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]")


def _text_config(shape: str, num_layers: int | None) -> LlamaConfig:
    values = dict(TEXT_SHAPES[shape], vocab_size=VOCAB_SIZE, max_position_embeddings=4096, rms_norm_eps=1e-5,
                  bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
    if num_layers is not None:
        values["num_hidden_layers"] = num_layers
    return LlamaConfig(**values)


def _build(model_class: type, config: Any, seed: int, dtype: torch.dtype, device: str | torch.device) -> torch.nn.Module:
    torch.manual_seed(seed)
    with torch.device(device):
        model = model_class(config)
    return model.to(dtype)


def synthetic_model(
    family: str = "llava",
    shape: str = "tiny",
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    num_layers: int | None = None,
    tokenizer: Any = None,
    attn_implementation: str | None = None,
) -> tuple[Any, torch.nn.Module, Any, int]:
    """A random ``llava`` / ``llava_next`` / ``instructblip`` model; returns what ``load_pretrained_model`` returns."""
    if shape not in TEXT_SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(TEXT_SHAPES)}")
    tokenizer = tokenizer or toy_tokenizer()
    text = _text_config(shape, num_layers)
    if family in ("llava", "llava_next"):
        vision = CLIPVisionConfig(**CLIP_SHAPES[shape], image_size=336, patch_size=14, hidden_act="quick_gelu")
        common = dict(vision_config=vision.to_dict(), text_config=text.to_dict(), image_token_index=VOCAB_SIZE,
                      projector_hidden_act="gelu", vision_feature_layer=-2, vision_feature_select_strategy="default")
        if family == "llava":
            model = _build(LlavaForConditionalGeneration, LlavaConfig(**common), seed, dtype, device)
            model.config.image_aspect_ratio = "pad"
        else:
            config = LlavaNextConfig(image_grid_pinpoints=GRID_PINPOINTS, **common)
            model = _build(LlavaNextForConditionalGeneration, config, seed, dtype, device)
            model.config.image_aspect_ratio = "anyres"
            model.config.mm_patch_merge_type = "spatial_unpad"
        processor: Any = CLIPImageProcessorPil(
            size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}, image_mean=CLIP_MEAN, image_std=CLIP_STD
        )
    elif family == "instructblip":
        shapes = BLIP_SHAPES[shape]
        qformer = dict(shapes["qformer"], encoder_hidden_size=shapes["vision"]["hidden_size"])
        config = InstructBlipConfig(  # the vision default init (std 1e-10, for loading) would erase the image
            vision_config=dict(shapes["vision"], image_size=224, patch_size=14, initializer_range=0.02),
            qformer_config=dict(qformer, initializer_range=QFORMER_INIT),
            text_config=dict(text.to_dict(), model_type="llama"),
            num_query_tokens=32,
        )
        model = _build(InstructBlipForConditionalGeneration, config, seed, dtype, device)
        with torch.no_grad():  # transformers starts the queries at zero (trained checkpoints replace them): 32 equal
            generator = torch.Generator().manual_seed(seed)  # queries would give 32 equal image tokens
            queries = torch.randn(model.query_tokens.shape, generator=generator) * config.initializer_range
            model.query_tokens.copy_(queries.to(model.query_tokens))
        processor = InstructBlipProcessor(
            image_processor=BlipImageProcessorPil(size={"height": 224, "width": 224}, image_mean=CLIP_MEAN, image_std=CLIP_STD),
            tokenizer=tokenizer,
            qformer_tokenizer=toy_qformer_tokenizer(qformer["vocab_size"]),
            num_query_tokens=32,
        )
    else:
        raise ValueError(f"unknown family {family!r}; expected llava, llava_next or instructblip")
    prepare_model(model, tokenizer, attn_implementation)
    return tokenizer, model, processor, 2048
