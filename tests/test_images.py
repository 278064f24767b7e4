"""Images of every kind through every public image entry point (issues #14.2, #14.3, #16.3).

1. Every PIL mode gives, through every entry point and aspect mode, exactly the tensor of its RGB conversion (the one
   ``load_image`` applies), with the expected tensors computed by hand from the expected RGB pixels.
2. High-bit-depth images are scaled to 8 bits (the declared 16-bit range; the documented range rule for ``I`` / ``F``)
   instead of being clipped by Pillow.
3. An image whose preprocessing would build more than ``MAX_PREPROCESS_PIXELS`` pixels is refused from its header,
   before its pixels are decoded, for every preprocessing mode.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import CLIP_MEAN, CLIP_STD, clip_normalise, synthetic
from llava.mm_utils import (
    MAX_PREPROCESS_PIXELS,
    ImageLoadError,
    Preprocessing,
    clip_resize_size,
    expand2square,
    load_image,
    process_anyres_image,
    process_images,
    resize_and_pad_image,
    select_best_resolution,
    to_rgb,
)
from llava.model.families import family_of

PINPOINTS = [(336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)]
MEAN_RGB = (122, 116, 104)  # int(255 * CLIP mean), the pad colour
WIDTH, HEIGHT = 48, 32  # the example size

# ================================================================================================================
# images of every mode, with their RGB pixels worked out by hand

_rng = np.random.default_rng(0)
_GRAY = np.linspace(0, 255, WIDTH)[None, :].repeat(HEIGHT, 0).astype(np.uint8)
_ALPHA = _rng.integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8)
_RGB = _rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
_INDEX = (np.arange(WIDTH)[None, :] // 3 + np.arange(HEIGHT)[:, None] // 4) % 16
_PALETTE = _rng.integers(0, 256, (16, 3), dtype=np.uint8)
_U16 = np.round(np.linspace(0, 65535, WIDTH))[None, :].repeat(HEIGHT, 0).astype(np.uint16)
_U16[::5] = 60000  # some rows bright


def _palette_image(mode: str) -> Image.Image:
    data = _INDEX.astype(np.uint8) if mode == "P" else np.stack([_INDEX.astype(np.uint8), _ALPHA], -1)
    image = Image.fromarray(data, mode)
    image.putpalette(_PALETTE.ravel().tolist())
    return image


def _with_info(image: Image.Image, **info: Any) -> Image.Image:
    image.info.update(info)
    return image


def _u16(mode: str) -> Image.Image:
    image = Image.new(mode, (WIDTH, HEIGHT))
    image.frombytes(_U16.astype("<u2" if mode != "I;16B" else ">u2").tobytes())
    return image


def _f(values: np.ndarray) -> Image.Image:
    return Image.fromarray(values.astype(np.float32), "F")


_F_UNIT = np.linspace(0, 1, WIDTH)[None, :].repeat(HEIGHT, 0)
_F_WIDE = np.linspace(-1000, 3000, WIDTH)[None, :].repeat(HEIGHT, 0)
_F_WIDE[0, :3] = [np.nan, np.inf, -np.inf]

# mode name -> the image
IMAGES: dict[str, Callable[[], Image.Image]] = {
    "RGB": lambda: Image.fromarray(_RGB, "RGB"),
    "RGB-transparent": lambda: _with_info(Image.fromarray(_RGB, "RGB"), transparency=tuple(int(c) for c in _RGB[0, 0])),
    "1": lambda: Image.fromarray(_GRAY > 100),
    "L": lambda: Image.fromarray(_GRAY, "L"),
    "LA": lambda: Image.fromarray(np.stack([_GRAY, _ALPHA], -1), "LA"),
    "La": lambda: Image.fromarray(np.stack([_GRAY, _ALPHA], -1), "La"),
    "P": lambda: _palette_image("P"),
    "P-transparent-index": lambda: _with_info(_palette_image("P"), transparency=3),
    "P-transparent-bytes": lambda: _with_info(_palette_image("P"), transparency=bytes(range(0, 256, 16))),
    "PA": lambda: _palette_image("PA"),
    "RGBA": lambda: Image.fromarray(np.dstack([_RGB, _ALPHA]), "RGBA"),
    "RGBa": lambda: Image.fromarray(np.dstack([_RGB, _ALPHA]), "RGBa"),
    "RGBX": lambda: Image.fromarray(np.dstack([_RGB, _ALPHA]), "RGBX"),
    "CMYK": lambda: Image.fromarray(np.dstack([_RGB, _ALPHA]), "CMYK"),
    "YCbCr": lambda: Image.fromarray(_RGB, "YCbCr"),
    "LAB": lambda: Image.fromarray(_RGB, "LAB"),
    "HSV": lambda: Image.fromarray(_RGB, "HSV"),
    "I;16": lambda: _u16("I;16"),
    "I;16L": lambda: _u16("I;16L"),
    "I;16B": lambda: _u16("I;16B"),
    "I;16N": lambda: _u16("I;16N"),
    "I-8bit": lambda: Image.fromarray(_GRAY.astype(np.int32), "I"),
    "I-16bit": lambda: Image.fromarray(_U16.astype(np.int32), "I"),
    "I-signed": lambda: Image.fromarray(_U16.astype(np.int32) * 3 - 70000, "I"),
    "F-unit": lambda: _f(_F_UNIT),
    "F-8bit": lambda: _f(_GRAY + 0.25),
    "F-16bit": lambda: _f(_U16.astype(np.float64)),
    "F-wide": lambda: _f(_F_WIDE),
}


def _gray(values: np.ndarray) -> np.ndarray:
    return np.repeat(values.astype(np.uint8)[..., None], 3, axis=-1)


def _scaled(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The linear map of [lo, hi] onto 0..255, rounded half up; NaN and -inf 0, +inf 255 (the documented rule)."""
    with np.errstate(invalid="ignore"):
        out = np.floor((values.astype(np.float64) - lo) * 255 / (hi - lo) + 0.5)
    out = np.where(np.isnan(out), 0, out)
    return _gray(np.clip(out, 0, 255))


