"""What SPARC does while it writes a caption: which image patches it selects at each decode step, how much their
attention is amplified so far (``alpha ** count``), and which words triggered the selections.

    python -m eval.figures sparc --model-path liuhaotian/llava-v1.5-7b --image-file photo.jpg --out sparc.png
    python -m eval.figures sparc --model-path tiny --image-file photo.jpg          # random model, quick demo

Settings resolve as in the runners: the captioning protocol (template, prompt, the model's preprocessing) and
SPARC's preset for the model's family (``--preset``, ``--method-args``, ``--tau``, ...).

The figure: a large panel with the total amplification over the image (per grid for LLaVA-NeXT: base image and
high-res grid), small panels for the steps with the most selections (patches selected at that step outlined,
cumulative amplification as heat), a timeline of selections per step, and the caption with each token coloured by how
many patches it triggered. ``--json`` dumps the per-step selections, counts and token geometry.

Step ``t`` is the forward pass that reads the ``t``-th generated token: its query's attention on the image is
compared with the EMA, the tokens that jump are selected, and their cached values are multiplied by ``alpha`` from
step ``t + 1`` on (the official one-step lag). The last generated token is never read, so it triggers nothing.

Python API, without a model: :func:`render_sparc` (and the geometry helpers of :mod:`eval.figures.common`).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from eval.figures import common as fig
from eval.files import check_output_folder
from eval.methods import get_method

LEFT, RIGHT, GAP = 0.5, 0.4, 0.3


def _heat_cmap():
    return fig.colormap_slice("inferno", 0.28, 0.98, "sparc_heat")


def _caption_cmap():
    return fig.colormap_slice("YlOrRd", 0.12, 0.78, "sparc_caption")


def _count_norm(max_count: int):
    from matplotlib.colors import BoundaryNorm, Normalize

    if max_count <= 12:
        return BoundaryNorm(np.arange(0.5, max(max_count, 1) + 1.5), 256)
    return Normalize(0.5, max_count)


def _fit(aspect: float, width: float, height: float) -> tuple[float, float]:
    """The largest ``(w, h)`` of ratio ``aspect`` that fits ``width x height``."""
    return (width, width / aspect) if width / aspect <= height else (height * aspect, height)


def pick_steps(per_step: Sequence[int], steps: int) -> list[int]:
    """0-based indices of the ``steps`` steps with the most selections, in decoding order (ties: earlier first)."""
    order = sorted(range(len(per_step)), key=lambda k: (-per_step[k], k))
    chosen = [k for k in order[:steps] if per_step[k] > 0] or order[: min(steps, 1)]
    return sorted(chosen)


def render_sparc(
    image: Image.Image,
    selections: Sequence[Sequence[int]],
    counts: Sequence[int] | np.ndarray | None,
    tokens: Sequence[str] | None,
    geometry: fig.TokenGeometry,
    out_path: str | Path,
    *,
    alpha: float = 1.1,
    steps: int = 8,
    step_indices: Sequence[int] | None = None,
    title: str | None = None,
    subtitle: str | None = None,
    dpi: int = 100,
) -> Path:
    """Draw SPARC's selections for one caption and save a PNG (``FIGURE_WIDTH * dpi`` pixels wide).

    ``selections[k]``: image-token indices (0-based in the image span) selected at decode step ``k + 1``;
    ``counts``: per-token selection counts (``None``: summed from ``selections``; otherwise it must agree);
    ``tokens``: the generated tokens' text (the one of step ``k + 1`` at index ``k``); ``geometry``: where each image
    token lies (:func:`eval.figures.common.geometry_for`, ``pad_geometry``, ``anyres_geometry``); ``steps``: how many step
    panels (the steps with most selections), or ``step_indices`` (0-based) to choose them.
    """
    if not geometry.spatial:
        raise ValueError("the SPARC figure needs image tokens with a spatial layout (LLaVA-1.5 or LLaVA-NeXT)")
    n = geometry.num_tokens
    selected = [np.asarray(sorted(set(int(j) for j in s)), dtype=int) for s in selections]
    for k, s in enumerate(selected):
        if len(s) and (s.min() < 0 or s.max() >= n):
            raise ValueError(f"step {k + 1} selects token {int(s.max() if s.max() >= n else s.min())}, outside the {n} image tokens")
    cumulative = np.zeros((len(selected) + 1, n), dtype=int)
    for k, s in enumerate(selected):
        cumulative[k + 1] = cumulative[k]
        cumulative[k + 1, s] += 1
    total = cumulative[-1]
    if counts is not None:
        counts = np.asarray(counts, dtype=int).reshape(-1)[:n]
        if counts.shape[0] != n or not np.array_equal(counts, total):
            raise ValueError("counts do not match the selections (expected their per-token sum)")
    tokens = list(tokens) if tokens is not None else [""] * len(selected)
    newline = np.zeros(n, dtype=bool)
    newline[list(geometry.newline)] = True
    per_step = [int(len(s)) for s in selected]
    per_step_newline = [int(newline[s].sum()) if len(s) else 0 for s in selected]
    shown = sorted(set(int(k) for k in step_indices)) if step_indices is not None else pick_steps(per_step, steps)
    if any(not 0 <= k < len(selected) for k in shown):
        raise ValueError(f"step indices must lie in [0, {len(selected)})")
    max_count = int(total.max()) if n else 0
    heat, norm = _heat_cmap(), _count_norm(max_count)
    views = geometry.views
    x0, y0, x1, y1 = geometry.bounds
    aspect = (x1 - x0) / (y1 - y0)

    # ---- sizes (inches) ----
    side_by_side = len(views) > 1 and aspect < 1.2  # tall images: the two grids next to each other
    big_area = 5.0
    if side_by_side:
        big_w, big_h = _fit(aspect, (big_area - 0.15) / len(views), 5.0)
    else:
        big_w, big_h = _fit(aspect, big_area, 5.0 if len(views) == 1 else 3.7)
    grid_left = LEFT + big_area + 0.55
    grid_width = fig.FIGURE_WIDTH - grid_left - RIGHT
    cols = 4
    rows = max(1, math.ceil(len(shown) / cols))
    cell_w = (grid_width - (cols - 1) * 0.18) / cols
    if side_by_side:
        mini_w, mini_h = _fit(aspect, (cell_w - 0.06) / len(views), 2.6)
    else:
        mini_w, mini_h = _fit(aspect, cell_w, 2.3 if len(views) == 1 else 1.7)
    stacked = 1 if side_by_side else len(views)
    step_title = 0.42
    step_block = step_title + stacked * mini_h + (stacked - 1) * 0.06
    grid_height = rows * step_block + (rows - 1) * 0.2
    label_h = 0.2 if len(views) > 1 else 0.0
    big_block = 0.34 + stacked * (big_h + label_h) + (stacked - 1) * 0.12 + 0.8  # title, panels, colourbar
    panels_height = max(big_block, grid_height + 0.34)
    label_tokens = len(selected) <= 72
    timeline_height = 1.55 + (0.75 if label_tokens else 0.25)
    figure = fig.new_figure(fig.FIGURE_WIDTH, 10.0, dpi)
    text_width = fig.FIGURE_WIDTH - LEFT - RIGHT
    cap_pieces = _caption_pieces(tokens, per_step, shown)
    placed, text_height = fig.layout_pieces(figure, cap_pieces, text_width, size=10.5)
    header = 1.05
    height = header + panels_height + 0.45 + timeline_height + 0.75 + text_height + 0.35
    figure.set_size_inches(fig.FIGURE_WIDTH, height)
    layout = fig.InchLayout(figure)

    # ---- header ----
    figure.text(LEFT / fig.FIGURE_WIDTH, 1 - 0.38 / height, title or "SPARC: selective, progressive attention recalibration",
                fontsize=16, weight="bold", color=fig.INK, ha="left", va="center")
    n_sel = int(sum(per_step))
    n_newline = int(sum(per_step_newline))
    distinct = int((total[~newline] > 0).sum())
    summary = (f"{len(tokens)} tokens, {len(selected)} decode steps  \u00b7  {n_sel} selections of "
               f"{distinct} distinct patches" + (f" (+{n_newline} on newline tokens)" if geometry.newline else "")
               + f"  \u00b7  max count {max_count} (\u00d7{alpha ** max_count:.3g})")
    figure.text(LEFT / fig.FIGURE_WIDTH, 1 - 0.72 / height, fig.printable(subtitle + "\n" + summary if subtitle else summary),
                fontsize=9.5, color=fig.MUTED, ha="left", va="center", linespacing=1.5, parse_math=False)

    # ---- total amplification ----
    figure.text(LEFT / fig.FIGURE_WIDTH, 1 - (header + 0.12) / height, "total amplification \u03b1^count", fontsize=10.5,
                weight="bold", color=fig.INK, ha="left", va="center")
    image_artist = None
    for index, view in enumerate(views):
        if side_by_side:
            left = LEFT + (big_area - len(views) * big_w - 0.15 * (len(views) - 1)) / 2 + index * (big_w + 0.15)
            top = header + 0.34
        else:
            left = LEFT + (big_area - big_w) / 2
            top = header + 0.34 + index * (big_h + label_h + 0.12)
        if label_h:
            figure.text(left / fig.FIGURE_WIDTH, 1 - (top + 0.08) / height, view.name, fontsize=8.5, color=fig.MUTED,
                        ha="left", va="center")
        ax = layout.axes(left, top + label_h, big_w, big_h)
        fig.draw_canvas(ax, geometry, image)
        image_artist = fig.draw_cells(ax, view, total, heat, norm, alpha=0.68, hide=total == 0)
    top = header + 0.34 + stacked * (big_h + label_h) + (stacked - 1) * 0.12
    cax = layout.axes(LEFT + 0.5, top + 0.3, big_area - 1.0, 0.14)
    _count_colorbar(figure, cax, image_artist, max_count, alpha)

    # ---- step panels ----
    for slot, k in enumerate(shown):
        r, c = divmod(slot, cols)
        used = mini_w * len(views) + 0.06 * (len(views) - 1) if side_by_side else mini_w
        left = grid_left + c * (cell_w + 0.18) + (cell_w - used) / 2
        cell_top = header + 0.34 + r * (step_block + 0.2)
        token = fig.shorten(fig.printable(tokens[k].strip() or repr(tokens[k])), 18) if k < len(tokens) else ""
        label = f"step {k + 1}  \u201c{token}\u201d"
        extra = f"+{per_step[k] - per_step_newline[k]} patches" + (f", +{per_step_newline[k]} \u21b5" if per_step_newline[k] else "")
        figure.text(left / fig.FIGURE_WIDTH, 1 - (cell_top + 0.12) / height, label, fontsize=9.5, weight="bold", color=fig.INK,
                    ha="left", va="center", parse_math=False)
        figure.text(left / fig.FIGURE_WIDTH, 1 - (cell_top + 0.3) / height, extra if per_step[k] else "no selection",
                    fontsize=8.5, color=fig.MUTED, ha="left", va="center")
        now = np.zeros(n, dtype=bool)
        now[selected[k]] = True
        for index, view in enumerate(views):
            if side_by_side:
                ax = layout.axes(left + index * (mini_w + 0.06), cell_top + step_title, mini_w, mini_h)
            else:
                ax = layout.axes(left, cell_top + step_title + index * (mini_h + 0.06), mini_w, mini_h)
            fig.draw_canvas(ax, geometry, image)
            fig.draw_cells(ax, view, cumulative[k + 1], heat, norm, alpha=0.62, hide=cumulative[k + 1] == 0)
            fig.outline_cells(ax, view, now, fig.ACCENT, width=1.3)
            if len(views) > 1:
                ax.text(0.03, 0.97, "base" if index == 0 else "high-res", transform=ax.transAxes, fontsize=7,
                        color="white", va="top", ha="left", bbox=dict(facecolor="#22252bb0", edgecolor="none", pad=1.5))
    figure.text((fig.FIGURE_WIDTH - RIGHT) / fig.FIGURE_WIDTH, 1 - (header + 0.12) / height,
                "outline: patches selected at the step  \u00b7  heat: cumulative \u03b1^count after it",
                fontsize=8.5, color=fig.MUTED, ha="right", va="center")

    # ---- timeline ----
    top = header + panels_height + 0.45
    ax = layout.axes(LEFT + 0.55, top, fig.FIGURE_WIDTH - LEFT - RIGHT - 1.0, 1.55)
    _timeline(ax, per_step, per_step_newline, shown, tokens if label_tokens else None, cumulative, newline)

    # ---- caption ----
    top += timeline_height + 0.3
    figure.text(LEFT / fig.FIGURE_WIDTH, 1 - (top + 0.12) / height, "caption", fontsize=10.5, weight="bold", color=fig.INK,
                ha="left", va="center")
    figure.text((LEFT + 0.75) / fig.FIGURE_WIDTH, 1 - (top + 0.12) / height,
                "token background: patches selected while reading the token  \u00b7  bold: shown as a step panel",
                fontsize=8.5, color=fig.MUTED, ha="left", va="center")
    cax = layout.axes(fig.FIGURE_WIDTH - RIGHT - 2.6, top + 0.06, 2.6, 0.12)
    _patch_colorbar(figure, cax, max(per_step, default=0))
    fig.draw_pieces(figure, placed, LEFT, top + 0.42, size=10.5)
    return fig.save(figure, out_path)


def _caption_pieces(tokens: Sequence[str], per_step: Sequence[int], shown: Sequence[int]) -> list[fig.Piece]:
    from matplotlib.colors import Normalize

    cmap = _caption_cmap()
    norm = Normalize(0, max(max(per_step, default=0), 1))
    pieces: list[fig.Piece] = []
    for k, token in enumerate(tokens):
        parts = fig.pieces_from_tokens([token])
        for piece in parts:
            if piece.newline:
                continue
            if k < len(per_step) and per_step[k] > 0:
                piece.background = cmap(norm(per_step[k]))
                piece.color = fig.readable_on(piece.background)
            if k in shown:
                piece.weight = "bold"
        pieces.extend(parts)
    return pieces


TICK_LABEL_WIDTH = 0.42
"""Inches one colour-bar label (a count over its factor, "×1.33" at 7.5 pt) needs beside the next."""


def _count_colorbar(figure: Any, cax: Any, artist: Any, max_count: int, alpha: float) -> None:
    if artist is None or max_count == 0:
        cax.set_axis_off()
        cax.text(0.5, 0.5, "no patch was selected", ha="center", va="center", fontsize=9, color=fig.MUTED,
                 transform=cax.transAxes)
        return
    bar = figure.colorbar(artist, cax=cax, orientation="horizontal")
    ticks = list(range(1, max_count + 1))
    room = int(cax.get_position().width * figure.get_figwidth() / TICK_LABEL_WIDTH)  # labels that fit side by side
    if len(ticks) > room:
        ticks = sorted(set(np.linspace(1, max_count, max(room, 2)).round().astype(int).tolist()))
    bar.set_ticks(ticks)
    bar.set_ticklabels([f"{t}\n\u00d7{alpha ** t:.3g}" for t in ticks])
    bar.ax.tick_params(labelsize=7.5, colors=fig.MUTED, length=2)
    bar.outline.set_visible(False)
    bar.ax.set_title("times selected (count) and amplification \u03b1^count", fontsize=8.5, color=fig.MUTED, pad=3)


def _patch_colorbar(figure: Any, cax: Any, max_patches: int) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    bar = figure.colorbar(ScalarMappable(Normalize(0, max(max_patches, 1)), _caption_cmap()), cax=cax,
                          orientation="horizontal")
    bar.ax.tick_params(labelsize=7.5, colors=fig.MUTED, length=2)
    bar.outline.set_visible(False)


def _timeline(ax: Any, per_step: Sequence[int], per_step_newline: Sequence[int], shown: Sequence[int],
              tokens: Sequence[str] | None, cumulative: np.ndarray, newline: np.ndarray) -> None:
    from matplotlib.colors import Normalize

    steps = np.arange(1, len(per_step) + 1)
    patches = np.asarray(per_step) - np.asarray(per_step_newline)
    cmap = _caption_cmap()
    norm = Normalize(0, max(max(per_step, default=0), 1))
    ax.bar(steps, patches, width=0.8, color=[cmap(norm(v)) for v in per_step], edgecolor="none", zorder=2)
    if newline.any():
        ax.bar(steps, per_step_newline, bottom=patches, width=0.8, color="#9aa0aa", edgecolor="none", zorder=2,
               label="on newline tokens")
        ax.legend(loc="upper left", fontsize=7.5, frameon=False)
    for k in shown:
        ax.bar(k + 1, per_step[k], width=0.8, color="none", edgecolor=fig.INK, linewidth=1.1, zorder=3)
    fig.style_axes(ax)
    ax.set_xlim(0.3, max(len(per_step), 1) + 0.7)
    ax.set_ylabel("patches\nselected", fontsize=8.5, color=fig.MUTED)
    ax.set_title("selections per decode step (framed: step panels)  \u00b7  line: distinct patches amplified so far",
                 fontsize=9, color=fig.MUTED, loc="left", pad=4)
    if tokens is not None:
        ax.set_xticks(steps)
        ax.set_xticklabels([fig.shorten(fig.printable(t.strip()) or "\u2423", 12) for t in tokens[: len(per_step)]], rotation=90,
                           fontsize=7)
    else:
        ax.set_xlabel("decode step", fontsize=8.5, color=fig.MUTED)
    twin = ax.twinx()
    distinct = ((cumulative[1:] > 0) & ~newline[None]).sum(axis=1) if len(per_step) else np.zeros(0)
    twin.plot(steps, distinct, color=fig.ACCENT, linewidth=1.6, zorder=4)
    twin.set_ylim(0, max(int(distinct.max()) if len(distinct) else 1, 1) * 1.1)
    for name in ("top", "left", "bottom"):
        twin.spines[name].set_visible(False)
    twin.spines["right"].set_color("#b8bcc4")
    twin.tick_params(colors=fig.ACCENT, labelsize=8, length=3)


# ----------------------------------------------------------------------------------------------------------------
# Running the model
# ----------------------------------------------------------------------------------------------------------------
def trace(prepared: fig.Prepared) -> dict[str, Any]:
    """Generate a caption with SPARC (the prepared run's settings) and return what the figure needs: the method's
    :class:`~sparc.method.SparcTrace`, the tokens and the geometry."""
    from llava.generation import generate

    from sparc.method import Sparc

    loaded, run = prepared.loaded, prepared.run
    config = get_method("sparc").build_config(run.params)
    if not config.enabled:
        raise fig.CliError("alpha = 1.0 is plain decoding (SPARC off): nothing to show")
    family, model, tokenizer = loaded.family, loaded.model, loaded.tokenizer
    prompt, batch, geometry = prepared.batch(run.protocol.prompt)
    if not geometry.spatial:
        raise fig.CliError(f"{family.spec.display}'s image tokens have no place on the image ({geometry.mode}): the "
                           "SPARC figure draws selections on the image")
    method = Sparc(config, record=True)
    output = generate(batch, run.protocol.generation_config(family.eos_token_ids(model, tokenizer)), method)
    sparc_trace = method.traces()[0]
    geometry.check(sparc_trace.image_len)
    ids = output.sequences[0]
    return {
        "family": family.name, "prompt": prompt, "geometry": geometry, "config": config, "token_ids": ids,
        "tokens": fig.token_pieces(tokenizer, ids), "caption": tokenizer.decode(ids, skip_special_tokens=True).strip(),
        "selections": sparc_trace.selections, "counts": sparc_trace.counts,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.figures sparc", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    fig.add_figure_arguments(parser, "sparc", max_new_tokens=64)
    parser.add_argument("--query", dest="prompt", default=None,
                        help="the question (default: the captioning benchmarks' \"Please describe this image in detail.\")")
    parser.add_argument("--steps", type=int, default=8, help="how many step panels (the steps with most selections)")
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    if args.steps < 1:
        raise fig.CliError("--steps must be at least 1")
    if args.max_new_tokens < 2:
        raise fig.CliError("--max-new-tokens must be at least 2 (the first selection is made reading token 1)")
    out = Path(args.out or f"sparc_{Path(args.image_file).stem}.png")
    check_output_folder(out.parent)  # before the model runs
    prepared = fig.prepare(args, "folder")
    result = trace(prepared)
    config, run = result["config"], prepared.run
    geometry: fig.TokenGeometry = result["geometry"]
    subtitle = (f"{Path(args.model_path).name or args.model_path} \u00b7 preset {run.preset}: \u03b1 {config.alpha} \u00b7 "
                f"\u03b2 {config.beta} \u00b7 \u03c4 {config.tau} \u00b7 layer {config.selected_layer} \u00b7 layers "
                f"{config.start_layer}-{config.end_layer} \u00b7 {geometry.mode} "
                f"{geometry.image_size[0]}x{geometry.image_size[1]}, {geometry.num_tokens} image tokens  \u00b7  "
                f"\u201c{fig.shorten(run.protocol.prompt, 70)}\u201d")
    render_sparc(prepared.image, result["selections"], result["counts"], result["tokens"], geometry, out,
                 alpha=config.alpha, steps=args.steps, subtitle=subtitle, dpi=args.dpi)
    print(f"figure: {out}")
    print(f"caption: {fig.shorten(result['caption'], 300)}")
    if args.json:
        newline = set(geometry.newline)
        dump = {
            "model_path": args.model_path, "image_file": str(args.image_file), "query": run.protocol.prompt,
            "prompt": result["prompt"], "settings": run.to_dict(), "family": result["family"],
            "geometry": geometry.to_dict(), "token_ids": result["token_ids"], "tokens": result["tokens"],
            "caption": result["caption"],
            "steps": [{"step": k + 1, "token": result["tokens"][k], "selected": selected,
                       "newline_selected": [j for j in selected if j in newline]}
                      for k, selected in enumerate(result["selections"])],
            "counts": result["counts"],
            "amplification": [config.alpha ** c for c in result["counts"]],
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(dump, indent=1))
        print(f"json: {args.json}")
    return out


def cli(argv: Sequence[str] | None = None) -> int:
    return fig.run_cli("python -m eval.figures sparc", main, argv)


if __name__ == "__main__":
    raise SystemExit(cli())
