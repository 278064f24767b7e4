"""Scorer inputs that cannot give a result: a file whose records lack the fields the scorer needs fails first (before
any table), naming the fields found and the flags that fit; a file with nothing to score gives null metrics (never a
number), says why, exits 1, and eval.report shows the row empty with the reason."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Callable

import pytest

from eval import amber, chair, mme, pope, report

LLAVA_STYLE = [{"question_id": "COCO_val2014_000000000073.jpg", "text": "A motorcycle parked near a bicycle."}]
CAPTION_STYLE = [{"image_id": 1, "caption": "Yes"}]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def mme_gt(tmp_path: Path) -> Path:
    gt = tmp_path / "gt"
    gt.mkdir(exist_ok=True)
    (gt / "existence.txt").write_text("1.jpg\tIs there a dog? Please answer yes or no.\tYes\n")
    return gt


def pope_questions(tmp_path: Path) -> Path:
    path = tmp_path / "questions.json"
    path.write_text(json.dumps({"question_id": 1, "label": "yes"}) + "\n")
    return path


Runner = Callable[[Path, Path, list[str]], int]
SCORERS: dict[str, Runner] = {
    "chair": lambda tmp, f, extra: chair.main(["--cap_file", str(f), "--save_path", str(tmp / "out.json"), *extra]),
    "pope": lambda tmp, f, extra: pope.main(["--answers", str(f), "--question_file", str(pope_questions(tmp)),
                                             "--save_path", str(tmp / "out.json"), *extra]),
    "mme": lambda tmp, f, extra: mme.main(["--answers", str(f), "--gt_dir", str(mme_gt(tmp)),
                                           "--save_path", str(tmp / "out.json"), *extra]),
    "amber": lambda tmp, f, extra: amber.main(["--inference_data", str(f), "--evaluation_type", "a",
                                               "--save_path", str(tmp / "out.json"), *extra]),
}
WRONG_FIELDS = {  # scorer: (records without its fields, the fields found, the flags the error must suggest)
    "chair": (LLAVA_STYLE, "question_id, text", "--image_id_key question_id --caption_key text"),
    "pope": (CAPTION_STYLE, "image_id, caption", "--id_key image_id --text_key caption"),
    "mme": (CAPTION_STYLE, "image_id, caption", "--text_key caption --id_key image_id"),
    "amber": (CAPTION_STYLE, "image_id, caption", "--id_key image_id --text_key caption"),
}


@pytest.mark.parametrize("scorer", SCORERS)
def test_missing_fields_fail_first_with_the_flags_that_fit(scorer: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    records, found, flags = WRONG_FIELDS[scorer]
    answers = write_jsonl(tmp_path / "answers.jsonl", records)
    assert SCORERS[scorer](tmp_path, answers, []) == 2
    out, err = capsys.readouterr()
    assert not re.search(r"\d\.\d", out), f"numbers printed before the error: {out!r}"
    assert not (tmp_path / "out.json").exists()
    assert err.count("\n") == 1 and str(answers) in err
    assert f"fields found: {found}" in err and flags in err


@pytest.mark.parametrize("scorer", ["chair", "pope"])
def test_the_suggested_flags_fit(scorer: str, tmp_path: Path) -> None:
    records, _, flags = WRONG_FIELDS[scorer]
    answers = write_jsonl(tmp_path / "answers.jsonl", records)
    assert SCORERS[scorer](tmp_path, answers, flags.split()) == 0
    assert json.loads((tmp_path / "out.json").read_text())["counts"]["scored"] == 1


def all_values(metrics: dict) -> list:
    """Every metric value of a metrics block (POPE nests one block per setting)."""
    return [v for value in metrics.values() for v in (value.values() if isinstance(value, dict) else [value])]


@pytest.mark.parametrize("scorer", SCORERS)
@pytest.mark.parametrize("content", ["", "\n\n"])
def test_nothing_to_score_gives_null_metrics_and_a_reason(scorer: str, content: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    answers = tmp_path / "answers.jsonl"
    answers.write_text(content)
    assert SCORERS[scorer](tmp_path, answers, []) == 1
    saved = json.loads((tmp_path / "out.json").read_text())
    assert all(value is None for value in all_values(saved["metrics"])), saved["metrics"]
    assert saved["empty_reason"]
    out = capsys.readouterr().out
    assert not re.search(r"\b(50|100)\.0", out), out  # no AMBER 50.00 / Hal 100 / Precision 100.000


def test_report_shows_failed_scores_as_empty_rows_with_the_reason(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    results.mkdir()
    empty = results / "llava-v1.5_baseline.jsonl"
    empty.write_text("")
    assert amber.main(["--inference_data", str(empty), "--evaluation_type", "a",
                       "--save_path", str(results / "baseline_amber.json")]) == 1
    assert chair.main(["--cap_file", str(empty), "--save_path", str(results / "baseline_chair.json")]) == 1
    capsys.readouterr()
    assert report.main([str(results)]) == 0
    lines = capsys.readouterr().out.splitlines()
    ours = [line for line in lines if line.startswith("| LLaVA-1.5 | baseline | ours |")]
    chair_row = next(line for line in ours if line.count("|") == 10)  # 9 columns
    amber_row = next(line for line in ours if line.count("|") == 14)  # 13 columns
    for row in (chair_row, amber_row):
        cells = [c.strip() for c in row.strip("|").split("|")][4:]
        assert cells and all(cell == "-" for cell in cells), row
        assert re.search(r"\[\d\]", row)
    assert any(re.match(r"\[\d\] no score \(.*baseline_chair.json\): no caption scored", line) for line in lines)
    assert any(re.match(r"\[\d\] no score \(.*baseline_amber.json\): no answer of this evaluation type", line)
               for line in lines)


GOOD_RECORDS = {  # one scorable record each
    "chair": [{"image_id": 73, "caption": "A motorcycle parked near a bicycle."}],
    "pope": [{"question_id": 1, "text": "Yes"}],
    "mme": [{"question_id": "existence/1.jpg/0", "image": "1.jpg", "text": "Yes",
             "prompt": "Is there a dog? Please answer yes or no."}],
    "amber": [{"id": 1, "response": "A dog on a sofa."}],
}


UNWRITABLE = {"below a file": "blocker is a file, not a folder", "a folder": "it is a folder",
              "a pipe": "it is not a regular file"}


def unwritable(tmp_path: Path, kind: str) -> Path:
    """A save path that cannot be written: below a file, a folder, or a special file that writing would replace."""
    blocker = tmp_path / "blocker"
    if kind == "below a file":
        blocker.write_text("x")
        return blocker / "sub" / "metrics.json"
    if kind == "a pipe":
        os.mkfifo(blocker)
        return blocker
    blocker.mkdir()
    return blocker


@pytest.mark.parametrize("scorer", SCORERS)
@pytest.mark.parametrize("kind", list(UNWRITABLE))
def test_an_unwritable_save_path_is_one_line_before_scoring(scorer: str, kind: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    answers = write_jsonl(tmp_path / "answers.jsonl", GOOD_RECORDS[scorer])
    target = unwritable(tmp_path, kind)
    assert SCORERS[scorer](tmp_path, answers, ["--save_path", str(target)]) == 2
    out, err = capsys.readouterr()
    assert not re.search(r"\d\.\d", out), f"numbers printed before the error: {out!r}"
    assert err.count("\n") == 1 and str(target) in err and "--save_path" in err, err
    assert UNWRITABLE[kind] in err
    assert kind != "a pipe" or target.is_fifo()


@pytest.mark.parametrize("kind", list(UNWRITABLE))
def test_clair_unwritable_save_path_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    from eval import clair

    answers = write_jsonl(tmp_path / "answers.jsonl", [{"image_id": "a", "caption": "x"}])
    annotations = write_jsonl(tmp_path / "data.jsonl", [{"image/key": "a", "IIW": "ref"}])
    target = unwritable(tmp_path, kind)
    assert clair.main(["--annotation_file", str(annotations), "--answer_file", str(answers), "--data_type", "iiw",
                       "--save_path", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write to" in err and "--save_path" in err and UNWRITABLE[kind] in err, err


@pytest.mark.parametrize("scorer", SCORERS)
def test_every_scorer_writes_its_metrics_beside_the_answers_by_default(scorer: str, tmp_path: Path) -> None:
    """Without --save_path: ``<answers stem>_<scorer>.json`` (the name the scripts and eval.report use)."""
    answers = write_jsonl(tmp_path / "run.jsonl", GOOD_RECORDS[scorer])
    argv = {"chair": ["--cap_file", str(answers)],
            "pope": ["--answers", str(answers), "--question_file", str(pope_questions(tmp_path))],
            "mme": ["--answers", str(answers), "--gt_dir", str(mme_gt(tmp_path))],
            "amber": ["--inference_data", str(answers), "--evaluation_type", "g"]}[scorer]
    module = {"chair": chair, "pope": pope, "mme": mme, "amber": amber}[scorer]
    assert module.main(argv) in (0, 1)
    saved = json.loads((tmp_path / f"run_{scorer}.json").read_text())
    assert saved["scorer"] == scorer and saved["counts"]
