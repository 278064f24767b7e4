"""Shared pieces of the method figures (:mod:`eval.figures.sparc`, :mod:`eval.figures.avisc`).

1. **Token geometry**: which region of the image each token of the image span covers, following the preprocessing
   that produced it.

   - ``pad`` (LLaVA-1.5, SPARC): the image is centred on a square of side ``max(W, H)`` filled with the processor's
     mean colour; the 24x24 patch grid covers that square (tokens in the padding have no image content).
   - ``crop`` (AvisC's LLaVA scripts): shortest side resized to 336 and a centred 336x336 crop; the grid covers the
     crop only.
   - ``anyres`` (LLaVA-NeXT, ``spatial_unpad``): the first 576 tokens are the base image squashed to 336x336 (a
     24x24 grid of rectangular cells over the whole image); then the feature map of the best grid resolution, with
     the rows / columns that only hold padding removed, row by row, each row closed by one ``image_newline`` token
     (which has no region). ``576 + rows * (cols + 1)`` tokens; an extreme strip can keep no row (576 tokens, the
     base grid only). LLaVA-NeXT in ``pad`` / ``crop`` mode adds one newline token after the 576.
   - ``sequence`` (InstructBLIP): 32 Q-Former queries, no spatial layout.

   The token layout itself comes from the model family (``LlavaFamily.image_layout``), the one place that
   ``merge_tiles`` follows too; this module only maps it onto the image.

   All boxes are in the **original image's pixel coordinates** (``x`` right, ``y`` down); padding lies outside
   ``[0, W] x [0, H]``.

2. Drawing primitives on ``matplotlib`` (``Figure`` + Agg canvas, no ``pyplot`` global state): the canvas a grid is
   drawn over, cell values as a heat overlay, outlines of a set of cells, and text made of coloured tokens.

3. CLI plumbing: the arguments and settings the figures share with the runners (model factory, presets, protocol),
   token pieces, one-line errors.

>>> g = pad_geometry((480, 320))
>>> g.token_box(0, canvas=True), g.token_box(0)        # top-left cell of the padded square, 80 px above the image
((0.0, 0.0, 20.0, 20.0), (0.0, -80.0, 20.0, -60.0))
>>> a = anyres_geometry((480, 320), [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]])
>>> a.views[1].rows, a.views[1].cols, len(a.newline), a.num_tokens
(24, 36, 24, 1464)
"""
from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from PIL import Image

from llava.mm_utils import clip_resize_size, expand2square, fit_size, to_rgb

if TYPE_CHECKING:
    from eval.benchmarks import ResolvedRun
    from llava.model.builder import LoadedModel
    from llava.model.families import ImageLayout

GRID_SIDE = 24  # CLIP-L/14 at 336 px: 24x24 patches
TILE_SIZE = 336
Box = tuple[float, float, float, float]  # (x0, y0, x1, y1)


