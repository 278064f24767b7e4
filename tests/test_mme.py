"""MME scorer: the official LaVIN fixture, the answers-file route, the hallucination subset and mean +- std."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import EVAL_DATA, MME_GT
from eval import mme

HALLUCINATION_FILE = EVAL_DATA / "mme" / "mme_hallucination.jsonl"


def run_mme(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "mme.json"
    assert mme.main([*args, "--save_path", str(out)]) == 0
    return json.loads(out.read_text())


def test_lavin_fixture_read_as_the_eval_tool_by_default(tmp_path: Path) -> None:
    """The eval-tool format is read as calculation.py reads it, with no flag (LaVIN's answers are free text such as
    "yes, you should stop ... a "do not walk" sign", which the NEG_WORDS reading would call no)."""
    result = run_mme(tmp_path, "--results_dir", str(MME_GT / "LaVIN"))
    assert result["reading"] == "eval_tool" and "parse_pred_ans" in result["reading_rule"]
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


def test_answers_route_matches_results_route(tmp_path: Path) -> None:
    answers = lavin_as_answers(MME_GT / "LaVIN", tmp_path / "lavin.jsonl")
    result = run_mme(tmp_path, "--answers", str(answers), "--gt_dir", str(MME_GT),
                     "--reading", "eval_tool")
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


def test_shipped_hallucination_questions_against_the_ground_truth(tmp_path: Path) -> None:
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
    result = run_mme(tmp_path, "--answers", str(all_yes), str(pattern), "--gt_dir", str(MME_GT))
    assert [run["totals"]["hallucination"] for run in result["runs"]] == [200, 800]
    assert result["metrics"]["hallucination"] == 500 and result["counts"]["questions"] == 480
    assert not result["problems"]
    assert (HALLUCINATION_FILE.parent / "LICENSE_RITUAL_MIT_for_mme_hallucination_jsonl").is_file()


# One image per task, a "Yes" question then a "No" question: a task scores 200 (both right), 50 (one right: acc 50,
# acc+ 0) or 0. Predictions where the MME eval tool's parse_pred_ans (lower-case; exact yes/no, else yes/no within
# the first 4 characters, else other) and AvisC's NEG_WORDS recorder (after strip) disagree.
PERTURBED = {  # task: (prediction to the yes question, prediction to the no question)
    "existence": ("Yes, there is a no left turn sign.", "No"),  # tool: 2 right = 200; avisc: word "no" -> 50
    "count": ("Yes", "There is no dog."),                  # tool: "ther" -> other -> 50; avisc 200
    "position": ("YES", "NO."),                            # both 200
    "color": ("  yes", "Nope"),                            # tool: "  ye" other, "nope" no -> 50; avisc: yes, yes -> 50
    "posters": ("yes", "no"),                              # both 200
    "celebrity": ("Not sure", "not"),                      # tool: "not " -> no, no -> 50; avisc: yes ("Not"), no -> 200
    "scene": ("It isn't raining", "no"),                   # tool: other; avisc: n't -> no: both 50
    "landmark": ("Yes.", "Yes"),                           # both 50
    "artwork": ("yes", "No, it is not."),                  # both 200
    "OCR": ("yes", "I do not think so"),                   # tool: "i do" other -> 50; avisc: not -> 200
    "commonsense_reasoning": ("yes, you should stop; the sign says do not walk", "no"),  # tool 200; avisc 50
    "numerical_calculation": ("The answer is yes", "The answer is no"),  # tool 0; avisc 200
    "text_translation": ("Yes", ""),                       # tool: "" other -> 50; avisc: empty is yes -> 50
    "code_reasoning": ("yes", "no"),                       # both 200
}
# eval tool: Perception 200+50+200+50+200+50+50+50+200+50 = 1100, Cognition 200+0+50+200 = 450
# AvisC:     Perception 50+200+200+50+200+200+50+50+200+200 = 1400, Cognition 50+200+50+200 = 500
QUESTIONS = ("Is the answer yes?", "Is the answer no?")


def write_perturbed(folder: Path) -> Path:
    """The eval-tool results folder of ``PERTURBED``: ``image<TAB>question<TAB>gt<TAB>prediction`` per line."""
    folder.mkdir(parents=True, exist_ok=True)
    for task, predictions in PERTURBED.items():
        lines = [f"{task}.jpg\t{q}{Q}\t{gt}\t{p}\n" for q, gt, p in zip(QUESTIONS, ("Yes", "No"), predictions)]
        (folder / f"{task}.txt").write_text("".join(lines))
    return folder


def test_results_dir_scored_as_the_eval_tool_where_readings_differ(tmp_path: Path) -> None:
    folder = write_perturbed(tmp_path / "results")
    result = run_mme(tmp_path, "--results_dir", str(folder))
    assert result["reading"] == "eval_tool"
    assert (result["metrics"]["perception"], result["metrics"]["cognition"]) == (1100, 450)
    assert result["metrics"]["existence"] == 200 and result["metrics"]["numerical_calculation"] == 0
    avisc = run_mme(tmp_path, "--results_dir", str(folder), "--reading", "avisc")
    assert avisc["reading"] == "avisc"
    assert (avisc["metrics"]["perception"], avisc["metrics"]["cognition"]) == (1400, 500)


def test_answers_read_as_the_avisc_pipeline_by_default(tmp_path: Path) -> None:
    """The same predictions as our runner's answers (with stray whitespace): cleaned, then NEG_WORDS by default; the
    eval tool's reading on cleaned answers differs from the folder route only where a leading space moved the 4-char
    window (color: "  yes" is yes once stripped -> 200, so Perception 1100 + 150)."""
    gt = tmp_path / "gt"
    gt.mkdir()
    with (tmp_path / "answers.jsonl").open("w") as f:
        for task, predictions in PERTURBED.items():
            with (gt / f"{task}.txt").open("w") as g:
                for q, answer, prediction in zip(QUESTIONS, ("Yes", "No"), predictions):
                    g.write(f"{task}.jpg\t{q}{Q}\t{answer}\n")
                    f.write(json.dumps({"question_id": f"{task}/{task}.jpg", "prompt": q, "text": prediction + "\n"})
                            + "\n")
    result = run_mme(tmp_path, "--answers", str(tmp_path / "answers.jsonl"), "--gt_dir", str(gt))
    assert result["reading"] == "avisc"
    assert (result["metrics"]["perception"], result["metrics"]["cognition"]) == (1400, 500)
    tool = run_mme(tmp_path, "--answers", str(tmp_path / "answers.jsonl"), "--gt_dir", str(gt),
                   "--reading", "eval_tool")
    assert (tool["metrics"]["perception"], tool["metrics"]["cognition"]) == (1250, 450)


def test_empty_task_file_is_left_out_not_a_crash(tmp_path: Path) -> None:
    folder = write_perturbed(tmp_path / "results")
    (folder / "OCR.txt").write_text("")
    result = run_mme(tmp_path, "--results_dir", str(folder))
    assert "OCR" not in result["runs"][0]["tasks"] and result["runs"][0]["totals"]["perception"] is None
    assert "perception" not in result["metrics"] and result["metrics"]["cognition"] == 450
    assert "perception: no score for OCR" in result["empty_reason"]
    assert any("no questions; task left out" in p["reason"] for p in result["problems"])


def test_answers_file_without_the_answer_fields_fails_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "existence.txt").write_text(f"1.jpg\tIs there a dog?{Q}\tYes\n")
    answers = tmp_path / "captions.jsonl"
    answers.write_text(json.dumps({"image_id": "existence/1.jpg", "caption": "yes"}) + "\n")
    assert mme.main(["--answers", str(answers), "--gt_dir", str(tmp_path / "gt")]) == 2
    err = capsys.readouterr().err
    assert str(answers) in err and "fields found: image_id, caption" in err
    assert "--text_key caption" in err and "--id_key image_id" in err


def test_answers_without_gt_dir_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    answers = tiny_answers(tmp_path / "a.jsonl", correct=True)
    assert mme.main(["--answers", str(answers)]) == 2
    assert "--answers needs --gt_dir" in capsys.readouterr().err


def test_a_trial_run_is_scored_on_the_images_it_chose(tmp_path: Path) -> None:
    """The runner's manifest beside the answers (a --limit 4 trial: two images of the color task, both questions
    each) says which questions were asked: the other questions of the task are not counted as wrong."""
    questions = [json.loads(line) for line in HALLUCINATION_FILE.read_text().splitlines()][:4]
    answers = tmp_path / "avisc_mme_seed42.jsonl"
    keys, seen = [], {}
    with answers.open("w") as f:
        for q in questions:
            occurrence = seen.get(q["question_id"], 0)
            seen[q["question_id"]] = occurrence + 1
            keys.append(f"{q['question_id']}#{occurrence}")
            f.write(json.dumps({**q, "prompt": q["text"].split("\n")[0], "text": "Yes" if occurrence == 0 else "No"})
                    + "\n")
    (tmp_path / "avisc_mme_seed42_manifest.json").write_text(json.dumps({"ids": keys}))
    result = run_mme(tmp_path, "--answers", str(answers), "--gt_dir", str(MME_GT))
    assert result["counts"]["questions"] == 4 and not result["problems"]
    assert result["runs"][0]["tasks"]["color"]["score"] == 200  # both images, both questions right


@pytest.mark.parametrize("second, mixed", [
    ({"method": "avisc", "method_params": {"lamb": 1.0}, "protocol": {"seed": 43, "decoding": "sample"}}, []),
    ({"method": "avisc", "method_params": {"lamb": 0.99}, "protocol": {"seed": 43, "decoding": "sample"}},
     ["method_params.lamb"]),
    ({"method": "pai", "method_params": {"lamb": 1.0}, "protocol": {"seed": 42, "decoding": "greedy"}},
     ["method", "protocol.decoding"]),
])
def test_runs_averaged_in_other_settings_than_the_seed_are_flagged(tmp_path: Path, second: dict, mixed: list[str],
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Several answers files are averaged as seeds; the runner's _config.json beside each says whether they are."""
    write_release_gt(tmp_path / "gt", TINY_GT, nested=False)
    first = {"method": "avisc", "method_params": {"lamb": 1.0}, "protocol": {"seed": 42, "decoding": "sample"}}
    for name, config in (("run1", first), ("run2", second)):
        tiny_answers(tmp_path / f"{name}.jsonl", correct=True)
        (tmp_path / f"{name}_config.json").write_text(json.dumps(config))
    result = run_mme(tmp_path, "--answers", str(tmp_path / "run1.jsonl"), str(tmp_path / "run2.jsonl"),
                     "--gt_dir", str(tmp_path / "gt"))
    assert [entry.split(":")[0] for entry in result["mixed_settings"]] == mixed
    assert ("not a spread over seeds" in capsys.readouterr().err) == bool(mixed)


