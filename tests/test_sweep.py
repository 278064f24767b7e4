"""Sweeps (``python -m eval.sweep``) end to end on the golden tiny LLaVA-1.5: every point a normal run, scored with its
benchmark's scorer, tabled and drawn; checked before anything runs; resumable; a failed point does not stop the others."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import PROJECT_ROOT
from eval import sweep
from eval.files import InputError

DATA = PROJECT_ROOT / "eval" / "data"
COCO_IDS = (139, 285, 632)


def coco_images(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for image_id in COCO_IDS:
        pixels = np.random.default_rng(image_id).integers(0, 255, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"COCO_val2014_{image_id:012d}.jpg")
    return folder


def caption_sweep(golden_dir: Path, tmp_path: Path, *grids: str, extra: tuple[str, ...] = ()) -> list[str]:
    return ["caption", *(item for grid in grids for item in ("--grid", grid)),
            "--model-path", str(golden_dir / "tiny-llava-v1.5"), "--dataset-type", "coco",
            "--image-folder", str(coco_images(tmp_path / "val2014")), "--limit", "2", "--max-new-tokens", "5",
            "--save-path", str(tmp_path / "out"), "--experiment-name", "sparc_coco", *extra]


def table(tmp_path: Path, name: str = "sparc_coco") -> dict:
    return json.loads((tmp_path / "out" / f"{name}_sweep.json").read_text())


def stamps(folder: Path) -> dict[str, int]:
    """When each point's answers and metrics last changed."""
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()
            if p.name.endswith((".jsonl", "_chair.json")) and not p.name.endswith("_errors.jsonl")}


def test_a_grid_of_sparc_parameters_is_run_scored_tabled_and_drawn(golden_dir, tmp_path, capsys):
    code = sweep.main(caption_sweep(golden_dir, tmp_path, "alpha=1.05,1.2", "tau=1,2", extra=("--method", "sparc")))
    assert code == 0
    data = table(tmp_path)
    names = [p["name"] for p in data["points"]]
    assert names == ["sparc_coco__baseline", "sparc_coco__alpha=1.05_tau=1", "sparc_coco__alpha=1.05_tau=2",
                     "sparc_coco__alpha=1.2_tau=1", "sparc_coco__alpha=1.2_tau=2"]
    assert data["scorer"] == "chair" and data["grids"] == {"alpha": ["1.05", "1.2"], "tau": ["1", "2"]}
    assert all(p["status"] == "scored" for p in data["points"])
    out = tmp_path / "out"
    for point in data["points"]:
        metrics = json.loads((out / f"{point['name']}_chair.json").read_text())
        assert point["metrics"]["CHAIRs"] == metrics["metrics"]["CHAIRs"]
        results = json.loads((out / f"{point['name']}_results.json").read_text())["config"]
        assert results["limit"] == 2 and results["protocol"]["max_new_tokens"] == 5
        if point["baseline"]:
            assert results["method"] == "baseline"
            continue
        assert results["method"] == "sparc"
        params = results["method_params"]
        assert (params["alpha"], params["tau"]) == (float(point["values"]["alpha"]), float(point["values"]["tau"]))
        assert results["sources"]["alpha"] == "sweep" and results["sources"]["tau"] == "sweep"
        assert results["sources"]["beta"] != "sweep"
    markdown = (out / "sparc_coco_sweep.md").read_text()
    assert "| alpha | tau | CHAIRs ↓ |" in markdown and "| baseline |  |" in markdown
    assert (out / "sparc_coco_sweep.png").stat().st_size > 10_000
    assert markdown in capsys.readouterr().out

    before = stamps(out)  # the same command again: every point is finished, nothing is decoded or scored again
    assert sweep.main(caption_sweep(golden_dir, tmp_path, "alpha=1.05,1.2", "tau=1,2",
                                    extra=("--method", "sparc"))) == 0
    assert stamps(out) == before
    assert table(tmp_path)["points"] == data["points"]


