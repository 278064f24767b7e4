"""The one entry point every method decodes through: :func:`decode` picks the loop a method needs.

- a :class:`~llava.beam_search.BeamMethod` (OPERA) runs its own beam search;
- ``num_beams > 1`` without a method runs plain beam search (:func:`llava.beam_search.beam_search`);
- everything else runs the greedy / sampling loop (:func:`llava.generation.generate`), with the method's hook,
  branches and contrast.

>>> decode(batch, GenerationConfig(max_new_tokens=64), create_method("sparc"))       # doctest: +SKIP
"""
from __future__ import annotations

from typing import Sequence

import torch

from llava.batch import PromptBatch
from llava.beam_search import BeamMethod, beam_search
from llava.generation import DecodingMethod, GenerationConfig, GenerationOutput, generate


def decode(
    batch: PromptBatch,
    config: GenerationConfig,
    method: DecodingMethod | None = None,
    num_beams: int = 1,
    generators: Sequence[torch.Generator] | None = None,
) -> GenerationOutput:
    """Decode ``batch`` with ``method`` (plain decoding when ``None``): a beam-search method runs its own search
    (``num_beams`` 1 means its own width); ``num_beams > 1`` runs plain beam search (only without a method: the
    loop's methods keep per-row state that beams would have to reorder); otherwise the greedy / sampling loop, with
    one ``generators`` entry per row for sampling and the methods' randomness. ``ValueError`` for a method that
    cannot decode the way asked."""
    if isinstance(method, BeamMethod):
        return beam_search(batch, config, method.num_beams if num_beams == 1 else num_beams, method)
    if num_beams > 1:
        if method is not None and type(method) is not DecodingMethod:
            raise ValueError(f"{type(method).__name__} runs in the greedy / sampling loop; it has no beam search")
        return beam_search(batch, config, num_beams)
    return generate(batch, config, method, generators)