def expected_rgb(image: Image.Image) -> np.ndarray:
    """The RGB pixels of ``image`` by hand: 8-bit modes as Pillow's ``convert("RGB")`` reads them (upstream LLaVA's
    reading; done by hand where the rule is simple), high-bit-depth modes scaled over their range."""
    mode, data = image.mode, np.asarray(image)
    if mode == "RGB":
        return data
    if mode == "1":
        return _gray(data * 255)
    if mode == "L":
        return _gray(data)
    if mode == "LA":
        return _gray(data[..., 0])
    if mode in ("P", "PA"):
        palette = np.array(image.getpalette(), dtype=np.uint8).reshape(-1, 3)
        return palette[data if mode == "P" else data[..., 0]]  # transparency is dropped
    if mode in ("RGBA", "RGBX"):
        return data[..., :3]
    if mode == "La":  # premultiplied gray + alpha: the same pixels as premultiplied RGB + alpha
        return np.asarray(Image.fromarray(np.dstack([data[..., 0]] * 3 + [data[..., 1]]), "RGBa").convert("RGB"))
    if mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBa"):
        return np.asarray(image.convert("RGB"))  # Pillow's colour conversions, as upstream
    if mode.startswith("I;16"):
        return _scaled(data, 0, 65535)
    finite = data[np.isfinite(data)]
    lo, hi = finite.min(), finite.max()
    if mode == "F" and lo >= 0 and hi <= 1:
        return _scaled(data, 0, 1)
    if lo >= 0 and hi <= 255:
        return _gray(np.floor(data))  # Pillow's own reading (truncation), unchanged
    if lo >= 0 and hi <= 65535:
        return _scaled(data, 0, 65535)
    return _scaled(data, min(lo, 0), max(hi, 0))


def test_expected_rgb_hand_values():
    """A few pixels of the rule worked out by hand (so that ``expected_rgb`` itself is checked)."""
    assert expected_rgb(_u16("I;16"))[1, [0, 1, 47]].tolist() == [[0] * 3, [5] * 3, [255] * 3]  # 1394 * 255 / 65535 = 5.4
    assert expected_rgb(_u16("I;16"))[0, 0].tolist() == [233] * 3  # 60000 * 255 / 65535 = 233.46
    assert expected_rgb(_f(_F_UNIT))[0, [0, 24, 47]].tolist() == [[0] * 3, [130] * 3, [255] * 3]  # 24/47 * 255 = 130.2
    # F-wide: range [-1000, 3000]; NaN -> 0, +inf -> 255, -inf -> 0; -1000 + 4000 * 3/47 = -744.7 -> 16.3 -> 16
    assert expected_rgb(_f(_F_WIDE))[0, :4].tolist() == [[0] * 3, [255] * 3, [0] * 3, [16] * 3]
    # I-signed: 3 * v - 70000 spans [-70000, 126605] (no standard range holds it): its ends map to 0 and 255
    signed = expected_rgb(IMAGES["I-signed"]())
    assert signed[1, 0].tolist() == [0] * 3 and signed[1, -1].tolist() == [255] * 3


