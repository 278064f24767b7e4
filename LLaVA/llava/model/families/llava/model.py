"""LLaVA-1.5 and LLaVA-NeXT on transformers' ``LlavaForConditionalGeneration`` / ``LlavaNextForConditionalGeneration``.

- **Loading**: original checkpoints (``liuhaotian/*`` or a local folder in that layout) are converted on load: their
  config becomes a ``LlavaConfig`` / ``LlavaNextConfig``, their keys are renamed (``model.mm_projector.0/2`` ->
  projector ``linear_1/2``, ``model.*`` -> language model), and the CLIP tower named by ``mm_vision_tower`` is loaded
  from its own folder or hub id. The 32000-row ``lm_head`` is kept as it is: prompts are embedded here, never
  through an ``<image>`` vocabulary id. ``llava-hf/*`` checkpoints load as they are (logits cut to the base
  vocabulary).
- **Prompt**: a LLaVA conversation template with ``<image>`` spliced where the template puts it.
- **Images**: ``pad`` / ``crop`` / ``anyres`` (:mod:`llava.mm_utils`); the image span is the projected CLIP patch
  features (576 for CLIP-L/14 at 336 px), for LLaVA-NeXT the base features then the tiles' feature map, merged as
  :class:`ImageLayout` says (``image_newline`` tokens included, as the official SPARC code treats the span).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from llava.constants import DEFAULT_IM_END_TOKEN, DEFAULT_IM_START_TOKEN, DEFAULT_IMAGE_TOKEN, IMAGE_TOKEN_INDEX
from llava.conversation import get_conv_template
from llava.geometry import GridView, TokenGeometry, crop_geometry, pad_geometry, square_grid
from llava.inputs import Images, SequenceInputs
from llava.mm_utils import (
    Preprocessing,
    aspect_mode_of,
    fit_size,
    parse_grid_pinpoints,
    process_images,
    select_best_resolution,
    tokenizer_image_token,
    unpad_window,
)
from llava.model.families.base import ModelFamily, build_random, check_no_settings
from llava.model.families.llava import asks_for_anyres, is_original
from llava.model.loading import CheckpointError, check_loading, quiet_transformers
from llava.model.toy_tokenizers import CLIP_MEAN, CLIP_STD, VOCAB_SIZE, toy_tokenizer

MERGE_TYPES = ("flat", "spatial_unpad")
ORIGINAL_KEY_MAPPING = {
    r"^model\.vision_tower\.vision_tower\.vision_model\.": "model.vision_tower.",
    r"^model\.mm_projector\.0\.": "model.multi_modal_projector.linear_1.",
    r"^model\.mm_projector\.2\.": "model.multi_modal_projector.linear_2.",
    r"^model\.(embed_tokens|layers|norm)\.": r"model.language_model.\1.",
}
LLAMA_KEYS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "hidden_act", "max_position_embeddings", "rms_norm_eps", "rope_theta",
    "rope_scaling", "attention_bias", "attention_dropout", "mlp_bias", "pretraining_tp", "bos_token_id",
    "eos_token_id", "pad_token_id", "tie_word_embeddings", "initializer_range",
)
ORIGINAL_SETTINGS = ("image_aspect_ratio", "mm_patch_merge_type", "mm_use_im_start_end", "image_grid_pinpoints")
GRID_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
"""The anyres resolutions of the released LLaVA-NeXT checkpoints (the synthetic LLaVA-NeXT uses them too)."""


# ---------------------------------------------------------------------------------------------------------------
# the image span of LLaVA-NeXT


@dataclass(frozen=True)
class ImageLayout:
    """The image span of one LLaVA image, in order, as :meth:`LlavaFamily.merge_tiles` builds it (the geometry of
    the figures follows it too).

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


