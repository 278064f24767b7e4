"""Answers read from files as the official pipelines read them, across the family of answer variants (stray
whitespace, line endings, tabs, case, a kept stop string), through every scorer that reads yes/no from a file.

Expected readings are worked out by hand from the official rules:

* AvisC runners (POPE, MME answers, AMBER): ``text.strip()``, a trailing ``</s>`` cut, ``strip()``; then ``recorder``:
  remove ``.`` and ``,``, ``split(' ')``, no if a word is in {No, not, no, NO} or ends with n't, else yes.
* MME eval tool (``calculation.py``): the prediction field lower-cased; exactly yes/no, else "yes" in its first 4
  characters, else "no" in them, else other.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval import amber, mme, pope
from eval.yesno import clean_answer, eval_tool_label, read_answer

AVISC_CASES = [
    ("No.\n", "no"),                     # the issue's example: trailing newline kept by another tool
    ("Yes\n", "yes"),
    ("No\r\n", "no"),                    # CRLF
    ("\tNo\t", "no"),                    # tabs around
    ("  no  ", "no"),
    ("NO.\r\n", "no"),                   # NO is a negative word
    ("\u00a0No\u3000", "no"),            # str.strip() removes Unicode spaces too
    ("No</s>", "no"),                    # the stop string the runners cut
    ("No.</s>\n", "no"),                 # strip, cut, strip
    (" Yes, it is.</s>", "yes"),
    ("There isn't a dog.\n", "no"),      # n't
    ("Yes, there is a dog, but not a cat.\n", "no"),  # the whole answer is scanned
    ("Not\n", "yes"),                    # "Not" is not in the official list (case-sensitive)
    ("NOT sure", "yes"),
    ("\n", "yes"),                       # empty after cleaning: yes, as the official rule
    ("", "yes"),
    ("Yes, there is a 'no left turn' sign.", "yes"),  # "'no" is one word, not "no"
    ("Yes, there is a no left turn sign.", "no"),
    ("No\nThere is a cat.", "yes"),      # inside the answer only spaces split words: "No\nThere" is one word
    ("no,\tthere is none", "yes"),       # likewise "no\tthere"
]

EVAL_TOOL_CASES = [  # a raw {task}.txt prediction field
    ("Yes", "yes"), ("yes", "yes"), ("YES", "yes"), ("No.", "no"), ("nope", "no"), ("Not sure", "no"),
    ("  yes", "other"),                  # the tool does not strip: "  ye"
    (" no", "no"),                       # " no" holds "no"
    ("Yes, there is a no left turn sign.", "yes"),
    ("There is no dog.", "other"), ("I don't know", "other"), ("", "other"),
]


@pytest.mark.parametrize("text, expected", AVISC_CASES)
def test_avisc_reading(text: str, expected: str) -> None:
    assert read_answer(text, "avisc") == expected


@pytest.mark.parametrize("field, expected", EVAL_TOOL_CASES)
def test_eval_tool_reading(field: str, expected: str) -> None:
    assert eval_tool_label(field) == expected


@pytest.mark.parametrize("text, expected", [("No</s>", "No"), ("  Yes \r\n", "Yes"), ("a</s> </s>\n", "a</s>"),
                                            ("\t\n", "")])
def test_clean_answer(text: str, expected: str) -> None:
    assert clean_answer(text) == expected


def test_pope_issue_example(tmp_path: Path) -> None:
    """"No.\\n" (label no) and "Yes\\n" (label yes): both right -> accuracy, precision, recall, F1 100, yes ratio 50."""
    questions = tmp_path / "q.json"
    questions.write_text("".join(json.dumps({"question_id": q, "label": label}) + "\n" for q, label in ((1, "no"),
                                                                                                        (2, "yes"))))
    answers = tmp_path / "a.jsonl"
    answers.write_text(json.dumps({"question_id": 1, "text": "No.\n"}) + "\n"
                       + json.dumps({"question_id": 2, "text": "Yes\n"}) + "\n")
    out = tmp_path / "m.json"
    assert pope.main(["--answers", str(answers), "--question_file", str(questions), "--save_path", str(out)]) == 0
    result = json.loads(out.read_text())
    (metrics,) = result["metrics"].values()
    assert metrics == {"accuracy": 100.0, "precision": 100.0, "recall": 100.0, "f1": 100.0, "yes_ratio": 50.0}
    assert result["reading"] == "avisc"


def test_pope_reads_every_variant(tmp_path: Path) -> None:
    """Every variant, labelled yes: predicted yes -> TP, no -> FN."""
    questions = tmp_path / "q.json"
    answers = tmp_path / "a.jsonl"
    ids = range(len(AVISC_CASES))
    questions.write_text("".join(json.dumps({"question_id": i, "label": "yes"}) + "\n" for i in ids))
    answers.write_text("".join(json.dumps({"question_id": i, "text": t}) + "\n" for i, (t, _) in zip(ids, AVISC_CASES)))
    out = tmp_path / "m.json"
    assert pope.main(["--answers", str(answers), "--question_file", str(questions), "--save_path", str(out)]) == 0
    (setting,) = json.loads(out.read_text())["settings"].values()
    yes = sum(expected == "yes" for _, expected in AVISC_CASES)
    assert setting["confusion"] == {"TP": yes, "FP": 0, "TN": 0, "FN": len(AVISC_CASES) - yes}


@pytest.fixture(scope="module")
def amber_data() -> amber.AmberData:
    return amber.load_amber_data()


@pytest.mark.parametrize("text, expected", AVISC_CASES)
def test_amber_reads_every_variant(amber_data: amber.AmberData, text: str, expected: str) -> None:
    qid = next(i for i, a in amber_data.annotations.items() if a["type"] != "generative")
    counters = amber.evaluate({qid: text}, "d", amber_data)["counters"]
    answered_no = counters["qa_ans_no_num"] - amber_data.template["qa_ans_no_num"]
    assert answered_no == pytest.approx(1.0 if expected == "no" else 0.0)


def mme_answers_run(tmp_path: Path, texts: list[str], reading: str | None = None) -> dict:
    """One existence image per answer, with a "Yes" ground truth; the answer's reading decides its question."""
    gt = tmp_path / "gt"
    gt.mkdir(exist_ok=True)
    lines, records = [], []
    for i, text in enumerate(texts):
        lines.append(f"{i}.jpg\tIs there a dog? Please answer yes or no.\tYes\n")
        records.append({"question_id": f"existence/{i}.jpg", "prompt": "Is there a dog?", "text": text})
    (gt / "existence.txt").write_text("".join(lines))
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "mme.json"
    mme.main(["--answers", str(answers), "--gt_dir", str(gt), "--save_path", str(out)]
             + (["--reading", reading] if reading else []))
    return json.loads(out.read_text())