@pytest.mark.parametrize("config_text", ["{not json", "[1, 2]", None])
def test_unreadable_or_missing_run_configs_are_not_compared(tmp_path: Path, config_text: str | None) -> None:
    write_release_gt(tmp_path / "gt", TINY_GT, nested=False)
    for name in ("run1", "run2"):
        tiny_answers(tmp_path / f"{name}.jsonl", correct=True)
        if config_text is not None:
            (tmp_path / f"{name}_config.json").write_text(config_text)
    result = run_mme(tmp_path, "--answers", str(tmp_path / "run1.jsonl"), str(tmp_path / "run2.jsonl"),
                     "--gt_dir", str(tmp_path / "gt"))
    assert result["mixed_settings"] == []


def test_the_same_answers_file_twice_is_not_two_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Given twice, a file is one run: scored once (no std of a run with itself), named in a warning and in
    ``"repeated_runs"``."""
    write_release_gt(tmp_path / "gt", TINY_GT, nested=False)
    answers = str(tiny_answers(tmp_path / "run1.jsonl", correct=False))
    result = run_mme(tmp_path, "--answers", answers, answers, "--gt_dir", str(tmp_path / "gt"))
    assert result["counts"]["runs"] == 1 and len(result["runs"]) == 1 and result["answers_file"] == answers
    assert result["metrics"]["hallucination"] == 500 and result["std"]["hallucination"] is None
    assert result["repeated_runs"] == [f"{answers}: the same answers as {answers}; counted once"]
    assert result["mixed_settings"] == []
    assert f"warning: a repeated run: {answers}: the same answers as" in capsys.readouterr().err


def test_a_copied_run_counts_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same answers copied to another path (another seed's name) are the same run, not a second seed."""
    write_release_gt(tmp_path / "gt", TINY_GT, nested=False)
    first = tiny_answers(tmp_path / "avisc_seed42.jsonl", correct=False)
    copy = tmp_path / "copy" / "avisc_seed43.jsonl"
    copy.parent.mkdir()
    copy.write_bytes(first.read_bytes())
    other = tiny_answers(tmp_path / "avisc_seed44.jsonl", correct=True)
    result = run_mme(tmp_path, "--answers", str(first), str(copy), str(other), "--gt_dir", str(tmp_path / "gt"))
    assert result["counts"]["runs"] == 2 and [run["source"] for run in result["runs"]] == [str(first), str(other)]
    assert result["metrics"]["hallucination"] == 650  # (500 + 800) / 2, not (500 + 500 + 800) / 3
    assert result["repeated_runs"] == [f"{copy}: the same answers as {first}; counted once"]
    folder = write_perturbed(tmp_path / "results")
    again = tmp_path / "results_copy"
    again.mkdir()
    for task_file in folder.iterdir():
        (again / task_file.name).write_bytes(task_file.read_bytes())
    (folder / "mme_metrics.json").write_text("{}")  # a file of the scorer's own is not part of the run
    result = run_mme(tmp_path, "--results_dir", str(folder), str(again))
    assert result["counts"]["runs"] == 1 and result["repeated_runs"] == [
        f"{again}: the same answers as {folder}; counted once"]


