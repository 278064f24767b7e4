"""Image loading and preprocessing, and prompt tokenisation with the image placeholder (upstream ``mm_utils``).

Three preprocessing modes, each bit-identical to upstream LLaVA with the same Pillow:

- ``pad``: expand the image to a square filled with the processor's mean colour, then CLIP resize + center-crop
  (LLaVA-1.5's ``image_aspect_ratio="pad"``, what SPARC uses);
- ``anyres``: LLaVA-NeXT's grid: the image resized onto the best grid resolution (aspect kept, black padding),
  cut into tiles, preceded by the whole image squashed to the base size;
- ``crop``: plain CLIP resize of the shortest side + center-crop (what AvisC's LLaVA scripts use).

Every entry point that takes a PIL image first passes it through :func:`to_rgb`, the conversion :func:`load_image`
applies to files: an image of any mode gives the same tensors whether it was opened by ``load_image`` or by hand.
:func:`load_image` also refuses, from the file's header alone, an image whose preprocessing would build an image
over :data:`MAX_PREPROCESS_PIXELS` pixels (:class:`Preprocessing`).
"""
from __future__ import annotations

import ast
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from llava.constants import ASPECT_MODES, IMAGE_TOKEN_INDEX


# The largest image, in pixels, that loading and preprocessing one image may build: Pillow's default
# decompression-bomb threshold (``PIL.Image.MAX_IMAGE_PIXELS`` = 2**30 // 4 // 3, i.e. 256 MiB as 8-bit RGB).
# Loading and preprocessing peak at about 14 bytes per pixel of the largest image (measured at the bound: pad's square,
# its NumPy copy and the CLIP processor's PIL copy, 1.19 GB; crop 10 B/px; anyres 4 B/px), so an accepted image
# costs at most about 1.2 GB of memory.
MAX_PREPROCESS_PIXELS = 89_478_485
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")  # unsigned 16-bit samples: the range 0..65535 is declared
CONVERT_VIA = {"La": "LA"}  # modes Pillow cannot convert to RGB directly, and the mode it can go through
PREPROCESSING_MODES = (*ASPECT_MODES, "resize", "dynamic")
"""LLaVA's aspect modes, BLIP's fixed resize, Qwen2-VL's dynamic resolution (:class:`Preprocessing`)."""


class ImageLoadError(ValueError):
    """An image that cannot be used; the message names the file and the reason."""


