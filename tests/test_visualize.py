"""Figures of SPARC and AvisC: token geometry on hand-worked examples, rendering from plain arrays, both CLIs end to
end on the golden tiny checkpoint, and one bad input each."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eval.figures.common import FIGURE_WIDTH, geometry_for, token_pieces
from llava.geometry import crop_geometry, pad_geometry, sequence_geometry
from llava.model.families.llava.model import anyres_geometry
from llava.mm_utils import get_anyres_image_grid_shape, select_best_resolution

PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
PROJECT = Path(__file__).resolve().parents[1]


def approx_box(box, expected):
    assert box is not None
    assert np.allclose(box, expected), (box, expected)


# ---------------------------------------------------------------------------------------------- geometry
def test_pad_geometry_480x320():
    g = pad_geometry((480, 320), background=(122, 116, 104))
    assert g.num_tokens == 576 and g.newline == ()
    # the padded square is 480x480, the image pasted 80 px down: cells of 20 px
    approx_box(g.token_box(0, canvas=True), (0, 0, 20, 20))  # token 0: top-left cell of the padded square
    approx_box(g.token_box(0), (0, -80, 20, -60))  # ... which is padding, above the image
    approx_box(g.token_box(4 * 24), (0, 0, 20, 20))  # row 4: the image's first row of cells
    approx_box(g.token_box(575), (460, 380, 480, 400))  # last token: bottom-right, padding below the image
    approx_box(g.token_box(24 + 5, canvas=True), (100, 20, 120, 40))
    assert g.locate(24 * 7 + 3) == (0, 7, 3)
    canvas, extent = g.canvas(Image.new("RGB", (480, 320), (255, 0, 0)))
    assert canvas.size == (480, 480) and extent == (0, 480, 400, -80)
    assert canvas.getpixel((0, 0)) == (122, 116, 104) and canvas.getpixel((0, 80)) == (255, 0, 0)
    tall = pad_geometry((240, 400))
    approx_box(tall.token_box(0), (-80, 0, -80 + 400 / 24, 400 / 24))


def test_crop_geometry_480x320():
    g = crop_geometry((480, 320))
    # shortest side to 336 gives 504x336; the centred 336 crop starts at x = 84, i.e. 80 px of the original
    approx_box(g.bounds, (80, 0, 400, 320))
    approx_box(g.token_box(0), (80, 0, 80 + 320 / 24, 320 / 24))
    approx_box(g.token_box(575), (400 - 320 / 24, 320 - 320 / 24, 400, 320))


def test_anyres_geometry_480x320_matches_mm_utils():
    best = select_best_resolution((480, 320), [tuple(p) for p in PINPOINTS])
    assert best == (672, 336)
    assert get_anyres_image_grid_shape((480, 320), PINPOINTS, 336) == (2, 1)
    g = anyres_geometry((480, 320), PINPOINTS)
    base, grid = g.views
    assert (base.rows, base.cols) == (24, 24)
    # 2x1 tiles: a 24x48 feature map; the image fills 504 of the 672 px (84 px bars each side): 36 columns stay
    assert (grid.rows, grid.cols) == (24, 36)
    assert len(g.newline) == grid.rows == 24
    assert g.num_tokens == 576 + grid.rows * (grid.cols + 1) == 1464
    assert g.newline[0] == 576 + 36 and g.newline[-1] == 1463
    assert g.token_box(576 + 36) is None  # a newline token has no region
    approx_box(g.token_box(0), (0, 0, 20, 40 / 3))  # base: 24x24 over the squashed image
    approx_box(g.token_box(576), (0, 0, 40 / 3, 40 / 3))  # first high-res cell: the image's top-left corner
    approx_box(g.token_box(576 + 37 + 1), (40 / 3, 40 / 3, 80 / 3, 80 / 3))  # row 1, col 1 (after one newline)
    approx_box(grid.box, (0, 0, 480, 320))
    tokens = np.concatenate([v.tokens.ravel() for v in g.views] + [np.array(g.newline)])
    assert sorted(tokens.tolist()) == list(range(g.num_tokens))  # every token exactly once


@pytest.mark.parametrize("size, rows, cols", [((240, 400), 40, 24), ((336, 336), 24, 24), ((1000, 200), 14, 72)])
def test_anyres_geometry_other_shapes(size, rows, cols):
    g = anyres_geometry(size, PINPOINTS)
    assert (g.views[1].rows, g.views[1].cols) == (rows, cols)
    assert g.num_tokens == 576 + rows * (cols + 1)


def test_anyres_flat_geometry_covers_every_tile():
    g = anyres_geometry((480, 320), PINPOINTS, merge="flat")
    assert g.num_tokens == 576 * 3 and g.newline == ()
    grid = g.views[1]
    assert grid.tokens[0, 24] == 576 * 2  # the second tile starts at column 24
    assert sorted(np.concatenate([v.tokens.ravel() for v in g.views]).tolist()) == list(range(g.num_tokens))


def test_geometry_matches_the_models_image_span(golden_dir):
    """The geometry predicts the number of spliced image tokens of the golden checkpoints, for every image."""
    import torch

    from llava.model.builder import load_pretrained_model
    from llava.model.families import family_of

    for name, aspects in (("tiny-llava-v1.5", ("pad", "crop")), ("tiny-llava-v1.6-vicuna", (None, "pad", "crop"))):
        tokenizer, model, processor, _ = load_pretrained_model(golden_dir / name, device_map="cpu", dtype=torch.float32)
        family = family_of(model)
        for image_name in ("img_wide.jpg", "img_tall.jpg", "img_square.jpg"):
            image = Image.open(golden_dir / "images" / image_name).convert("RGB")
            for aspect in aspects:
                preprocessing = family.preprocessing(model, processor, aspect)
                images = family.pixel_values(model, processor, [image], preprocessing)
                sequence = family.embed(model, tokenizer, ["<image>\nhi"], images)[0]
                geometry = geometry_for(model, processor, image.size, preprocessing)
                assert geometry.num_tokens == sequence.image_len, (name, image_name, aspect)
                if geometry.mode == "pad":
                    assert geometry.background == tuple(int(x * 255) for x in processor.image_mean)


# Aspect ratios the model accepts: extreme strips (2000x20 keeps no high-res row after unpadding, 20x2000 no column;
# 3000x2 and 2x3000 are 1 pixel thick on the grid canvas), squares, the grid pinpoints' own ratios, near-ties.
ASPECT_SIZES = [
    (2000, 20), (20, 2000), (3000, 2), (2, 3000), (5000, 7), (336, 336), (17, 17), (1000, 1000), (336, 672),
    (672, 336), (672, 672), (1008, 336), (336, 1008), (168, 336), (2016, 672), (480, 320), (481, 320), (240, 400),
    (1000, 200), (999, 333), (1009, 336), (337, 1009), (640, 480), (4000, 900),
]


@pytest.mark.parametrize(
    "size, tokens, unpadded",
    [
        # best (1008, 336): a 24x72 map; new height int(20 * 72 / 2000) = 0, padding 12: no row stays
        ((2000, 20), 576, [0, 72]),
        # best (336, 1008): a 72x24 map; new width int(20 * 72 / 2000) = 0, padding 12: 72 rows of no column,
        # each still closed by its newline token
        ((20, 2000), 576 + 72, [72, 0]),
        # every pinpoint keeps 0 pixels (2 * scale < 1): the first, (336, 672), wins; a 48x24 map, no row stays
        ((3000, 2), 576, [0, 24]),
    ],
)
def test_anyres_geometry_of_extreme_strips_by_hand(size, tokens, unpadded):
    g = anyres_geometry(size, PINPOINTS)
    assert g.num_tokens == tokens and g.notes["unpadded"] == unpadded
    assert len(g.views) == 1 and len(g.newline) == unpadded[0]  # the base grid only: the high-res grid is empty


class _FakeModel:
    """What ``merge_tiles`` reads of a LLaVA-NeXT model: the vision and grid config and the newline embedding."""

    def __init__(self, merge: str, dim: int = 3):
        from types import SimpleNamespace

        import torch

        vision = SimpleNamespace(image_size=336, patch_size=14)
        self.config = SimpleNamespace(vision_config=vision, image_grid_pinpoints=PINPOINTS, mm_patch_merge_type=merge)
        self.model = SimpleNamespace(image_newline=torch.full((dim,), -1.0))


@pytest.mark.parametrize("merge", ["spatial_unpad", "flat"])
@pytest.mark.parametrize("size", ASPECT_SIZES)
def test_layout_is_what_merge_tiles_builds_token_by_token(size, merge):
    """Tile features carrying their own (tile, patch) id, merged by the model's code: each position of the image
    span holds the feature the layout (and so the figure) says, the newline embedding where it says newline."""
    import torch

    from llava.model.families import get_family

    family, model = get_family("llava_next").create(), _FakeModel(merge)
    layout = family.image_layout(model, size, tiled=True)
    ids = torch.arange((1 + layout.num_tiles) * 576, dtype=torch.float32).view(-1, 576, 1).expand(-1, -1, 3)
    merged = family.merge_tiles(model, ids, size)[:, 0]
    assert merged.shape[0] == layout.num_tokens
    expected = torch.full((layout.num_tokens,), -1.0)
    expected[:576] = torch.arange(576.0)
    row0, _, col0, _ = layout.window
    for (r, c), token in np.ndenumerate(layout.grid_tokens()):
        row, col = row0 + r, col0 + c  # the cell of the tiles' feature map: tile (row // 24, col // 24)
        tile = (row // 24) * layout.tiles[0] + col // 24
        expected[token] = 576 * (1 + tile) + (row % 24) * 24 + col % 24
    assert torch.equal(merged, expected)
    assert [i for i in range(layout.num_tokens) if merged[i] == -1] == list(layout.newline_tokens)
    single = family.merge_tiles(model, ids[:1], size)  # pad / crop: one tile
    assert single.shape[0] == family.image_layout(model, size, tiled=False).num_tokens == 576 + (merge != "flat")


@pytest.mark.parametrize("size", ASPECT_SIZES)
def test_geometry_is_the_span_the_tiny_next_model_produces(size):
    """The figure geometry predicts the image span the model really splices, for every aspect mode."""
    from helpers import synthetic
    from llava.mm_utils import Preprocessing
    from llava.model.families import family_of

    tokenizer, model, processor = synthetic("llava_next")
    family = family_of(model)
    image = Image.new("RGB", size, (120, 30, 200))
    for aspect in (None, "pad", "crop"):
        big = Preprocessing.of(processor, aspect, PINPOINTS) if aspect else None
        if big is not None and np.prod(big.largest_image(size)) > 4_000_000:
            continue  # pad / crop of a thin strip builds a huge image (3000x2 crop: 504000x336); one tile all the same
        preprocessing = family.preprocessing(model, processor, aspect)
        sequence = family.embed(model, tokenizer, ["<image>\nhi"], family.pixel_values(model, processor, [image], preprocessing))[0]
        geometry = geometry_for(model, processor, size, preprocessing)
        assert geometry.num_tokens == sequence.image_len, aspect
        tokens = np.concatenate([v.tokens.ravel() for v in geometry.views] + [np.array(geometry.newline, dtype=int)])
        assert sorted(tokens.tolist()) == list(range(geometry.num_tokens))  # every token exactly once


@pytest.mark.parametrize("size", [(2000, 20), (20, 2000), (3000, 2)])
def test_figures_draw_extreme_strips(tmp_path, size):
    """Both figures, from a real trace of the tiny LLaVA-NeXT model, on strips that keep no high-res row / column."""
    import torch

    from eval.benchmarks import resolve_run
    from eval.figures.avisc import render_avisc
    from eval.figures.avisc import trace as avisc_trace
    from eval.figures.common import Prepared
    from eval.figures.sparc import render_sparc
    from eval.figures.sparc import trace as sparc_trace
    from helpers import synthetic
    from llava.model.builder import LoadedModel
    from llava.model.families import family_of

    tokenizer, model, processor = synthetic("llava_next")
    loaded = LoadedModel(tokenizer, model, processor, family_of(model), torch.device("cpu"), 2048, "tiny-next", True)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    sparc_run = resolve_run("folder", "llava_next", "sparc", protocol_overrides={"max_new_tokens": 3})
    result = sparc_trace(Prepared(image, loaded, sparc_run))
    render_sparc(image, result["selections"], result["counts"], result["tokens"], result["geometry"],
                 tmp_path / "sparc.png", dpi=40)
    assert Image.open(tmp_path / "sparc.png").width == round(FIGURE_WIDTH * 40)
    found = avisc_trace(Prepared(image, loaded, resolve_run("amber", "llava_next", "avisc")), "is there a dog?")
    render_avisc(image, found["shares"], found["layers"], found["attention"], found["masked"], found["geometry"],
                 tmp_path / "avisc.png", lamb=1.0, dpi=40)
    assert Image.open(tmp_path / "avisc.png").width == round(FIGURE_WIDTH * 40)


@pytest.mark.parametrize("tool", ["sparc", "avisc"])
def test_figure_clis_on_a_2000x20_strip(tmp_path, tool, capsys):
    """The issue's example: ``python -m eval.figures sparc --model-path tiny-next --image-file strip.png`` (2000x20)."""
    import importlib

    cli = importlib.import_module(f"eval.figures.{tool}").cli
    Image.new("RGB", (2000, 20), (200, 100, 50)).save(tmp_path / "strip.png")
    out, dump = tmp_path / "figure.png", tmp_path / "figure.json"
    code = cli(["--model-path", "tiny-next", "--image-file", str(tmp_path / "strip.png"), "--max-new-tokens", "2",
                "--out", str(out), "--json", str(dump), "--dpi", "40"])
    assert code == 0, capsys.readouterr().err
    geometry = json.loads(dump.read_text())["geometry"]
    assert geometry["num_tokens"] == 576 and geometry["unpadded"] == [0, 72] and out.is_file()


