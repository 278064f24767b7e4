"""The report: labels from run blocks, runner results, --label and file names; grouping; paper rows; --out; runs
that are not plain results (null metrics, short or limited subsets, AMBER's exact-only matching) marked and
explained; one row per method whatever its name."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from conftest import EVAL_DATA, MME_GT
from eval import report
from eval.scoring import Column, ScoredRun, Scorer, register_scorer, unregister_scorer

POPE_QUESTIONS = EVAL_DATA / "pope" / "rucaibox" / "coco_pope_random.json"
"""POPE's own COCO random questions (3000)."""


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
                                                               "method": "baseline", "seed": seed}}})
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
                                                     "metrics": {"clair": 61.5, "judged": 10, "unparsable": 1, "failed": 0},
                                                     "counts": {}, "problems": []})
    write(root / "llava-1.5_base_amber.json", {"scorer": "amber", "answers_file": "d.jsonl", "counts": {}, "problems": [],
                                               "similarity": "spacy:en_core_web_lg",
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
    # Captioning: one row per method; two seeds of the baseline -> mean ± sample std; the paper's F1 beside ours;
    # CLAIR in its dataset's column of the same row
    assert any(line.startswith("### SPARC: captioning") and "Len = mean caption length in words" in line
               and "not generated tokens" in line for line in lines)
    assert ("| Model | Method | Source | Runs | COCO CHAIRs ↓ | COCO CHAIRi ↓ | COCO Recall ↑ | COCO F1 ↑ "
            "| COCO Len (words) | IIW-400 CLAIR |") in lines
    assert ("| LLaVA-1.5 | baseline | ours | 2 (seeds 1, 2) | 45.00 ± 7.07 | 14.00 ± 0.00 | 78.00 ± 0.00 "
            "| 82.00 ± 0.00 | 95.12 ± 0.00 | - |") in lines
    assert "| LLaVA-1.5 | baseline | paper | - | - | - | - | 81.99 | - | - |" in lines
    assert "| LLaVA-1.5 | SPARC | ours | COCO: 1 (seed 3); IIW-400: 1 [1] | 45.00 | 14.00 | 78.00 | 82.00 | 95.12 | 61.50 |" in lines
    assert "| LLaVA-1.5 | SPARC | paper | - | - | - | - | 83.67 | - | - |" in lines
    assert f"[1] CLAIR: 1 unparsable judge replies (see {results / 'llava-v1.5_sparc_iiw_clair.jsonl'})" in lines
    # POPE, labelled from the runner's results json
    assert "| LLaVA-1.5 | coco | random | AvisC | ours | 1 (seed 42) | 88.00 | 88.50 | 87.50 | 87.99 |" in lines
    assert "| LLaVA-1.5 | coco | random | AvisC | paper | 1 | 87.93 | 88.24 | 87.53 | 87.88 |" in lines
    # MME: the two runs of one file -> mean ± sample std; paper mean ± std
    assert "| InstructBLIP | VCD | ours | 2 | 175.00 ± 7.07 | 95.00 ± 7.07 | 75.00 ± 7.07 | 115.00 ± 7.07 | 460.00 ± 0.00 |" in lines
    assert ("| InstructBLIP | VCD | paper | several seeds | 172.62 ± 8.92 | 98.33 ± 15.99 | 71.90 ± 13.42 "
            "| 117.14 ± 10.70 | 459.99 ± 16.56 |") in lines
    # AMBER (old file name "base" read as baseline)
    assert "| LLaVA-1.5 | baseline | ours | 1 | 7.90 | 44.50 | 31.20 | 2.10 | 67.10 | 85.50 | 61.00 | 71.20 | 81.65 |" in lines
    assert "| LLaVA-1.5 | baseline | paper | - | 7.95 | 44.45 | 31.00 | 2.15 | 67.00 | 85.45 | 60.95 | 71.10 | 81.58 |" in lines
    # the scorer's problems are pointed at
    assert any("exp3_pope.json: 1 problem reported" in line for line in lines)
    assert "some_results" not in text


def test_labels_from_file_names() -> None:
    assert report.label_from_names("llava-v1.5-7b_avisc_seed55_coco_pope_random.jsonl") == report.Label(
        "LLaVA-1.5", "AvisC", "55")
    assert report.label_from_names("instructblip_baseline_mme.json") == report.Label("InstructBLIP", "baseline", None)
    assert report.label_from_names("llava-v1.6-vicuna-7b_sparc_iiw.json") == report.Label("LLaVA-NeXT", "SPARC", None)
    assert report.label_from_names("results.json") is None


def test_bad_label_option_and_no_metric_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report.main([str(tmp_path), "--label", "x.json=only-model"]) == 2
    assert "FILE=MODEL,METHOD" in capsys.readouterr().err
    assert report.main([str(tmp_path)]) == 2
    assert "no metric files" in capsys.readouterr().err


def runner_run(folder: Path, name: str, config: dict[str, Any], subset: dict[str, Any] | None = None) -> str:
    """An answers file with the runner's ``_results.json`` beside it; returns the answers path."""
    answers = folder / f"{name}.jsonl"
    write(folder / f"{name}_results.json", {"config": config, "seed": config.get("seed"),
                                            **({"subset": subset} if subset else {})})
    return str(answers)


def chair_file(folder: Path, name: str, answers: str, chair_s: float) -> None:
    write(folder / f"{name}_chair.json", {"scorer": "chair", "answers_file": answers, "metrics": chair_metrics(chair_s),
                                          "counts": {}, "problems": []})


def test_one_row_per_method_from_the_runner_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Method labels come from ``config.method`` (any name), file-name tokens as the fallback; old names of plain
    decoding (base, vanilla) are read as baseline; rows in the papers' order, unknown methods last."""
    for i, method in enumerate(["sparc", "dola", "opera", "vanilla", "pai", "vcd"]):
        answers = runner_run(tmp_path, f"run{i}", {"model_path": "llava-hf/llava-1.5-7b-hf", "method": method,
                                                    "seed": 42})
        chair_file(tmp_path, f"run{i}", answers, 0.40 + i / 100)
    chair_file(tmp_path, "llava-v1.5-7b_base", str(tmp_path / "llava-v1.5-7b_base.jsonl"), 0.5)  # name fallback
    assert report.main([str(tmp_path)]) == 0
    text = capsys.readouterr().out
    rows = [line.split(" | ")[1] for line in text.splitlines() if line.startswith("| LLaVA-1.5 |") and "| ours |" in line]
    assert rows == ["baseline", "VCD", "OPERA", "PAI", "SPARC", "dola"]
    # vanilla (CHAIRs 43) and the old-named base file (50): one baseline row, sample std |50 - 43| / sqrt(2) = 4.95
    assert "| LLaVA-1.5 | baseline | ours | 2 (seed 42; 1 without seed) | 46.50 ± 4.95 |" in text


def test_mme_runs_labelled_with_their_own_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    answers = [runner_run(tmp_path, f"avisc_mme_seed{seed}", {"model_path": "liuhaotian/llava-v1.5-7b",
                                                               "method": "avisc", "seed": seed}) for seed in (43, 42)]
    task = {"tasks": {t: {"score": 150.0} for t in ("existence", "count", "position", "color")},
            "totals": {"hallucination": 600.0}}
    write(tmp_path / "avisc_mme.json", {"scorer": "mme", "answers_file": answers, "metrics": {}, "problems": [],
                                        "runs": [{**task, "source": a} for a in answers]})
    assert report.main([str(tmp_path)]) == 0
    assert "| LLaVA-1.5 | AvisC | ours | 2 (seeds 42, 43) | 150.00 ± 0.00 |" in capsys.readouterr().out


@pytest.mark.parametrize("subset, limit, expected", [
    ({"requested": 500, "available": 4, "used": 4, "short": True}, None,
     "short subset: 4 samples used of the 500 the benchmark asks for (4 available)"),
    ({"requested": 500, "available": 5000, "used": 2, "short": False}, 2,
     "trial run (--limit 2): 2 samples used of the 500 requested"),
    ({"requested": None, "available": 3000, "used": 5, "short": False}, 5,
     "trial run (--limit 5): 5 samples used of 3000"),
])
def test_short_and_limited_runs_are_marked(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           subset: dict[str, Any], limit: int | None, expected: str) -> None:
    full = runner_run(tmp_path, "baseline", {"model_path": "llava-1.5", "method": "baseline", "limit": None},
                      {"requested": 500, "available": 5000, "used": 500, "short": False})
    trial = runner_run(tmp_path, "sparc", {"model_path": "llava-1.5", "method": "sparc", "limit": limit}, subset)
    chair_file(tmp_path, "baseline", full, 0.5)
    chair_file(tmp_path, "sparc", trial, 0.4)
    assert report.main([str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "| LLaVA-1.5 | baseline | ours | 1 | 50.00 |" in "\n".join(lines)  # a full run: no marker
    assert any(line.startswith("| LLaVA-1.5 | SPARC | ours | 1 [1] |") for line in lines)
    assert any(line.startswith(f"[1] {expected}") and "not the benchmark's result" in line for line in lines)


def test_amber_exact_only_fallback_is_marked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    metrics = {"CHAIR": 7.9, "Cover": 44.5, "Hal": 31.2, "Cog": 2.1, "Accuracy": 67.1, "Precision": 85.5,
               "Recall": 61.0, "F1": 71.2, "AMBER": 81.65}
    for method, similarity in (("avisc", "exact-only"), ("baseline", "spacy:en_core_web_lg")):
        write(tmp_path / f"llava-1.5_{method}_amber.json", {"scorer": "amber", "answers_file": f"{method}.jsonl",
                                                            "similarity": similarity, "metrics": metrics,
                                                            "problems": []})
    assert report.main([str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "| LLaVA-1.5 | AvisC | ours | 1 [1] | 7.90 | 44.50 | 31.20 | 2.10 | 67.10 | 85.50 | 61.00 | 71.20 | 81.65 |" in lines
    assert "| LLaVA-1.5 | baseline | ours | 1 | 7.90 | 44.50 | 31.20 | 2.10 | 67.10 | 85.50 | 61.00 | 71.20 | 81.65 |" in lines
    assert f"[1] {report.EXACT_ONLY_NOTE}" in lines and "exact word matching only" in report.EXACT_ONLY_NOTE


def test_runs_of_other_presets_or_flags_are_other_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Runs of one method with another preset or a parameter set by a flag are not averaged together."""
    base = {"model_path": "liuhaotian/llava-v1.5-7b", "method": "avisc", "seed": 42,
            "method_params": {"lamb": 1.0, "cd_alpha": 2.5}, "protocol": {"decoding": "sample", "seed": 42}}
    configs = {
        "paper": {**base, "preset": "paper", "sources": {"lamb": "default", "seed": "benchmark:pope"}},
        "scripts": {**base, "preset": "scripts", "method_params": {"lamb": 0.99, "cd_alpha": 1.0},
                    "sources": {"lamb": "preset:scripts[benchmark=pope]"}},
        "flag": {**base, "preset": "paper", "method_params": {"lamb": 0.5, "cd_alpha": 2.5},
                 "sources": {"lamb": "flag", "seed": "flag"}},
    }
    for name, config in configs.items():
        chair_file(tmp_path, name, runner_run(tmp_path, name, config), 0.4)
    assert report.main([str(tmp_path)]) == 0
    rows = [line.split(" | ")[1] for line in capsys.readouterr().out.splitlines() if "| ours |" in line]
    assert rows == ["AvisC", "AvisC (lamb=0.5)", "AvisC (scripts)"]


def test_a_moved_results_folder_keeps_its_labels_and_caveats(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Metric files name their answers file as the scorer was given it (relative here); after the folder moved, or
    from another working directory, the answers and the run's _results.json are found beside the metric file."""
    folder = tmp_path / "results"
    answers = runner_run(folder, "sparc", {"model_path": "liuhaotian/llava-v1.5-7b", "method": "sparc", "seed": 42,
                                           "limit": 2}, {"requested": 500, "available": 500, "used": 2, "short": False})
    Path(answers).write_text("{}\n")
    chair_file(folder, "sparc", "results/sparc.jsonl", 0.4)  # relative to where the scorer ran
    moved = tmp_path / "moved"
    folder.rename(moved)
    monkeypatch.chdir(tmp_path.parent)
    assert report.main([str(moved)]) == 0
    text = capsys.readouterr().out
    assert "| LLaVA-1.5 | SPARC | ours | 1 (seed 42) [1] |" in text and "trial run (--limit 2)" in text
    assert "not scored yet" not in text


def pope_answers(path: Path, questions: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps({"question_id": q["question_id"], "text": q["label"].capitalize()}) + "\n"
                            for q in questions))
    return path


@pytest.mark.parametrize("answered", [3, 2999, 3000])
def test_pope_with_unanswered_questions_is_marked_incomplete(tmp_path: Path, answered: int,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Answers from elsewhere (no runner manifest) that leave questions out: the row carries a footnote, however
    good its numbers; a complete file does not."""
    from eval import pope

    question_file = POPE_QUESTIONS
    questions = [json.loads(line) for line in question_file.read_text().splitlines()]
    answers = pope_answers(tmp_path / "answers.jsonl", questions[:answered])
    assert pope.main(["--answers", str(answers), "--question_file", str(question_file)]) == 0
    capsys.readouterr()
    assert report.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "answers_pope" in line)
    note = f"incomplete: {3000 - answered} of 3000 questions have no answer"
    assert (note in out and "[1]" in row) == (answered < 3000), out


@pytest.mark.parametrize("lines, missing", [(4, 56), (60, 0)])
def test_mme_eval_tool_files_with_part_of_a_task_are_marked_incomplete(tmp_path: Path, lines: int, missing: int,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from eval import mme

    results = tmp_path / "lavin_like"
    results.mkdir()
    gt = (MME_GT / "existence.txt").read_text().splitlines()[:lines]
    (results / "existence.txt").write_text("".join(f"{line}\t{line.split(chr(9))[2]}\n" for line in gt))
    assert mme.main(["--results_dir", str(results), "--save_path", str(tmp_path / "m_mme.json")]) == 0
    saved = json.loads((tmp_path / "m_mme.json").read_text())
    assert saved["counts"]["missing"] == missing and saved["runs"][0]["tasks"]["existence"]["missing"] == missing
    capsys.readouterr()
    assert report.main([str(tmp_path / "m_mme.json")]) == 0
    out = capsys.readouterr().out
    assert (f"incomplete: {missing} of 60 questions of its tasks have no answer" in out) == bool(missing), out


def test_amber_with_unanswered_queries_is_marked_incomplete(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from eval import amber

    answers = tmp_path / "few.jsonl"
    answers.write_text("".join(json.dumps({"id": i, "response": "A dog on a sofa."}) + "\n" for i in (1, 2, 3)))
    amber.main(["--inference_data", str(answers), "--evaluation_type", "g", "--similarity", "exact"])
    saved = json.loads((tmp_path / "few_amber.json").read_text())
    capsys.readouterr()
    assert report.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"incomplete: {saved['counts']['missing_ids']} of {saved['counts']['missing_ids'] + 3} queries" in out, out


def test_the_same_answers_scored_twice_count_once(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A second metric file of the same answers (scored again under another name) is not another seed."""
    from eval import pope

    question_file = POPE_QUESTIONS
    questions = [json.loads(line) for line in question_file.read_text().splitlines()]
    answers = pope_answers(tmp_path / "answers.jsonl", questions)
    for out in ("answers_pope.json", "again.json"):
        assert pope.main(["--answers", str(answers), "--question_file", str(question_file),
                          "--save_path", str(tmp_path / out)]) == 0
    capsys.readouterr()
    assert report.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "| coco | random |" in line)
    assert "| 1 |" in row, out
    assert "scores the same answers as" in out and "counted once" in out


# ----------------------------------------------------------------------------------------------------------------
# Tables by benchmark, through the scorers' interface (eval.scoring)


def test_a_chair_run_of_another_benchmark_lands_under_its_own_columns(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """CHAIR scores any captions: a run whose _results.json names the benchmark ``folder`` is in folder's columns
    of the captioning table, not COCO's, and COCO's published F1 is not put beside it."""
    model = "liuhaotian/llava-v1.5-7b"
    coco = runner_run(tmp_path, "coco_run", {"model_path": model, "method": "baseline", "benchmark": "coco",
                                             "seed": 42})
    folder = runner_run(tmp_path, "folder_run", {"model_path": model, "method": "sparc", "benchmark": "folder",
                                                 "seed": 42})
    chair_file(tmp_path, "coco_run", coco, 0.5)
    chair_file(tmp_path, "folder_run", folder, 0.4)
    assert report.main([str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("### SPARC: captioning (COCO, folder CHAIR x100") for line in lines), lines
    assert ("| Model | Method | Source | Runs | COCO CHAIRs ↓ | COCO CHAIRi ↓ | COCO Recall ↑ | COCO F1 ↑ "
            "| COCO Len (words) | folder CHAIRs ↓ | folder CHAIRi ↓ | folder Recall ↑ | folder F1 ↑ "
            "| folder Len (words) |") in lines
    assert ("| LLaVA-1.5 | baseline | ours | 1 (seed 42) | 50.00 | 14.00 | 78.00 | 82.00 | 95.12 "
            "| - | - | - | - | - |") in lines
    assert "| LLaVA-1.5 | baseline | paper | - | - | - | - | 81.99 | - | - | - | - | - | - |" in lines
    assert ("| LLaVA-1.5 | SPARC | ours | 1 (seed 42) | - | - | - | - | - "
            "| 40.00 | 14.00 | 78.00 | 82.00 | 95.12 |") in lines
    assert not any(line.startswith("| LLaVA-1.5 | SPARC | paper |") for line in lines)  # 83.67 is COCO's


class SplitHits(Scorer):
    """A scorer the report has never heard of: one run per split, its own columns, a published number."""

    name = "split_hits"
    default_benchmark = "hitbench"
    columns = (Column("hits", "Hits ↑", 100), Column("misses", "Misses ↓"))
    description = "hits x100, misses as counted"
    key_headers = ("Split",)
    paper_runs = "3 seeds"

    def runs(self, data: dict[str, Any]) -> list[ScoredRun]:
        return [ScoredRun(split, data["answers_file"], values, values.get("unanswered"), 10, "items")
                for split, values in data["splits"].items()]

    def key_order(self, key: str) -> tuple[Any, ...]:
        return (key != "hard", key)  # the hard split first

    def paper(self, benchmark: str, key: str, model: str, method: str) -> dict[str, Any] | None:
        return {"hits": (90.0, 1.5)} if (benchmark, key, method) == ("hitbench", "easy", "SPARC") else None


def test_a_new_scorer_gets_its_own_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A scorer registered anywhere (here, in a test) gets a table of its benchmark from its interface alone:
    title, key columns, its columns and scales, its order, coverage notes and published numbers."""
    register_scorer(SplitHits())
    try:
        write(tmp_path / "llava-1.5_sparc_hits.json", {
            "scorer": "split_hits", "answers_file": "hits.jsonl", "problems": [],
            "splits": {"easy": {"hits": 0.5, "misses": 3}, "hard": {"hits": 0.25, "misses": 7, "unanswered": 2}}})
        assert report.main([str(tmp_path)]) == 0
    finally:
        unregister_scorer("split_hits")
    lines = capsys.readouterr().out.splitlines()
    table = lines[lines.index("### hitbench: hits x100, misses as counted"):]
    assert table[2:7] == ["| Model | Split | Method | Source | Runs | Hits ↑ | Misses ↓ |",
                          "|---|---|---|---|---|---|---|",
                          "| LLaVA-1.5 | hard | SPARC | ours | 1 [1] | 25.00 | 7.00 |",
                          "| LLaVA-1.5 | easy | SPARC | ours | 1 | 50.00 | 3.00 |",
                          "| LLaVA-1.5 | easy | SPARC | paper | 3 seeds | 90.00 ± 1.50 | - |"]
    assert "[1] incomplete: 2 of 10 items have no answer: not the benchmark's result" in lines
    assert "split_hits" not in Path(report.__file__).read_text()


def test_the_report_has_no_branch_on_a_scorer_name() -> None:
    source = Path(report.__file__).read_text()
    for name in ("chair", "clair", "pope", "mme", "amber", "llava_bench"):
        assert not re.search(rf"[\"']{name}[\"']", source), name


@pytest.mark.parametrize("name, how", [("docci", "python -m eval.clair --help"),
                                            ("llava_bench", "python -m eval.llava_bench --help"),
                                            ("folder", "the benchmark folder names no scorer")])
def test_unscored_runs_name_the_scorer_of_their_benchmark(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          name: str, how: str) -> None:
    write(tmp_path / "run_results.json", {"config": {"method": "sparc", "benchmark": name},
                                          "counts": {"answered": 3}, "files": {"answers": "run.jsonl"}})
    assert report.main([str(tmp_path)]) == 0
    assert f"{tmp_path / 'run.jsonl'}: SPARC on {name}, 3 answers, not scored yet ({how})" in capsys.readouterr().out


@pytest.mark.parametrize("seed, runs", [(42, "1 (seed 42)"), (43, "2 (seeds 42, 43)")])
def test_the_same_seed_run_twice_counts_once(tmp_path: Path, capsys: pytest.CaptureFixture[str], seed: int,
                                             runs: str) -> None:
    """A run done again (same settings and seed in the runner's _config.json, same samples) into another folder,
    with answers a few bytes apart (GPU nondeterminism), is one run, not two seeds; another seed is another run."""
    config = {"model_path": "liuhaotian/llava-v1.5-7b", "method": "sparc", "benchmark": "coco"}
    for folder, run_seed, chair_s in (("again", seed, 0.42), ("first", 42, 0.40)):
        answers = runner_run(tmp_path / folder, "sparc", {**config, "seed": run_seed})
        Path(answers).write_text(json.dumps({"image_id": 1, "caption": f"a caption ({folder})"}) + "\n")
        write(tmp_path / folder / "sparc_config.json", {**config, "protocol": {"seed": run_seed}})
        write(tmp_path / folder / "sparc_manifest.json", {"ids": ["1"], "sha256": "f00"})
        chair_file(tmp_path / folder, "sparc", answers, chair_s)
    assert report.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"| LLaVA-1.5 | SPARC | ours | {runs} |" in out, out
    note = (f"{tmp_path / 'first' / 'sparc_chair.json'} scores the same run as "
            f"{tmp_path / 'again' / 'sparc_chair.json'} (same seed and settings)")
    assert (note in out and "counted once" in out) == (seed == 42), out


def test_a_copied_run_counts_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same answers under another path and seed name (a copy), scored as a second seed by an earlier MME
    scorer: one run."""
    first = tmp_path / "avisc_mme_seed42.jsonl"
    first.write_text(json.dumps({"question_id": "existence/1.jpg", "text": "Yes"}) + "\n")
    copy = tmp_path / "copy" / "avisc_mme_seed43.jsonl"
    copy.parent.mkdir()
    copy.write_bytes(first.read_bytes())
    task = {"tasks": {t: {"score": 150.0} for t in ("existence", "count", "position", "color")},
            "totals": {"hallucination": 600.0}}
    runs = [{**task, "source": str(first)}, {**task, "source": str(copy)}]
    write(tmp_path / "llava-1.5_avisc_mme.json", {"scorer": "mme", "answers_file": [str(first), str(copy)],
                                                  "metrics": {}, "problems": [], "runs": runs})
    assert report.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| LLaVA-1.5 | AvisC | ours | 1 (seed 42) | 150.00 | 150.00 | 150.00 | 150.00 | 600.00 |" in out, out
    assert f"scores the same answers as {tmp_path / 'llava-1.5_avisc_mme.json'} ({copy}): counted once" in out


def test_a_scorer_that_cannot_be_loaded_skips_its_files_with_a_note(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from eval import scoring

    def missing(name: str) -> None:
        raise ModuleNotFoundError(f"No module named 'numpy' (importing {name})")

    monkeypatch.setattr(scoring, "_REGISTRY", {k: v for k, v in scoring._REGISTRY.items() if k != "llava_bench"})
    monkeypatch.setattr(scoring.importlib, "import_module", missing)
    write(tmp_path / "run_llava_bench.json", {"scorer": "llava_bench", "answers_file": "run.jsonl", "metrics": {}})
    chair_file(tmp_path, "llava-1.5_sparc", "x.jsonl", 0.4)
    assert report.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| LLaVA-1.5 | SPARC | ours | 1 | 40.00 |" in out
    assert f"{tmp_path / 'run_llava_bench.json'}: the scorer llava_bench cannot be loaded (No module named" in out
