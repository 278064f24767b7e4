"""One registry of per-family facts: where the language model is, how a prompt is built, how images become
embeddings, and where the image sits in each sequence.

Nothing else in the project hard-codes 35, 576 or 32: methods read the image span that :meth:`ModelFamily.embed`
returns for each sequence. With the papers' templates these spans equal the official offsets (LLaVA-1.5: positions
35..610; InstructBLIP: the 32 query embeddings at the start).

>>> family = family_of(model)                                        # doctest: +SKIP
>>> prompt = family.format_prompt(model, "Is there a dog?", "llava_v1")  # doctest: +SKIP
>>> sequences = family.embed(model, tokenizer, [prompt], family.pixel_values(model, processor, [image]))  # doctest: +SKIP
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from PIL import Image

from llava.constants import DEFAULT_IM_END_TOKEN, DEFAULT_IM_START_TOKEN, DEFAULT_IMAGE_TOKEN, IMAGE_TOKEN_INDEX
from llava.conversation import get_conv_template
from llava.inputs import Images, SequenceInputs
from llava.mm_utils import (
    Preprocessing,
    aspect_mode_of,
    parse_grid_pinpoints,
    process_images,
    select_best_resolution,
    to_rgb,
    tokenizer_image_token,
    unpad_window,
)

MERGE_TYPES = ("flat", "spatial_unpad")


@dataclass(frozen=True)
class ImageLayout:
    """The image span of one LLaVA image, in order, as ``merge_tiles`` builds it (the figures draw the same).

    First the base image's ``side * side`` patch features (576 for CLIP-L/14 at 336 px). Then, for an ``anyres``
    image (``tiles = (across, down)``, cut from the ``best_resolution`` canvas), the ``down*side x across*side``
    feature map of the tiles cut to ``window = (row0, rows, col0, cols)``: with ``merge="flat"`` all of it, tile by
    tile; with ``"spatial_unpad"`` what ``unpad_image`` keeps, row by row, each row closed by one ``image_newline``
    token. Without tiles, ``"spatial_unpad"`` closes the base features with one newline token (upstream appends
    ``image_newline`` to a single-tile feature).
    """

    side: int
    merge: str = "flat"
    tiles: tuple[int, int] = (0, 0)
    best_resolution: tuple[int, int] | None = None
    window: tuple[int, int, int, int] = (0, 0, 0, 0)

    @property
    def base_tokens(self) -> int:
        return self.side * self.side

    @property
    def num_tiles(self) -> int:
        return self.tiles[0] * self.tiles[1]

    @property
    def newline_tokens(self) -> tuple[int, ...]:
        """Indices (in the image span) of the ``image_newline`` tokens."""
        if self.merge == "flat":
            return ()
        if not self.num_tiles:
            return (self.base_tokens,)
        _, rows, _, cols = self.window
        return tuple(self.base_tokens + r * (cols + 1) + cols for r in range(rows))

    @property
    def num_tokens(self) -> int:
        """The length of the image span."""
        _, rows, _, cols = self.window
        return self.base_tokens + rows * cols + len(self.newline_tokens)

    def grid_tokens(self) -> np.ndarray:
        """``(rows, cols)``: the index in the image span of each kept cell of the tiles' feature map (``window``)."""
        row0, rows, col0, cols = self.window
        r, c = np.meshgrid(np.arange(row0, row0 + rows), np.arange(col0, col0 + cols), indexing="ij")
        if self.merge == "flat":
            tile = (r // self.side) * self.tiles[0] + c // self.side
            return self.base_tokens * (1 + tile) + (r % self.side) * self.side + c % self.side
        return self.base_tokens + (r - row0) * (cols + 1) + (c - col0)


def image_layout(
    image_size: tuple[int, int],
    side: int,
    tile_size: int,
    merge: str = "flat",
    grid_pinpoints: Sequence[Sequence[int]] | str | None = None,
) -> ImageLayout:
    """The :class:`ImageLayout` of an image of ``image_size`` (width, height): ``side`` patches per tile side,
    ``tile_size`` pixels per tile side, ``grid_pinpoints`` for an ``anyres`` image (``None``: one tile, pad / crop).
    Upstream LLaVA-NeXT ``prepare_inputs_labels_for_multimodal`` (``get_anyres_image_grid_shape``, ``unpad_image``)."""
    if merge not in MERGE_TYPES:
        raise ValueError(f"unsupported mm_patch_merge_type {merge!r} ({' or '.join(MERGE_TYPES)})")
    if grid_pinpoints is None:
        return ImageLayout(side, merge)
    best = select_best_resolution(image_size, parse_grid_pinpoints(grid_pinpoints))
    tiles = (best[0] // tile_size, best[1] // tile_size)
    feature_size = (tiles[1] * side, tiles[0] * side)
    window = unpad_window(feature_size, image_size) if merge == "spatial_unpad" else (0, feature_size[0], 0, feature_size[1])
    return ImageLayout(side, merge, tiles, best, window)


class ModelFamily(ABC):
    """Facts about one model family; stateless, every method takes the loaded model."""

    name: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]
    default_conv_mode: ClassVar[str | None]

    @abstractmethod
    def decoder(self, model: Any) -> torch.nn.Module:
        """The Llama decoder (``LlamaModel``) that takes ``inputs_embeds``."""

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

    @abstractmethod
    def format_prompt(self, model: Any, question: str, conv_mode: str | None) -> str:
        """The full prompt text for one question about one image."""

    @abstractmethod
    def pixel_values(self, model: Any, image_processor: Any, images: Sequence[Image.Image], aspect: str | None = None) -> Images:
        """Preprocess PIL images of any mode (``aspect`` overrides the model's own mode where the family has several)."""

    @abstractmethod
    def preprocessing(self, model: Any, image_processor: Any, aspect: str | None = None) -> Preprocessing:
        """What :meth:`pixel_values` will do, for ``load_image(path, preprocessing)`` to bound it before decoding."""

    @abstractmethod
    def embed(
        self, model: Any, tokenizer: Any, prompts: Sequence[str], images: Images | None, image_processor: Any = None
    ) -> list[SequenceInputs]:
        """Prefill embeddings per sequence, image features in place; ``images=None`` gives text-only sequences."""


class LlavaFamily(ModelFamily):
    """LLaVA-1.5: 576 projected CLIP patch features spliced at the ``<image>`` placeholder."""

    name = "llava"
    model_types = ("llava",)
    default_conv_mode = "vicuna_v1"

    def decoder(self, model: Any) -> torch.nn.Module:
        return model.model.language_model

    def lm_head(self, model: Any) -> torch.nn.Module:
        return model.lm_head

    def output_vocab_size(self, model: Any, tokenizer: Any) -> int | None:
        """The base vocabulary: ``llava-hf`` conversions append rows (``<image>``, padding to 64) that the original
        model never had; their logits are dropped so greedy decoding matches the original checkpoints."""
        return tokenizer.vocab_size

    def format_prompt(self, model: Any, question: str, conv_mode: str | None) -> str:
        image_token = DEFAULT_IMAGE_TOKEN
        if getattr(model.config, "mm_use_im_start_end", False):
            image_token = DEFAULT_IM_START_TOKEN + DEFAULT_IMAGE_TOKEN + DEFAULT_IM_END_TOKEN
        conv = get_conv_template(conv_mode or self.default_conv_mode)
        conv.append_message(conv.roles[0], conv.image_message(image_token, question))
        conv.append_message(conv.roles[1], None)
        return conv.get_prompt()

    default_aspect = "pad"  # for configs without image_aspect_ratio (llava-hf)

    def aspect_mode(self, model: Any, aspect: str | None) -> str:
        """``aspect`` when given, else the checkpoint's own preprocessing mode."""
        own = getattr(model.config, "image_aspect_ratio", self.default_aspect)
        return aspect_mode_of(aspect if aspect is not None else own)

    def pixel_values(self, model: Any, image_processor: Any, images: Sequence[Image.Image], aspect: str | None = None) -> Images:
        mode = self.aspect_mode(model, aspect)
        pinpoints = getattr(model.config, "image_grid_pinpoints", None)
        return Images(process_images(images, image_processor, mode, pinpoints), [image.size for image in images])

    def preprocessing(self, model: Any, image_processor: Any, aspect: str | None = None) -> Preprocessing:
        return Preprocessing.of(image_processor, self.aspect_mode(model, aspect), getattr(model.config, "image_grid_pinpoints", None))

    def merge_type(self, model: Any) -> str:
        """How tile features are merged: LLaVA-1.5 concatenates them as they come."""
        return "flat"

    def image_layout(self, model: Any, image_size: tuple[int, int], tiled: bool) -> ImageLayout:
        """The layout of the image span of an image of ``image_size`` (width, height), ``tiled`` for ``anyres``
        pixels (as :meth:`pixel_values` gives for ``aspect_mode == "anyres"``): what :meth:`merge_tiles` builds."""
        vision = model.config.vision_config
        pinpoints = getattr(model.config, "image_grid_pinpoints", None) if tiled else None
        return image_layout(image_size, vision.image_size // vision.patch_size, vision.image_size, self.merge_type(model), pinpoints)

    def tile_features(self, model: Any, pixel_values: torch.Tensor) -> torch.Tensor:
        """Projected patch features ``(N, P, D)`` of ``N`` image tiles (CLIP layer and feature as configured)."""
        config = model.config
        tower = model.model.vision_tower
        first = next(tower.parameters())
        outputs = tower(pixel_values.to(first.device, first.dtype), output_hidden_states=True)
        features = outputs.hidden_states[config.vision_feature_layer]
        if config.vision_feature_select_strategy == "default":
            features = features[:, 1:]
        return model.model.multi_modal_projector(features)

    def image_features(self, model: Any, images: Images) -> list[torch.Tensor]:
        """One ``(N_i, D)`` feature block per image. Each image is encoded alone, as the official batch-1 code does,
        so its features do not depend on what else is in the batch."""
        return [
            self.merge_tiles(model, self.tile_features(model, p if p.dim() == 4 else p[None]), size)
            for p, size in zip(images.pixel_values, images.sizes)
        ]

    def merge_tiles(self, model: Any, features: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Tile features ``(1 + tiles, P, D)`` (base first) as one sequence of embeddings, laid out as
        :meth:`image_layout` says (upstream ``prepare_inputs_labels_for_multimodal``)."""
        layout = self.image_layout(model, image_size, tiled=features.shape[0] > 1)
        if features.shape[0] != 1 + layout.num_tiles:
            raise ValueError(f"{features.shape[0]} tiles of features for a {image_size[0]}x{image_size[1]} image "
                             f"whose grid has 1 + {layout.num_tiles}")
        if layout.merge == "flat":
            return features.flatten(0, 1)
        newline = model.model.image_newline.to(features.device, features.dtype)
        if not layout.num_tiles:
            return torch.cat([features[0], newline[None]])
        across, down = layout.tiles
        side = layout.side
        grid = features[1:].view(down, across, side, side, -1)
        grid = grid.permute(4, 0, 2, 1, 3).flatten(1, 2).flatten(2, 3)  # (D, rows, cols)
        row0, rows, col0, cols = layout.window
        grid = grid[:, row0 : row0 + rows, col0 : col0 + cols]  # unpad_image
        grid = torch.cat([grid, newline[:, None, None].expand(*grid.shape[:-1], 1)], dim=-1)
        return torch.cat([features[0], grid.flatten(1, 2).transpose(0, 1)])

    def embed(
        self, model: Any, tokenizer: Any, prompts: Sequence[str], images: Images | None, image_processor: Any = None
    ) -> list[SequenceInputs]:
        features = self.image_features(model, images) if images is not None else [None] * len(prompts)
        if len(features) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(features)} images")
        sequences = []
        for prompt, feature in zip(prompts, features):
            ids = tokenizer_image_token(prompt, tokenizer)
            if ids.count(IMAGE_TOKEN_INDEX) != 1:
                raise ValueError(f"the prompt must hold exactly one {DEFAULT_IMAGE_TOKEN}: {prompt!r}")
            start = ids.index(IMAGE_TOKEN_INDEX)
            before = self.embed_tokens(model, torch.tensor(ids[:start]))
            after = self.embed_tokens(model, torch.tensor(ids[start + 1 :]))
            if feature is None:  # text only: the placeholder removed (M3ID's unconditioned branch)
                sequences.append(SequenceInputs(torch.cat([before, after]), start, 0))
            else:
                feature = feature.to(before.device, before.dtype)
                sequences.append(SequenceInputs(torch.cat([before, feature, after]), start, feature.shape[0]))
        return sequences


class LlavaNextFamily(LlavaFamily):
    """LLaVA-NeXT (1.6): anyres tiles, merged with ``spatial_unpad`` and ``image_newline`` as the original code does.

    The image span covers every spliced embedding, newline tokens included (as the official SPARC code treats it).
    """

    name = "llava_next"
    model_types = ("llava_next",)
    default_aspect = "anyres"

    def merge_type(self, model: Any) -> str:
        """``mm_patch_merge_type``: ``spatial_unpad`` (the released checkpoints) or ``flat``."""
        return getattr(model.config, "mm_patch_merge_type", "spatial_unpad")


class InstructBlipFamily(ModelFamily):
    """InstructBLIP (Vicuna): 32 Q-Former query embeddings (after ``language_projection``) before the raw question.

    The question also goes to the Q-Former; there is no chat template (as LAVIS and the AvisC scripts).
    """

    name = "instructblip"
    model_types = ("instructblip",)
    default_conv_mode = None

    def decoder(self, model: Any) -> torch.nn.Module:
        return model.language_model.model

    def lm_head(self, model: Any) -> torch.nn.Module:
        return model.language_model.lm_head

    def format_prompt(self, model: Any, question: str, conv_mode: str | None) -> str:
        return question

    def pixel_values(self, model: Any, image_processor: Any, images: Sequence[Image.Image], aspect: str | None = None) -> Images:
        processor = getattr(image_processor, "image_processor", image_processor)
        pixels = processor.preprocess([to_rgb(image) for image in images], return_tensors="pt")["pixel_values"]
        return Images(list(pixels), [image.size for image in images])

    def preprocessing(self, model: Any, image_processor: Any, aspect: str | None = None) -> Preprocessing:
        return Preprocessing.of(getattr(image_processor, "image_processor", image_processor), "resize")

    def embed(
        self, model: Any, tokenizer: Any, prompts: Sequence[str], images: Images | None, image_processor: Any = None
    ) -> list[SequenceInputs]:
        token_embeds = [self.embed_tokens(model, torch.tensor(tokenizer(p).input_ids)) for p in prompts]
        if images is None:  # text only: the query embeddings dropped (M3ID's unconditioned branch)
            return [SequenceInputs(e, 0, 0) for e in token_embeds]
        qformer_tokenizer = getattr(image_processor, "qformer_tokenizer", None)
        if qformer_tokenizer is None:
            raise ValueError("InstructBLIP needs its processor (with qformer_tokenizer) as image_processor")
        qformer = qformer_tokenizer(list(prompts), padding=True, return_tensors="pt")
        device = model.query_tokens.device
        vision_dtype = next(model.vision_model.parameters()).dtype
        queries = model.get_image_features(
            torch.stack(images.pixel_values).to(device, vision_dtype),
            qformer_input_ids=qformer.input_ids.to(device),
            qformer_attention_mask=qformer.attention_mask.to(device),
            return_dict=True,
        ).pooler_output
        sequences = []
        for query, text in zip(queries, token_embeds):
            query = query.to(text.device, text.dtype)
            sequences.append(SequenceInputs(torch.cat([query, text]), 0, query.shape[0]))
        return sequences


FAMILIES: dict[str, ModelFamily] = {f.name: f for f in (LlavaFamily(), LlavaNextFamily(), InstructBlipFamily())}


def family_of(model: Any) -> ModelFamily:
    """The family of a loaded model, from its config's ``model_type``."""
    model_type = model.config.model_type
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    raise ValueError(f"unsupported model type {model_type!r}; supported: {', '.join(FAMILIES)}")