# ---------------------------------------------------------------------------------------------- rendering
def _check_png(path: Path, dpi: int) -> Image.Image:
    assert path.is_file()
    image = Image.open(path).convert("RGB")
    assert image.width == round(FIGURE_WIDTH * dpi)
    assert image.height > 0.5 * image.width
    pixels = np.asarray(image)
    assert pixels.std() > 20  # not blank
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1000  # images, heat, text: many colours
    return image


def _image(golden_dir: Path, name: str = "img_wide.jpg") -> Image.Image:
    return Image.open(golden_dir / "images" / name).convert("RGB")


def _sparc_selections(geometry, steps: int = 30, seed: int = 0) -> list[list[int]]:
    """A plausible run: a few patches per step, clustered around two objects."""
    rng = np.random.default_rng(seed)
    view = geometry.views[-1]
    centres = [(view.rows // 3, view.cols // 4), (2 * view.rows // 3, 3 * view.cols // 4)]
    selections = []
    for step in range(steps):
        if step % 5 == 3:
            selections.append([])
            continue
        r0, c0 = centres[step % 2]
        cells = {(int(np.clip(r0 + rng.integers(-2, 3), 0, view.rows - 1)),
                  int(np.clip(c0 + rng.integers(-2, 3), 0, view.cols - 1))) for _ in range(rng.integers(1, 6))}
        selections.append(sorted(int(view.tokens[r, c]) for r, c in cells))
    return selections


def test_render_sparc_pad(golden_dir, tmp_path):
    from eval.figures.sparc import render_sparc

    image = _image(golden_dir)
    geometry = pad_geometry(image.size, background=(122, 116, 104))
    selections = _sparc_selections(geometry)
    counts = np.zeros(576, dtype=int)
    for s in selections:
        counts[s] += 1
    tokens = [" The", " image", " shows", " a", " red", " car", " parked", " next", " to", " a", " tree", "."] * 3
    out = render_sparc(image, selections, counts, tokens[:31], geometry, tmp_path / "sparc.png", alpha=1.1, steps=6,
                       subtitle="hand-made selections", dpi=80)
    _check_png(out, 80)
    with pytest.raises(ValueError, match="counts"):
        render_sparc(image, selections, counts + 1, tokens, geometry, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="outside"):
        render_sparc(image, [[576]], None, ["a", "b"], geometry, tmp_path / "bad.png")


def test_render_sparc_anyres_counts_newlines(golden_dir, tmp_path):
    from eval.figures.sparc import render_sparc

    image = _image(golden_dir, "img_tall.jpg")
    geometry = anyres_geometry(image.size, PINPOINTS)
    selections = _sparc_selections(geometry, steps=12)
    selections[0] = selections[0] + [5, geometry.newline[2]]  # a base token and a newline token
    out = render_sparc(image, selections, None, None, geometry, tmp_path / "next.png", step_indices=[0, 1, 4], dpi=60)
    _check_png(out, 60)


def test_render_avisc_grid_and_strip(golden_dir, tmp_path):
    from eval.figures.avisc import render_avisc

    rng = np.random.default_rng(0)
    image = _image(golden_dir)
    shares = rng.uniform(0.5, 1.5, 32)
    shares /= shares.sum()
    layers = np.argsort(-shares)[:5]
    for geometry in (crop_geometry(image.size), pad_geometry(image.size), anyres_geometry(image.size, PINPOINTS),
                     sequence_geometry(image.size, 32)):
        n = geometry.num_tokens
        attention = rng.gamma(1.0, 1.0, n) / n
        attention[rng.choice(n, 4, replace=False)] *= 20  # a few sinks
        threshold = attention.mean() + attention.std(ddof=1)
        masked = np.nonzero(attention < threshold)[0]
        out = render_avisc(image, shares, layers, attention, masked, geometry, tmp_path / f"avisc_{geometry.mode}.png",
                           lamb=1.0, layer_gamma=0.5, query="Is there a car?",
                           answers={"without AvisC": "Yes, there is a car.", "with AvisC": "No."}, dpi=60)
        _check_png(out, 60)
    with pytest.raises(ValueError, match="geometry"):
        render_avisc(image, shares, layers, np.ones(10), [], crop_geometry(image.size), tmp_path / "bad.png")


def test_token_pieces_keep_spaces():
    from llava.model.toy_tokenizers import toy_tokenizer

    tokenizer = toy_tokenizer()
    ids = tokenizer("the dog is on the table").input_ids[1:]
    pieces = token_pieces(tokenizer, ids)
    assert len(pieces) == len(ids) and "".join(pieces).split() == ["the", "dog", "is", "on", "the", "table"]


# ---------------------------------------------------------------------------------------------- CLIs
def test_sparc_cli_end_to_end(golden_dir, tmp_path, capsys):
    from eval.figures.sparc import cli

    out, dump = tmp_path / "sparc.png", tmp_path / "sparc.json"
    code = cli(["--model-path", str(golden_dir / "tiny-llava-v1.5"), "--image-file", str(golden_dir / "images" / "img_wide.jpg"),
                "--max-new-tokens", "6", "--steps", "3", "--out", str(out), "--json", str(dump), "--dpi", "60"])
    assert code == 0, capsys.readouterr().err
    _check_png(out, 60)
    data = json.loads(dump.read_text())
    assert data["geometry"]["mode"] == "pad" and data["geometry"]["num_tokens"] == 576
    assert len(data["token_ids"]) == 6 and len(data["steps"]) == 5  # the last token is never read
    counts = np.zeros(576, dtype=int)
    for step in data["steps"]:
        counts[step["selected"]] += 1
    assert counts.tolist() == data["counts"]
    # the official code's run on the same checkpoint (paper case): same tokens, same selections per step
    golden = json.loads((golden_dir / "sparc_golden.json").read_text())
    paper = next(c for c in golden["cases"] if c["name"] == "paper")
    official = next(o for o in paper["outputs"] if o["image"] == "img_wide.jpg")
    start = golden["image_token_start"]
    assert data["token_ids"] == official["generated_ids"][:6]
    assert [[start + j for j in step["selected"]] for step in data["steps"]] == official["selected_positions_per_step"][:5]


def test_sparc_cli_bad_image(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "eval.figures", "sparc", "--model-path", "tiny", "--image-file", str(tmp_path / "missing.jpg")],
        capture_output=True, text=True, cwd=PROJECT, timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing.jpg" in lines[0] and "no such image file" in lines[0]


def test_avisc_cli_end_to_end(golden_dir, tmp_path, capsys):
    from eval.figures.avisc import cli

    out, dump = tmp_path / "avisc.png", tmp_path / "avisc.json"
    code = cli(["--model-path", str(golden_dir / "tiny-llava-v1.5"), "--image-file", str(golden_dir / "images" / "img_tall.jpg"),
                "--answer", "--max-new-tokens", "3", "--out", str(out), "--json", str(dump), "--dpi", "60"])
    assert code == 0, capsys.readouterr().err
    _check_png(out, 60)
    data = json.loads(dump.read_text())
    assert data["aspect"] == "crop" and len(data["attention"]) == 576 and len(data["shares"]) == 32
    assert sorted(data["masked"] + data["blind"]) == list(range(576))
    assert set(data["answers"]) == {"without AvisC", "with AvisC"}
    attention = np.array(data["attention"])
    assert all(attention[j] >= data["threshold"] - 1e-6 for j in data["blind"])


def test_avisc_cli_not_a_checkpoint(golden_dir, tmp_path, capsys):
    from eval.figures.avisc import cli

    code = cli(["--model-path", str(tmp_path), "--image-file", str(golden_dir / "images" / "img_wide.jpg"),
                "--out", str(tmp_path / "x.png")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a model checkpoint" in err[0]
    assert not (tmp_path / "x.png").exists()
