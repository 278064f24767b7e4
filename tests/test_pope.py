"""POPE scorer: hand-computed metrics, the official yes/no edge cases, pairing by id, the shipped question files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval import pope

LABELS = {1: "yes", 2: "no", 3: "yes", 4: "no", 5: "yes", 6: "no", 7: "yes", 8: "no"}
ANSWERS = [
    (1, "Yes, there is a dog."),         # yes -> TP
    (2, "Yes, but not in the center."),  # "not" anywhere -> no -> TN
    (3, "There isn't a cat."),           # "n't" -> no -> FN
    (4, ""),                             # empty -> yes (official) -> FP, reported
    (5, "NOT sure"),                     # "NOT" is not a NEG_WORD -> yes -> TP
    (6, "No."),                          # -> TN
    (8, "Yes"),                          # -> FP; question 7 has no answer
    (99, "No"),                          # not in the question file
    (1, "No"),                           # duplicate of 1
]
# TP 2 (q1, q5), FP 2 (q4, q8), TN 2 (q2, q6), FN 1 (q3): N = 7
EXPECTED = {"accuracy": 400 / 7, "precision": 50.0, "recall": 200 / 3, "f1": 400 / 7, "yes_ratio": 400 / 7}


def write_questions(path: Path, as_array: bool) -> Path:
    records = [{"question_id": q, "image": f"img{q}.jpg", "text": "Is there a dog?", "label": label}
               for q, label in LABELS.items()]
    if as_array:
        path.write_text(json.dumps(records), encoding="utf-8")
    else:  # jsonl with CRLF line ends, like two of the RUCAIBox files
        path.write_bytes("".join(json.dumps(r) + "\r\n" for r in records).encode())
    return path


def write_answers(path: Path) -> Path:
    lines = [json.dumps({"question_id": q, "prompt": "Is there a dog?", "text": t}) for q, t in ANSWERS]
    lines.insert(3, "{not json")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("as_array", [False, True])
def test_hand_computed_metrics_and_reported_problems(tmp_path: Path, as_array: bool) -> None:
    questions = write_questions(tmp_path / "questions.json", as_array)
    answers = write_answers(tmp_path / "answers.jsonl")
    out = tmp_path / "metrics.json"
    assert pope.main(["--answers", str(answers), "--question_file", str(questions), "--save_path", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["scorer"] == "pope" and result["answers_file"] == str(answers)
    (key,) = result["metrics"]
    assert result["metrics"][key] == pytest.approx(EXPECTED)
    assert result["settings"][key]["confusion"] == {"TP": 2, "FP": 2, "TN": 2, "FN": 1}
    counts = result["counts"]
    assert (counts["scored"], counts["missing"], counts["extra"], counts["duplicate"], counts["empty"]) == (7, 1, 1, 1, 1)
    problems = {(p["line"], p["id"]): p["reason"] for p in result["problems"]}
    assert "not valid JSON" in problems[(4, None)]
    assert "empty answer" in problems[(5, "4")]
    assert "not in the question file" in problems[(9, "99")]
    assert "duplicate" in problems[(10, "1")]
    assert "no answer" in problems[(None, "7")]


def test_confusion_metrics_with_empty_denominators() -> None:
    assert pope.confusion_metrics(0, 0, 3, 1) == {"accuracy": 75.0, "precision": None, "recall": 0.0, "f1": None,
                                                   "yes_ratio": 0.0}


@pytest.mark.parametrize("name, expected", [
    ("coco_pope_random.jsonl", ("coco", "random")),
    ("llava15_avisc_seed42_aokvqa_pope_adversarial.jsonl", ("aokvqa", "adversarial")),
    ("GQA-popular.jsonl", ("gqa", "popular")),
    ("answers.jsonl", (None, None)),
])
def test_infer_setting(name: str, expected: tuple[str | None, str | None]) -> None:
    assert pope.infer_setting(name) == expected


def test_shipped_question_files_are_balanced() -> None:
    for dataset in pope.DATASETS:
        for setting in pope.SETTINGS:
            path = pope.find_question_file(pope.DEFAULT_QUESTION_DIR, dataset, setting)
            labels = pope.read_labels(path, "label", problems := [])
            assert not problems and len(labels) == 3000 and sum(labels.values()) == 1500, path
    rucaibox = pope.DEFAULT_QUESTION_DIR.parent / "rucaibox"
    labels = pope.read_labels(pope.find_question_file(rucaibox, "coco", "popular"), "label", [])  # CRLF file
    assert len(labels) == 3000 and sum(labels.values()) == 1500
    assert (rucaibox / "LICENSE_POPE_MIT").is_file() and (pope.DEFAULT_QUESTION_DIR / "LICENSE_VCD_Apache2").is_file()


def test_answers_dir_table_across_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for dataset, setting, rule in [("gqa", "adversarial", "label"), ("coco", "random", "yes")]:
        path = pope.find_question_file(pope.DEFAULT_QUESTION_DIR, dataset, setting)
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        with (tmp_path / f"model_{dataset}_pope_{setting}.jsonl").open("w") as f:
            for r in records:
                text = "Yes, it is." if rule == "yes" or r["label"] == "yes" else "No, there is not."
                f.write(json.dumps({"question_id": r["question_id"], "text": text}) + "\n")
    (tmp_path / "notes.jsonl").write_text("{}\n")
    assert pope.main(["--answers_dir", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "pope_metrics.json").read_text())
    assert result["metrics"]["gqa/adversarial"] == {"accuracy": 100.0, "precision": 100.0, "recall": 100.0,
                                                    "f1": 100.0, "yes_ratio": 50.0}
    assert result["metrics"]["coco/random"] == pytest.approx({"accuracy": 50.0, "precision": 50.0, "recall": 100.0,
                                                              "f1": 200 / 3, "yes_ratio": 100.0})
    assert any("notes.jsonl" in p["file"] and "skipped" in p["reason"] for p in result["problems"])
    table = capsys.readouterr().out
    assert table.index("| coco | random | 50.00 | 50.00 | 100.00 | 66.67 |") < table.index(
        "| gqa | adversarial | 100.00 | 100.00 | 100.00 | 100.00 |")


def test_missing_question_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    answers = write_answers(tmp_path / "answers.jsonl")
    assert pope.main(["--answers", str(answers)]) == 2
    assert "cannot tell dataset and setting" in capsys.readouterr().err


def runner_output_folder(folder: Path, names: list[str]) -> None:
    """What the runners leave beside each answers file ``{name}.jsonl`` (eval/runner.py RunPaths), all matching the
    POPE name pattern: errors log (one empty, one not), results, manifest, config, a metrics json, hidden shard files
    of an interrupted sharded run (answers too) and an atomic-write temporary file."""
    for name in names:
        dataset, setting = pope.infer_setting(name)
        path = pope.find_question_file(pope.DEFAULT_QUESTION_DIR, dataset, setting)
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        answers = "".join(json.dumps({"question_id": r["question_id"], "text": "Yes\n" if r["label"] == "yes"
                                      else "No.\n"}) + "\n" for r in records)
        (folder / f"{name}.jsonl").write_text(answers)
        (folder / f"{name}_errors.jsonl").write_text(
            "" if "random" in name else json.dumps({"key": "1", "image": "x.jpg", "reason": "bad image"}) + "\n")
        for side in ("results", "config", "pope"):
            (folder / f"{name}_{side}.json").write_text("{}")
        (folder / f"{name}_manifest.json").write_text(json.dumps({"ids": [str(r["question_id"]) for r in records]}))
        (folder / f".{name}.answers.rank0.jsonl").write_text(answers)
        (folder / f".{name}.errors.rank1.jsonl").write_text("")
        (folder / f".{name}_pope.json.x1y2.tmp").write_text("{")


def test_answers_dir_reads_only_answers_files_of_the_runners_folder(tmp_path: Path) -> None:
    runner_output_folder(tmp_path, ["baseline_coco_pope_random", "baseline_gqa_pope_adversarial"])
    (tmp_path / "coco_pope_popular_notes.jsonl").write_text(json.dumps({"note": "not answers"}) + "\n")
    out = tmp_path / "metrics.json"
    assert pope.main(["--answers_dir", str(tmp_path), "--save_path", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["metrics"]) == {"coco/random", "gqa/adversarial"}
    for metrics in result["metrics"].values():
        assert metrics == {"accuracy": 100.0, "precision": 100.0, "recall": 100.0, "f1": 100.0, "yes_ratio": 50.0}
    skipped = [p for p in result["problems"] if "not an answers file" in p["reason"]]
    assert [Path(p["file"]).name for p in skipped] == ["coco_pope_popular_notes.jsonl"]


def test_a_trial_run_is_scored_on_the_questions_it_chose(tmp_path: Path) -> None:
    """The runner's manifest beside the answers (a --limit 4 trial) says which questions were asked: the others are
    not reported as unanswered."""
    questions = pope.find_question_file(pope.DEFAULT_QUESTION_DIR, "coco", "random")
    records = [json.loads(line) for line in questions.read_text().splitlines()][:4]
    answers = tmp_path / "avisc_coco_pope_random.jsonl"
    answers.write_text("".join(json.dumps({"question_id": r["question_id"], "text": "Yes" if r["label"] == "yes"
                                           else "No"}) + "\n" for r in records[:3]))
    (tmp_path / "avisc_coco_pope_random_manifest.json").write_text(
        json.dumps({"ids": [str(r["question_id"]) for r in records]}))
    assert pope.main(["--answers", str(answers), "--save_path", str(tmp_path / "m.json")]) == 0
    result = json.loads((tmp_path / "m.json").read_text())
    setting = result["settings"]["coco/random"]
    assert setting["counts"]["questions"] == 4 and setting["counts"]["missing"] == 1
    assert [p["id"] for p in result["problems"]] == [str(records[3]["question_id"])]


def test_answers_dir_names_the_colliding_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runner_output_folder(tmp_path, ["baseline_coco_pope_random", "avisc_coco_pope_random"])
    assert pope.main(["--answers_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "coco/random" in err and "avisc_coco_pope_random.jsonl" in err and "baseline_coco_pope_random.jsonl" in err
    assert "_errors" not in err and ".rank0" not in err


def scored(answers: Path, questions: Path) -> dict:
    """The metrics file ``eval.pope`` writes for ``answers`` (beside them, by default)."""
    assert pope.main(["--answers", str(answers), "--question_file", str(questions)]) == 0
    return json.loads(answers.with_name(answers.stem + "_pope.json").read_text())


@pytest.mark.parametrize("question_style, answer_style", [
    (int, float), (int, str), (str, int), (float, int), (int, lambda q: f" {q} "),
])
def test_ids_pair_however_a_tool_wrote_them(tmp_path: Path, question_style, answer_style) -> None:
    """5, 5.0, "5" and " 5 " are one id in the question file and in the answers (as CHAIR and AMBER read ids)."""
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps({"question_id": question_style(q), "image": "x.jpg", "text": "?",
                                             "label": label}) + "\n" for q, label in LABELS.items()))
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({"question_id": answer_style(q), "text": label})
                               + "\n" for q, label in LABELS.items()))
    counts = scored(answers, questions)["counts"]
    assert (counts["scored"], counts["missing"], counts["extra"]) == (8, 0, 0)


def test_a_fractional_id_is_reported_not_matched(tmp_path: Path) -> None:
    questions = write_questions(tmp_path / "questions.json", False)
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"question_id": 1.5, "text": "yes"}) + "\n"
                       + json.dumps({"question_id": 1, "text": "yes"}) + "\n")
    result = scored(answers, questions)
    assert result["counts"]["extra"] == 1 and any("1.5" in p["reason"] for p in result["problems"])


@pytest.mark.parametrize("name", ["coco_pope_random.jsonl", "answers.jsonl", "folder"])
def test_a_mistyped_path_says_it_does_not_exist_and_creates_nothing(tmp_path, capsys, name):
    """Whatever the name says (a setting or none), a path that does not exist is said so, before its name is read
    for a dataset and setting and before any output folder is made."""
    from eval import pope

    missing = tmp_path / "typo" / name
    flag = "--answers_dir" if name == "folder" else "--answers"
    assert pope.main([flag, str(missing)]) == 2
    assert capsys.readouterr().err.strip() in (f"error: {missing}: no such file", f"error: {missing}: no such folder")
    assert not (tmp_path / "typo").exists()