# ----------------------------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GridView:
    """A rectangular grid of image tokens: ``tokens[r, c]`` is the index (in the image span) of the token covering
    cell ``(r, c)``; the grid spans ``box`` (original-image coordinates) in equal cells."""

    name: str
    tokens: np.ndarray
    box: Box

    @property
    def rows(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def cols(self) -> int:
        return int(self.tokens.shape[1])

    @property
    def cell(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (x1 - x0) / self.cols, (y1 - y0) / self.rows

    def cell_box(self, row: int, col: int) -> Box:
        width, height = self.cell
        x0, y0 = self.box[0] + col * width, self.box[1] + row * height
        return (x0, y0, x0 + width, y0 + height)

    def values(self, per_token: np.ndarray) -> np.ndarray:
        """``per_token`` ``(N,)`` laid out on the grid ``(rows, cols)``."""
        return np.asarray(per_token)[self.tokens]

    @property
    def imshow_extent(self) -> tuple[float, float, float, float]:
        x0, y0, x1, y1 = self.box
        return (x0, x1, y1, y0)


@dataclass(frozen=True)
class TokenGeometry:
    """Where each token of an image span lies.

    ``bounds`` is the region worth drawing (original-image coordinates); ``canvas_origin`` is where the canvas the
    model saw (the padded square in ``pad`` mode, the image itself otherwise) starts; ``newline`` lists the tokens that
    have no region (LLaVA-NeXT's row separators).
    """

    mode: str
    image_size: tuple[int, int]
    num_tokens: int
    views: tuple[GridView, ...]
    bounds: Box
    newline: tuple[int, ...] = ()
    canvas_origin: tuple[float, float] = (0.0, 0.0)
    background: tuple[int, int, int] = (0, 0, 0)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def spatial(self) -> bool:
        return bool(self.views)

    def locate(self, token: int) -> tuple[int, int, int] | None:
        """``(view, row, col)`` of ``token``, ``None`` for tokens without a region (newlines, sequence mode)."""
        for index, view in enumerate(self.views):
            hits = np.argwhere(view.tokens == token)
            if len(hits):
                return index, int(hits[0][0]), int(hits[0][1])
        return None

    def token_box(self, token: int, canvas: bool = False) -> Box | None:
        """The region of ``token`` in original-image coordinates (``canvas=True``: in the coordinates of the canvas
        the grid was laid on, e.g. the padded square), ``None`` when it has none."""
        where = self.locate(token)
        if where is None:
            return None
        x0, y0, x1, y1 = self.views[where[0]].cell_box(where[1], where[2])
        if canvas:
            ox, oy = self.canvas_origin
            return (x0 - ox, y0 - oy, x1 - ox, y1 - oy)
        return (x0, y0, x1, y1)

    def canvas(self, image: Image.Image) -> tuple[Image.Image, tuple[float, float, float, float]]:
        """The picture to draw under the grid (``image`` through ``llava.mm_utils.to_rgb``, as the model sees it)
        and its ``imshow`` extent (padding shown in ``pad`` mode)."""
        if self.mode == "pad":
            square = expand2square(image, self.background)
            ox, oy = self.canvas_origin
            return square, (ox, ox + square.width, oy + square.height, oy)
        return to_rgb(image), (0.0, float(image.width), float(image.height), 0.0)

    def check(self, image_len: int) -> None:
        if image_len != self.num_tokens:
            raise ValueError(
                f"the model spliced {image_len} image tokens but the {self.mode} geometry of a "
                f"{self.image_size[0]}x{self.image_size[1]} image predicts {self.num_tokens}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "image_size": list(self.image_size),
            "num_tokens": self.num_tokens,
            "bounds": [round(v, 3) for v in self.bounds],
            "newline_tokens": list(self.newline),
            "views": [
                {"name": v.name, "rows": v.rows, "cols": v.cols, "first_token": int(v.tokens[0, 0]),
                 "box": [round(x, 3) for x in v.box]}
                for v in self.views
            ],
            **self.notes,
        }


def pad_geometry(image_size: tuple[int, int], side: int = GRID_SIDE, background: Sequence[int] = (122, 116, 104)) -> TokenGeometry:
    """LLaVA-1.5 ``pad``: ``side x side`` cells over the square of side ``max(W, H)`` the image is centred on."""
    width, height = image_size
    square = max(width, height)
    ox, oy = -((square - width) // 2), -((square - height) // 2)  # where the square starts, as expand2square pastes
    view = GridView("padded square", np.arange(side * side).reshape(side, side), (ox, oy, ox + square, oy + square))
    return TokenGeometry("pad", (width, height), side * side, (view,), view.box, canvas_origin=(float(ox), float(oy)),
                         background=tuple(int(c) for c in background))


def crop_geometry(image_size: tuple[int, int], side: int = GRID_SIDE, size: int = TILE_SIZE) -> TokenGeometry:
    """CLIP ``crop``: shortest side resized to ``size`` (``int`` rounding of the long side), centred square crop."""
    width, height = image_size
    new_w, new_h = clip_resize_size(image_size, size)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    sx, sy = width / new_w, height / new_h
    box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
    view = GridView("center crop", np.arange(side * side).reshape(side, side), box)
    return TokenGeometry("crop", (width, height), side * side, (view,), box)


def anyres_geometry(
    image_size: tuple[int, int],
    grid_pinpoints: Sequence[Sequence[int]] | str,
    tile_size: int = TILE_SIZE,
    side: int = GRID_SIDE,
    merge: str = "spatial_unpad",
) -> TokenGeometry:
    """LLaVA-NeXT ``anyres``: base image tokens, then the tile grid (unpadded, one newline per row for
    ``spatial_unpad``; all tiles' full grids, tile by tile, for ``flat``), as ``llava.model.families.image_layout``
    lays out the image span."""
    from llava.model.families import image_layout

    return layout_geometry(image_size, image_layout(image_size, side, tile_size, merge, grid_pinpoints), tile_size)


def layout_geometry(image_size: tuple[int, int], layout: ImageLayout, tile_size: int = TILE_SIZE) -> TokenGeometry:
    """The ``anyres`` geometry of a ``llava.model.families.ImageLayout`` with tiles: the base grid over the whole
    (squashed) image, then the kept cells of the tiles' feature map mapped back through ``resize_and_pad_image``
    (omitted when an extreme strip keeps no row or column of it)."""
    width, height = image_size
    side = layout.side
    whole = (0.0, 0.0, float(width), float(height))
    base = GridView(f"base image ({side}x{side}, squashed)", np.arange(side * side).reshape(side, side), whole)
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


def sequence_geometry(image_size: tuple[int, int], num_tokens: int) -> TokenGeometry:
    """Tokens without a spatial layout (InstructBLIP's Q-Former queries)."""
    width, height = image_size
    return TokenGeometry("sequence", (width, height), num_tokens, (), (0.0, 0.0, float(width), float(height)))


def geometry_for(model: Any, image_processor: Any, image_size: tuple[int, int], aspect: str | None = None) -> TokenGeometry:
    """The geometry of the image span that ``family_of(model).pixel_values(..., aspect)`` + ``embed`` produce, from
    the family's own layout of that span (``LlavaFamily.image_layout``, which ``merge_tiles`` follows)."""
    from llava.model.families import family_of

    family = family_of(model)
    if family.name == "instructblip":
        return sequence_geometry(image_size, int(model.config.num_query_tokens))
    size = int(model.config.vision_config.image_size)
    mode = family.aspect_mode(model, aspect)
    layout = family.image_layout(model, image_size, tiled=mode == "anyres")
    if mode == "anyres":
        return layout_geometry(image_size, layout, size)
    if mode == "pad":
        mean = getattr(image_processor, "image_mean", None) or (0.0, 0.0, 0.0)
        geometry = pad_geometry(image_size, layout.side, tuple(int(x * 255) for x in mean))
    else:
        geometry = crop_geometry(image_size, layout.side, size)
    # one tile: LLaVA-NeXT's spatial_unpad still closes the base features with a newline token
    return replace(geometry, num_tokens=layout.num_tokens, newline=layout.newline_tokens)


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
        help="image preprocessing")
    add(protocol, "--max-new-tokens", type=int, default=max_new_tokens)
    add(protocol, "--seed", type=int, default=None)
    add(protocol, "--decoding", choices=("greedy", "sample"), default=None)
    add(parser, "--out", default=None, help="PNG path")
    add(parser, "--json", default=None, help="also write the figure's data here")
    add(parser, "--dpi", type=int, default=100)


def prepare(args: argparse.Namespace, benchmark: str, families: Sequence[str]) -> Prepared:
    """Resolve the settings as the runners do (the benchmark's protocol, the method's preset, the flags) and check
    them and the image before loading the model; then load it (:func:`llava.model.builder.load_model`)."""
    from eval.benchmarks import resolve_run
    from eval.cli import method_overrides, protocol_overrides
    from eval.files import InputError
    from eval.methods import get_method
    from llava.conversation import get_conv_template
    from llava.mm_utils import check_image_size, load_image
    from llava.model.builder import inspect_checkpoint, load_model

    try:
        info = inspect_checkpoint(args.model_path)
        if info.family not in families:
            raise CliError(f"{args.model_path}: a {info.family} model; this figure needs {' or '.join(families)}")
        run = resolve_run(benchmark, info.family, args.method, args.preset, method_overrides(args),
                          protocol_overrides(args))
        if run.protocol["conv_mode"] is not None:
            get_conv_template(run.protocol["conv_mode"])
        config = get_method(run.method).build_config(run.params)
        if hasattr(config, "validate"):
            config.validate(info.num_layers)
    except (InputError, ValueError) as e:
        raise CliError(str(e)) from None
    image = load_image(args.image_file)  # fail fast, before loading a model
    quiet_transformers()
    loaded = load_model(args.model_path, args.device, args.dtype, args.attn, args.vision_tower)
    preprocessing = loaded.family.preprocessing(loaded.model, loaded.image_processor, run.protocol["image_aspect"])
    check_image_size(args.image_file, image.size, preprocessing)
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
