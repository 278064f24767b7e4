"""PAI as a plug-in of the decoding loop: the attention re-weighting on the hook point, the CFG contrast as a branch.

1. **Attention re-weighting** (``attention.py:77-95``): in layers ``start_layer .. end_layer - 1``, every head's
   pre-softmax score of the *last query* towards each image token, ``A`` (scaled, mask added), becomes
   ``A + alpha * |A|`` before the float32 softmax. At the prefill the last query is the last prompt token (its
   hidden state, hence the keys and values cached for it in later layers, change); at each decode step it is the new
   token. :class:`PaiHook` does it through :meth:`~llava.attention.AttentionHook.edit_scores`, on eager attention
   (in place, the official arithmetic) and on SDPA (as an additive bias of the last query's row).
2. **CFG against the text-only prompt** (``CFG.py``): the same prompt without the image (``[BOS] + before +
   after``, its own cache and positions) is decoded in lockstep: a branch of the loop, in the same batched forward
   as the image rows but in its own row group (it attends over its own ~50 positions, not the image prompt's 625).
   With ``s = log_softmax(image logits)`` and ``u = log_softmax(text logits)``, the final scores are
   ``gamma * (s - u) + u`` where ``s >= log(0.1) + max(s)``, ``-inf`` elsewhere.

The official flag toggling is kept (:meth:`~sparc.pai.config.PaiConfig.reweights_at`): with CFG the image rows'
prefill is not re-weighted, every later step is; the text rows never are; with ``gamma == 1`` nothing is re-weighted
and no text branch runs (``CFGLogits`` returns the log-probabilities as they are). Each row has its own image span,
so batches (left padding, LLaVA-NeXT's different span lengths) give every row the tokens it gets alone.

>>> generate(batch, GenerationConfig(), Pai(PaiConfig(use_attn=True, use_cfg=True, gamma=1.1)))   # doctest: +SKIP
"""
from __future__ import annotations

import torch

from llava.attention import AttentionHook
from llava.generation import DecodingContext, DecodingMethod
from llava.inputs import Prefill
from sparc.pai.config import PaiConfig

LOG_CUTOFF = float(torch.log(torch.tensor(0.1)))
"""``torch.log(torch.tensor(0.1))`` as ``CFG.py`` computes it (float32)."""


class PaiHook(AttentionHook):
    """``A + alpha * |A|`` on the last query's scores over each row's image span, in the configured layers, at the
    steps :meth:`~sparc.pai.config.PaiConfig.reweights_at` allows.

    ``image_start`` / ``image_len`` ``(B,)``: each row's span in cache positions (the prefill's padded coordinates).
    ``reweighted`` records, per forward of the image rows (prefill first), whether it was re-weighted.
    """

    def __init__(self, config: PaiConfig, image_start: torch.Tensor, image_len: torch.Tensor):
        self.config = config
        self.rows = image_start.shape[0]
        end = int((image_start + image_len).max()) if self.rows else 0
        columns = torch.arange(end, device=image_start.device)
        self.span = ((columns >= image_start[:, None]) & (columns < (image_start + image_len)[:, None]))[:, None, :]
        self.active = False
        self.reweighted: list[bool] = []

    def begin_forward(self, step: int) -> None:
        self.active = self.config.reweights_at(step)
        self.reweighted.append(self.active)

    def wants_scores(self, layer_idx: int) -> bool:
        return self.active and self.config.start_layer <= layer_idx < self.config.end_layer

    def edit_scores(self, layer_idx: int, scores: torch.Tensor) -> None:
        """``scores`` ``(B, H, S)``; the image columns of row ``b`` get ``|A| * alpha + A`` (``attention.py:91-94``)."""
        image = scores[: self.rows, :, : self.span.shape[-1]]
        image.add_(torch.where(self.span, image.abs() * self.config.alpha, 0.0))


class Pai(DecodingMethod):
    """PAI decoding (see the module docstring). With neither part on it is plain decoding (raw logits)."""

    def __init__(self, config: PaiConfig):
        self.config = config
        self.hook: PaiHook | None = None

    def begin(self, context: DecodingContext) -> None:
        self.hook = None
        if not self.config.use_attn:
            return
        self.config.validate(context.family.num_layers(context.model))
        prefill = context.prefill
        if bool((prefill.image_len == 0).any()):
            raise ValueError("PAI's attention re-weighting needs an image in every sequence")
        self.hook = PaiHook(self.config, prefill.image_start, prefill.image_len)

    def branches(self, context: DecodingContext) -> list[Prefill]:
        """The text-only prompt (``init_cfg_processor``: the ids without the image placeholder), when CFG runs."""
        return [context.batch.encode(text_only=True)] if self.config.contrasts else []

    def combine(self, step: int, logits: torch.Tensor, branch_logits: list[torch.Tensor]) -> torch.Tensor:
        """``CFGLogits.__call__`` (``CFG.py:28-58``) when ``use_cfg``, else the raw logits."""
        if not self.config.use_cfg:
            return logits
        scores = torch.log_softmax(logits, dim=-1)
        if not self.config.contrasts:
            return scores
        unconditional = torch.log_softmax(branch_logits[0], dim=-1)
        cutoff = LOG_CUTOFF + scores.amax(dim=-1, keepdim=True)
        guided = self.config.gamma * (scores - unconditional) + unconditional
        return guided.masked_fill(scores < cutoff, float("-inf"))
