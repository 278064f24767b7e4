"""What every model family does, as one interface (:class:`ModelFamily`); each family package implements it.

Nothing outside the family packages hard-codes 35, 576, 32 or a grid: methods read the image span that
:meth:`ModelFamily.embed` returns for each sequence, and the positions it builds. With the papers' templates these
spans equal the official offsets (LLaVA-1.5: positions 35..610; InstructBLIP: the 32 query embeddings at the start;
Qwen2-VL: the ``<|image_pad|>`` run).

>>> family = family_of(model)                                                      # doctest: +SKIP
>>> prompt = family.format_prompt(model, "Is there a dog?", "llava_v1")              # doctest: +SKIP
>>> pixels = family.pixel_values(model, processor, [image], family.preprocessing(model, processor))  # doctest: +SKIP
>>> sequences = family.embed(model, tokenizer, [prompt], pixels, processor)        # doctest: +SKIP
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Mapping, Sequence

import torch
from PIL import Image

from llava.geometry import TokenGeometry
from llava.inputs import Images, SequenceInputs
from llava.mm_utils import Preprocessing
from llava.model.families import FamilySpec, get_family


class ModelFamily(ABC):
    """Facts about one model family; stateless, every method takes the loaded model (or a checkpoint's files)."""

    name: ClassVar[str]

    @property
    def spec(self) -> FamilySpec:
        return get_family(self.name)

    # -- loading ---------------------------------------------------------------------------------------------

    def load_tokenizer(self, model_path: str) -> Any:
        """The checkpoint's tokenizer (``AutoTokenizer``)."""
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(model_path)

    @abstractmethod
    def load(self, model_path: str, raw: Mapping[str, Any], tokenizer: Any, dtype: torch.dtype, device_map: Any,
             vision_tower: str | None = None) -> tuple[torch.nn.Module, Any]:
        """``(model, image_processor)`` of a checkpoint whose ``config.json`` is ``raw``; raises
        :class:`~llava.model.builder.CheckpointError` (a ``ValueError``) for a checkpoint it cannot load."""

    @abstractmethod
    def build_synthetic(self, shape: str, tokenizer: Any, seed: int, dtype: torch.dtype, device: str | torch.device,
                        num_layers: int | None = None) -> tuple[Any, torch.nn.Module, Any]:
        """``(tokenizer, model, image_processor)`` of a random model of ``shape`` (the family spec's ``shapes``),
        with ``tokenizer`` when given (else the family's toy tokenizer); not yet prepared for decoding."""

    # -- the language model ----------------------------------------------------------------------------------

    @abstractmethod
    def decoder(self, model: Any) -> torch.nn.Module:
        """The text decoder that takes ``inputs_embeds`` and ``position_ids``."""

    @abstractmethod
    def lm_head(self, model: Any) -> torch.nn.Module:
        """The output projection to vocabulary logits."""

    def num_layers(self, model: Any) -> int:
        return self.decoder(model).config.num_hidden_layers

    def output_vocab_size(self, model: Any, tokenizer: Any) -> int | None:
        """How many logits are real vocabulary (``None``: all rows of ``lm_head``)."""
        return None

    def logits(self, model: Any, hidden: torch.Tensor) -> torch.Tensor:
        """Float32 logits of hidden states ``(..., D)``, limited to the model's real vocabulary."""
        logits = self.lm_head(model)(hidden).float()
        size = getattr(model.config, "output_vocab_size", None)
        return logits if size is None else logits[..., :size]

    def embed_tokens(self, model: Any, token_ids: torch.Tensor) -> torch.Tensor:
        embedding = self.decoder(model).embed_tokens
        return embedding(token_ids.to(embedding.weight.device))

    def eos_token_ids(self, model: Any, tokenizer: Any) -> tuple[int, ...]:
        """The ids that end an answer: the tokenizer's end-of-sequence id (the official LLaVA loops)."""
        eos = tokenizer.eos_token_id
        if eos is None:
            raise ValueError("the tokenizer has no eos_token_id")
        return tuple(eos) if isinstance(eos, (list, tuple)) else (eos,)

    # -- prompts and images ----------------------------------------------------------------------------------

    @abstractmethod
    def format_prompt(self, model: Any, question: str, conv_mode: str | None, tokenizer: Any = None) -> str:
        """The full prompt text for one question about one image (``conv_mode``: a LLaVA template, where the family
        has templates)."""

    @abstractmethod
    def preprocessing(self, model: Any, image_processor: Any, aspect: str | None = None,
                      **settings: Any) -> Preprocessing:
        """How :meth:`pixel_values` will preprocess images: ``aspect`` overrides the model's own mode where the
        family has several; ``settings`` are the family's own protocol values (the spec's ``image_settings``,
        ``None`` = the checkpoint's). Also what ``load_image(path, preprocessing)`` bounds before decoding."""

    @abstractmethod
    def pixel_values(self, model: Any, image_processor: Any, images: Sequence[Image.Image],
                     preprocessing: Preprocessing | None = None) -> Images:
        """Preprocess PIL images of any mode (``None``: :meth:`preprocessing` with the model's own settings) into
        image-space tensors (what VCD's noise is added to), one per image."""

    @abstractmethod
    def embed(
        self, model: Any, tokenizer: Any, prompts: Sequence[str], images: Images | None, image_processor: Any = None
    ) -> list[SequenceInputs]:
        """Prefill embeddings per sequence, image features in place, with their positions; ``images=None`` gives
        the text-only prompts (the image block removed: M3ID's and PAI's unconditioned branch)."""

    @abstractmethod
    def geometry(self, model: Any, image_processor: Any, image_size: tuple[int, int],
                 preprocessing: Preprocessing | None = None) -> TokenGeometry:
        """Where each token of the image span of an image of ``image_size`` (width, height) lies on the image, as
        :meth:`embed` lays the span out (for figures)."""


def check_no_settings(family: str, settings: Mapping[str, Any]) -> None:
    """``ValueError`` for image settings a family does not read (only ``None`` values are accepted)."""
    given = sorted(k for k, v in settings.items() if v is not None)
    if given:
        raise ValueError(f"a {family} model has no image setting {', '.join(given)}")


def build_random(model_class: type, config: Any, seed: int, dtype: torch.dtype, device: str | torch.device) -> torch.nn.Module:
    """A randomly initialised ``model_class(config)``, seeded, built on ``device`` in ``dtype``."""
    torch.manual_seed(seed)
    with torch.device(device):
        model = model_class(config)
    return model.to(dtype)