@pytest.mark.parametrize("seed, runs", [(42, 1), (43, 2)])
def test_the_same_seed_twice_counts_once(tmp_path: Path, seed: int, runs: int) -> None:
    """Two answers files of one run (the runner's _config.json: same settings and the same seed), e.g. run again
    into another folder, whose answers differ (GPU nondeterminism): one run; another seed is another run."""
    write_release_gt(tmp_path / "gt", TINY_GT, nested=False)
    config = {"method": "avisc", "method_params": {"lamb": 1.0}, "protocol": {"seed": 42, "decoding": "sample"}}
    for name, correct, run_seed in (("run1", False, 42), ("run2", True, seed)):
        tiny_answers(tmp_path / f"{name}.jsonl", correct=correct)
        (tmp_path / f"{name}_config.json").write_text(json.dumps({**config, "protocol": {"seed": run_seed}}))
    result = run_mme(tmp_path, "--answers", str(tmp_path / "run1.jsonl"), str(tmp_path / "run2.jsonl"),
                     "--gt_dir", str(tmp_path / "gt"))
    assert result["counts"]["runs"] == runs
    assert result["metrics"]["hallucination"] == (500 if runs == 1 else 650)
    expected = [f"{tmp_path / 'run2.jsonl'}: the same run as {tmp_path / 'run1.jsonl'} (same seed and settings); "
                "counted once"]
    assert result["repeated_runs"] == (expected if runs == 1 else [])


