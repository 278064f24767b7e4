"""Random models of every registered family, built from configs (no download): ``tiny`` for tests and CPU
benchmarks, ``7b`` (the real models' shapes) for GPU timing without weights.

They come with an in-memory word-level tokenizer (:mod:`llava.model.toy_tokenizers`) and the same image processors
as the real checkpoints, and go through the same :func:`~llava.model.prepare.prepare_model` as loaded checkpoints, so
every code path that serves ``load_pretrained_model`` serves them too. Each family's shapes are data of its spec
(``llava.model.families``); the family builds the model (``ModelFamily.build_synthetic``).

>>> tokenizer, model, processor, _ = synthetic_model("qwen2_vl", "tiny")   # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any

import torch

from llava.model.families import get_family
from llava.model.prepare import prepare_model

CONTEXT_LENGTH = 2048


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
    """A random model of a registered ``family`` and ``shape``; returns what ``load_pretrained_model`` returns."""
    spec = get_family(family)
    spec.synthetic_num_layers(shape)  # a clear error for a shape the family does not have
    tokenizer, model, processor = spec.create().build_synthetic(shape, tokenizer, seed, dtype, device, num_layers)
    prepare_model(model, tokenizer, attn_implementation)
    return tokenizer, model, processor, CONTEXT_LENGTH
