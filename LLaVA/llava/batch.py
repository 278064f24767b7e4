"""What a batch is made of (prompts, images, and the model, tokenizer and processor that embed them), so that a
method can build variants of it (a noised image, no image) with the same family code as the main input."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from llava.inputs import Images, Prefill
from llava.model.families import family_of


@dataclass
class PromptBatch:
    """Prompts (one per row) with their preprocessed ``images`` (or ``None``: text only).

    >>> batch = PromptBatch(model, tokenizer, processor, [prompt], images)        # doctest: +SKIP
    >>> batch.encode().inputs_embeds.shape, batch.encode(text_only=True).lengths   # doctest: +SKIP
    """

    model: Any
    tokenizer: Any
    image_processor: Any
    prompts: Sequence[str]
    images: Images | None

    def __post_init__(self) -> None:
        if self.images is not None and len(self.images.pixel_values) != len(self.prompts):
            raise ValueError(f"{len(self.prompts)} prompts but {len(self.images.pixel_values)} images")

    def encode(self, images: Images | None = None, text_only: bool = False) -> Prefill:
        """The left-padded prefill of this batch, with other ``images`` or none at all (``text_only``: the prompts
        without their image block, with their own positions)."""
        if text_only:
            images = None
        elif images is None:
            images = self.images
        family = family_of(self.model)
        return Prefill.from_sequences(family.embed(self.model, self.tokenizer, self.prompts, images, self.image_processor))