def layout_geometry(image_size: tuple[int, int], layout: ImageLayout, tile_size: int) -> TokenGeometry:
    """The ``anyres`` geometry of an :class:`ImageLayout` with tiles: the base grid over the whole (squashed)
    image, then the kept cells of the tiles' feature map mapped back through ``resize_and_pad_image`` (omitted when
    an extreme strip keeps no row or column of it)."""
    width, height = image_size
    side = layout.side
    whole = (0.0, 0.0, float(width), float(height))
    base = GridView(f"base image ({side}x{side}, squashed)", square_grid(side), whole)
    best_w, best_h = layout.best_resolution
    new_w, new_h = fit_size(image_size, layout.best_resolution)
    px, py = (best_w - new_w) // 2, (best_h - new_h) // 2  # where resize_and_pad_image pastes the image
    cell = tile_size / side
    row0, rows, col0, cols = layout.window
    box = ((col0 * cell - px) * width / new_w, (row0 * cell - py) * height / new_h,
           ((col0 + cols) * cell - px) * width / new_w, ((row0 + rows) * cell - py) * height / new_h)
    views = [base]
    if rows and cols:
        name = f"high-res grid ({rows}x{cols}, unpadded)" if layout.merge == "spatial_unpad" else f"tiles ({rows}x{cols})"
        views.append(GridView(name, layout.grid_tokens(), box))
    notes = {"best_resolution": [best_w, best_h], "tiles": list(layout.tiles),
             "feature_map": [layout.tiles[1] * side, layout.tiles[0] * side], "merge": layout.merge}
    if layout.merge == "spatial_unpad":
        notes.update(unpadded=[rows, cols], window=[row0, col0])
    return TokenGeometry("anyres", (width, height), layout.num_tokens, tuple(views), whole,
                         newline=layout.newline_tokens, notes=notes)


def anyres_geometry(
    image_size: tuple[int, int],
    grid_pinpoints: Sequence[Sequence[int]] | str,
    tile_size: int = 336,
    side: int = 24,
    merge: str = "spatial_unpad",
) -> TokenGeometry:
    """LLaVA-NeXT ``anyres``: base image tokens, then the tile grid (unpadded, one newline per row for
    ``spatial_unpad``; all tiles' full grids, tile by tile, for ``flat``), as :func:`image_layout` lays it out."""
    return layout_geometry(image_size, image_layout(image_size, side, tile_size, merge, grid_pinpoints), tile_size)


# ---------------------------------------------------------------------------------------------------------------
# loading


def keep_leading_space(tokenizer: Any) -> Any:
    """Make a Llama tokenizer tokenise a text that starts with a space as transformers 4.x did (what the official code
    ran): "▁" prepended to every text, so " Please" is ``▁``, ``▁Please`` (29871, 3529), not ``▁Please``.

    transformers 5 rebuilds Llama tokenizers with ``Metaspace(prepend_scheme="always"|"first", split=False)``, which
    skips the prefix when the text already starts with a space; the checkpoints' own ``tokenizer.json`` is
    ``Prepend("▁") + Replace(" ", "▁")`` with no pre-tokenizer. Prompts whose image is followed by a space (PAI's and
    OPERA's templates) need it; the other templates tokenise the same either way. Other tokenizers are returned as
    they are.
    """
    from tokenizers import normalizers, pre_tokenizers

    backend = getattr(tokenizer, "backend_tokenizer", None)
    pre = getattr(backend, "pre_tokenizer", None)
    if (isinstance(pre, pre_tokenizers.Metaspace) and pre.prepend_scheme in ("always", "first") and not pre.split
            and backend.normalizer is None):
        backend.normalizer = normalizers.Sequence([normalizers.Prepend(pre.replacement),
                                                   normalizers.Replace(" ", pre.replacement)])
        backend.pre_tokenizer = None
    return tokenizer


def resolve_vision_tower(model_path: str, name: str) -> str:
    """``mm_vision_tower`` as a folder relative to the checkpoint, then to the working directory, else a hub id."""
    for base in (Path(model_path), Path.cwd()):
        candidate = base / name
        if base.exists() and (candidate / "config.json").is_file():
            return str(candidate)
    return name


def original_llava_config(raw: Mapping[str, Any], tower_config: CLIPVisionConfig) -> LlavaConfig | LlavaNextConfig:
    """Convert an original LLaVA config to transformers' LLaVA / LLaVA-NeXT config."""
    projector = raw.get("mm_projector_type", "linear")
    if projector != "mlp2x_gelu":
        raise CheckpointError(f"unsupported mm_projector_type {projector!r} (only mlp2x_gelu, as LLaVA-1.5 and 1.6)")
    text = LlamaConfig(**{k: raw[k] for k in LLAMA_KEYS if raw.get(k) is not None})
    common = dict(
        vision_config=tower_config.to_dict(),
        text_config=text.to_dict(),
        projector_hidden_act="gelu",
        vision_feature_layer=raw.get("mm_vision_select_layer", -2),
        vision_feature_select_strategy="default" if raw.get("mm_vision_select_feature", "patch") == "patch" else "full",
        multimodal_projector_bias=True,
        tie_word_embeddings=raw.get("tie_word_embeddings", False),
        image_token_index=raw.get("vocab_size", 32000),
    )
    if asks_for_anyres(raw):
        config = LlavaNextConfig(image_grid_pinpoints=raw.get("image_grid_pinpoints"), **common)
    else:
        config = LlavaConfig(**common)
    for key in ORIGINAL_SETTINGS:
        if raw.get(key) is not None:
            setattr(config, key, raw[key])
    return config


