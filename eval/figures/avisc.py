"""What AvisC finds at the prefill: how much each layer attends to the image, which layers it averages, where that
attention goes, which image tokens it judges *blind* (kept in the contrast branch) and which it masks; optionally the
answers with and without AvisC.

    python -m eval.figures avisc --model-path liuhaotian/llava-v1.5-7b --image-file photo.jpg --answer --out avisc.png
    python -m eval.figures avisc --model-path tiny-instructblip --image-file photo.jpg     # random model, quick demo

Settings resolve as in the runners: the protocol of ``--benchmark`` (template, preprocessing, decoding) and AvisC's
preset for that benchmark and the model's family (``--preset``, ``--method-args``, ``--lamb``, ...).

The image grid follows the preprocessing: CLIP center-crop (the AvisC scripts' default for LLaVA-1.5) or
pad-to-square (``--image-aspect pad``); LLaVA-NeXT's base image and unpadded high-res grid (newline tokens counted
apart); InstructBLIP's 32 query tokens have no layout and are drawn as a strip.

Python API, without a model: :func:`render_avisc` (and the geometry helpers of :mod:`eval.figures.common`).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from eval.figures import common as fig
from eval.files import check_output_folder
from eval.methods import get_method

DEFAULT_QUERY = "Describe this image."
LEFT, RIGHT = 0.5, 0.4
OTHER_LAYERS = "#c5c9d1"
MASKED = "#9aa0aa"


def _fit(aspect: float, width: float, height: float) -> tuple[float, float]:
    return (width, width / aspect) if width / aspect <= height else (height * aspect, height)


def render_avisc(
    image: Image.Image,
    shares: Sequence[float] | np.ndarray,
    layers: Sequence[int] | np.ndarray,
    attention: Sequence[float] | np.ndarray,
    masked: Sequence[int] | np.ndarray,
    geometry: fig.TokenGeometry,
    out_path: str | Path,
    *,
    lamb: float | None = None,
    layer_gamma: float | None = None,
    masking_scheme: str = "zeros",
    answers: Mapping[str, str] | None = None,
    query: str | None = None,
    title: str | None = None,
    subtitle: str | None = None,
    dpi: int = 100,
) -> Path:
    """Draw AvisC's blind-token detection for one image and save a PNG (``FIGURE_WIDTH * dpi`` pixels wide).

    ``shares`` ``(L,)``: each layer's share of image attention; ``layers``: the chosen layers (largest share first);
    ``attention`` ``(N,)``: their averaged attention over the image tokens; ``masked``: the non-blind token indices
    (masked in the contrast branch; all others are blind and kept); ``geometry``: where each image token lies
    (``sequence_geometry`` for InstructBLIP); ``lamb``: draws the threshold ``mean + lamb * std``; ``answers``: texts
    by label (e.g. ``{"without AvisC": ..., "with AvisC": ...}``).
    """
    shares = np.asarray(shares, dtype=float).reshape(-1)
    layers = [int(i) for i in np.asarray(layers).reshape(-1)]
    attention = np.asarray(attention, dtype=float).reshape(-1)
    n = attention.shape[0]
    if n != geometry.num_tokens:
        raise ValueError(f"{n} attention values for a geometry of {geometry.num_tokens} image tokens")
    if any(not 0 <= i < len(shares) for i in layers) or not layers:
        raise ValueError(f"chosen layers {layers} must be a non-empty subset of the {len(shares)} layers")
    masked_mask = np.zeros(n, dtype=bool)
    masked_idx = np.asarray(masked, dtype=int).reshape(-1)
    if len(masked_idx) and (masked_idx.min() < 0 or masked_idx.max() >= n):
        raise ValueError(f"masked token indices must lie in [0, {n})")
    masked_mask[masked_idx] = True
    blind = ~masked_mask
    newline = np.zeros(n, dtype=bool)
    newline[list(geometry.newline)] = True
    threshold = float(attention.mean() + lamb * attention.std(ddof=1)) if lamb is not None and n > 1 else None
    views = geometry.views
    x0, y0, x1, y1 = geometry.bounds
    aspect = (x1 - x0) / (y1 - y0)

    # ---- sizes (inches) ----
    header = 1.05
    chart_h = 2.2
    width = fig.FIGURE_WIDTH - LEFT - RIGHT
    if not geometry.spatial:
        panel_specs: list[tuple[Any, str]] = [(None, "input")]
        ncols, panel_w, panel_h = 1, *_fit(aspect, 3.6, 3.6)
    elif len(views) == 1:
        panel_specs = [(None, "input"), (views[0], "heat"), (views[0], "blind")]
        ncols = 3
        panel_w, panel_h = _fit(aspect, (width - 2 * 0.55) / 3, 5.2)
    else:
        panel_specs = [(v, kind) for v in views for kind in ("heat", "blind")]
        ncols = 4 if aspect < 1.25 else 2
        panel_w, panel_h = _fit(aspect, (width - (ncols - 1) * 0.55) / ncols, 5.0 if ncols == 4 else 4.9)
    nrows = -(-len(panel_specs) // ncols)
    panel_title = 0.5
    panels_h = nrows * (panel_title + panel_h) + (nrows - 1) * 0.25 + 0.55  # + colourbar row
    figure = fig.new_figure(fig.FIGURE_WIDTH, 10.0, dpi)
    text_pieces = _answer_pieces(query, answers)
    placed, text_h = fig.layout_pieces(figure, text_pieces, width - 0.3, size=10.5)
    height = header + chart_h + 0.75 + panels_h + 0.5 + text_h + 0.6
    figure.set_size_inches(fig.FIGURE_WIDTH, height)
    layout = fig.InchLayout(figure)

    # ---- header ----
    figure.text(LEFT / fig.FIGURE_WIDTH, 1 - 0.38 / height, title or "AvisC: blind tokens and the contrast branch",
                fontsize=16, weight="bold", color=fig.INK, ha="left", va="center")
    n_blind = int(blind.sum())
    summary = (f"{n} image tokens ({geometry.mode})  \u00b7  {n_blind} blind (kept), {n - n_blind} non-blind "
               f"(masked: {masking_scheme})  \u00b7  layers {', '.join(map(str, layers))} averaged")
    if geometry.newline:
        summary += f"  \u00b7  {int(newline.sum())} newline tokens, {int((newline & blind).sum())} of them blind"
    figure.text(LEFT / fig.FIGURE_WIDTH, 1 - 0.72 / height, fig.printable(subtitle + "\n" + summary if subtitle else summary),
                fontsize=9.5, color=fig.MUTED, ha="left", va="center", linespacing=1.5, parse_math=False)

    # ---- charts: layer shares, attention by rank ----
    top = header + 0.3
    share_w = width * 0.62
    ax = layout.axes(LEFT + 0.45, top, share_w - 0.45, chart_h)
    _share_chart(ax, shares, layers, layer_gamma)
    ax = layout.axes(LEFT + share_w + 0.75, top, width - share_w - 0.75, chart_h)
    _rank_chart(ax, attention, blind, newline, threshold, lamb)

    # ---- spatial panels ----
    top += chart_h + 0.75
    cmap = fig.colormap_slice("inferno", 0.0, 0.97, "avisc_attention")
    from matplotlib.colors import PowerNorm

    positive = attention[~newline] if (~newline).any() else attention
    norm = PowerNorm(0.5, vmin=0.0, vmax=max(float(positive.max()) if len(positive) else 1.0, 1e-12))
    heat_artist = None
    for slot, (view, kind) in enumerate(panel_specs):
        r, c = divmod(slot, ncols)
        left = LEFT + c * (panel_w + 0.55) if geometry.spatial else LEFT
        panel_top = top + r * (panel_title + panel_h + 0.25)
        ax = layout.axes(left, panel_top + panel_title, panel_w, panel_h)
        suffix = f"  \u00b7  {'base' if view is views[0] else 'high-res'}" if view is not None and len(views) > 1 else ""
        if kind == "input":
            fig.draw_canvas(ax, geometry, image, soft=0.0)
            name, note = "input", _input_note(geometry)
        elif kind == "heat":
            fig.draw_canvas(ax, geometry, image, soft=0.3)
            heat_artist = fig.draw_cells(ax, view, attention, cmap, norm, alpha=0.72, hide=newline)
            name, note = "attention of the chosen layers" + suffix, "last prompt token, mean over heads and layers"
        else:
            fig.draw_canvas(ax, geometry, image, soft=0.0)
            shade = np.where(masked_mask, 1.0, np.nan)
            from matplotlib.colors import ListedColormap, Normalize

            fig.draw_cells(ax, view, shade, ListedColormap(["#12141a"]), Normalize(0, 1), alpha=0.78)
            kept = fig.outline_cells(ax, view, blind & ~newline, fig.BLIND, width=1.6)
            name = "contrast branch: blind tokens kept" + suffix
            note = f"{kept} kept cells outlined, {int(view.values(masked_mask).sum())} masked cells darkened"
        figure.text(left / fig.FIGURE_WIDTH, 1 - (panel_top + 0.13) / height, name, fontsize=10.5, weight="bold",
                    color=fig.INK, ha="left", va="center")
        figure.text(left / fig.FIGURE_WIDTH, 1 - (panel_top + 0.34) / height, note, fontsize=8.5, color=fig.MUTED, ha="left",
                    va="center")
    if not geometry.spatial:
        strip_left = LEFT + panel_w + 0.75
        ax = layout.axes(strip_left + 0.35, top + panel_title, width - panel_w - 1.1, panel_h * 0.62)
        strip = layout.axes(strip_left + 0.35, top + panel_title + panel_h * 0.62 + 0.5, width - panel_w - 1.1, 0.32)
        _strip_chart(ax, strip, attention, blind, threshold, cmap, norm, figure, strip_left, top, height)
        heat_artist = None
    colorbar_top = top + nrows * (panel_title + panel_h) + (nrows - 1) * 0.25 + 0.22
    if heat_artist is not None:
        heat_slot = next(i for i, (_, kind) in enumerate(panel_specs) if kind == "heat")
        left = LEFT + (heat_slot % ncols) * (panel_w + 0.55)
        cax = layout.axes(left + 0.1 * panel_w, colorbar_top, 0.8 * panel_w, 0.12)
        bar = figure.colorbar(heat_artist, cax=cax, orientation="horizontal")
        top_value = float(norm.vmax)
        bar.set_ticks([0.0, top_value / 16, top_value / 4, top_value])
        bar.set_ticklabels(["0"] + [f"{v:.2g}" for v in (top_value / 16, top_value / 4, top_value)])
        bar.ax.tick_params(labelsize=7.5, colors=fig.MUTED, length=2)
        bar.outline.set_visible(False)
        bar.ax.set_title("attention (square-root scale)", fontsize=8, color=fig.MUTED, pad=3)

    # ---- answers ----
    top = header + chart_h + 0.75 + panels_h + 0.5
    box = layout.axes(LEFT, top - 0.12, width, text_h + 0.35)
    box.set_axis_off()
    from matplotlib.patches import FancyBboxPatch

    box.add_patch(FancyBboxPatch((0, 0), 1, 1, boxstyle="round,pad=0,rounding_size=0.02", transform=box.transAxes,
                                 facecolor="#f5f6f8", edgecolor="#e1e3e8", linewidth=0.8))
    fig.draw_pieces(figure, placed, LEFT + 0.15, top + 0.05, size=10.5)
    return fig.save(figure, out_path)


def _input_note(geometry: fig.TokenGeometry) -> str:
    width, height = geometry.image_size
    if geometry.mode == "crop":
        return f"{width}x{height}, centre crop the model sees (24x24 grid)"
    if geometry.mode == "pad":
        return f"{width}x{height}, padded to a square (dashed: the image)"
    return f"{width}x{height}"


def _answer_pieces(query: str | None, answers: Mapping[str, str] | None) -> list[fig.Piece]:
    pieces: list[fig.Piece] = []

    def add(label: str, text: str, color: str = fig.INK) -> None:
        if pieces:
            pieces.append(fig.Piece("", newline=True))
        pieces.append(fig.Piece(label, weight="bold", color=fig.INK))
        for word in fig.printable(" ".join(text.split())).split(" "):
            if word:
                pieces.append(fig.Piece(word, space=True, color=color))

    if query:
        add("query:", query, fig.MUTED)
    if answers:
        for label, text in answers.items():
            add(f"{label}:", text or "(empty)")
    else:
        add("answers:", "not generated (run with --answer to decode with and without AvisC)", fig.MUTED)
    return pieces


def _share_chart(ax: Any, shares: np.ndarray, layers: Sequence[int], layer_gamma: float | None) -> None:
    colors = [fig.BLIND if i in layers else OTHER_LAYERS for i in range(len(shares))]
    ax.bar(np.arange(len(shares)), shares, width=0.78, color=colors, edgecolor="none", zorder=2)
    for rank, i in enumerate(layers, 1):
        ax.text(i, shares[i], f"#{rank}", ha="center", va="bottom", fontsize=7.5, color=fig.BLIND, weight="bold")
    fig.style_axes(ax)
    ax.set_xlim(-0.7, len(shares) - 0.3)
    ax.set_ylim(0, float(shares.max()) * 1.18 if len(shares) else 1)
    step = 1 if len(shares) <= 40 else 2
    ax.set_xticks(np.arange(0, len(shares), step))
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel("layer", fontsize=8.5, color=fig.MUTED)
    ax.set_ylabel("share", fontsize=8.5, color=fig.MUTED)
    covered = float(shares[list(layers)].sum() / shares.sum()) if shares.sum() else 0.0
    ax.set_title("each layer's share of the attention on the image", fontsize=10.5, weight="bold", color=fig.INK,
                 loc="left", pad=16)
    gamma = f"\u03b3 = {layer_gamma:g}: " if layer_gamma is not None else ""
    ax.text(0, 1.02, f"{gamma}{len(layers)} layer{'s' if len(layers) > 1 else ''} chosen, largest share first "
            f"(cumulative share {covered:.2f})", transform=ax.transAxes, fontsize=8.5, color=fig.MUTED, va="bottom")


def _rank_chart(ax: Any, attention: np.ndarray, blind: np.ndarray, newline: np.ndarray, threshold: float | None,
                lamb: float | None) -> None:
    order = np.argsort(-attention, kind="stable")
    values = attention[order]
    ranks = np.arange(1, len(values) + 1)
    colors = np.where(blind[order], fig.BLIND, MASKED)
    ax.scatter(ranks, np.maximum(values, 1e-12), s=7, c=colors, linewidths=0, zorder=3)
    if newline.any():
        nl = newline[order]
        ax.scatter(ranks[nl], np.maximum(values[nl], 1e-12), s=22, facecolors="none", edgecolors=fig.INK, linewidths=0.6,
                   zorder=4, label="newline tokens")
        ax.legend(loc="upper right", fontsize=7.5, frameon=False)
    if (values > 0).all() and values.max() / max(values.min(), 1e-12) > 30:
        ax.set_yscale("log")
    if threshold is not None:
        ax.axhline(threshold, color=fig.INK, linestyle=(0, (4, 3)), linewidth=0.9, zorder=2)
        ax.text(len(values), threshold, f" \u03bc + {lamb:g}\u03c3", va="bottom", ha="right", fontsize=8, color=fig.INK)
    fig.style_axes(ax, "both")
    ax.set_xlabel("image tokens by attention (rank)", fontsize=8.5, color=fig.MUTED)
    ax.set_ylabel("attention", fontsize=8.5, color=fig.MUTED)
    ax.set_title("blind tokens: at or above the threshold", fontsize=10.5, weight="bold", color=fig.INK, loc="left", pad=16)
    ax.text(0, 1.02, f"{int(blind.sum())} blind (kept)  \u00b7  {int((~blind).sum())} masked", transform=ax.transAxes,
            fontsize=8.5, color=fig.MUTED, va="bottom")


def _strip_chart(ax: Any, strip: Any, attention: np.ndarray, blind: np.ndarray, threshold: float | None, cmap: Any,
                 norm: Any, figure: Any, left: float, top: float, height: float) -> None:
    n = len(attention)
    colors = np.where(blind, fig.BLIND, MASKED)
    low, high = float(attention.min()), float(attention.max())
    margin = (high - low) * 0.12 or max(abs(high) * 0.01, 1e-9)
    base = low - margin
    ax.vlines(np.arange(n), base, attention, colors=colors, linewidth=2.2, zorder=2)
    ax.scatter(np.arange(n), attention, s=34, c=colors, zorder=3, linewidths=0)
    if threshold is not None:
        ax.axhline(threshold, color=fig.INK, linestyle=(0, (4, 3)), linewidth=0.9, zorder=1)
        ax.text(n - 0.4, threshold, "threshold ", va="bottom", ha="right", fontsize=8, color=fig.INK)
    fig.style_axes(ax)
    ax.set_ylim(base, high + margin)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_xticks([])
    ax.set_ylabel("attention", fontsize=8.5, color=fig.MUTED)
    from matplotlib.colors import PowerNorm

    norm = PowerNorm(0.5, vmin=low, vmax=high if high > low else low + 1e-12)
    figure.text((left + 0.35) / fig.FIGURE_WIDTH, 1 - (top + 0.13) / height, f"the {n} query tokens (no spatial layout)",
                fontsize=10.5, weight="bold", color=fig.INK, ha="left", va="center")
    figure.text((left + 0.35) / fig.FIGURE_WIDTH, 1 - (top + 0.34) / height,
                "attention of the chosen layers (pink: blind, kept; grey: masked)  \u00b7  strip: the same as heat, min to max",
                fontsize=8.5, color=fig.MUTED, ha="left", va="center")
    strip.imshow(attention[None, :], cmap=cmap, norm=norm, aspect="auto", interpolation="nearest",
                 extent=(-0.5, n - 0.5, 1, 0))
    from matplotlib.patches import Rectangle

    for j in np.nonzero(blind)[0]:
        strip.add_patch(Rectangle((j - 0.5, 0), 1, 1, fill=False, edgecolor=fig.BLIND, linewidth=1.6))
    strip.set_xlim(-0.6, n - 0.4)
    strip.set_yticks([])
    strip.set_xticks(np.arange(n))
    strip.tick_params(labelsize=7, colors=fig.MUTED, length=2)
    strip.set_xlabel("query token", fontsize=8.5, color=fig.MUTED)
    for spine in strip.spines.values():
        spine.set_visible(False)


# ----------------------------------------------------------------------------------------------------------------
# Running the model
# ----------------------------------------------------------------------------------------------------------------
def trace(prepared: fig.Prepared, query: str, answer: bool = False) -> dict[str, Any]:
    """AvisC's prefill analysis (the method's :class:`~avisc.blind.BlindTokens`) for one image and, with ``answer``,
    the answers with and without AvisC, decoded as the prepared run's protocol says."""
    import torch
    from llava.generation import generate

    from avisc.methods import Avisc
    from eval.generation_setup import sample_seed

    loaded, run = prepared.loaded, prepared.run
    family, model, tokenizer = loaded.family, loaded.model, loaded.tokenizer
    config = get_method("avisc").build_config(run.params)
    prompt, batch, geometry = prepared.batch(query)
    protocol = run.protocol if answer else run.protocol.replace(max_new_tokens=1)
    settings = protocol.generation_config(family.eos_token_ids(model, tokenizer))

    def generators() -> list["torch.Generator"]:  # the same draw for both answers (a runner's per-sample seed)
        return [torch.Generator(device=loaded.device).manual_seed(sample_seed(run.protocol.seed, query))]

    method = Avisc(config)
    output = generate(batch, settings, method, generators())
    found = method.found[0]
    geometry.check(int(found.attention.shape[0]))
    result: dict[str, Any] = {
        "family": family.name, "prompt": prompt, "geometry": geometry, "config": config,
        "shares": found.shares.float().cpu().numpy(), "layers": found.layers.cpu().tolist(),
        "attention": found.attention.float().cpu().numpy(), "masked": found.masked.cpu().tolist(), "answers": None,
    }
    if answer:
        plain = generate(batch, settings, None, generators())
        decode = lambda ids: tokenizer.decode(ids, skip_special_tokens=True).strip()  # noqa: E731
        result["answers"] = {"without AvisC": decode(plain.sequences[0]), "with AvisC": decode(output.sequences[0])}
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.figures avisc", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    fig.add_figure_arguments(parser, "avisc", max_new_tokens=64)
    parser.add_argument("--query", default=DEFAULT_QUERY, help="the question (default: AMBER's generative query)")
    parser.add_argument("--benchmark", choices=["pope", "amber", "mme"], default="amber",
                        help="whose protocol and script settings apply (default amber)")
    parser.add_argument("--answer", action="store_true", help="also generate the answers with and without AvisC")
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    out = Path(args.out or f"avisc_{Path(args.image_file).stem}.png")
    check_output_folder(out.parent)  # before the model runs
    prepared = fig.prepare(args, args.benchmark)
    result = trace(prepared, args.query, args.answer)
    config, run = result["config"], prepared.run
    geometry: fig.TokenGeometry = result["geometry"]
    decoding = "greedy" if run.protocol.decoding == "greedy" else f"sampling, seed {run.protocol.seed}"
    subtitle = (f"{Path(args.model_path).name or args.model_path} ({result['family']}) \u00b7 preset {run.preset}: "
                f"\u03b3 {config.layer_gamma:g} \u00b7 \u03bb {config.lamb:g} \u00b7 \u03b1 {config.cd_alpha:g} \u00b7 "
                f"\u03b2 {config.cd_beta:g} \u00b7 {geometry.mode} {geometry.image_size[0]}x{geometry.image_size[1]}"
                + (f" \u00b7 {decoding}" if args.answer else ""))
    render_avisc(prepared.image, result["shares"], result["layers"], result["attention"], result["masked"], geometry,
                 out, lamb=config.lamb, layer_gamma=config.layer_gamma, masking_scheme=config.masking_scheme,
                 answers=result["answers"], query=args.query, subtitle=subtitle, dpi=args.dpi)
    print(f"figure: {out}")
    for label, text in (result["answers"] or {}).items():
        print(f"{label}: {fig.shorten(text, 300)}")
    if args.json:
        n = geometry.num_tokens
        masked = set(result["masked"])
        dump = {
            "model_path": args.model_path, "image_file": str(args.image_file), "query": args.query,
            "prompt": result["prompt"], "family": result["family"], "settings": run.to_dict(),
            "aspect": geometry.mode, "geometry": geometry.to_dict(),
            "shares": result["shares"].tolist(), "layers": result["layers"],
            "attention": result["attention"].tolist(),
            "threshold": float(result["attention"].mean() + config.lamb * result["attention"].std(ddof=1)),
            "masked": result["masked"], "blind": [j for j in range(n) if j not in masked],
            "answers": result["answers"],
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(dump, indent=1))
        print(f"json: {args.json}")
    return out


def cli(argv: Sequence[str] | None = None) -> int:
    return fig.run_cli("python -m eval.figures avisc", main, argv)


if __name__ == "__main__":
    raise SystemExit(cli())
