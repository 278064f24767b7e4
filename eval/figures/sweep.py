"""The figure of a sweep (``eval.sweep``), read at a glance:

- a scorer with a trade-off plane (CHAIR: precision = 1 - CHAIRi against recall): every point labelled with its
  values, the Pareto front (no other point better in both) drawn through the points on it, the baseline marked;
- any other scorer: its headline metric against the swept value, one line per value of the other grids (a heatmap
  when exactly two grids are swept), the baseline as a dashed line.

Labels are placed where they overlap no other label or point (eight candidate positions around each point, the first
free one taken), so a 3x3 grid stays readable.

>>> draw_sweep(json.loads(Path("sparc_coco_sweep.json").read_text()), Path("sparc_coco_sweep.png"))   # doctest: +SKIP
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from eval.figures import common as fig

OFFSETS = ((8, 6), (8, -12), (-8, 6), (-8, -12), (0, 12), (0, -16), (14, -3), (-14, -3))
"""Label positions tried around a point (points, x right / y up), first free one wins."""


def pareto_front(xs: Sequence[float], ys: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats in both coordinates (higher is better), by increasing x.

    >>> pareto_front([1, 2, 3, 2], [3, 2, 1, 1])
    [0, 1, 2]
    """
    front = [i for i in range(len(xs))
             if not any(xs[j] >= xs[i] and ys[j] >= ys[i] and (xs[j], ys[j]) != (xs[i], ys[i]) for j in range(len(xs)))]
    return sorted(front, key=lambda i: (xs[i], -ys[i]))


def place_labels(ax: Any, figure: Any, points: list[tuple[float, float]], labels: list[str], size: float = 8) -> None:
    """Write each label next to its point where it covers no label placed before it and no point."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    taken = [ax.transData.transform(p) for p in points]
    boxes: list[Any] = []
    for (x, y), text in zip(points, labels):
        artist = None
        for dx, dy in OFFSETS:
            artist = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=size,
                                 color=fig.INK, ha="left" if dx > 0 else "right" if dx < 0 else "center",
                                 va="bottom" if dy > 0 else "top")
            box = artist.get_window_extent(renderer).expanded(1.05, 1.15)
            clear = not any(box.overlaps(other) for other in boxes) and not any(
                box.contains(px, py) for px, py in taken)
            if clear:
                break
            artist.remove()
            artist = None
        if artist is None:  # no free place: the first position, drawn lighter
            artist = ax.annotate(text, (x, y), xytext=OFFSETS[0], textcoords="offset points", fontsize=size,
                                 color=fig.MUTED)
        boxes.append(artist.get_window_extent(renderer))


def _values(points: list[dict[str, Any]], column: Any) -> list[float | None]:
    """Each point's value of a scorer's :class:`~eval.scoring.Column`, as tables show it (None where missing)."""
    return [column.shown(p["metrics"].get(column.key)) for p in points]


def draw_plane(ax: Any, figure: Any, data: dict[str, Any], plane: tuple[Any, Any]) -> None:
    """Precision-like (y) against recall-like (x), labelled points, Pareto front, baseline."""
    x_col, y_col = plane
    points = [p for p in data["points"] if not p["baseline"]]
    xs, ys = _values(points, x_col), _values(points, y_col)
    shown = [i for i in range(len(points)) if xs[i] is not None and ys[i] is not None]
    sx, sy = [xs[i] for i in shown], [ys[i] for i in shown]
    ax.scatter(sx, sy, s=42, color=fig.ACCENT, edgecolor=fig.INK, linewidth=0.6, zorder=3)
    front = [shown[i] for i in pareto_front(sx, sy)]
    ax.plot([xs[i] for i in front], [ys[i] for i in front], color=fig.BLIND, linewidth=1.4, zorder=2,
            label="Pareto front")
    labels = [" ".join(f"{k}={v}" for k, v in points[i]["values"].items()) for i in shown]
    marks: list[tuple[float, float]] = list(zip(sx, sy))
    for base in (p for p in data["points"] if p["baseline"]):
        bx, by = _values([base], x_col)[0], _values([base], y_col)[0]
        if bx is not None and by is not None:
            ax.scatter([bx], [by], marker="*", s=160, color="#ffb000", edgecolor=fig.INK, linewidth=0.6, zorder=4,
                       label="baseline")
            marks.append((bx, by))
            labels.append("baseline")
    ax.set_xlabel(x_col.header, fontsize=9)
    ax.set_ylabel(y_col.header, fontsize=9)
    if not marks:
        ax.text(0.5, 0.5, f"no point has both {x_col.key} and {y_col.key}\n(see the table: a metric over no sample "
                "is empty)", ha="center", va="center", transform=ax.transAxes, color=fig.MUTED)
        return
    _pad_limits(ax, [m[0] for m in marks], [m[1] for m in marks])
    ax.legend(fontsize=8, frameon=False, loc="best")
    place_labels(ax, figure, marks, labels)


def _pad_limits(ax: Any, xs: Sequence[float], ys: Sequence[float]) -> None:
    """Axis limits with room for the labels around the outermost points."""
    for values, setter in ((xs, ax.set_xlim), (ys, ax.set_ylim)):
        if not values:
            continue
        low, high = min(values), max(values)
        span = (high - low) or max(abs(high), 1.0) * 0.1
        setter(low - 0.25 * span, high + 0.25 * span)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def draw_curves(ax: Any, data: dict[str, Any], column: Any) -> None:
    """The headline metric against the first grid's values, one line per combination of the other grids."""
    grids = list(data["grids"].items())
    (x_name, x_values), others = grids[0], grids[1:]
    numeric = all(_number(v) is not None for v in x_values)
    positions = [_number(v) if numeric else i for i, v in enumerate(x_values)]
    points = [p for p in data["points"] if not p["baseline"]]
    combos = list(itertools.product(*(values for _, values in others))) or [()]
    colors = fig.colormap_slice("viridis", 0.1, 0.85, "sweep")(np.linspace(0, 1, max(len(combos), 1)))
    for combo, color in zip(combos, colors):
        chosen = {name: value for (name, _), value in zip(others, combo)}
        ys = []
        for value in x_values:
            match = next((p for p in points if p["values"][x_name] == value
                          and all(p["values"][n] == v for n, v in chosen.items())), None)
            ys.append(None if match is None else _values([match], column)[0])
        label = " ".join(f"{n}={v}" for n, v in chosen.items()) or None
        ax.plot(positions, [np.nan if y is None else y for y in ys], marker="o", color=color, linewidth=1.6,
                label=label)
    for base in (p for p in data["points"] if p["baseline"]):
        value = _values([base], column)[0]
        if value is not None:
            ax.axhline(value, color=fig.MUTED, linestyle="--", linewidth=1.2, label="baseline")
    ax.set_xticks(positions)
    ax.set_xticklabels(x_values, fontsize=8)
    ax.set_xlabel(x_name, fontsize=9)
    ax.set_ylabel(column.header, fontsize=9)
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=8, frameon=False, loc="best")


