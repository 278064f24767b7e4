"""Shared pieces of the method figures (:mod:`eval.figures.sparc`, :mod:`eval.figures.avisc`).

1. **Token geometry**: which region of the image each token of the image span covers (:mod:`llava.geometry`),
   built by the model family that laid the span out (``ModelFamily.geometry``); this module only draws it.

2. Drawing primitives on ``matplotlib`` (``Figure`` + Agg canvas, no ``pyplot`` global state): the canvas a grid is
   drawn over, cell values as a heat overlay, outlines of a set of cells, and text made of coloured tokens.

3. CLI plumbing: the arguments and settings the figures share with the runners (model factory, presets, protocol),
   token pieces, one-line errors.

"""
from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from PIL import Image

from llava.geometry import Box, GridView, TokenGeometry
from llava.mm_utils import Preprocessing, to_rgb

if TYPE_CHECKING:
    from eval.benchmarks import ResolvedRun
    from llava.batch import PromptBatch
    from llava.model.builder import LoadedModel


# ----------------------------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------------------------
def geometry_for(model: Any, image_processor: Any, image_size: tuple[int, int],
                 preprocessing: Preprocessing | None = None) -> TokenGeometry:
    """The geometry of the image span that ``family_of(model).pixel_values(..., preprocessing)`` + ``embed``
    produce: the family's own (``ModelFamily.geometry``)."""
    from llava.model.families import family_of

    return family_of(model).geometry(model, image_processor, image_size, preprocessing)


# ----------------------------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------------------------
FIGURE_WIDTH = 16.0  # inches
FONT = "DejaVu Sans"
INK = "#22252b"
MUTED = "#70757f"
ACCENT = "#00d5ff"  # selection outlines
BLIND = "#ff2d6f"  # AvisC blind tokens


def colormap_slice(base: str, low: float, high: float, name: str):
    """The part ``[low, high]`` (fractions of 0..1) of matplotlib's colormap ``base``, as a 256-colour map."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    return ListedColormap(colormaps[base](np.linspace(low, high, 256)), name=name)


def new_figure(width: float, height: float, dpi: int):
    """A ``Figure`` on the Agg canvas (no pyplot, no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=dpi, facecolor="white")
    FigureCanvasAgg(figure)
    return figure


class InchLayout:
    """Axes placed by boxes in inches from the top-left corner of a figure of known size."""

    def __init__(self, figure: Any):
        self.figure = figure
        self.width, self.height = figure.get_size_inches()

    def rect(self, left: float, top: float, width: float, height: float) -> list[float]:
        return [left / self.width, 1 - (top + height) / self.height, width / self.width, height / self.height]

    def axes(self, left: float, top: float, width: float, height: float, **kwargs: Any):
        return self.figure.add_axes(self.rect(left, top, width, height), **kwargs)


def soften(image: Image.Image, amount: float = 0.45) -> np.ndarray:
    """The image partly desaturated and lightened, so that overlays stand out; ``(H, W, 3)`` floats in ``[0, 1]``."""
    rgb = np.asarray(to_rgb(image), dtype=np.float32) / 255.0
    gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    mixed = (1 - amount) * rgb + amount * gray[..., None]
    return 0.82 * mixed + 0.18


def draw_canvas(ax: Any, geometry: TokenGeometry, image: Image.Image, soft: float = 0.45, bounds: Box | None = None) -> None:
    """The canvas under the grid, axes limited to ``bounds`` (default: the geometry's), no ticks."""
    canvas, extent = geometry.canvas(image)
    ax.imshow(soften(canvas, soft) if soft else np.asarray(canvas), extent=extent, interpolation="lanczos")
    if geometry.mode == "pad":  # where the real image lies inside the padded square
        from matplotlib.patches import Rectangle

        width, height = geometry.image_size
        ax.add_patch(Rectangle((0, 0), width, height, fill=False, edgecolor="white", linewidth=0.9, linestyle=(0, (4, 3)),
                               alpha=0.9, zorder=5))
    x0, y0, x1, y1 = bounds or geometry.bounds
    ax.set_xlim(x0, x1)
    ax.set_ylim(y1, y0)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("#c9ccd1")
        spine.set_linewidth(0.6)


