"""PAI and OPERA, the methods the SPARC paper compares with, through the runners as users run them: every golden case
of the official code comes out of ``eval.caption`` / ``eval.vqa`` with ``--preset official`` (PAI's and OPERA's own
protocols) and ``--method-args`` where a case departs from the preset."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval import caption, vqa
from helpers import golden_json

PAI_GOLDEN = "pai_opera/pai_golden.json"
OPERA_GOLDEN = "pai_opera/opera_golden.json"

PAI_RUNS = {
    "pai_readme": ["--preset", "official"],
    "pai_argparse_defaults_cfg": ["--preset", "official", "--method-args", "gamma=2"],
    "pai_attn_only": ["--preset", "official", "--method-args",
                      "use_cfg=false,alpha=0.5,start_layer=5,end_layer=20"],
    "pai_cfg_only": ["--preset", "official", "--method-args", "use_attn=false"],
    "baseline": ["--preset", "argparse"],  # PAI's scripts without flags: plain greedy decoding in PAI's protocol
}
OPERA_RUNS = {
    "opera_default": ["--method", "opera", "--preset", "official"],
    "opera_efficient": ["--method", "opera", "--preset", "efficient"],
    "opera_rollback": ["--method", "opera", "--preset", "official", "--method-args",
                       "beam=3,scale_factor=1000,threshold=3,num_attn_candidates=3,penalty_weights=2"],
    # plain beam search in OPERA's protocol (its template and center crop)
    "beam_baseline": ["--method", "baseline", "--num-beams", "5", "--conv-mode", "pai", "--image-aspect", "crop"],
}


def expected_texts(golden_dir: Path, golden_file: str, case_name: str, task: str | None = None) -> dict[str, str]:
    """Each image's official generated ids decoded as our runners decode (special tokens skipped, stripped)."""
    from transformers import AutoTokenizer

    data = golden_json(golden_file)
    tokenizer = AutoTokenizer.from_pretrained(golden_dir / data["checkpoint"])
    case = next(c for c in data["cases"] if c["name"] == case_name and (task is None or c.get("task") == task))
    return {Path(o["image"]).stem: tokenizer.decode(o["generated_ids"], skip_special_tokens=True).strip()
            for o in case["outputs"]}


def run_caption(golden_dir: Path, tmp_path: Path, method: str, args: list[str], max_new_tokens: int) -> dict[str, str]:
    assert caption.main(["--dataset-type", "folder", "--model-path", str(golden_dir / "tiny-llava-v1.5"),
                         "--image-folder", str(golden_dir / "images"), "--method", method, *args,
                         "--max-new-tokens", str(max_new_tokens), "--batch-size", "3",
                         "--save-path", str(tmp_path), "--experiment-name", "run"]) == 0
    return {r["image_id"]: r["caption"] for r in map(json.loads, (tmp_path / "run.jsonl").read_text().splitlines())}


@pytest.mark.parametrize("case_name", list(PAI_RUNS))
def test_pai_golden_captions_through_eval_caption(golden_dir, tmp_path, case_name):
    data = golden_json(PAI_GOLDEN)
    texts = run_caption(golden_dir, tmp_path, "pai", PAI_RUNS[case_name], data["tasks"]["chair"]["max_new_tokens"])
    assert texts == expected_texts(golden_dir, PAI_GOLDEN, case_name, "chair")
    config = json.loads((tmp_path / "run_results.json").read_text())["config"]
    assert config["protocol"]["prompt"] == data["tasks"]["chair"]["query"]
    assert config["protocol"]["conv_mode"] == "pai" and config["protocol"]["image_aspect"] == "crop"
    assert config["sources"]["conv_mode"] == f"preset:{PAI_RUNS[case_name][1]}[family=llava]"


@pytest.mark.parametrize("case_name", list(PAI_RUNS))
def test_pai_golden_pope_answers_through_eval_vqa(golden_dir, tmp_path, case_name):
    data = golden_json(PAI_GOLDEN)
    images = sorted(p.name for p in (golden_dir / "images").iterdir())
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps({"question_id": i, "image": name, "text": data["tasks"]["pope"]["query"],
                                             "label": "no"}) + "\n" for i, name in enumerate(images)))
    assert vqa.main(["--benchmark", "pope", "--model-path", str(golden_dir / "tiny-llava-v1.5"), "--image-folder",
                     str(golden_dir / "images"), "--question-file", str(questions), "--method", "pai",
                     *PAI_RUNS[case_name], "--max-new-tokens", str(data["tasks"]["pope"]["max_new_tokens"]),
                     "--batch-size", "3", "--save-path", str(tmp_path), "--experiment-name", "run"]) == 0
    answers = {Path(r["image"]).stem: r["text"]
               for r in map(json.loads, (tmp_path / "run.jsonl").read_text().splitlines())}
    assert answers == expected_texts(golden_dir, PAI_GOLDEN, case_name, "pope")
    protocol = json.loads((tmp_path / "run_results.json").read_text())["config"]["protocol"]
    assert protocol["decoding"] == "greedy" and protocol["prompt"] is None  # PAI's POPE: greedy, the raw question


@pytest.mark.parametrize("case_name", list(OPERA_RUNS))
def test_opera_golden_captions_through_eval_caption(golden_dir, tmp_path, case_name):
    data = golden_json(OPERA_GOLDEN)
    method, *args = OPERA_RUNS[case_name][1:]
    texts = run_caption(golden_dir, tmp_path, method, args, data["max_new_tokens"])
    assert texts == expected_texts(golden_dir, OPERA_GOLDEN, case_name)
    config = json.loads((tmp_path / "run_results.json").read_text())["config"]
    assert config["protocol"]["conv_mode"] == "pai" and config["protocol"]["decoding"] == "greedy"
    assert config["protocol"]["prompt"] == data["question"]