def test_every_point_is_checked_before_the_first_run(golden_dir, tmp_path, capsys):
    """A bad value, an unknown name, method or a layer the model does not have: one error line per distinct message
    naming its points (no usage block), nothing run."""
    cases = [("tau=1,nan", "tau=nan"), ("selected_layer=1,99", "selected_layer=99"),
             ("alpah=1,2", "alpah=1, alpah=2: alpah is not a parameter of sparc nor a protocol setting (did you mean alpha?)"),
             ("tau=1,abc", "tau=abc: argument --tau: invalid"), ("method=baseline,nosuch", "method=nosuch: unknown method")]
    for grid, message in cases:
        with pytest.raises(InputError, match="nothing was started") as error:
            sweep.main(caption_sweep(golden_dir, tmp_path, grid, extra=() if "method" in grid else ("--method", "sparc")))
        assert message in str(error.value)
        assert len(str(error.value).splitlines()) == 2  # the heading and one line
        assert "usage:" not in capsys.readouterr().err
        assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.jsonl"))
    with pytest.raises(InputError, match="--grid tau is given twice"):
        sweep.main(caption_sweep(golden_dir, tmp_path, "tau=1", "tau=2", extra=("--method", "sparc")))
    # a value may hold '_' (the ablation presets); --check-only checks every point and runs none
    assert sweep.main(caption_sweep(golden_dir, tmp_path, "preset=paper,no_selection,no_ema",
                                    extra=("--method", "sparc", "--check-only"))) == 0
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.jsonl"))
    with pytest.raises(InputError, match="both a --grid and a flag"):
        sweep.main(caption_sweep(golden_dir, tmp_path, "tau=1,2", extra=("--method", "sparc", "--tau", "3")))
    with pytest.raises(InputError, match="NAME=V1,V2"):
        sweep.main(caption_sweep(golden_dir, tmp_path, "tau"))
    with pytest.raises(InputError, match="file names"):
        sweep.main(caption_sweep(golden_dir, tmp_path, "tau=1/2"))


def test_a_failed_point_does_not_stop_the_others(golden_dir, tmp_path):
    """A point whose output holds a run with other settings fails with the runner's reason; the others are scored,
    the table says which failed and why, and the exit status is 1."""
    args = caption_sweep(golden_dir, tmp_path, "tau=1,2", extra=("--method", "sparc", "--no-baseline"))
    out = tmp_path / "out"
    out.mkdir()
    from eval import caption

    assert caption.main(["--model-path", str(golden_dir / "tiny-llava-v1.5"), "--dataset-type", "coco",
                         "--image-folder", str(tmp_path / "val2014"), "--limit", "1", "--max-new-tokens", "3",
                         "--save-path", str(out), "--experiment-name", "sparc_coco__tau=2", "--method",
                         "baseline"]) == 0
    assert sweep.main(args) == 1
    points = {p["name"]: p for p in table(tmp_path)["points"]}
    assert points["sparc_coco__tau=1"]["status"] == "scored"
    failed = points["sparc_coco__tau=2"]
    assert failed["status"] == "failed" and "--overwrite" in failed["reason"]
    assert "failed" in (out / "sparc_coco_sweep.md").read_text()


