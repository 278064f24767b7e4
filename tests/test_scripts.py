"""The bash scripts end to end on tiny inputs: they run the runners, the scorers and end with the report table."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import PROJECT_ROOT


def run_script(script: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(["bash", str(PROJECT_ROOT / "scripts" / script)], env={**os.environ, **env},
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def save_noise(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(path)


def test_captioning_coco_script(golden_dir, tmp_path):
    for image_id in (139, 285, 632):
        save_noise(tmp_path / "val2014" / f"COCO_val2014_{image_id:012d}.jpg", image_id)
    result = run_script("llava/captioning_coco.sh", {
        "MODEL_PATH": str(golden_dir / "tiny-llava-v1.5"), "COCO_IMAGES": str(tmp_path / "val2014"),
        "SAVE_PATH": str(tmp_path / "out"), "NUM_SAMPLES": "2", "MAX_NEW_TOKENS": "4", "BATCH_SIZE": "2",
    })
    for run in ("baseline", "sparc"):
        assert len((tmp_path / "out" / f"{run}.jsonl").read_text().splitlines()) == 2
        assert json.loads((tmp_path / "out" / f"{run}_chair.json").read_text())["scorer"] == "chair"
    assert json.loads((tmp_path / "out" / "baseline_config.json").read_text())["sparc"]["alpha"] == 1.0
    assert "| LLaVA-1.5 | SPARC | ours |" in result.stdout and "| LLaVA-1.5 | base | ours |" in result.stdout


def test_avisc_scripts_mme_and_amber(golden_dir, tmp_path):
    questions = [("existence", "1.jpg", "Is there a dog in the image?", "Yes"),
                 ("existence", "1.jpg", "Is there a cat in the image?", "No")]
    with (tmp_path / "mme.jsonl").open("w") as f:
        for task, image, question, _ in questions:
            f.write(json.dumps({"question_id": f"{task}/{image}", "image": f"{task}/{image}", "text": question,
                                "category": task}) + "\n")
    save_noise(tmp_path / "mme" / "existence" / "1.jpg", 1)
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "existence.txt").write_text(
        "".join(f"{image}\t{question} Please answer yes or no.\t{answer}\n" for _, image, question, answer in questions))
    common = {"MODEL_PATH": str(golden_dir / "tiny-llava-v1.5"), "METHODS": "base avisc", "BATCH_SIZE": "2"}
    result = run_script("llava/mme.sh", {**common, "MME_ROOT": str(tmp_path / "mme"), "MME_GT": str(tmp_path / "gt"),
                                         "QUESTION_FILE": str(tmp_path / "mme.jsonl"), "SEEDS": "1 2",
                                         "SAVE_PATH": str(tmp_path / "mme_out")})
    assert {p.name for p in (tmp_path / "mme_out").glob("*_mme.json")} == {"base_mme.json", "avisc_mme.json"}
    assert "MME" in result.stdout and "| LLaVA-1.5 | AvisC | ours | 2" in result.stdout

    (tmp_path / "amber.json").write_text(json.dumps(
        [{"id": 1, "image": "AMBER_1.jpg", "query": "Describe this image."},
         {"id": 1005, "image": "AMBER_1.jpg", "query": "Is there a dog in this image?"}]))
    save_noise(tmp_path / "amber_images" / "AMBER_1.jpg", 2)
    result = run_script("llava/amber.sh", {**common, "AMBER_IMAGES": str(tmp_path / "amber_images"),
                                           "QUERY_FILE": str(tmp_path / "amber.json"), "SAVE_PATH": str(tmp_path / "amber_out")})
    metrics = json.loads((tmp_path / "amber_out" / "avisc_amber_amber.json").read_text())
    assert metrics["scorer"] == "amber"
    assert "AMBER" in result.stdout