def eight_bit_range(image: Image.Image) -> tuple[float, float] | None:
    """The value range ``(lo, hi)`` that :func:`to_rgb` maps linearly onto 0..255 for a high-bit-depth image, or
    ``None`` where Pillow's own 8-bit reading loses nothing (8-bit modes; ``I`` / ``F`` values all within 0..255).

    ``I;16*`` modes declare their range: 0..65535. ``I`` (32-bit signed) and ``F`` (32-bit float) declare none, so
    the values pick the smallest of these ranges that holds them all (non-finite values ignored):
    0..1 (``F`` only: the usual range of float images), 0..255 (Pillow's reading, unchanged), 0..65535 (16-bit
    samples: Pillow opens 16-bit PGM/PPM files as ``I``); otherwise the image's own range widened to include 0.
    """
    if image.mode in SIXTEEN_BIT_MODES:
        return 0.0, 65535.0
    if image.mode not in ("I", "F"):
        return None
    values = np.asarray(image)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    lo, hi = float(values.min()), float(values.max())
    if lo >= 0 and image.mode == "F" and hi <= 1:
        return 0.0, 1.0
    if lo >= 0 and hi <= 255:
        return None
    if lo >= 0 and hi <= 65535:
        return 0.0, 65535.0
    return min(lo, 0.0), max(hi, 0.0)


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB: the one conversion every image goes through (files and the Python API alike).

    Pillow's ``convert("RGB")`` as upstream LLaVA (alpha and palette transparency dropped, CMYK by Pillow's
    formula), except that high-bit-depth images (``I;16*``, ``I``, ``F``) are first scaled linearly to 8 bits over
    :func:`eight_bit_range` (rounded to nearest; NaN and -inf give 0, +inf 255) where Pillow would clip them.
    The result carries no ``transparency`` colour key: transformers' processors would composite the keyed pixels
    onto white, which upstream's processor never did. A plain RGB image is returned as it is (no copy).
    """
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    value_range = eight_bit_range(image)
    if value_range is not None:
        lo, hi = value_range
        scaled = np.floor((np.asarray(image, dtype=np.float64) - lo) * 255.0 / (hi - lo) + 0.5)
        scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
        image = Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), "L")
    elif image.mode in CONVERT_VIA:
        image = image.convert(CONVERT_VIA[image.mode])
    with warnings.catch_warnings():  # the transparency is dropped on purpose (as upstream); the warning says only that
        warnings.filterwarnings("ignore", "Palette images with Transparency", UserWarning)
        rgb = image.convert("RGB")
    rgb.info.pop("transparency", None)
    return rgb


def clip_resize_size(image_size: tuple[int, int], shortest_edge: int) -> tuple[int, int]:
    """``(width, height)`` after the CLIP processor's resize of the shortest side to ``shortest_edge`` (the long
    side scaled and truncated, as ``transformers.image_transforms.get_resize_output_image_size``)."""
    width, height = image_size
    short, long = min(width, height), max(width, height)
    new_long = int(shortest_edge * long / short)
    return (shortest_edge, new_long) if width <= height else (new_long, shortest_edge)


@dataclass(frozen=True)
class Preprocessing:
    """How images will be preprocessed, as far as the size of what it builds goes (see :meth:`largest_image`).

    ``mode``: ``pad`` / ``crop`` / ``anyres`` (LLaVA, :data:`ASPECT_MODES`), ``resize`` (straight to a fixed square:
    InstructBLIP's BLIP processor) or ``dynamic`` (Qwen2-VL: each image resized to sides that are multiples of
    ``size`` with ``min_pixels`` to ``max_pixels`` pixels); ``size``: the processor's CLIP shortest edge, the side of
    the ``resize`` square, or the ``dynamic`` factor (patch x merge, 28); ``grid_pinpoints``: the ``anyres``
    resolutions.
    """

    mode: str
    size: int = 336
    grid_pinpoints: tuple[tuple[int, int], ...] = ()
    min_pixels: int | None = None
    max_pixels: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in PREPROCESSING_MODES:
            raise ValueError(f"unknown preprocessing mode {self.mode!r}; expected one of {', '.join(PREPROCESSING_MODES)}")
        if self.mode == "anyres" and not self.grid_pinpoints:
            raise ValueError("anyres preprocessing needs image_grid_pinpoints")
        if self.mode == "dynamic":
            if not (self.min_pixels and self.max_pixels and 0 < self.min_pixels <= self.max_pixels):
                raise ValueError(f"dynamic preprocessing needs 0 < min_pixels <= max_pixels, got {self.min_pixels} "
                                 f"and {self.max_pixels}")
            if self.max_pixels < self.size * self.size:
                raise ValueError(f"max_pixels {self.max_pixels} is below one {self.size}x{self.size} token")

    @classmethod
    def of(cls, image_processor: Any, mode: str, grid_pinpoints: Sequence[Sequence[int]] | str | None = None) -> Preprocessing:
        """The preprocessing ``image_processor`` does in ``mode`` (an aspect mode, or ``resize`` for BLIP)."""
        size = image_processor.size
        side = max(size["height"], size["width"]) if mode == "resize" else size["shortest_edge"]
        pinpoints = tuple(parse_grid_pinpoints(grid_pinpoints)) if mode == "anyres" and grid_pinpoints else ()
        return cls(mode, int(side), pinpoints)

    def resized_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """``(width, height)`` of an image of ``image_size`` after ``dynamic`` resizing (transformers'
        ``smart_resize``: sides rounded to multiples of ``size``, scaled into the pixel bounds); ``ValueError`` for
        an aspect ratio above 200, which the processor refuses."""
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        width, height = image_size
        new_height, new_width = smart_resize(height, width, self.size, self.min_pixels, self.max_pixels)
        return new_width, new_height

    def largest_image(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """``(width, height)`` of the largest image that loading and preprocessing an image of ``image_size``
        builds: the decoded image; pad's square (of side ``max(W, H)``); crop's shortest-side resize; anyres's
        best-resolution canvas; the processor's ``size x size`` outputs; dynamic's resized image."""
        width, height = image_size
        candidates = [(width, height)]
        if self.mode == "dynamic":
            candidates.append(self.resized_size(image_size))
            return max(candidates, key=lambda wh: wh[0] * wh[1])
        candidates.append((self.size, self.size))
        if self.mode == "pad":
            candidates.append((max(width, height),) * 2)
        elif self.mode == "crop":
            candidates.append(clip_resize_size(image_size, self.size))
        elif self.mode == "anyres":
            candidates.append(select_best_resolution(image_size, self.grid_pinpoints))
        return max(candidates, key=lambda wh: wh[0] * wh[1])


def check_image_size(
    path: str | Path,
    image_size: tuple[int, int],
    preprocessing: Preprocessing | None = None,
    min_side: int = 2,
    max_pixels: int = MAX_PREPROCESS_PIXELS,
) -> None:
    """Raise :class:`ImageLoadError` for an image too small, or whose preprocessing (``None``: decoding alone)
    would build an image of more than ``max_pixels`` pixels; the message names the file, its size and the bound."""
    width, height = image_size
    if min(width, height) < min_side:
        raise ImageLoadError(f"{path}: image too small ({width}x{height}; the shorter side must be at least {min_side})")
    try:
        big_w, big_h = preprocessing.largest_image(image_size) if preprocessing is not None else image_size
    except ValueError as e:  # an image the preprocessing refuses (Qwen2-VL: aspect ratio over 200)
        raise ImageLoadError(f"{path}: {width}x{height} image: {e}") from None
    if big_w * big_h > max_pixels:
        built = f", which {preprocessing.mode} preprocessing turns into a {big_w}x{big_h} image" if preprocessing else ""
        raise ImageLoadError(
            f"{path}: image too large ({width}x{height}{built}: {big_w * big_h:,} pixels, over the bound of "
            f"{max_pixels:,} pixels)"
        )


def load_image(
    path: str | Path,
    preprocessing: Preprocessing | None = None,
    min_side: int = 2,
    max_pixels: int = MAX_PREPROCESS_PIXELS,
) -> Image.Image:
    """Open ``path`` as RGB (:func:`to_rgb`), with one clear error for missing, unreadable, truncated, tiny or huge
    files. The size is checked from the header, before the pixels are decoded (:func:`check_image_size`): pass the
    run's ``preprocessing`` (``family.preprocessing(model, processor, aspect)``) to bound what it will build."""
    path = Path(path)
    try:
        exists = path.is_file()
    except OSError as e:  # a name the file system refuses (too long, ...): the sample's problem, not the run's
        raise ImageLoadError(f"{path}: cannot be opened ({e.strerror or e})") from None
    if not exists:
        raise ImageLoadError(f"{path}: no such image file")
    try:
        with warnings.catch_warnings():  # the size is checked here; Pillow's bomb warning would only be noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                check_image_size(path, image.size, preprocessing, min_side, max_pixels)
                rgb = to_rgb(image)
                return rgb.copy() if rgb is image else rgb  # a plain in-memory image, detached from the file
    except Image.DecompressionBombError as e:
        raise ImageLoadError(f"{path}: image too large: {e} (the bound is {max_pixels:,} pixels)") from e
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ImageLoadError(f"{path}: not a readable image ({e})") from e


