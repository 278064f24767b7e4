"""Every bash script end to end as a newcomer tries it: the documented two-minute trial (a random tiny model named in
MODEL_PATH, LIMIT and MAX_NEW_TOKENS, nothing else), which runs the runners with the script's defaults, scores, and
ends with the report."""
from __future__ import annotations

import gzip
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import PROJECT_ROOT

DATA = PROJECT_ROOT / "eval" / "data"
TINY = {"llava": "tiny", "llava_next": "tiny-next", "instructblip": "tiny-instructblip", "qwen2_vl": "tiny-qwen2-vl"}


def run_script(script: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY",)}
    result = subprocess.run(["bash", str(PROJECT_ROOT / "scripts" / script)], env={**clean, **env},
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def save_noise(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(path)


def trial(tmp_path: Path, family: str, **extra: str) -> dict[str, str]:
    return {"MODEL_PATH": TINY[family], "LIMIT": "2", "MAX_NEW_TOKENS": "4", "SAVE_PATH": str(tmp_path / "out"),
            **extra}


def results(tmp_path: Path, name: str) -> dict:
    return json.loads((tmp_path / "out" / f"{name}_results.json").read_text())


@pytest.mark.parametrize("family", ["llava", "llava_next", "qwen2_vl"])
def test_captioning_coco_trial(tmp_path, family):
    for image_id in (139, 285, 632):
        save_noise(tmp_path / "val2014" / f"COCO_val2014_{image_id:012d}.jpg", image_id)
    result = run_script(f"{family}/captioning_coco.sh", trial(tmp_path, family, COCO_IMAGES=str(tmp_path / "val2014")))
    for method in ("baseline", "sparc"):
        assert len((tmp_path / "out" / f"{method}.jsonl").read_text().splitlines()) == 2
        assert json.loads((tmp_path / "out" / f"{method}_chair.json").read_text())["scorer"] == "chair"
        config = results(tmp_path, method)
        assert config["config"]["method"] == method and config["config"]["limit"] == 2
        assert config["subset"] == {"requested": 500, "available": 3, "used": 2, "short": True}
    sparc = results(tmp_path, "sparc")["config"]
    assert sparc["method_params"]["tau"] == (4.0 if family == "llava_next" else 1.5)
    if family == "qwen2_vl":  # no paper gives Qwen2-VL values: the family default, depth-relative, says so
        assert sparc["method_params"]["end_layer"] == 7 and "not from a paper" in sparc["sources"]["tau"]
    model, trial_flag = TINY[family], "(max_new_tokens=4)"  # the trial's token budget is a flag: it names the row
    assert f"| {model} | baseline {trial_flag} | ours |" in result.stdout
    assert f"| {model} | SPARC {trial_flag} | ours |" in result.stdout
    assert "short subset" in result.stdout and "trial run (--limit 2)" in result.stdout
    assert "fewer than the 500 the benchmark asks for" in result.stderr


def test_captioning_comparison_of_the_sparc_paper(tmp_path):
    """The SPARC paper's comparison: ``METHODS="baseline sparc vcd pai opera"`` captions with each method and the
    report has one row per method."""
    save_noise(tmp_path / "val2014" / "COCO_val2014_000000000139.jpg", 1)
    result = run_script("llava/captioning_coco.sh", trial(tmp_path, "llava", COCO_IMAGES=str(tmp_path / "val2014"),
                                                          METHODS="baseline sparc vcd pai opera", LIMIT="1"))
    for method, label in (("baseline", "baseline"), ("sparc", "SPARC"), ("vcd", "VCD"), ("pai", "PAI"),
                          ("opera", "OPERA")):
        assert results(tmp_path, method)["config"]["method"] == method
        assert f"| tiny | {label} (max_new_tokens=4) | ours |" in result.stdout
    opera = results(tmp_path, "opera")["config"]
    assert opera["preset"] == "paper" and opera["protocol"]["conv_mode"] == "vicuna_v1"  # the captioning protocol
    assert opera["method_params"]["beam"] == 5


@pytest.mark.parametrize("script, data_type", [("llava/captioning_iiw400.sh", "iiw"),
                                               ("llava_next/captioning_docci.sh", "docci"),
                                               ("qwen2_vl/captioning_iiw400.sh", "iiw"),
                                               ("qwen2_vl/captioning_docci.sh", "docci")])
def test_clair_captioning_trial_finishes_without_a_judge_key(tmp_path, script, data_type):
    """No key: the captions are kept, the script finishes (exit 0), says how to score CLAIR later, and the report
    lists the runs that are not scored yet."""
    key, name = ("image/key", "IIW") if data_type == "iiw" else ("image_file", "description")
    records = []
    for index in range(3):
        image = f"aar_{index}" if data_type == "iiw" else f"test_{index:05d}.jpg"
        save_noise(tmp_path / "images" / (f"{image}.jpg" if data_type == "iiw" else image), index)
        records.append({key: image, name: "A reference description."})
    annotations = tmp_path / "annotations.jsonl"
    annotations.write_text("".join(json.dumps(r) + "\n" for r in records))
    family = script.split("/")[0]
    result = run_script(script, trial(tmp_path, family, IMAGE_FOLDER=str(tmp_path / "images"),
                                      ANNOTATION_FILE=str(annotations)))
    for method in ("baseline", "sparc"):
        assert len((tmp_path / "out" / f"{method}.jsonl").read_text().splitlines()) == 2
        assert f"CLAIR not scored for {method} (no judge key in $OPENAI_API_KEY)" in result.stderr
        assert f"--answer_file {tmp_path / 'out' / method}.jsonl" in result.stderr
        assert f"{tmp_path / 'out' / method}.jsonl: " in result.stdout and "not scored yet" in result.stdout


@pytest.mark.parametrize("family", ["llava", "instructblip"])
def test_pope_trial(tmp_path, family):
    questions = [json.loads(line) for line in (DATA / "pope/vcd/coco/coco_pope_random.json").read_text().splitlines()[:2]]
    for index, question in enumerate(questions):
        save_noise(tmp_path / "coco" / question["image"], index)
    result = run_script(f"{family}/pope.sh", trial(tmp_path, family, COCO_IMAGES=str(tmp_path / "coco"),
                                                   POPE_DATASETS="coco", POPE_SETTINGS="random"))
    for method in ("baseline", "vcd", "m3id", "avisc"):
        name = f"{method}_coco_pope_random"
        assert len((tmp_path / "out" / f"{name}.jsonl").read_text().splitlines()) == 2
        assert json.loads((tmp_path / "out" / f"{name}_pope.json").read_text())["scorer"] == "pope"
        config = results(tmp_path, name)["config"]
        assert config["protocol"]["conv_mode"] == (None if family == "instructblip" else "llava_v1")
        assert config["preset"] == "paper"
    assert "AvisC: POPE" in result.stdout
    assert f"| {TINY[family]} | coco | random | AvisC (max_new_tokens=4) | ours |" in result.stdout


@pytest.mark.parametrize("family", ["llava", "instructblip"])
def test_mme_trial(tmp_path, reference_dir, family):
    questions = [json.loads(line) for line in (DATA / "mme/mme_hallucination.jsonl").read_text().splitlines()[:2]]
    for index, question in enumerate(questions):
        save_noise(tmp_path / "mme" / question["image"], index)
    result = run_script(f"{family}/mme.sh", trial(tmp_path, family, MME_ROOT=str(tmp_path / "mme"),
                                                  MME_GT=str(reference_dir / "mme_gt"), SEEDS="42 43",
                                                  METHODS="baseline avisc"))
    for method in ("baseline", "avisc"):
        assert json.loads((tmp_path / "out" / f"{method}_mme.json").read_text())["scorer"] == "mme"
        assert results(tmp_path, f"{method}_mme_seed43")["seed"] == 43
    assert "MME" in result.stdout and "2 (seeds 42, 43)" in result.stdout


@pytest.mark.parametrize("family", ["llava", "instructblip"])
def test_amber_trial(tmp_path, family):
    queries = json.loads(gzip.decompress((DATA / "amber/query_all.json.gz").read_bytes()))[:2]
    for index, query in enumerate(queries):
        save_noise(tmp_path / "amber" / query["image"], index)
    result = run_script(f"{family}/amber.sh", trial(tmp_path, family, AMBER_IMAGES=str(tmp_path / "amber"),
                                                    METHODS="baseline avisc"))
    metrics = json.loads((tmp_path / "out" / "avisc_amber_amber.json").read_text())
    assert metrics["scorer"] == "amber"
    assert "AMBER" in result.stdout


def test_sparc_demo(tmp_path):
    for index in range(3):
        save_noise(tmp_path / "photos" / f"photo{index}.jpg", index)
    result = run_script("sparc_demo.sh", {"MODEL_PATH": "tiny", "IMAGE_FOLDER": str(tmp_path / "photos"),
                                          "NUM_IMAGES": "2", "MAX_NEW_TOKENS": "6", "SAVE_PATH": str(tmp_path / "out")})
    assert result.stdout.count("== photo") == 2 and "baseline:" in result.stdout and "sparc:" in result.stdout
    assert (tmp_path / "out" / "sparc_selections.png").is_file()


@pytest.mark.parametrize("script, env, message", [
    ("llava/captioning_coco.sh", {"METHODS": "baseline sparcc"}, "error: unknown method 'sparcc'"),
    ("llava/pope.sh", {"POPE_DATASETS": "cocoo"}, "error: POPE_DATASETS: unknown dataset 'cocoo'"),
    ("instructblip/pope.sh", {"POPE_SETTINGS": "randm"}, "error: POPE_SETTINGS: unknown setting 'randm'"),
    ("llava/mme.sh", {"METHODS": "avsic"}, "error: unknown method 'avsic'"),
    ("llava/captioning_coco.sh", {"METHODS": "baseline sparc", "TAU": "nan"}, "tau must be a finite number"),
    ("llava/pope.sh", {"METHODS": "baseline avisc", "AVISC_ARGS": "lamb=x"}, "lamb: could not convert"),
    ("instructblip/amber.sh", {"METHODS": "baseline vcd", "VCD_ARGS": "noise_step=-1"}, "noise_step"),
    ("llava/mme.sh", {"METHODS": "baseline sparc", "SPARC_ARGS": "selected_layer=99"}, "selected_layer=99"),
])
def test_a_bad_name_or_value_stops_a_script_before_any_run(tmp_path, script, env, message):
    """Names, and every method's values, are checked before the first run (of any method), not hours into the
    script."""
    model = "tiny-instructblip" if script.startswith("instructblip") else "tiny"
    (tmp_path / "images").mkdir()
    data = {name: str(tmp_path / "images") for name in ("COCO_IMAGES", "GQA_IMAGES", "MME_ROOT", "AMBER_IMAGES")}
    result = subprocess.run(["bash", str(PROJECT_ROOT / "scripts" / script)], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "MODEL_PATH": model, "SAVE_PATH": str(tmp_path / "out"),
                                              **data, **env})
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.jsonl"))