def draw_cells(ax: Any, view: GridView, per_token: np.ndarray, cmap: Any, norm: Any, alpha: float = 0.62,
               hide: np.ndarray | None = None) -> Any:
    """Per-token values as coloured cells of ``view``; cells where ``hide`` (per token) is true stay clear."""
    values = np.ma.masked_invalid(view.values(np.asarray(per_token, dtype=float)))
    if hide is not None:
        values = np.ma.masked_where(view.values(np.asarray(hide, dtype=bool)), values)
    return ax.imshow(values, extent=view.imshow_extent, cmap=cmap, norm=norm, alpha=alpha, interpolation="nearest",
                     resample=False)


def cell_outline_segments(view: GridView, chosen: np.ndarray) -> list[list[tuple[float, float]]]:
    """Line segments tracing the border of the union of the ``chosen`` (per-token bool) cells of ``view``."""
    grid = view.values(np.asarray(chosen, dtype=bool))
    width, height = view.cell
    x0, y0 = view.box[0], view.box[1]
    padded = np.pad(grid, 1)
    segments = []
    rows, cols = np.nonzero(grid)
    for r, c in zip(rows.tolist(), cols.tolist()):
        left, top = x0 + c * width, y0 + r * height
        right, bottom = left + width, top + height
        if not padded[r, c + 1]:  # above
            segments.append([(left, top), (right, top)])
        if not padded[r + 2, c + 1]:  # below
            segments.append([(left, bottom), (right, bottom)])
        if not padded[r + 1, c]:  # left
            segments.append([(left, top), (left, bottom)])
        if not padded[r + 1, c + 2]:  # right
            segments.append([(right, top), (right, bottom)])
    return segments


def outline_cells(ax: Any, view: GridView, chosen: np.ndarray, color: str = ACCENT, width: float = 1.4,
                  halo: bool = True) -> int:
    """Outline the union of the chosen cells (with a dark halo for contrast); returns how many cells."""
    from matplotlib.collections import LineCollection

    segments = cell_outline_segments(view, chosen)
    if not segments:
        return 0
    if halo:
        ax.add_collection(LineCollection(segments, colors="#101218", linewidths=width + 1.6, alpha=0.55,
                                         capstyle="round"))
    ax.add_collection(LineCollection(segments, colors=color, linewidths=width, capstyle="round"))
    return int(view.values(np.asarray(chosen, dtype=bool)).sum())


def style_axes(ax: Any, grid_axis: str = "y") -> None:
    """Light, minimal chart axes."""
    for name in ("top", "right"):
        ax.spines[name].set_visible(False)
    for name in ("left", "bottom"):
        ax.spines[name].set_color("#b8bcc4")
    ax.tick_params(colors=MUTED, labelsize=8, length=3)
    ax.grid(axis=grid_axis, color="#e6e8ec", linewidth=0.7)
    ax.set_axisbelow(True)


@lru_cache(maxsize=1)
def _charmap() -> frozenset[int]:
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    return frozenset(FT2Font(font_manager.findfont(FONT)).get_charmap())


def printable(text: str) -> str:
    """``text`` with characters the figure font cannot draw replaced by ``·`` (no missing-glyph warnings)."""
    chars = _charmap()
    return "".join(ch if ord(ch) in chars or ch in "\n" else "\u00b7" for ch in text)


@dataclass
class Piece:
    """One token of a text: whether a space precedes it, its visible text, and how it is drawn."""

    text: str
    space: bool = False
    newline: bool = False
    background: str | None = None
    color: str = INK
    weight: str = "normal"


def pieces_from_tokens(tokens: Sequence[str]) -> list[Piece]:
    """Token strings (as decoded, leading spaces included) as drawable pieces; newlines become line breaks."""
    pieces = []
    for token in tokens:
        parts = token.split("\n")
        for index, part in enumerate(parts):
            if index > 0:
                pieces.append(Piece("", newline=True))
            stripped = part.lstrip(" ")
            if stripped or (index == 0 and len(parts) == 1):
                pieces.append(Piece(printable(stripped) or "\u2423", space=len(stripped) < len(part)))
    return pieces


