"""Image loading and preprocessing, and prompt tokenisation with the image placeholder (upstream ``mm_utils``).

Three preprocessing modes, each bit-identical to upstream LLaVA with the same Pillow:

- ``pad``: expand the image to a square filled with the processor's mean colour, then CLIP resize + center-crop
  (LLaVA-1.5's ``image_aspect_ratio="pad"``, what SPARC uses);
- ``anyres``: LLaVA-NeXT's grid: the image resized onto the best grid resolution (aspect kept, black padding),
  cut into tiles, preceded by the whole image squashed to the base size;
- ``crop``: plain CLIP resize of the shortest side + center-crop (what AvisC's LLaVA scripts use).
"""
from __future__ import annotations

import ast
import math
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image, UnidentifiedImageError

from llava.constants import IMAGE_TOKEN_INDEX

ASPECT_MODES = ("pad", "anyres", "crop")


class ImageLoadError(ValueError):
    """An image that cannot be used; the message names the file and the reason."""


def load_image(path: str | Path, min_side: int = 2, max_pixels: int = 178_956_970) -> Image.Image:
    """Open ``path`` as RGB, with one clear error for missing, unreadable, truncated, tiny or huge files."""
    path = Path(path)
    if not path.is_file():
        raise ImageLoadError(f"{path}: no such image file")
    try:
        with warnings.catch_warnings():  # the size is checked here; Pillow's bomb warning would only be noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.width * image.height > max_pixels:
                    raise ImageLoadError(f"{path}: image too large ({image.width}x{image.height})")
                rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageLoadError(f"{path}: not a readable image ({e})") from e
    if min(rgb.size) < min_side:
        raise ImageLoadError(f"{path}: image too small ({rgb.width}x{rgb.height})")
    return rgb


def expand2square(image: Image.Image, background_color: tuple[int, ...]) -> Image.Image:
    """Pad ``image`` to a square, centred, with ``background_color``."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    result = Image.new(image.mode, (side, side), background_color)
    result.paste(image, ((side - width) // 2, (side - height) // 2))
    return result


def parse_grid_pinpoints(grid_pinpoints: Sequence[Sequence[int]] | str) -> list[tuple[int, int]]:
    """Grid resolutions as ``(width, height)`` pairs (configs store them as lists or as a string)."""
    if isinstance(grid_pinpoints, str):
        grid_pinpoints = ast.literal_eval(grid_pinpoints)
    return [(int(w), int(h)) for w, h in grid_pinpoints]


def select_best_resolution(original_size: tuple[int, int], possible_resolutions: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The grid resolution that keeps the most of the image's pixels, then wastes the least (upstream rule)."""
    original_width, original_height = original_size
    best_fit = possible_resolutions[0]
    max_effective, min_wasted = 0, math.inf
    for width, height in possible_resolutions:
        scale = min(width / original_width, height / original_height)
        downscaled_width, downscaled_height = int(original_width * scale), int(original_height * scale)
        effective = min(downscaled_width * downscaled_height, original_width * original_height)
        wasted = width * height - effective
        if effective > max_effective or (effective == max_effective and wasted < min_wasted):
            max_effective, min_wasted, best_fit = effective, wasted, (width, height)
    return best_fit