def load_original_llava(model_path: str, raw: Mapping[str, Any], dtype: torch.dtype, device_map: Any,
                        vision_tower: str | None) -> tuple[torch.nn.Module, Any]:
    tower_path = resolve_vision_tower(model_path, vision_tower or raw["mm_vision_tower"])
    config = original_llava_config(raw, CLIPVisionConfig.from_pretrained(tower_path))
    model_class = LlavaNextForConditionalGeneration if isinstance(config, LlavaNextConfig) else LlavaForConditionalGeneration
    with quiet_transformers():  # the tower lives outside the checkpoint: its keys are reported "missing"
        model, info = model_class.from_pretrained(
            model_path, config=config, key_mapping=ORIGINAL_KEY_MAPPING, dtype=dtype, device_map=device_map,
            output_loading_info=True,
        )
    if check_loading(info, model_path, "model.vision_tower."):
        device = model.model.multi_modal_projector.linear_1.weight.device
        model.model.vision_tower = CLIPVisionModel.from_pretrained(tower_path, dtype=dtype).to(device)
        model.config.vision_config = model.model.vision_tower.config
    return model, CLIPImageProcessorPil.from_pretrained(tower_path)


class LlavaFamily(ModelFamily):
    """LLaVA-1.5: 576 projected CLIP patch features spliced at the ``<image>`` placeholder."""

    name = "llava"
    model_class: type = LlavaForConditionalGeneration
    default_conv_mode = "vicuna_v1"
    default_aspect = "pad"  # for configs without image_aspect_ratio (llava-hf)

    # -- loading ---------------------------------------------------------------------------------------------

    def load_tokenizer(self, model_path: str) -> Any:
        with quiet_transformers():
            return keep_leading_space(super().load_tokenizer(model_path))

    def load(self, model_path: str, raw: Mapping[str, Any], tokenizer: Any, dtype: torch.dtype, device_map: Any,
             vision_tower: str | None = None) -> tuple[torch.nn.Module, Any]:
        if is_original(raw):
            return load_original_llava(model_path, raw, dtype, device_map, vision_tower)
        model = self.model_class.from_pretrained(model_path, dtype=dtype, device_map=device_map)
        return model, CLIPImageProcessorPil.from_pretrained(model_path)

    def build_synthetic(self, shape: str, tokenizer: Any, seed: int, dtype: torch.dtype, device: str | torch.device,
                        num_layers: int | None = None) -> tuple[Any, torch.nn.Module, Any]:
        shapes = self.spec.shapes[shape]
        text = LlamaConfig(**{**shapes["text"], **({"num_hidden_layers": num_layers} if num_layers else {})},
                           vocab_size=VOCAB_SIZE, max_position_embeddings=4096, rms_norm_eps=1e-5, bos_token_id=1,
                           eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
        vision = CLIPVisionConfig(**shapes["vision"], image_size=336, patch_size=14, hidden_act="quick_gelu")
        common = dict(vision_config=vision.to_dict(), text_config=text.to_dict(), image_token_index=VOCAB_SIZE,
                      projector_hidden_act="gelu", vision_feature_layer=-2, vision_feature_select_strategy="default")
        model = build_random(self.model_class, self.synthetic_config(common), seed, dtype, device)
        self.set_synthetic_settings(model)
        processor = CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
                                          image_mean=CLIP_MEAN, image_std=CLIP_STD)
        return tokenizer or toy_tokenizer(), model, processor

    def synthetic_config(self, common: dict[str, Any]) -> Any:
        return LlavaConfig(**common)

    def set_synthetic_settings(self, model: Any) -> None:
        """What an original checkpoint's config says about images (the synthetic model is an original-style one)."""
        model.config.image_aspect_ratio = "pad"

    # -- the language model ----------------------------------------------------------------------------------

    def decoder(self, model: Any) -> torch.nn.Module:
        return model.model.language_model

    def lm_head(self, model: Any) -> torch.nn.Module:
        return model.lm_head

    def output_vocab_size(self, model: Any, tokenizer: Any) -> int | None:
        """The base vocabulary: ``llava-hf`` conversions append rows (``<image>``, padding to 64) that the original
        model never had; their logits are dropped so greedy decoding matches the original checkpoints."""
        return tokenizer.vocab_size

    # -- prompts and images ----------------------------------------------------------------------------------

    def format_prompt(self, model: Any, question: str, conv_mode: str | None, tokenizer: Any = None) -> str:
        image_token = DEFAULT_IMAGE_TOKEN
        if getattr(model.config, "mm_use_im_start_end", False):
            image_token = DEFAULT_IM_START_TOKEN + DEFAULT_IMAGE_TOKEN + DEFAULT_IM_END_TOKEN
        conv = get_conv_template(conv_mode or self.default_conv_mode)
        conv.append_message(conv.roles[0], conv.image_message(image_token, question))
        conv.append_message(conv.roles[1], None)
        return conv.get_prompt()

    def aspect_mode(self, model: Any, aspect: str | None) -> str:
        """``aspect`` when given, else the checkpoint's own preprocessing mode."""
        own = getattr(model.config, "image_aspect_ratio", self.default_aspect)
        return aspect_mode_of(aspect if aspect is not None else own)

    def preprocessing(self, model: Any, image_processor: Any, aspect: str | None = None,
                      **settings: Any) -> Preprocessing:
        check_no_settings(self.name, settings)
        return Preprocessing.of(image_processor, self.aspect_mode(model, aspect),
                                getattr(model.config, "image_grid_pinpoints", None))

    def pixel_values(self, model: Any, image_processor: Any, images: Sequence[Image.Image],
                     preprocessing: Preprocessing | None = None) -> Images:
        preprocessing = preprocessing or self.preprocessing(model, image_processor)
        pinpoints = preprocessing.grid_pinpoints or None
        return Images(process_images(images, image_processor, preprocessing.mode, pinpoints), [image.size for image in images])

    def merge_type(self, model: Any) -> str:
        """How tile features are merged: LLaVA-1.5 concatenates them as they come."""
        return "flat"

    def image_layout(self, model: Any, image_size: tuple[int, int], tiled: bool) -> ImageLayout:
        """The layout of the image span of an image of ``image_size`` (width, height), ``tiled`` for ``anyres``
        pixels (as :meth:`pixel_values` gives for the ``anyres`` mode): what :meth:`merge_tiles` builds."""
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

    def geometry(self, model: Any, image_processor: Any, image_size: tuple[int, int],
                 preprocessing: Preprocessing | None = None) -> TokenGeometry:
        mode = (preprocessing or self.preprocessing(model, image_processor)).mode
        size = int(model.config.vision_config.image_size)
        layout = self.image_layout(model, image_size, tiled=mode == "anyres")
        if mode == "anyres":
            return layout_geometry(image_size, layout, size)
        if mode == "pad":
            mean = getattr(image_processor, "image_mean", None) or (0.0, 0.0, 0.0)
            geometry = pad_geometry(image_size, layout.side, tuple(int(x * 255) for x in mean))
        else:
            geometry = crop_geometry(image_size, layout.side, size)
        # one tile: LLaVA-NeXT's spatial_unpad still closes the base features with a newline token
        return TokenGeometry(geometry.mode, geometry.image_size, layout.num_tokens, geometry.views, geometry.bounds,
                             layout.newline_tokens, geometry.canvas_origin, geometry.background, geometry.notes)


class LlavaNextFamily(LlavaFamily):
    """LLaVA-NeXT (1.6): anyres tiles, merged with ``spatial_unpad`` and ``image_newline`` as the original code does.

    The image span covers every spliced embedding, newline tokens included (as the official SPARC code treats it).
    """

    name = "llava_next"
    model_class = LlavaNextForConditionalGeneration
    default_aspect = "anyres"

    def merge_type(self, model: Any) -> str:
        """``mm_patch_merge_type``: ``spatial_unpad`` (the released checkpoints) or ``flat``."""
        return getattr(model.config, "mm_patch_merge_type", "spatial_unpad")

    def synthetic_config(self, common: dict[str, Any]) -> Any:
        return LlavaNextConfig(image_grid_pinpoints=GRID_PINPOINTS, **common)

    def set_synthetic_settings(self, model: Any) -> None:
        model.config.image_aspect_ratio = "anyres"
        model.config.mm_patch_merge_type = "spatial_unpad"

