"""The report: labels from run blocks, runner results, --label and file names; grouping; paper rows; --out."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from eval import report


def write(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def chair_metrics(chair_s: float) -> dict[str, float]:
    return {"CHAIRs": chair_s, "CHAIRi": 0.14, "Recall": 0.78, "Len": 0.9512, "Precision": 0.86, "F1": 0.82}


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    for seed, chair_s in ((1, 0.5), (2, 0.4)):  # labelled by their "run" block
        write(root / f"chair_{seed}.json", {"scorer": "chair", "answers_file": "x.jsonl", "metrics": chair_metrics(chair_s),
                                            "counts": {}, "problems": [], "extra_key": [1, 2],
                                            "run": {"config": {"model_path": "liuhaotian/llava-v1.5-7b",
                                                               "method": "base", "seed": seed}}})
    write(root / "exp7_chair.json", {"scorer": "chair", "answers_file": "exp7.jsonl", "metrics": chair_metrics(0.45),
                                     "counts": {}, "problems": []})  # labelled with --label
    answers = root / "run_a" / "exp3.jsonl"  # labelled by the runner's results json beside the answers
    write(root / "run_a" / "exp3_results.json", {"config": {"model_path": "liuhaotian/llava-v1.5-7b",
                                                            "method": "avisc", "benchmark": "pope", "seed": 42}})
    write(root / "run_a" / "exp3_pope.json", {
        "scorer": "pope", "answers_file": str(answers), "counts": {},
        "problems": [{"file": str(answers), "line": None, "id": "7", "reason": "no answer"}],
        "metrics": {"coco/random": {"accuracy": 88.0, "precision": 88.5, "recall": 87.5, "f1": 87.99,
                                    "yes_ratio": 49.0}}})
    write(root / "instructblip_vcd_mme.json", {  # labelled by its file name; two runs inside
        "scorer": "mme", "answers_file": ["a.jsonl", "b.jsonl"], "metrics": {}, "counts": {}, "problems": [],
        "runs": [{"tasks": {"existence": {"score": 180.0}, "count": {"score": 100.0}, "position": {"score": 70.0},
                            "color": {"score": 110.0}}, "totals": {"hallucination": 460.0, "perception": None}},
                 {"tasks": {"existence": {"score": 170.0}, "count": {"score": 90.0}, "position": {"score": 80.0},
                            "color": {"score": 120.0}}, "totals": {"hallucination": 460.0, "perception": None}}]})
    write(root / "llava-v1.5_sparc_iiw_clair.json", {"scorer": "clair", "answers_file": "c.jsonl", "data_type": "iiw",
                                                     "metrics": {"clair": 61.5, "clair_parsed": 62.0, "unparsable": 1},
                                                     "counts": {}, "problems": []})
    write(root / "llava-1.5_base_amber.json", {"scorer": "amber", "answers_file": "d.jsonl", "counts": {}, "problems": [],
                                               "metrics": {"CHAIR": 7.9, "Cover": 44.5, "Hal": 31.2, "Cog": 2.1,
                                                           "Accuracy": 67.1, "Precision": 85.5, "Recall": 61.0,
                                                           "F1": 71.2, "AMBER": 81.65, "existence_F1": 80.0}})
    write(root / "some_results.json", {"config": {"method": "base"}})  # not a metric file: skipped
    return root


def test_report_tables(results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "table.md"
    label = f"{results / 'exp7_chair.json'}=llava-hf/llava-1.5-7b-hf,sparc,3"
    assert report.main([str(results), "--label", label, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.read_text() == text
    lines = text.splitlines()
    # CHAIR: two seeds of the baseline -> mean ± sample std; the paper's F1 beside ours
    assert "| LLaVA-1.5 | base | ours | 2 (seeds 1, 2) | 45.00 ± 7.07 | 14.00 ± 0.00 | 78.00 ± 0.00 | 86.00 ± 0.00 | 82.00 ± 0.00 | 95.12 ± 0.00 |" in lines
    assert "| LLaVA-1.5 | base | paper | - | - | - | - | - | 81.99 | - |" in lines
    assert "| LLaVA-1.5 | SPARC | ours | 1 (seed 3) | 45.00 | 14.00 | 78.00 | 86.00 | 82.00 | 95.12 |" in lines
    assert "| LLaVA-1.5 | SPARC | paper | - | - | - | - | - | 83.67 | - |" in lines
    # CLAIR per dataset
    assert "| LLaVA-1.5 | SPARC | 61.50 | 1 |" in lines
    # POPE, labelled from the runner's results json
    assert "| LLaVA-1.5 | coco | random | AvisC | ours | 1 (seed 42) | 88.00 | 88.50 | 87.50 | 87.99 |" in lines
    assert "| LLaVA-1.5 | coco | random | AvisC | paper | 1 | 87.93 | 88.24 | 87.53 | 87.88 |" in lines
    # MME: the two runs of one file -> mean ± sample std; paper mean ± std
    assert "| InstructBLIP | VCD | ours | 2 | 175.00 ± 7.07 | 95.00 ± 7.07 | 75.00 ± 7.07 | 115.00 ± 7.07 | 460.00 ± 0.00 |" in lines
    assert ("| InstructBLIP | VCD | paper | several seeds | 172.62 ± 8.92 | 98.33 ± 15.99 | 71.90 ± 13.42 "
            "| 117.14 ± 10.70 | 459.99 ± 16.56 |") in lines
    # AMBER
    assert "| LLaVA-1.5 | base | ours | 1 | 7.90 | 44.50 | 31.20 | 2.10 | 67.10 | 85.50 | 61.00 | 71.20 | 81.65 |" in lines
    assert "| LLaVA-1.5 | base | paper | - | 7.95 | 44.45 | 31.00 | 2.15 | 67.00 | 85.45 | 60.95 | 71.10 | 81.58 |" in lines
    # the scorer's problems are pointed at
    assert any("exp3_pope.json: 1 problem(s)" in line for line in lines)
    assert "some_results" not in text


def test_labels_from_file_names() -> None:
    assert report.label_from_names("llava-v1.5-7b_avisc_seed55_coco_pope_random.jsonl") == report.Label(
        "LLaVA-1.5", "AvisC", "55")
    assert report.label_from_names("instructblip_baseline_mme.json") == report.Label("InstructBLIP", "base", None)
    assert report.label_from_names("llava-v1.6-vicuna-7b_sparc_iiw.json") == report.Label("LLaVA-NeXT", "SPARC", None)
    assert report.label_from_names("results.json") is None


def test_bad_label_option_and_no_metric_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report.main([str(tmp_path), "--label", "x.json=only-model"]) == 2
    assert "FILE=MODEL,METHOD" in capsys.readouterr().err
    assert report.main([str(tmp_path)]) == 2
    assert "no metric files" in capsys.readouterr().err