# ---------------------------------------------------------------------------------------------------------------
# the conversion itself, and load_image on files of each mode


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_to_rgb_gives_the_expected_pixels(name):
    image = IMAGES[name]()
    rgb = to_rgb(image)
    assert rgb.mode == "RGB" and rgb.size == (WIDTH, HEIGHT)
    np.testing.assert_array_equal(np.asarray(rgb), expected_rgb(image))


FILES = [  # (image, format): the file opens in the image's mode
    ("RGB-transparent", "PNG"), ("1", "PNG"), ("L", "PNG"), ("LA", "PNG"), ("P", "PNG"), ("P-transparent-index", "PNG"),
    ("P-transparent-bytes", "PNG"), ("PA", "TIFF"), ("RGBA", "PNG"), ("CMYK", "TIFF"), ("CMYK", "JPEG"),
    ("YCbCr", "TIFF"), ("LAB", "TIFF"), ("I;16", "PNG"), ("I;16", "TIFF"), ("I;16B", "TIFF"), ("I-signed", "TIFF"),
    ("I-16bit", "TIFF"), ("F-unit", "TIFF"), ("F-wide", "TIFF"), ("F-8bit", "TIFF"),
]


@pytest.mark.parametrize("name, fmt", FILES)
def test_load_image_reads_every_mode(tmp_path, name, fmt):
    image = IMAGES[name]()
    path = tmp_path / f"image.{fmt.lower()}"
    options = {"transparency": image.info["transparency"]} if "transparency" in image.info else {}
    image.save(path, fmt, **options)
    with Image.open(path) as opened:
        assert opened.mode == image.mode, "the file must hold the mode under test"
        expected = expected_rgb(opened)
    loaded = load_image(path)
    assert loaded.mode == "RGB" and loaded.size == (WIDTH, HEIGHT)
    np.testing.assert_array_equal(np.asarray(loaded), expected)
    # what the runners do next: the processor sees these pixels and nothing else (no colour key composited on white)
    rgb = Image.fromarray(expected, "RGB")
    torch.testing.assert_close(process_images([loaded], _clip(), "crop")[0].double(), crop_by_hand(rgb), rtol=0, atol=1e-5)


def _png16_gradient(path: Path) -> np.ndarray:
    """A 16-bit grayscale PNG, 40x24, left to right from 0 to 65535; returns the 8-bit gradient it stands for."""
    x = np.arange(40)
    Image.fromarray(np.round(x * 65535 / 39).astype(np.uint16)[None, :].repeat(24, 0)).save(path)
    return np.round(x * 255 / 39)[None, :].repeat(24, 0)


def test_16_bit_png_gradient_keeps_its_content(tmp_path):
    expected = _png16_gradient(tmp_path / "gradient.png")
    with Image.open(tmp_path / "gradient.png") as opened:
        assert opened.mode == "I;16"
    pixels = np.asarray(load_image(tmp_path / "gradient.png")).astype(float)
    assert np.array_equal(pixels[..., 0], expected) and np.array_equal(pixels[..., 0], pixels[..., 2])
    assert abs(pixels.mean() - 127.5) < 0.5  # not 99 % white, as Pillow's clipping gives
    assert (pixels == 255).mean() < 0.05


@pytest.mark.parametrize("maxval", [65535, 4095, 1023])
def test_16_bit_pgm_reads_as_the_png(tmp_path, maxval):
    """Pillow opens 16-bit PGM as mode ``I``, its samples scaled to 0..65535: the same 8-bit gradient."""
    x = np.arange(40)
    samples = np.round(x * maxval / 39).astype(">u2")[None, :].repeat(24, 0)
    (tmp_path / "g.pgm").write_bytes(f"P5\n40 24\n{maxval}\n".encode() + samples.tobytes())
    with Image.open(tmp_path / "g.pgm") as opened:
        assert opened.mode == "I"
    gray = np.asarray(load_image(tmp_path / "g.pgm"))[..., 0].astype(int)
    assert np.abs(gray - np.round(x * 255 / 39)[None, :]).max() <= 1  # the PGM's own rescaling rounds once more


