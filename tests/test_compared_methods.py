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
    # plain beam search in OPERA's protocol (its template, center crop and text cut)
    "beam_baseline": ["--method", "baseline", "--num-beams", "5", "--conv-mode", "pai", "--image-aspect", "crop",
                      "--text-cut", "###"],
}


def expected_texts(golden_dir: Path, golden_file: str, case_name: str, task: str | None = None) -> dict[str, str]:
    """Each image's official generated ids decoded as our runners decode (special tokens skipped, stripped)."""
    from transformers import AutoTokenizer

    data = golden_json(golden_file)
    tokenizer = AutoTokenizer.from_pretrained(golden_dir / data["checkpoint"])
    case = next(c for c in data["cases"] if c["name"] == case_name and (task is None or c.get("task") == task))
    return {Path(o["image"]).stem: tokenizer.decode(o["generated_ids"], skip_special_tokens=True).strip()
            for o in case["outputs"]}


def official_texts(golden_file: str, case_name: str) -> dict[str, str]:
    """Each image's text as the official code wrote it (OPERA's: cut at the first "###", stripped)."""
    case = next(c for c in golden_json(golden_file)["cases"] if c["name"] == case_name)
    return {Path(o["image"]).stem: o["caption"] for o in case["outputs"]}


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
    assert texts == expected_texts(golden_dir, OPERA_GOLDEN, case_name) == official_texts(OPERA_GOLDEN, case_name)
    config = json.loads((tmp_path / "run_results.json").read_text())["config"]
    assert config["protocol"]["conv_mode"] == "pai" and config["protocol"]["decoding"] == "greedy"
    assert config["protocol"]["prompt"] == data["question"] and config["protocol"]["text_cut"] == "###"


@pytest.mark.parametrize("position", [0, 1, 5])
def test_text_cut_ends_each_answer_before_the_first_occurrence(golden_dir, tmp_path, position):
    """OPERA's wrapper cuts its text at the first "###"; the golden captions hold none, so the same mechanism is
    checked with a piece of a real caption as the cut: each caption ends right before its first occurrence (a cut at
    the very start leaves an empty answer), captions without it are whole."""
    whole = expected_texts(golden_dir, OPERA_GOLDEN, "opera_default")
    first = sorted(whole)[0]
    cut = whole[first].split(" ")[position][:3] if position else whole[first][:2]
    args = ["--preset", "official", "--text-cut", cut]
    texts = run_caption(golden_dir, tmp_path, "opera", args, golden_json(OPERA_GOLDEN)["max_new_tokens"])
    assert texts == {image: text.split(cut, 1)[0].strip() for image, text in whole.items()}
    assert texts[first] != whole[first] and (position or texts[first] == "")
    config = json.loads((tmp_path / "run_results.json").read_text())["config"]
    assert config["protocol"]["text_cut"] == cut and config["sources"]["text_cut"] == "flag"