def test_a_killed_sweep_resumes_without_recomputing_a_finished_point(golden_dir, tmp_path):
    """A sweep killed (SIGKILL) once its first point is scored, then run again: the finished point's answers and
    metrics are untouched (neither decoded nor scored again), every point ends scored."""
    args = caption_sweep(golden_dir, tmp_path, "tau=1,1.5,2", extra=("--method", "sparc", "--no-baseline"))
    out = tmp_path / "out"
    first = out / "sparc_coco__tau=1_chair.json"
    process = subprocess.Popen([sys.executable, "-m", "eval.sweep", *args], cwd=PROJECT_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 300
    while not first.is_file() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert first.is_file(), process.stderr.read().decode()
    scored = {path.name.removesuffix("_chair.json") for path in out.glob("*_chair.json")}
    assert "sparc_coco__tau=1" in scored and len(scored) < 3  # killed after the first point, before the last
    finished = {name: stamp for name, stamp in stamps(out).items()
                if name.removesuffix(".jsonl").removesuffix("_chair.json") in scored}

    assert sweep.main(args) == 0
    after = stamps(out)
    assert {name: after[name] for name in finished} == finished
    assert [p["status"] for p in table(tmp_path)["points"]] == ["scored"] * 3


def test_the_method_itself_can_be_the_grid(golden_dir, tmp_path):
    """``--grid method=...``: one point per method with its preset values, no separate baseline point."""
    assert sweep.main(caption_sweep(golden_dir, tmp_path, "method=baseline,sparc,vcd")) == 0
    data = table(tmp_path)
    assert [p["values"]["method"] for p in data["points"]] == ["baseline", "sparc", "vcd"]
    assert not any(p["baseline"] for p in data["points"])
    results = json.loads((tmp_path / "out" / "sparc_coco__method=vcd_results.json").read_text())["config"]
    assert results["method"] == "vcd" and results["sources"]["method"] == "sweep"


def test_a_protocol_field_and_a_pope_heatmap(golden_dir, tmp_path):
    """Two grids on POPE (a method parameter and a protocol field): scored with POPE's scorer, drawn as a heatmap."""
    questions = [json.loads(line) for line in
                 (DATA / "pope/vcd/coco/coco_pope_random.json").read_text().splitlines()[:2]]
    images = tmp_path / "coco"
    images.mkdir()
    for index, question in enumerate(questions):
        pixels = np.random.default_rng(index).integers(0, 255, (40, 56, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / question["image"])
    code = sweep.main(["vqa", "--grid", "cd_alpha=1,2", "--grid", "max_new_tokens=2,3",
                       "--model-path", str(golden_dir / "tiny-llava-v1.5"), "--benchmark", "pope",
                       "--pope-split", "coco/random", "--image-folder", str(images), "--limit", "2",
                       "--method", "vcd", "--save-path", str(tmp_path / "out"), "--experiment-name", "vcd_pope"])
    assert code == 0
    data = table(tmp_path, "vcd_pope")
    assert data["scorer"] == "pope" and len(data["points"]) == 5
    point = next(p for p in data["points"] if p["values"] == {"cd_alpha": "2", "max_new_tokens": "3"})
    results = json.loads((tmp_path / "out" / f"{point['name']}_results.json").read_text())["config"]
    assert results["protocol"]["max_new_tokens"] == 3 and results["sources"]["max_new_tokens"] == "sweep"
    assert results["method_params"]["cd_alpha"] == 2.0
    assert all(p["metrics"].get("accuracy") is not None for p in data["points"])
    assert (tmp_path / "out" / "vcd_pope_sweep.png").is_file()


def test_the_report_keeps_sweep_points_out_of_the_paper_tables(golden_dir, tmp_path, capsys):
    """Sweep points are not results of the paper's settings: the report shows the sweep's own table instead."""
    assert sweep.main(caption_sweep(golden_dir, tmp_path, "tau=1,2", extra=("--method", "sparc"))) == 0
    capsys.readouterr()
    from eval import report

    assert report.main([str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "Sweep sparc_coco" in text
    before = text.split("Sweep sparc_coco")[0]
    assert "sparc_coco__tau=1" not in before and "baseline" not in before  # the baseline point is the sweep's too
    results = json.loads((tmp_path / "out" / "sparc_coco__baseline_results.json").read_text())["config"]
    assert results["method"] == "baseline" and results["sources"]["method"] == "sweep"


def test_help(capsys):
    assert sweep.main(["--help"]) == 0
    assert "--grid NAME=V1,V2" in capsys.readouterr().out
    assert sweep.main(["caption", "--help"]) == 0
    text = capsys.readouterr().out
    assert all(flag in text for flag in ("--grid", "--score-args", "--no-baseline", "--check-only",
                                         "python -m eval.caption --help"))
    with pytest.raises(InputError, match="caption or vqa"):
        sweep.main(["captions", "--grid", "tau=1"])


def test_the_figure_of_a_chair_sweep_marks_the_pareto_front(tmp_path):
    """The trade-off plane of a 3x3 CHAIR sweep (values worked out by hand): the front is the points no other point
    beats in both recall and precision, and every point is drawn with its label."""
    from eval.figures.sweep import draw_sweep, pareto_front

    measured = {("1.05", "1"): (0.60, 0.80), ("1.05", "2"): (0.62, 0.79), ("1.05", "3"): (0.61, 0.77),
                ("1.1", "1"): (0.64, 0.78), ("1.1", "2"): (0.66, 0.74), ("1.1", "3"): (0.63, 0.76),
                ("1.2", "1"): (0.70, 0.70), ("1.2", "2"): (0.69, 0.72), ("1.2", "3"): (0.65, 0.71)}
    points = [{"name": f"s__alpha={a}_tau={t}", "values": {"alpha": a, "tau": t}, "baseline": False,
               "status": "scored", "metrics": {"Recall": r, "Precision": p}} for (a, t), (r, p) in measured.items()]
    points.insert(0, {"name": "s__baseline", "values": {}, "baseline": True, "status": "scored",
                      "metrics": {"Recall": 0.58, "Precision": 0.75}})
    xs = [p["metrics"]["Recall"] for p in points[1:]]
    ys = [p["metrics"]["Precision"] for p in points[1:]]
    # tau=3 is beaten at every alpha: 1.05/3 by 1.05/2, 1.1/3 by 1.1/1, 1.2/3 by 1.1/2; the rest trade recall for
    # precision, by increasing recall
    front = [points[1 + i]["name"].split("__")[1] for i in pareto_front(xs, ys)]
    assert front == ["alpha=1.05_tau=1", "alpha=1.05_tau=2", "alpha=1.1_tau=1", "alpha=1.1_tau=2",
                     "alpha=1.2_tau=2", "alpha=1.2_tau=1"]
    data = {"sweep": "s", "benchmark": "coco", "scorer": "chair",
            "grids": {"alpha": ["1.05", "1.1", "1.2"], "tau": ["1", "2", "3"]}, "points": points}
    out = draw_sweep(data, tmp_path / "s_sweep.png")
    assert out.stat().st_size > 10_000
    pope = {**data, "scorer": "pope", "benchmark": "pope",
            "points": [{**p, "metrics": {"accuracy": p["metrics"]["Recall"]}} for p in points]}
    assert draw_sweep(pope, tmp_path / "pope_sweep.png").stat().st_size > 10_000