def decimals(values: np.ndarray) -> int:
    """Decimals that tell the values apart: 2, more when they all lie within less than 0.01 (at most 4).

    >>> decimals(np.array([61.5, 62.0])), decimals(np.array([0.615, 0.62])), decimals(np.array([1.0]))
    (2, 3, 2)
    """
    span = float(values.max() - values.min()) if values.size else 0.0
    return 2 if span == 0 else int(min(4, max(2, math.ceil(-math.log10(span)))))


def draw_heatmap(ax: Any, figure: Any, data: dict[str, Any], column: Any) -> None:
    """The headline metric over the two swept grids, each cell written."""
    (row_name, rows), (col_name, cols) = list(data["grids"].items())
    points = [p for p in data["points"] if not p["baseline"]]
    grid = np.full((len(rows), len(cols)), np.nan)
    for p in points:
        value = _values([p], column)[0]
        if value is not None:
            grid[rows.index(p["values"][row_name]), cols.index(p["values"][col_name])] = value
    ax.grid(False)
    image = ax.imshow(grid, cmap=fig.colormap_slice("viridis", 0.05, 0.95, "sweep_heat"), aspect="auto")
    finite = grid[np.isfinite(grid)]
    middle = float(finite.mean()) if finite.size else 0.0
    digits = decimals(finite)
    for (r, c), value in np.ndenumerate(grid):
        if np.isfinite(value):
            ax.text(c, r, f"{value:.{digits}f}", ha="center", va="center", fontsize=9,
                    color="white" if value < middle else fig.INK)
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(cols, fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize=8)
    ax.set_xlabel(col_name, fontsize=9)
    ax.set_ylabel(row_name, fontsize=9)
    bar = figure.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    bar.ax.tick_params(labelsize=8)
    bar.set_label(column.header, fontsize=9)
    base = next((p for p in data["points"] if p["baseline"]), None)
    value = None if base is None else _values([base], column)[0]
    if value is not None:
        ax.set_title(f"baseline: {value:.2f}", fontsize=9, color=fig.MUTED, loc="right")


def draw_sweep(data: dict[str, Any], out: Path, dpi: int = 110) -> Path:
    """The figure of a sweep's json (``eval.sweep``) as a PNG at ``out``."""
    from eval.scoring import Column, get_scorer

    scorer = get_scorer(data.get("scorer"))
    figure = fig.new_figure(7.5, 5.2, dpi)
    ax = figure.add_axes([0.11, 0.12, 0.84, 0.76] if scorer is None or len(data["grids"]) != 2 or scorer.plane
                         else [0.11, 0.12, 0.80, 0.76])
    fig.style_axes(ax, "both")
    title = (data.get("table") or {}).get("title") or f"Sweep {data['sweep']}: {data['benchmark']}"
    figure.suptitle(title, fontsize=11, color=fig.INK, x=0.11, ha="left")
    if scorer is None:
        ax.text(0.5, 0.5, "no scorer for this benchmark: nothing to draw", ha="center", va="center",
                transform=ax.transAxes, color=fig.MUTED)
    elif scorer.plane:
        draw_plane(ax, figure, data, scorer.plane)
    else:
        column = next((c for c in scorer.columns if c.key == scorer.headline), Column(scorer.headline, scorer.headline))
        if len(data["grids"]) == 2:
            draw_heatmap(ax, figure, data, column)
        else:
            draw_curves(ax, data, column)
    return fig.save(figure, out)