def test_mme_answers_read_every_variant(tmp_path: Path) -> None:
    result = mme_answers_run(tmp_path, [text for text, _ in AVISC_CASES])
    yes = sum(expected == "yes" for _, expected in AVISC_CASES)
    assert result["reading"] == "avisc"
    assert result["runs"][0]["tasks"]["existence"]["acc"] == pytest.approx(100 * yes / len(AVISC_CASES))


@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
def test_mme_results_dir_reads_every_field_variant(tmp_path: Path, line_end: str) -> None:
    """The eval tool's reading on raw fields, whatever the file's line endings; answers with a Yes ground truth."""
    folder = tmp_path / "results"
    folder.mkdir()
    lines = [f"{i}.jpg\tIs there a dog? Please answer yes or no.\tYes\t{field}{line_end}"
             for i, (field, _) in enumerate(EVAL_TOOL_CASES)]
    (folder / "existence.txt").write_bytes("".join(lines).encode())
    out = tmp_path / "mme.json"
    assert mme.main(["--results_dir", str(folder), "--save_path", str(out)]) == 0
    task = json.loads(out.read_text())["runs"][0]["tasks"]["existence"]
    assert task["acc"] == pytest.approx(100 * sum(e == "yes" for _, e in EVAL_TOOL_CASES) / len(EVAL_TOOL_CASES))
    assert task["other"] == sum(e == "other" for _, e in EVAL_TOOL_CASES)