# ================================================================================================================
# every public image entry point, every aspect mode


def pad_by_hand(rgb: Image.Image) -> torch.Tensor:
    side = max(rgb.size)
    canvas = Image.new("RGB", (side, side), MEAN_RGB)
    canvas.paste(rgb, ((side - rgb.width) // 2, (side - rgb.height) // 2))
    return clip_normalise(canvas.resize((336, 336), Image.BICUBIC))


def crop_by_hand(rgb: Image.Image) -> torch.Tensor:
    width, height = rgb.size
    size = (336, int(336 * height / width)) if width < height else (int(336 * width / height), 336)
    resized = rgb.resize(size, Image.BICUBIC)
    left, top = (size[0] - 336) // 2, (size[1] - 336) // 2
    return clip_normalise(resized.crop((left, top, left + 336, top + 336)))


def grid_canvas_by_hand(rgb: Image.Image, best: tuple[int, int]) -> Image.Image:
    width, height = rgb.size
    scale = min(best[0] / width, best[1] / height)
    new = (min(int(np.ceil(width * scale)), best[0]), min(int(np.ceil(height * scale)), best[1]))
    canvas = Image.new("RGB", best, (0, 0, 0))
    canvas.paste(rgb.resize(new), ((best[0] - new[0]) // 2, (best[1] - new[1]) // 2))
    return canvas


def anyres_by_hand(rgb: Image.Image) -> torch.Tensor:
    best = select_best_resolution(rgb.size, PINPOINTS)
    canvas = grid_canvas_by_hand(rgb, best)
    tiles = [canvas.crop((x, y, x + 336, y + 336)) for y in range(0, best[1], 336) for x in range(0, best[0], 336)]
    return torch.stack([clip_normalise(t) for t in [rgb.resize((336, 336), Image.BICUBIC), *tiles]])


def blip_by_hand(rgb: Image.Image) -> torch.Tensor:
    return clip_normalise(rgb.resize((224, 224), Image.BICUBIC))  # BLIP's processor: CLIP mean / std, bicubic


def _clip() -> Any:
    return synthetic("llava")[2]


def _pixels(family: str, aspect: str | None) -> Callable[[Image.Image], torch.Tensor]:
    def run(image: Image.Image) -> torch.Tensor:
        _, model, processor = synthetic(family)
        family_ = family_of(model)
        return family_.pixel_values(model, processor, [image], family_.preprocessing(model, processor, aspect)).pixel_values[0]

    return run


def _array(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image).astype(np.float64))


def _plot_canvas(mode: str) -> Callable[[Image.Image], torch.Tensor]:
    def run(image: Image.Image) -> torch.Tensor:
        from llava.geometry import crop_geometry, pad_geometry

        geometry = pad_geometry(image.size, background=MEAN_RGB) if mode == "pad" else crop_geometry(image.size)
        return _array(geometry.canvas(image)[0])

    return run


def _soften(image: Image.Image) -> torch.Tensor:
    from eval.figures.common import soften

    return torch.from_numpy(soften(image).astype(np.float64))


def _soften_by_hand(rgb: Image.Image) -> torch.Tensor:
    array = np.asarray(rgb, dtype=np.float32) / 255.0
    gray = array @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return torch.from_numpy((0.82 * (0.55 * array + 0.45 * gray[..., None]) + 0.18).astype(np.float64))


def _square_by_hand(rgb: Image.Image) -> torch.Tensor:
    side = max(rgb.size)
    canvas = Image.new("RGB", (side, side), MEAN_RGB)
    canvas.paste(rgb, ((side - rgb.width) // 2, (side - rgb.height) // 2))
    return _array(canvas)


# entry point -> (what it gives for an image, the same worked out by hand from the RGB pixels)
ENTRY_POINTS: dict[str, tuple[Callable[[Image.Image], torch.Tensor], Callable[[Image.Image], torch.Tensor]]] = {
    "process_images-pad": (lambda im: process_images([im], _clip(), "pad")[0], pad_by_hand),
    "process_images-crop": (lambda im: process_images([im], _clip(), "crop")[0], crop_by_hand),
    "process_images-anyres": (lambda im: process_images([im], _clip(), "anyres", PINPOINTS)[0], anyres_by_hand),
    "process_anyres_image": (lambda im: process_anyres_image(im, _clip(), PINPOINTS), anyres_by_hand),
    "expand2square": (lambda im: _array(expand2square(im, MEAN_RGB)), _square_by_hand),
    "resize_and_pad_image": (lambda im: _array(resize_and_pad_image(im, (672, 336))),
                             lambda rgb: _array(grid_canvas_by_hand(rgb, (672, 336)))),
    "llava-pad": (_pixels("llava", None), pad_by_hand),
    "llava-crop": (_pixels("llava", "crop"), crop_by_hand),
    "llava_next-anyres": (_pixels("llava_next", None), anyres_by_hand),
    "llava_next-pad": (_pixels("llava_next", "pad"), pad_by_hand),
    "llava_next-crop": (_pixels("llava_next", "crop"), crop_by_hand),
    "instructblip": (_pixels("instructblip", None), blip_by_hand),
    "figure-canvas-pad": (_plot_canvas("pad"), _square_by_hand),
    "figure-canvas-crop": (_plot_canvas("crop"), _array),
    "figure-soften": (_soften, _soften_by_hand),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("name", sorted(IMAGES))
def test_every_entry_point_sees_the_rgb_conversion(name, entry):
    """An image of any mode gives exactly what its RGB conversion gives, and that is the hand-made tensor."""
    run, by_hand = ENTRY_POINTS[entry]
    image = IMAGES[name]()
    rgb = Image.fromarray(expected_rgb(image), "RGB")
    got = run(image)
    assert torch.equal(got, run(rgb)), "not what the RGB conversion gives"
    torch.testing.assert_close(got.double(), by_hand(rgb).double(), rtol=0, atol=1e-5)


def test_pad_of_a_grayscale_image_is_padded_with_the_mean_colour():
    """The issue's example: a 48x32 ``L`` image in ``pad`` mode (a TypeError before); the padding is the mean colour
    (a CMYK image was padded with black)."""
    for image in (IMAGES["L"](), IMAGES["CMYK"]()):
        (pixels,) = process_images([image], _clip(), "pad")
        background = torch.tensor([(c / 255 - m) / s for c, m, s in zip(MEAN_RGB, CLIP_MEAN, CLIP_STD)])
        band = pixels[:, :40, :].double()  # 48x32 -> 8 rows of padding above of 48: 56 of 336 rows
        torch.testing.assert_close(band, background[:, None, None].expand_as(band), rtol=0, atol=1e-5)


# ================================================================================================================
# the size bound, from the header


def _header_only_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header says ``width x height`` and that has no pixel data: decoding it fails."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


PREPROCESSING = {
    "pad": Preprocessing("pad", 336),
    "crop": Preprocessing("crop", 336),
    "anyres": Preprocessing("anyres", 336, tuple(PINPOINTS)),
    "resize": Preprocessing("resize", 224),
}


@pytest.mark.parametrize(
    "mode, size, largest",
    [
        ("pad", (30000, 20), (30000, 30000)),  # the square
        ("crop", (30000, 20), (504000, 336)),  # shortest side 20 -> 336: 30000 * 16.8
        ("anyres", (30000, 20), (30000, 20)),  # the decoded image; the grid canvas is 1008x336
        ("resize", (30000, 20), (30000, 20)),
        ("pad", (100, 50), (336, 336)),  # small images: the processor's 336x336 output
        ("crop", (480, 320), (504, 336)),
        ("anyres", (480, 320), (672, 336)),  # the best grid resolution
        ("anyres", (9460, 9460), (9460, 9460)),
        ("resize", (100, 50), (224, 224)),
    ],
)
def test_largest_image_by_hand(mode, size, largest):
    assert PREPROCESSING[mode].largest_image(size) == largest


@pytest.mark.parametrize("size", [(30000, 20), (20, 30000), (480, 320), (333, 500), (7, 3000), (1000, 1000)])
def test_crop_resize_size_is_the_processors(size):
    """The crop-mode resize bounded here is the one transformers' CLIP processor computes."""
    from transformers.image_transforms import get_resize_output_image_size

    height, width = get_resize_output_image_size(np.zeros((3, size[1], size[0])), 336, default_to_square=False,
                                                 input_data_format="channels_first")
    assert clip_resize_size(size, 336) == (width, height)


# (mode, a header size just over the bound, a size just under it): worked out by hand with the bound 89,478,485
#   pad: 9460^2 = 89,491,600 > bound >= 9459^2 = 89,472,681
#   crop: 20 px high -> 336 high, int(16.8 * W) wide: W = 15852 -> 266,313 * 336 = 89,481,168 > bound;
#         W = 15851 -> 266,296 * 336 = 89,475,456 <= bound
#   anyres / resize: the decoded image itself: 9460^2 over, 9459^2 under
BOUNDARIES = [
    ("pad", (9460, 20), (9459, 20)),
    ("crop", (15852, 20), (15851, 20)),
    ("anyres", (9460, 9460), (9459, 9459)),
    ("resize", (9460, 9460), (9459, 9459)),
]


def test_bound_is_pillows_bomb_threshold():
    assert MAX_PREPROCESS_PIXELS == 89_478_485 == 2**30 // 4 // 3


@pytest.mark.parametrize("mode, over, under", BOUNDARIES)
def test_the_bound_by_hand(mode, over, under):
    largest = PREPROCESSING[mode].largest_image
    assert largest(over)[0] * largest(over)[1] > MAX_PREPROCESS_PIXELS >= largest(under)[0] * largest(under)[1]


@pytest.mark.parametrize("mode, over, under", [*BOUNDARIES, ("pad", (30000, 20), None), ("crop", (30000, 20), None)])
def test_image_over_the_bound_is_refused_before_decoding(tmp_path, mode, over, under):
    path = _header_only_png(tmp_path / "huge.png", *over)
    with pytest.raises(ImageLoadError) as info:
        load_image(path, PREPROCESSING[mode])
    message = str(info.value)
    assert str(path) in message and f"{over[0]}x{over[1]}" in message and "89,478,485" in message
    assert "too large" in message and "\n" not in message
    assert "not a readable" not in message  # refused from the header: decoding this file would fail


@pytest.mark.parametrize("mode, size", [("pad", (9459, 20)), ("crop", (15851, 20)), ("anyres", (2000, 20)),
                                        ("resize", (2000, 20)), ("pad", (20, 9459)), ("crop", (20, 15851))])
def test_image_under_the_bound_is_accepted(tmp_path, mode, size):
    path = tmp_path / "strip.png"
    Image.new("L", size, 90).save(path)
    image = load_image(path, PREPROCESSING[mode])
    assert image.mode == "RGB" and image.size == size and image.getpixel((0, 0)) == (90, 90, 90)


def test_without_preprocessing_the_decoded_image_is_bounded(tmp_path):
    with pytest.raises(ImageLoadError, match="too large .*9460x9460.*89,478,485"):
        load_image(_header_only_png(tmp_path / "a.png", 9460, 9460))
    # beyond Pillow's own limit (2x the bound), Pillow refuses at open: still one "too large" line naming the file
    with pytest.raises(ImageLoadError, match="too large") as info:
        load_image(_header_only_png(tmp_path / "b.png", 20000, 20000))
    assert str(tmp_path / "b.png") in str(info.value)
    with pytest.raises(ImageLoadError, match="not a readable"):  # under the bound: decoded, and the data is missing
        load_image(_header_only_png(tmp_path / "c.png", 9459, 20), PREPROCESSING["pad"])


@pytest.mark.parametrize(
    "family, aspect, expected",
    [
        ("llava", None, Preprocessing("pad", 336)),
        ("llava", "crop", Preprocessing("crop", 336)),
        ("llava_next", None, Preprocessing("anyres", 336, tuple(PINPOINTS))),
        ("llava_next", "pad", Preprocessing("pad", 336)),
        ("instructblip", None, Preprocessing("resize", 224)),
    ],
)
def test_family_preprocessing(family, aspect, expected):
    _, model, processor = synthetic(family)
    assert family_of(model).preprocessing(model, processor, aspect) == expected


def test_preprocessing_rejects_bad_settings():
    with pytest.raises(ValueError, match="unknown preprocessing mode"):
        Preprocessing("stretch")
    with pytest.raises(ValueError, match="image_grid_pinpoints"):
        Preprocessing("anyres")
