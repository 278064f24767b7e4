"""MME scorer: the official LaVIN fixture, the answers-file route, the hallucination subset and mean +- std."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from eval import mme

HALLUCINATION_FILE = Path(mme.__file__).resolve().parent / "data" / "mme" / "mme_hallucination.jsonl"


def run_mme(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "mme.json"
    assert mme.main([*args, "--save_path", str(out)]) == 0
    return json.loads(out.read_text())


def test_lavin_fixture_official_parse(reference_dir: Path, tmp_path: Path) -> None:
    result = run_mme(tmp_path, "--results_dir", str(reference_dir / "mme_gt" / "LaVIN"), "--parse", "official")
    scores = {name: round(value, 2) for name, value in result["metrics"].items()}
    assert (scores["perception"], scores["cognition"]) == (963.61, 249.64)
    assert [scores[t] for t in mme.HALLUCINATION] == [185.00, 88.33, 63.33, 75.00]
    assert scores["hallucination"] == round(185 + 88 + 1 / 3 + 63 + 1 / 3 + 75, 2)
    assert result["scorer"] == "mme" and result["counts"]["questions"] == 2374 and not result["problems"]


def lavin_as_answers(lavin: Path, path: Path) -> Path:
    """The LaVIN predictions as our answers jsonl: question ids ``task/image``, the bare question as prompt."""
    with path.open("w") as f:
        for task in mme.TASKS:
            for line in (lavin / f"{task}.txt").read_text().splitlines():
                image, question, _, prediction = line.split("\t")
                prompt = question.replace(" Please answer yes or no.", "").rstrip()
                f.write(json.dumps({"question_id": f"{task}/{image}", "prompt": prompt, "text": prediction}) + "\n")
    return path


def test_answers_route_matches_results_route(reference_dir: Path, tmp_path: Path) -> None:
    answers = lavin_as_answers(reference_dir / "mme_gt" / "LaVIN", tmp_path / "lavin.jsonl")
    result = run_mme(tmp_path, "--answers", str(answers), "--gt_dir", str(reference_dir / "mme_gt"),
                     "--parse", "official")
    assert round(result["metrics"]["perception"], 2) == 963.61
    assert round(result["metrics"]["cognition"], 2) == 249.64
    assert result["counts"]["unanswered"] == 0 and not result["problems"]


def write_release_gt(gt_dir: Path, tasks: dict[str, list[tuple[str, str, str]]], nested: bool) -> None:
    """An MME release folder: ``<task>/<image>.txt`` (or under ``questions_answers_YN/``) with question, answer."""
    for task, rows in tasks.items():
        folder = gt_dir / task / "questions_answers_YN" if nested else gt_dir / task
        folder.mkdir(parents=True, exist_ok=True)
        for image, question, answer in rows:
            with (folder / f"{image.split('.')[0]}.txt").open("a") as f:
                f.write(f"{question}\t{answer}\n")


Q = " Please answer yes or no."
TINY_GT = {  # two images per task, a yes and a no question each
    "existence": [("e1.jpg", "Is there a dog?" + Q, "Yes"), ("e1.jpg", "Is there a cat?" + Q, "No"),
                  ("e2.jpg", "Is there a car?" + Q, "Yes"), ("e2.jpg", "Is there a bus?" + Q, "No")],
    "count": [("c1.jpg", "Are there two dogs?" + Q, "Yes"), ("c1.jpg", "Are there three dogs?" + Q, "No"),
              ("c2.jpg", "Is there one cup?" + Q, "Yes"), ("c2.jpg", "Are there two cups?" + Q, "No")],
    "position": [("p1.jpg", "Is the dog left?" + Q, "Yes"), ("p1.jpg", "Is the dog right?" + Q, "No"),
                 ("p2.jpg", "Is the cup on top?" + Q, "Yes"), ("p2.jpg", "Is the cup below?" + Q, "No")],
    "color": [("k1.png", "Is the car red?" + " " + Q, "Yes"), ("k1.png", "Is the car blue?" + Q, "No"),
              ("k2.png", "Is the hat black?" + Q, "Yes"), ("k2.png", "Is the hat white?" + Q, "No")],
}


def tiny_answers(path: Path, correct: bool) -> Path:
    """Run 1 (correct=False): existence 4/4, count 3/4 (c2 half), position 2/4 (one per image), color 3/4 with one
    unanswered. Scores: 200, 75 + 50 = 125, 50 + 0 = 50, 75 + 50 = 125; total 500. Run 2 (correct=True): all 200."""
    def line(task: str, image: str, question: str, text: str, **extra: str) -> dict:
        return {"question_id": f"{task}/{image}", "category": task, "image": f"{task}/{image}",
                "prompt": question, "text": text, **extra}

    rows = []
    for task, items in TINY_GT.items():
        for image, question, answer in items:
            bare = question.replace(Q, "").strip()
            right = "Yes, it is." if answer == "Yes" else "No, it is not."
            wrong = "No." if answer == "Yes" else "Yes."
            if correct:
                text = right
            elif task == "count":
                text = wrong if question.startswith("Are there two cups") else right
            elif task == "position":
                text = wrong if answer == "No" else right
            elif task == "color" and bare == "Is the hat white?":
                continue  # unanswered: counted as wrong
            else:
                text = right
            if bare == "Is the car red?":  # the official route for prompts that still carry the one-word instruction
                bare += "\nAnswer the question using a single word or phrase."
            rows.append(line(task, image, bare, text))
    rows.append(line("existence", "e1.jpg", "Is there a unicorn?", "No"))  # no ground truth
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("nested", [False, True])
def test_hallucination_subset_hand_worked(tmp_path: Path, nested: bool) -> None:
    write_release_gt(tmp_path / "gt", TINY_GT, nested)
    answers = tiny_answers(tmp_path / "run1.jsonl", correct=False)
    result = run_mme(tmp_path, "--answers", str(answers), "--gt_dir", str(tmp_path / "gt"))
    metrics = result["metrics"]
    assert {t: metrics[t] for t in mme.HALLUCINATION} == {"existence": 200, "count": 125, "position": 50, "color": 125}
    assert metrics["hallucination"] == 500 and "perception" not in metrics and "cognition" not in metrics
    assert result["runs"][0]["totals"] == {"perception": None, "cognition": None, "hallucination": 500}
    assert result["counts"]["unanswered"] == 1
    reasons = [p["reason"] for p in result["problems"]]
    assert any("no ground truth for existence/e1" in r for r in reasons)
    assert any("no answer to 'Is the hat white? Please answer yes or no.'" in r for r in reasons)


def test_mean_and_sample_std_over_two_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_release_gt(tmp_path / "gt", TINY_GT, nested=False)
    run1 = tiny_answers(tmp_path / "run1.jsonl", correct=False)
    run2 = tiny_answers(tmp_path / "run2.jsonl", correct=True)
    result = run_mme(tmp_path, "--answers", str(run1), str(run2), "--gt_dir", str(tmp_path / "gt"))
    assert result["metrics"] == pytest.approx({"existence": 200, "count": 162.5, "position": 125, "color": 162.5,
                                               "hallucination": 650})
    root2 = math.sqrt(2)  # sample std of two values = |a - b| / sqrt(2)
    assert result["std"] == pytest.approx({"existence": 0, "count": 75 / root2, "position": 150 / root2,
                                           "color": 75 / root2, "hallucination": 300 / root2})
    assert result["std_ddof"] == 1 and result["counts"]["runs"] == 2
    assert "| **hallucination** | 500.00 | 800.00 | 650.00 ± 212.13 |" in capsys.readouterr().out


def test_shipped_hallucination_questions_against_reference_gt(reference_dir: Path, tmp_path: Path) -> None:
    """All-"Yes" answers score 50 per task (each image has one yes and one no question); answering yes to the
    first and no to the second question of each image (the file's order) scores 200 per task."""
    questions = [json.loads(line) for line in HALLUCINATION_FILE.read_text().splitlines()]
    seen: set[str] = set()
    all_yes, pattern = tmp_path / "yes.jsonl", tmp_path / "pattern.jsonl"
    with all_yes.open("w") as f_yes, pattern.open("w") as f_pattern:
        for q in questions:
            record = {**q, "prompt": q["text"].split("\n")[0]}
            f_yes.write(json.dumps({**record, "text": "Yes"}) + "\n")
            f_pattern.write(json.dumps({**record, "text": "No" if q["question_id"] in seen else "Yes"}) + "\n")
            seen.add(q["question_id"])
    result = run_mme(tmp_path, "--answers", str(all_yes), str(pattern), "--gt_dir", str(reference_dir / "mme_gt"))
    assert [run["totals"]["hallucination"] for run in result["runs"]] == [200, 800]
    assert result["metrics"]["hallucination"] == 500 and result["counts"]["questions"] == 480
    assert not result["problems"]
    assert (HALLUCINATION_FILE.parent / "LICENSE_RITUAL_MIT_for_mme_hallucination_jsonl").is_file()


@pytest.mark.parametrize("text, pope_rule, official", [
    ("Yes", "yes", "yes"),
    ("no", "no", "no"),
    ("There is no dog.", "no", "other"),
    ("yes, but not red", "no", "yes"),
    ("Nope", "yes", "no"),
])
def test_parse_modes(text: str, pope_rule: str, official: str) -> None:
    assert (mme.read_label(text, "pope"), mme.read_label(text, "official")) == (pope_rule, official)


def test_answers_without_gt_dir_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    answers = tiny_answers(tmp_path / "a.jsonl", correct=True)
    assert mme.main(["--answers", str(answers)]) == 2
    assert "--answers needs --gt_dir" in capsys.readouterr().err