def _measure(figure: Any, text: str, size: float, weight: str) -> float:
    from matplotlib.font_manager import FontProperties

    renderer = figure.canvas.get_renderer()
    width, _, _ = renderer.get_text_width_height_descent(text, FontProperties(family=FONT, size=size, weight=weight),
                                                          ismath=False)
    return width / figure.dpi


def layout_pieces(figure: Any, pieces: Sequence[Piece], width: float, size: float = 10.0,
                  line_height: float | None = None) -> tuple[list[tuple[float, int, Piece]], float]:
    """Greedy line wrapping: ``(x inches, line, piece)`` per piece and the total height in inches."""
    line_height = line_height or size / 72 * 1.75
    space = _measure(figure, "a a", size, "normal") - _measure(figure, "aa", size, "normal")
    placed, x, line = [], 0.0, 0
    for piece in pieces:
        if piece.newline:
            x, line = 0.0, line + 1
            continue
        w = _measure(figure, piece.text, size, piece.weight)
        gap = space if piece.space and x > 0 else 0.0
        if x > 0 and x + gap + w > width:
            x, line, gap = 0.0, line + 1, 0.0
        placed.append((x + gap, line, piece))
        x += gap + w + (0.05 if piece.background else 0.0)
    return placed, (line + 1) * line_height


def draw_pieces(figure: Any, placed: Sequence[tuple[float, int, Piece]], left: float, top: float, size: float = 10.0,
                line_height: float | None = None) -> None:
    """Draw laid-out pieces with their backgrounds; ``left``/``top`` in inches from the figure's top-left."""
    line_height = line_height or size / 72 * 1.75
    height = figure.get_size_inches()[1]
    for x, line, piece in placed:
        bbox = None
        if piece.background:
            bbox = dict(boxstyle="round,pad=0.12,rounding_size=0.18", facecolor=piece.background, edgecolor="none")
        figure.text((left + x) / figure.get_size_inches()[0], 1 - (top + (line + 0.5) * line_height) / height,
                    piece.text, fontsize=size, family=FONT, color=piece.color, weight=piece.weight, va="center",
                    ha="left", bbox=bbox, parse_math=False)


def readable_on(color: Any) -> str:
    """Black or white text, whichever reads better on ``color``."""
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(color)
    return INK if 0.299 * r + 0.587 * g + 0.114 * b > 0.55 else "white"


def save(figure: Any, out_path: str | Path) -> Path:
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        figure.savefig(out, dpi=figure.dpi, facecolor="white")
    return out


def shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


# ----------------------------------------------------------------------------------------------------------------
# CLI plumbing
# ----------------------------------------------------------------------------------------------------------------


class CliError(Exception):
    """An input problem reported as one line."""


def quiet_transformers() -> None:
    """No progress bars or config warnings on the figure CLIs."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)


@dataclass
class Prepared:
    """What a figure command runs on: the image, the loaded model and the run's resolved settings."""

    image: Image.Image
    loaded: LoadedModel
    run: ResolvedRun

    def batch(self, query: str) -> tuple[str, PromptBatch, TokenGeometry]:
        """The prompt of ``query`` about the image, its one-row batch and the geometry of its image span, built as
        the runners build theirs (the family's prompt and the run's preprocessing)."""
        from eval.generation_setup import preprocessing_of
        from llava.batch import PromptBatch

        loaded, protocol = self.loaded, self.run.protocol
        family, model, processor = loaded.family, loaded.model, loaded.image_processor
        preprocessing = preprocessing_of(loaded, protocol)
        prompt = family.format_prompt(model, query, protocol.conv_mode, loaded.tokenizer)
        batch = PromptBatch(model, loaded.tokenizer, processor, [prompt],
                            family.pixel_values(model, processor, [self.image], preprocessing))
        return prompt, batch, geometry_for(model, processor, self.image.size, preprocessing)