# ----------------------------------------------------------------------------------------------------------------
# acc+ and image pairs. The official calculation.py reads a task file two lines at a time, each two lines one
# image's pair; acc+ = right pairs / pairs. MME defines acc+ by image: both questions of an image right.


def calculation_py(lines: list[tuple[str, str, str, str]]) -> float:
    """The official arithmetic on exact Yes/No predictions: 100 * acc + 100 * acc+, lines taken two at a time."""
    right = [gt.lower() == prediction.lower() for _, _, gt, prediction in lines]
    pairs = [right[i:i + 2] for i in range(0, len(right), 2)]
    return 100 * sum(right) / len(right) + 100 * sum(all(pair) for pair in pairs) / len(pairs)


def existence_file(folder: Path, lines: list[tuple[str, str, str, str]]) -> Path:
    """An eval-tool folder with one task file, ``existence.txt``: image, question, gt, prediction per line."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "existence.txt").write_text("".join(f"{image}\t{q}{Q}\t{gt}\t{p}\n" for image, q, gt, p in lines))
    return folder


def test_a_file_in_image_pairs_is_scored_as_calculation_py(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """a: both right; b: one right; c: none. acc = 3/6 = 50, acc+ = 1/3 = 33.33: score 83.33, as calculation.py."""
    lines = [("a.jpg", "Is there a dog?", "Yes", "Yes"), ("a.jpg", "Is there a cat?", "No", "No"),
             ("b.jpg", "Is there a dog?", "Yes", "Yes"), ("b.jpg", "Is there a cat?", "No", "Yes"),
             ("c.jpg", "Is there a car?", "Yes", "No"), ("c.jpg", "Is there a bus?", "No", "Yes")]
    result = run_mme(tmp_path, "--results_dir", str(existence_file(tmp_path / "results", lines)))
    task = result["runs"][0]["tasks"]["existence"]
    assert (task["acc"], task["acc_plus"]) == (50, pytest.approx(100 / 3))
    assert task["score"] == pytest.approx(50 + 100 / 3) == pytest.approx(calculation_py(lines))
    assert round(task["score"], 2) == 83.33
    assert task["out_of_pairs"] is None and task["single"] == 0 and not result["problems"]
    assert "not in image pairs" not in capsys.readouterr().err


def test_an_image_with_one_question_is_never_a_right_pair(tmp_path: Path) -> None:
    """a: both right; b: its one question right. acc = 3/3 = 100; acc+ = 1/2 = 50 (b has no pair): score 150,
    not 200; b is reported (and the file's last line is out of pairs)."""
    lines = [("a.jpg", "Is there a dog?", "Yes", "Yes"), ("a.jpg", "Is there a cat?", "No", "No"),
             ("b.jpg", "Is there a dog?", "Yes", "Yes")]
    folder = existence_file(tmp_path / "results", lines)
    result = run_mme(tmp_path, "--results_dir", str(folder))
    task = result["runs"][0]["tasks"]["existence"]
    assert (task["acc"], task["acc_plus"], task["score"], task["single"]) == (100, 50, 150, 1)
    problems = {(p["id"], p["line"], p["reason"].split(":")[0]) for p in result["problems"]}
    assert ("b.jpg", None, "one question for this image (MME has 2)") in problems
    assert task["out_of_pairs"] == {"file": str(folder / "existence.txt"), "line": 3}


def test_a_file_out_of_image_pairs_is_scored_by_image_with_a_warning(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The lines of a and b interleaved; each image has one right and one wrong answer. By image: acc = 2/4 = 50,
    acc+ = 0/2 = 0: score 50. calculation.py would pair (a dog, b dog), both right, and (a cat, b cat): acc+ 50,
    score 100. The file and its first line out of pairs are named."""
    lines = [("a.jpg", "Is there a dog?", "Yes", "Yes"), ("b.jpg", "Is there a dog?", "Yes", "Yes"),
             ("a.jpg", "Is there a cat?", "No", "Yes"), ("b.jpg", "Is there a cat?", "No", "Yes")]
    folder = existence_file(tmp_path / "results", lines)
    result = run_mme(tmp_path, "--results_dir", str(folder))
    task = result["runs"][0]["tasks"]["existence"]
    assert (task["acc"], task["acc_plus"], task["score"]) == (50, 0, 50)
    assert calculation_py(lines) == 100
    assert task["out_of_pairs"] == {"file": str(folder / "existence.txt"), "line": 1}
    assert any(p["file"] == str(folder / "existence.txt") and p["line"] == 1 and "not in image pairs" in p["reason"]
               for p in result["problems"])
    assert f"warning: {folder / 'existence.txt'}:1: the lines are not in image pairs" in capsys.readouterr().err