def expand2square(image: Image.Image, background_color: tuple[int, ...]) -> Image.Image:
    """``image`` (through :func:`to_rgb`) padded to a square, centred, with the RGB ``background_color``."""
    image = to_rgb(image)
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


def fit_size(image_size: tuple[int, int], target_resolution: tuple[int, int]) -> tuple[int, int]:
    """``(width, height)`` of an image of ``image_size`` resized to fit ``target_resolution`` with its aspect ratio
    kept (the side that fits exactly, the other rounded up): what :func:`resize_and_pad_image` pastes."""
    original_width, original_height = image_size
    target_width, target_height = target_resolution
    scale_w, scale_h = target_width / original_width, target_height / original_height
    if scale_w < scale_h:
        return target_width, min(math.ceil(original_height * scale_w), target_height)
    return min(math.ceil(original_width * scale_h), target_width), target_height


def resize_and_pad_image(image: Image.Image, target_resolution: tuple[int, int]) -> Image.Image:
    """``image`` (through :func:`to_rgb`) resized keeping the aspect ratio to fit ``target_resolution``, centred
    on a black canvas."""
    image = to_rgb(image)
    target_width, target_height = target_resolution
    new_width, new_height = fit_size(image.size, target_resolution)
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


def unpad_window(feature_size: tuple[int, int], original_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(row0, rows, col0, cols)``: the part of a ``feature_size = (H, W)`` anyres feature map that holds the
    image of ``original_size = (width, height)`` rather than padding (upstream ``unpad_image``'s arithmetic; an
    odd remainder stays, and an extreme strip can keep 0 rows or columns)."""
    original_width, original_height = original_size
    current_height, current_width = feature_size
    if original_width / original_height > current_width / current_height:
        new_height = int(original_height * (current_width / original_width))
        padding = (current_height - new_height) // 2
        return padding, current_height - 2 * padding, 0, current_width
    new_width = int(original_width * (current_height / original_height))
    padding = (current_width - new_width) // 2
    return 0, current_height, padding, current_width - 2 * padding


def unpad_image(tensor: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
    """Remove the rows or columns of a ``(C, H, W)`` feature map that correspond to anyres padding."""
    row0, rows, col0, cols = unpad_window(tuple(tensor.shape[1:]), original_size)
    return tensor[:, row0 : row0 + rows, col0 : col0 + cols]


def _pixel_values(image: Image.Image, image_processor: Any) -> torch.Tensor:
    return image_processor.preprocess(image, return_tensors="pt")["pixel_values"][0]


def process_anyres_image(image: Image.Image, image_processor: Any, grid_pinpoints: Sequence[Sequence[int]] | str) -> torch.Tensor:
    """``(1 + tiles, 3, S, S)``: the whole image (through :func:`to_rgb`) squashed to the base size, then the tiles
    of the padded grid image."""
    image = to_rgb(image)
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
    Images of any mode go through :func:`to_rgb` first.
    """
    mode = aspect_mode_of(model_cfg)
    images = [to_rgb(image) for image in images]
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