def add_figure_arguments(parser: argparse.ArgumentParser, method: str, max_new_tokens: int) -> None:
    """The arguments every figure command shares with the runners: the model, the method's preset and parameters,
    and the protocol fields a figure may change."""
    from eval.cli import add, add_method_arguments, add_model_arguments
    from llava.constants import ASPECT_MODES

    add_model_arguments(parser)
    add(parser, "--image-file", required=True)
    add_method_arguments(parser, [method], method)
    protocol = parser.add_argument_group("protocol (default: the benchmark's)")
    add(protocol, "--conv-mode", default=None, help="conversation template")
    add(protocol, "--image-aspect", "--aspect", choices=ASPECT_MODES, default=None,
        help="image preprocessing (LLaVA)")
    add(protocol, "--min-pixels", type=int, default=None, help="Qwen2-VL: fewest pixels of a resized image")
    add(protocol, "--max-pixels", type=int, default=None, help="Qwen2-VL: most pixels of a resized image")
    add(protocol, "--max-new-tokens", type=int, default=max_new_tokens)
    add(protocol, "--seed", type=int, default=None)
    add(protocol, "--decoding", choices=("greedy", "sample"), default=None)
    add(parser, "--out", default=None, help="PNG path")
    add(parser, "--json", default=None, help="also write the figure's data here")
    add(parser, "--dpi", type=int, default=100)


def prepare(args: argparse.Namespace, benchmark: str) -> Prepared:
    """Resolve the settings as the runners do (the benchmark's protocol, the method's preset, the flags) and check
    them and the image before loading the model; then load it (:func:`llava.model.builder.load_model`)."""
    from eval.benchmarks import resolve_run
    from eval.cli import method_overrides, protocol_overrides
    from eval.files import InputError
    from eval.methods import get_method
    from llava.conversation import get_conv_template
    from eval.generation_setup import preprocessing_of
    from llava.mm_utils import check_image_size, load_image
    from llava.model.builder import inspect_checkpoint, load_model

    try:
        info = inspect_checkpoint(args.model_path)
        info.check_settings(args.image_aspect, args.conv_mode, min_pixels=args.min_pixels, max_pixels=args.max_pixels)
        run = resolve_run(benchmark, info.family, args.method, args.preset, method_overrides(args),
                          protocol_overrides(args), info.settings, info.num_layers)
        if run.protocol.conv_mode is not None:
            get_conv_template(run.protocol.conv_mode)
        config = get_method(run.method).build_config(run.params)
        if hasattr(config, "validate"):
            config.validate(info.num_layers)
    except (InputError, ValueError) as e:
        raise CliError(str(e)) from None
    image = load_image(args.image_file)  # fail fast, before loading a model
    quiet_transformers()
    loaded = load_model(args.model_path, args.device, args.dtype, args.attn, args.vision_tower)
    check_image_size(args.image_file, image.size, preprocessing_of(loaded, run.protocol))
    return Prepared(image, loaded, run)


def token_pieces(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """The text each generated id adds to the decoded string (leading spaces kept); special tokens as written."""
    pieces, previous = [], ""
    for end in range(1, len(ids) + 1):
        text = tokenizer.decode(list(ids[:end]), skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if text.startswith(previous):
            piece = text[len(previous):]
        else:  # a partial UTF-8 sequence resolved differently: fall back to the raw token
            piece = tokenizer.convert_ids_to_tokens(int(ids[end - 1])).replace("\u2581", " ")
        pieces.append(piece)
        previous = text
    return pieces


def run_cli(prog: str, main: Any, argv: Sequence[str] | None) -> int:
    """Run ``main(argv)``; input problems (bad settings, images, checkpoints) become one ``prog: error: ...`` line and
    exit status 2."""
    try:
        main(argv)
    except Exception as e:  # the library's error types are imported only when needed: --help stays fast
        from llava.mm_utils import ImageLoadError
        from llava.model.builder import CheckpointError

        if not isinstance(e, (CliError, ImageLoadError, CheckpointError, ValueError)):
            raise
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    return 0
