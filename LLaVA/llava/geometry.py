"""Token geometry: which region of the image each token of an image span covers, following the preprocessing that
produced it. Each model family builds the geometry of its own spans (``ModelFamily.geometry``); the figures
(``eval.figures``) only draw it.

- ``pad`` (LLaVA-1.5, SPARC): the image is centred on a square of side ``max(W, H)`` filled with the processor's
  mean colour; the 24x24 patch grid covers that square (tokens in the padding have no image content).
- ``crop`` (AvisC's LLaVA scripts): shortest side resized to 336 and a centred 336x336 crop; the grid covers the
  crop only.
- ``anyres`` (LLaVA-NeXT): base tokens over the whole (squashed) image, then the kept cells of the tiles' feature
  map, with row separators (``newline``) that have no region (see ``llava.model.families.llava.model``).
- ``dynamic`` (Qwen2-VL): the image resized to a multiple of 28 px on each side and cut into 14 px patches, every
  2x2 patches merged into one token: a ``rows x cols`` grid over the whole image, row by row.
- ``sequence`` (InstructBLIP): 32 Q-Former queries, no spatial layout.

All boxes are in the **original image's pixel coordinates** (``x`` right, ``y`` down); padding lies outside
``[0, W] x [0, H]``.

>>> g = pad_geometry((480, 320))
>>> g.token_box(0, canvas=True), g.token_box(0)        # top-left cell of the padded square, 80 px above the image
((0.0, 0.0, 20.0, 20.0), (0.0, -80.0, 20.0, -60.0))
>>> grid_geometry((480, 320), 8, 12, "dynamic").token_box(13)
(40.0, 40.0, 80.0, 80.0)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from PIL import Image

from llava.mm_utils import clip_resize_size, expand2square, to_rgb

GRID_SIDE = 24  # CLIP-L/14 at 336 px: 24x24 patches
TILE_SIZE = 336
Box = tuple[float, float, float, float]  # (x0, y0, x1, y1)


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


def square_grid(side: int) -> np.ndarray:
    """Token indices of a ``side x side`` grid, row by row."""
    return np.arange(side * side).reshape(side, side)


def pad_geometry(image_size: tuple[int, int], side: int = GRID_SIDE, background: Sequence[int] = (122, 116, 104)) -> TokenGeometry:
    """LLaVA-1.5 ``pad``: ``side x side`` cells over the square of side ``max(W, H)`` the image is centred on."""
    width, height = image_size
    square = max(width, height)
    ox, oy = -((square - width) // 2), -((square - height) // 2)  # where the square starts, as expand2square pastes
    view = GridView("padded square", square_grid(side), (ox, oy, ox + square, oy + square))
    return TokenGeometry("pad", (width, height), side * side, (view,), view.box, canvas_origin=(float(ox), float(oy)),
                         background=tuple(int(c) for c in background))


def crop_geometry(image_size: tuple[int, int], side: int = GRID_SIDE, size: int = TILE_SIZE) -> TokenGeometry:
    """CLIP ``crop``: shortest side resized to ``size`` (``int`` rounding of the long side), centred square crop."""
    width, height = image_size
    new_w, new_h = clip_resize_size(image_size, size)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    sx, sy = width / new_w, height / new_h
    box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
    view = GridView("center crop", square_grid(side), box)
    return TokenGeometry("crop", (width, height), side * side, (view,), box)


def grid_geometry(image_size: tuple[int, int], rows: int, cols: int, mode: str, name: str | None = None,
                  notes: dict[str, Any] | None = None) -> TokenGeometry:
    """``rows x cols`` tokens over the whole image, row by row (an image resized, not cropped or padded)."""
    width, height = image_size
    whole = (0.0, 0.0, float(width), float(height))
    view = GridView(name or f"{rows}x{cols} grid", np.arange(rows * cols).reshape(rows, cols), whole)
    return TokenGeometry(mode, (width, height), rows * cols, (view,), whole, notes=notes or {})


def sequence_geometry(image_size: tuple[int, int], num_tokens: int) -> TokenGeometry:
    """Tokens without a spatial layout (InstructBLIP's Q-Former queries)."""
    width, height = image_size
    return TokenGeometry("sequence", (width, height), num_tokens, (), (0.0, 0.0, float(width), float(height)))
