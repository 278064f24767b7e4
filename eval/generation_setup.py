"""Turning runner arguments into decoding: prompts, images, per-sample generators, decoded answers.

Shared by ``eval.caption`` and ``eval.vqa`` so that both runners build batches the same way.
"""
from __future__ import annotations

import hashlib
from typing import Any, Sequence

import torch
from PIL import Image

from eval.cli import LoadedModel
from eval.datasets import Sample
from llava.generation import DecodingMethod, GenerationConfig, generate
from llava.inputs import PromptBatch


def sample_seed(seed: int, key: str) -> int:
    """A per-sample seed from the run seed and the sample id: the same draw whatever the batch, shard or resume."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "little") & (2**63 - 1)


def generators_for(samples: Sequence[Sample], seed: int, device: torch.device) -> list[torch.Generator]:
    return [torch.Generator(device=device).manual_seed(sample_seed(seed, s.key)) for s in samples]


def decode_batch(
    loaded: LoadedModel,
    samples: Sequence[Sample],
    images: Sequence[Image.Image],
    method: DecodingMethod,
    config: GenerationConfig,
    seed: int,
    conv_mode: str | None,
    aspect: str | None = None,
) -> list[dict[str, Any]]:
    """Generate one answer per sample; returns ``text``, ``num_tokens`` and ``finish_reason`` for each."""
    family, model = loaded.family, loaded.model
    prompts = [family.format_prompt(model, s.question, conv_mode) for s in samples]
    pixels = family.pixel_values(model, loaded.image_processor, images, aspect)
    batch = PromptBatch(model, loaded.tokenizer, loaded.image_processor, prompts, pixels)
    output = generate(batch, config, method, generators_for(samples, seed, loaded.device))
    answers = []
    for ids in output.sequences:
        finished = bool(ids) and ids[-1] in config.eos_token_ids
        answers.append({
            "text": loaded.tokenizer.decode(ids, skip_special_tokens=True).strip(),
            "num_tokens": len(ids),
            "finish_reason": "eos" if finished else "length",
        })
    return answers


def eos_ids(tokenizer: Any) -> tuple[int, ...]:
    """The tokenizer's end-of-sequence id(s)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos_token_id")
    return tuple(eos) if isinstance(eos, (list, tuple)) else (eos,)