def resize_and_pad_image(image: Image.Image, target_resolution: tuple[int, int]) -> Image.Image:
    """Resize keeping the aspect ratio to fit ``target_resolution``, centred on a black canvas."""
    original_width, original_height = image.size
    target_width, target_height = target_resolution
    scale_w, scale_h = target_width / original_width, target_height / original_height
    if scale_w < scale_h:
        new_width, new_height = target_width, min(math.ceil(original_height * scale_w), target_height)
    else:
        new_width, new_height = min(math.ceil(original_width * scale_h), target_width), target_height
    canvas = Image.new("RGB", (target_width, target_height), (0, 0, 0))
    canvas.paste(image.resize((new_width, new_height)), ((target_width - new_width) // 2, (target_height - new_height) // 2))
    return canvas


def divide_to_patches(image: Image.Image, patch_size: int) -> list[Image.Image]:
    """Tiles of ``patch_size`` pixels, row by row."""
    width, height = image.size
    return [
        image.crop((left, top, left + patch_size, top + patch_size))
        for top in range(0, height, patch_size)
        for left in range(0, width, patch_size)
    ]


def get_anyres_image_grid_shape(
    image_size: tuple[int, int], grid_pinpoints: Sequence[Sequence[int]] | str, patch_size: int
) -> tuple[int, int]:
    """``(tiles across, tiles down)`` of the anyres grid chosen for an image of ``image_size`` (width, height)."""
    width, height = select_best_resolution(image_size, parse_grid_pinpoints(grid_pinpoints))
    return width // patch_size, height // patch_size


def unpad_image(tensor: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
    """Remove the rows or columns of a ``(C, H, W)`` feature map that correspond to anyres padding."""
    original_width, original_height = original_size
    current_height, current_width = tensor.shape[1:]
    if original_width / original_height > current_width / current_height:
        new_height = int(original_height * (current_width / original_width))
        padding = (current_height - new_height) // 2
        return tensor[:, padding : current_height - padding, :]
    new_width = int(original_width * (current_height / original_height))
    padding = (current_width - new_width) // 2
    return tensor[:, :, padding : current_width - padding]


def _pixel_values(image: Image.Image, image_processor: Any) -> torch.Tensor:
    return image_processor.preprocess(image, return_tensors="pt")["pixel_values"][0]


def process_anyres_image(image: Image.Image, image_processor: Any, grid_pinpoints: Sequence[Sequence[int]] | str) -> torch.Tensor:
    """``(1 + tiles, 3, S, S)``: the whole image squashed to the base size, then the tiles of the padded grid image."""
    best_resolution = select_best_resolution(image.size, parse_grid_pinpoints(grid_pinpoints))
    padded = resize_and_pad_image(image, best_resolution)
    tiles = divide_to_patches(padded, image_processor.crop_size["height"])
    base_side = image_processor.size["shortest_edge"]
    base = image.resize((base_side, base_side))
    return torch.stack([_pixel_values(patch, image_processor) for patch in [base, *tiles]])


def aspect_mode_of(model_cfg: Any) -> str:
    """The preprocessing mode named by a config's ``image_aspect_ratio`` (upstream: anything else means crop)."""
    mode = model_cfg if isinstance(model_cfg, str) or model_cfg is None else getattr(model_cfg, "image_aspect_ratio", None)
    if mode in (None, "square", "crop"):
        return "crop"
    if mode not in ASPECT_MODES:
        raise ValueError(f"unknown image aspect mode {mode!r}; expected one of {', '.join(ASPECT_MODES)}")
    return mode


def process_images(
    images: Sequence[Image.Image],
    image_processor: Any,
    model_cfg: Any,
    grid_pinpoints: Sequence[Sequence[int]] | str | None = None,
) -> list[torch.Tensor]:
    """Pixel tensors, one per image: ``(3, S, S)`` for ``pad`` / ``crop``, ``(1 + tiles, 3, S, S)`` for ``anyres``.

    ``model_cfg`` is a config with ``image_aspect_ratio`` (and ``image_grid_pinpoints`` for anyres) or a mode name.
    """
    mode = aspect_mode_of(model_cfg)
    if mode == "pad":
        background = tuple(int(x * 255) for x in image_processor.image_mean)
        return [_pixel_values(expand2square(image, background), image_processor) for image in images]
    if mode == "anyres":
        pinpoints = grid_pinpoints if grid_pinpoints is not None else getattr(model_cfg, "image_grid_pinpoints", None)
        if pinpoints is None:
            raise ValueError("anyres preprocessing needs image_grid_pinpoints")
        return [process_anyres_image(image, image_processor, pinpoints) for image in images]
    return [_pixel_values(image, image_processor) for image in images]


def tokenizer_image_token(
    prompt: str, tokenizer: Any, image_token_index: int = IMAGE_TOKEN_INDEX, return_tensors: str | None = None
) -> list[int] | torch.Tensor:
    """Token ids of ``prompt`` with ``image_token_index`` where ``<image>`` stands (each chunk tokenised alone)."""
    chunks = [tokenizer(chunk).input_ids for chunk in prompt.split("<image>")]
    input_ids: list[int] = []
    offset = 0
    if chunks and chunks[0] and chunks[0][0] == tokenizer.bos_token_id:
        offset = 1
        input_ids.append(chunks[0][0])
    for index, chunk in enumerate(chunks):
        if index > 0:
            input_ids.append(image_token_index)
        input_ids.extend(chunk[offset:])
    if return_tensors == "pt":
        return torch.tensor(input_ids, dtype=torch.long)
    if return_tensors is not None:
        raise ValueError(f"unsupported tensor type: {return_tensors}")
    return input_ids
