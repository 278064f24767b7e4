"""LLaVA-Bench (In-the-Wild) scorer against a local server that speaks the OpenAI chat-completions protocol, through
the real client. The expected scores are worked out by hand in each test."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import PROJECT_ROOT
from eval import llava_bench
from judge_server import FakeJudge, serve, strict_json

KEY_ENV = "LLAVA_BENCH_TEST_KEY"
SENTINEL = "sk-SENTINEL-llava-5e2b7c9d1a3f"
_ANSWER = re.compile(r"\[Assistant 2\]\n(.*)\n\n\[End of Assistant 2\]", re.S)

# Seven questions on two images: (question_id, image, category, question).
QUESTIONS = [(0, "001.jpg", "conv", "What color is the bus?"),
             (1, "001.jpg", "detail", "Describe the image."),
             (2, "002.jpg", "complex", "Why is the cat on the sofa?"),
             (3, "002.jpg", "conv", "What animal is it?"),
             (4, "002.jpg", "detail", "Describe the room."),
             (5, "001.jpg", "complex", "Where is the bus going?"),
             (6, "002.jpg", "complex", "What time of day is it?")]
CONTEXT = {"001.jpg": ["A red bus on a street.", "People wait at the stop."], "002.jpg": ["A cat sleeps on a sofa."]}
# The judge's reply to each model answer ans-<id>: (reference score, model score) on its first line.
REPLIES = {"ans-0": "8 6\nAssistant 2 is less detailed.",
           "ans-1": "9 4.5\nAssistant 2 misses the people.",
           "ans-2": "1 1\nBoth wrong.",
           "ans-3": "Assistant 1: 8, Assistant 2: 5\nThe first is better.",  # official parser: not two fields
           "ans-4": "10 9\nClose.",
           "ans-5": "1,1\nSame.",  # "," read as a space: "1 1"
           "ans-6": "4 2\nHalf as good."}
SYSTEM = "You are a helpful and precise assistant for checking the quality of the answer."


@pytest.fixture
def judge(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeJudge]:
    monkeypatch.setenv(KEY_ENV, SENTINEL)
    fake = FakeJudge(lambda prompt: _ANSWER.search(prompt).group(1))
    fake.default = lambda prompt: REPLIES[_ANSWER.search(prompt).group(1)]
    with serve(fake):
        yield fake


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def bench(tmp_path: Path) -> dict[str, Path]:
    """The benchmark files as the Hub dataset ships them: questions, context, the reference answers."""
    folder = tmp_path / "llava-bench-in-the-wild"
    return {
        "question": write_jsonl(folder / "questions.jsonl", [
            {"question_id": i, "image": image, "text": text, "category": category}
            for i, image, category, text in QUESTIONS]),
        "context": write_jsonl(folder / "context.jsonl", [
            {"id": image[:3], "image": image, "caption": caption} for image, caption in CONTEXT.items()]),
        "reference": write_jsonl(folder / "answers_gpt4.jsonl", [
            {"question_id": i, "text": f"ref-{i}", "answer_id": f"gpt4-{i}", "model_id": "gpt-4-0314"}
            for i, *_ in QUESTIONS]),
    }


def runner_answers(tmp_path: Path, ids: list[int], name: str = "run") -> Path:
    """Answers as our runner writes them (``question_id``, ``prompt``, ``text``, ...), in the order given."""
    text = {i: t for i, _, _, t in QUESTIONS}
    return write_jsonl(tmp_path / "results" / f"{name}.jsonl", [
        {"question_id": i, "prompt": text[i], "text": f"ans-{i}", "model_id": "tiny", "method": "avisc"}
        for i in ids])


def args(judge: FakeJudge, files: dict[str, Path], answers: Path, *extra: str) -> list[str]:
    return ["--question", str(files["question"]), "--context", str(files["context"]),
            "--answer-list", str(files["reference"]), str(answers), "--base_url", judge.base_url,
            "--api_key_env", KEY_ENV, "--backoff_base", "0.01", "--backoff_max", "0.05", "--timeout", "5", *extra]


def outputs(answers: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    metrics_path = answers.with_name(answers.stem + "_llava_bench.json")
    metrics = strict_json(metrics_path.read_text())
    reviews = [strict_json(line) for line in metrics_path.with_suffix(".jsonl").read_text().splitlines()]
    return metrics, reviews


def relative(metrics: dict[str, Any]) -> dict[str, float | None]:
    return {name: m["relative_score"] for name, m in metrics["metrics"].items()}


# Hand-worked scores of the seven replies matched by question_id (ans-3 is unparsable and left out):
#   conv    : [8, 6]                       reference 8.0, model 6.0        -> 6.0 / 8.0 * 100 = 75.0
#   detail  : [9, 4.5], [10, 9]            reference 19/2 = 9.5, model 13.5/2 = 6.75
#                                          -> 6.75 / 9.5 * 100 = 71.052... -> 71.1
#   complex : [1, 1], [1, 1], [4, 2]       reference 6/3 = 2.0, model 4/3 = 1.333 (rounded to 3 decimals first)
#                                          -> 1.333 / 2.0 * 100 = 66.65 (66.6499... in floats) -> 66.6
#                                          (the unrounded mean would give 66.67 -> 66.7: the rounding matters)
#   all     : reference 8+9+1+10+1+4 = 33, /6 = 5.5; model 6+4.5+1+9+1+2 = 23.5, /6 = 3.91666 -> 3.917
#                                          -> 3.917 / 5.5 * 100 = 71.218... -> 71.2
#   model x 10: conv 60.0, detail 67.5, complex 13.33, all 39.17
BY_ID = {"all": 71.2, "conv": 75.0, "detail": 71.1, "complex": 66.6}


def test_scores_by_question_id_with_the_official_arithmetic(judge: FakeJudge, tmp_path: Path) -> None:
    files = bench(tmp_path)
    answers = runner_answers(tmp_path, [0, 1, 2, 3, 4, 5, 6])
    assert llava_bench.main(args(judge, files, answers)) == 0
    metrics, reviews = outputs(answers)
    assert relative(metrics) == BY_ID
    m = metrics["metrics"]
    assert (m["conv"]["reference_score"], m["conv"]["model_score"], m["conv"]["model_score_x10"]) == (8.0, 6.0, 60.0)
    assert (m["detail"]["reference_score"], m["detail"]["model_score"], m["detail"]["model_score_x10"]) == (
        9.5, 6.75, 67.5)
    assert (m["complex"]["reference_score"], m["complex"]["model_score"], m["complex"]["model_score_x10"]) == (
        2.0, 1.333, 13.33)
    assert (m["all"]["reference_score"], m["all"]["model_score"], m["all"]["model_score_x10"]) == (5.5, 3.917, 39.17)
    assert {name: (c["judged"], c["unparsable"], c["failed"], c["averaged"]) for name, c in m.items()} == {
        "all": (6, 1, 0, 6), "conv": (1, 1, 0, 1), "detail": (2, 0, 0, 2), "complex": (3, 0, 0, 3)}
    counts = metrics["counts"]
    assert (counts["questions"], counts["answers"], counts["judged"], counts["unparsable"], counts["failed"],
            counts["missing"], counts["extra"]) == (7, 7, 6, 1, 0, 0, 0)
    assert metrics["empty_reason"] is None and metrics["scorer"] == "llava_bench"
    assert metrics["judge"]["model"] == "gpt-4-0613" and metrics["judge"]["temperature"] == 0.2
    assert metrics["settings"]["pairing"] == "question_id"
    # the review file: LLaVA's lines, in question order; the unparsable reply as the official [-1, -1]
    assert [r["question_id"] for r in reviews] == list(range(7))
    assert [r["tuple"] for r in reviews] == [[8.0, 6.0], [9.0, 4.5], [1.0, 1.0], [-1, -1], [10.0, 9.0], [1.0, 1.0],
                                             [4.0, 2.0]]
    assert reviews[3]["status"] == "unparsable" and reviews[3]["content"] == REPLIES["ans-3"]
    assert reviews[0] | {"key": None} == {
        "id": 1, "question_id": 0, "answer1_id": "gpt4-0", "answer2_id": 0, "category": "llava_bench_conv",
        "content": REPLIES["ans-0"], "tuple": [8.0, 6.0], "status": "judged", "api_retries": 0, "cached": False,
        "key": None}
    assert any(p["id"] == "3" and "'Assistant 1: 8, Assistant 2: 5' is not two scores" in p["reason"]
               for p in metrics["problems"])


def test_the_request_is_the_official_one(judge: FakeJudge, tmp_path: Path) -> None:
    files = bench(tmp_path)
    answers = runner_answers(tmp_path, [0])
    assert llava_bench.main(args(judge, files, answers)) == 0
    (request,) = judge.requests
    prompt = ("We would like to request your feedback on the performance of two AI assistants in response to the "
              "user question displayed above. The user asks the question on observing an image. For your "
              "reference, the visual content in the image is represented with a few sentences describing the "
              "image. \nPlease rate the helpfulness, relevance, accuracy, level of details of their responses. Each "
              "assistant receives an overall score on a scale of 1 to 10, where a higher score indicates better "
              "overall performance.\nPlease first output a single line containing only two values indicating the "
              "scores for Assistant 1 and 2, respectively. The two scores are separated by a space.\nIn the "
              "subsequent line, please provide a comprehensive explanation of your evaluation, avoiding any "
              "potential bias and ensuring that the order in which the responses were presented does not affect "
              "your judgment.")
    user = ("[Context]\nA red bus on a street.\nPeople wait at the stop.\n\n[Question]\nWhat color is the bus?\n\n"
            "[Assistant 1]\nref-0\n\n[End of Assistant 1]\n\n[Assistant 2]\nans-0\n\n[End of Assistant 2]\n\n"
            f"[System]\n{prompt}\n\n")
    assert request["messages"] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
    assert (request["model"], request["temperature"], request["max_tokens"]) == ("gpt-4-0613", 0.2, 1024)
    assert "n" not in request  # the official call does not send n
    assert judge.auth == [f"Bearer {SENTINEL}"]
    metrics, _ = outputs(answers)
    assert metrics["counts"]["missing"] == 6  # no manifest: every question is expected


@pytest.mark.parametrize("reply, official, ours", [
    ("8 9", [8.0, 9.0], [8.0, 9.0]),
    ("8,9\nwhy", [8.0, 9.0], [8.0, 9.0]),
    ("8.5 9.5", [8.5, 9.5], [8.5, 9.5]),
    ("1e1 5", [10.0, 5.0], [10.0, 5.0]),
    ("8, 9", None, None),            # "8  9": three fields
    ("8  9", None, None),
    (" 8 9", None, None),
    ("8 9 ", None, None),
    ("8\t9", None, None),
    ("Scores: 8 9", None, None),
    ("", None, None),
    ("nan 8", [float("nan"), 8.0], None),   # official: a NaN in the mean; ours: unparsable
    ("inf 8", [float("inf"), 8.0], None),
    ("0 5", [0.0, 5.0], None),              # outside the prompt's scale of 1 to 10
    ("8 11", [8.0, 11.0], None),
    ("-1 5", [-1.0, 5.0], None),
])
def test_official_parser_and_our_range_check(reply: str, official: list[float] | None,
                                             ours: list[float] | None) -> None:
    parsed = llava_bench.parse_score(reply)
    assert (parsed is None and official is None) or (parsed is not None and str(parsed) == str(official))
    assert llava_bench.parse_review(reply) == ours


def test_average_unparsable_is_the_official_arithmetic(judge: FakeJudge, tmp_path: Path) -> None:
    """``--average-unparsable``: ans-3's [-1, -1] is averaged in, as LLaVA's summarize_gpt_review.py does.

    conv : [8, 6], [-1, -1]  -> reference 7/2 = 3.5, model 5/2 = 2.5 -> 2.5 / 3.5 * 100 = 71.428... -> 71.4
    all  : reference (33 - 1) / 7 = 4.5714 -> 4.571; model (23.5 - 1) / 7 = 3.2142 -> 3.214
           -> 3.214 / 4.571 * 100 = 70.3128... -> 70.3
    detail and complex have no unparsable reply: unchanged.
    """
    files = bench(tmp_path)
    answers = runner_answers(tmp_path, [0, 1, 2, 3, 4, 5, 6])
    assert llava_bench.main(args(judge, files, answers, "--average-unparsable")) == 0
    metrics, _ = outputs(answers)
    assert relative(metrics) == {"all": 70.3, "conv": 71.4, "detail": 71.1, "complex": 66.6}
    assert (metrics["metrics"]["all"]["reference_score"], metrics["metrics"]["all"]["model_score"]) == (4.571, 3.214)
    assert metrics["metrics"]["all"]["averaged"] == 7 and metrics["metrics"]["all"]["judged"] == 6
    assert metrics["settings"]["unparsable"] == "averaged as [-1, -1] (official)"
    assert len(judge.requests) == 7


def test_answers_out_of_order_match_by_id_but_zip_by_position_pairs_them_wrongly(judge: FakeJudge,
                                                                                 tmp_path: Path) -> None:
    """Answers of questions 1 and 0 written in that order. By id: the same scores as in order (BY_ID). The official
    positional zipping gives question 0 (conv) the answer ans-1 (judged 9 4.5) and question 1 (detail) ans-0 (8 6):

    conv   : [9, 4.5]           -> 4.5 / 9.0 * 100 = 50.0
    detail : [8, 6], [10, 9]    -> reference 9.0, model 7.5 -> 7.5 / 9.0 * 100 = 83.333... -> 83.3
    complex: unchanged 66.6; all: the same six pairs in another order -> 71.2
    """
    files = bench(tmp_path)
    answers = runner_answers(tmp_path, [1, 0, 2, 3, 4, 5, 6])
    assert llava_bench.main(args(judge, files, answers)) == 0
    metrics, reviews = outputs(answers)
    assert relative(metrics) == BY_ID
    assert [r["question_id"] for r in reviews] == list(range(7))  # question order, whatever the answers' order
    assert llava_bench.main(args(judge, files, answers, "--zip-by-position")) == 0
    metrics, reviews = outputs(answers)
    assert relative(metrics) == {"all": 71.2, "conv": 50.0, "detail": 83.3, "complex": 66.6}
    assert metrics["counts"]["mismatched"] == 2 and metrics["settings"]["pairing"] == "position (official)"
    assert [(r["question_id"], r["answer2_id"]) for r in reviews[:2]] == [(0, 1), (1, 0)]
    assert {p["reason"] for p in metrics["problems"] if p["id"] in ("0", "1")} == {
        "paired by position with question 0 (--zip-by-position)",
        "paired by position with question 1 (--zip-by-position)"}


def test_a_missing_answer_is_counted_and_left_out(judge: FakeJudge, tmp_path: Path) -> None:
    """No answer for question 4 (detail, judged 10 9 when present).

    By id: detail has [9, 4.5] only -> 4.5 / 9.0 * 100 = 50.0; all: reference (33 - 10) / 5 = 4.6, model
    (23.5 - 9) / 5 = 2.9 -> 2.9 / 4.6 * 100 = 63.043... -> 63.0; missing 1.
    Zipped by position, every answer after the gap moves up one question: question 4 (detail) gets ans-5 (1 1),
    question 5 (complex) ans-6 (4 2), question 6 none (missing):
    detail : [9, 4.5], [1, 1] -> reference 5.0, model 2.75 -> 55.0
    complex: [1, 1], [4, 2]   -> reference 2.5, model 1.5  -> 60.0
    all    : the same five pairs as by id -> 63.0
    """
    files = bench(tmp_path)
    answers = runner_answers(tmp_path, [0, 1, 2, 3, 5, 6])
    assert llava_bench.main(args(judge, files, answers)) == 0
    metrics, _ = outputs(answers)
    assert relative(metrics) == {"all": 63.0, "conv": 75.0, "detail": 50.0, "complex": 66.6}
    assert (metrics["metrics"]["all"]["reference_score"], metrics["metrics"]["all"]["model_score"]) == (4.6, 2.9)
    assert (metrics["counts"]["missing"], metrics["counts"]["judged"], metrics["counts"]["extra"]) == (1, 5, 0)
    assert {(p["id"], p["reason"]) for p in metrics["problems"]} >= {("4", "question not answered")}
    assert llava_bench.main(args(judge, files, answers, "--zip-by-position")) == 0
    metrics, _ = outputs(answers)
    assert relative(metrics) == {"all": 63.0, "conv": 75.0, "detail": 55.0, "complex": 60.0}
    assert (metrics["counts"]["missing"], metrics["counts"]["mismatched"]) == (1, 2)


def test_extra_and_duplicate_answers_are_reported_not_scored(judge: FakeJudge, tmp_path: Path) -> None:
    files = bench(tmp_path)
    answers = runner_answers(tmp_path, [0, 1, 2, 3, 4, 5, 6])
    lines = answers.read_text().splitlines()
    extra = [json.dumps({"question_id": 99, "text": "ans-0"}), json.dumps({"question_id": "0", "text": "ans-1"})]
    answers.write_text("\n".join(lines + extra) + "\n")
    assert llava_bench.main(args(judge, files, answers)) == 0
    metrics, _ = outputs(answers)
    assert relative(metrics) == BY_ID  # the duplicate of question 0 ("0" is the id 0) is not scored
    assert (metrics["counts"]["extra"], metrics["counts"]["duplicate"], metrics["counts"]["answers"]) == (1, 1, 9)
    assert {(p["line"], p["id"]) for p in metrics["problems"]} >= {(8, "99"), (9, "0")}


def test_a_resumed_run_makes_no_new_calls(judge: FakeJudge, tmp_path: Path) -> None:
    files = bench(tmp_path)
    answers = runner_answers(tmp_path, [0, 1, 2, 4, 5, 6])  # every reply parses
    judge.plans = {"ans-5": [("status", 503)] * 2}
    assert llava_bench.main(args(judge, files, answers, "--max_retries", "1")) == 1  # one failed call
    metrics, reviews = outputs(answers)
    assert (metrics["counts"]["failed"], metrics["counts"]["judged"]) == (1, 5)
    assert 5 not in [r["question_id"] for r in reviews]  # a failed call has no review
    assert len(judge.requests) == 7
    assert llava_bench.main(args(judge, files, answers)) == 0  # asks only for the failed one
    assert judge.samples(7) == ["ans-5"]
    first, first_reviews = outputs(answers)
    assert first["counts"]["cached"] == 5 and first["counts"]["judged"] == 6
    assert llava_bench.main(args(judge, files, answers)) == 0  # nothing left to ask
    assert len(judge.requests) == 8
    second, second_reviews = outputs(answers)
    assert second["metrics"] == first["metrics"] and second["counts"]["cached"] == 6
    assert [r["content"] for r in second_reviews] == [r["content"] for r in first_reviews]
    cache = tmp_path / "results" / "llava_bench_cache" / "llava_bench_cache.jsonl"
    cache.unlink()  # the review file alone is enough to resume
    assert llava_bench.main(args(judge, files, answers)) == 0
    assert len(judge.requests) == 8 and outputs(answers)[0]["metrics"] == first["metrics"]


def test_an_unparsable_reply_is_not_cached_and_asked_again(judge: FakeJudge, tmp_path: Path) -> None:
    files = bench(tmp_path)
    answers = runner_answers(tmp_path, [0, 3])
    assert llava_bench.main(args(judge, files, answers)) == 0
    judge.plans = {"ans-3": ["7 7\nFixed."]}
    assert llava_bench.main(args(judge, files, answers)) == 0
    assert judge.count("ans-3") == 2 and judge.count("ans-0") == 1
    metrics, _ = outputs(answers)
    # conv: [8, 6], [7, 7] -> reference 7.5, model 6.5 -> 6.5 / 7.5 * 100 = 86.666... -> 86.7
    assert metrics["metrics"]["conv"]["relative_score"] == 86.7 and metrics["counts"]["unparsable"] == 0


def test_llava_answer_files_and_the_runner_manifest(judge: FakeJudge, tmp_path: Path) -> None:
    """LLaVA's own answer lines (``answer_id``, ``model_id``, ``metadata``) score as they are; beside a runner's
    answers, its manifest says which questions were asked (a trial of 2 is not 5 missing answers)."""
    files = bench(tmp_path)
    llava = write_jsonl(tmp_path / "llava" / "answers.jsonl", [
        {"question_id": i, "prompt": "q", "text": f"ans-{i}", "answer_id": f"uuid-{i}", "model_id": "llava-v1.5-7b",
         "metadata": {}} for i in (0, 1)])
    assert llava_bench.main(args(judge, files, llava)) == 0
    metrics, reviews = outputs(llava)
    assert [r["answer2_id"] for r in reviews] == ["uuid-0", "uuid-1"] and metrics["counts"]["missing"] == 5
    trial = runner_answers(tmp_path, [0, 1], name="trial")
    (tmp_path / "results" / "trial_manifest.json").write_text(json.dumps({"count": 2, "ids": ["0", "1"]}))
    assert llava_bench.main(args(judge, files, trial)) == 0
    metrics, _ = outputs(trial)
    assert (metrics["counts"]["questions"], metrics["counts"]["missing"], metrics["counts"]["judged"]) == (2, 0, 2)
    assert metrics["settings"]["subset"]["count"] == 2
    # conv [8, 6] -> 75.0; detail [9, 4.5] -> 50.0; complex: nothing judged -> null;
    # all: reference 17 / 2 = 8.5, model 10.5 / 2 = 5.25 -> 5.25 / 8.5 * 100 = 61.764... -> 61.8
    assert relative(metrics) == {"all": 61.8, "conv": 75.0, "detail": 50.0, "complex": None}


def test_nothing_judged_gives_null_metrics_and_an_empty_reason(judge: FakeJudge, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    files = bench(tmp_path)
    answers = runner_answers(tmp_path, [3])  # the one unparsable reply
    assert llava_bench.main(args(judge, files, answers)) == 1
    metrics, reviews = outputs(answers)
    assert relative(metrics) == {"all": None, "conv": None, "detail": None, "complex": None}
    assert metrics["empty_reason"] == "no judgment: 1 unparsable and 0 failed of 1"
    assert "null metrics: no judgment" in capsys.readouterr().err


def test_the_key_echoed_by_the_judge_is_never_written(judge: FakeJudge, tmp_path: Path) -> None:
    files = bench(tmp_path)
    answers = runner_answers(tmp_path, [0])
    escaped = "".join(f"\\u{ord(c):04x}" for c in SENTINEL)
    judge.plans = {"ans-0": [f"8 6\nI saw {SENTINEL} and {escaped}"]}
    assert llava_bench.main(args(judge, files, answers)) == 0
    for path in tmp_path.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert SENTINEL not in text and escaped not in text, path


def test_bad_inputs_are_one_line(judge: FakeJudge, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = bench(tmp_path)
    captions = write_jsonl(tmp_path / "captions.jsonl", [{"image_id": 0, "caption": "x"}])
    assert llava_bench.main(args(judge, files, captions)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {captions}: no record has 'question_id' (found fields: caption, image_id)")
    assert err.count("\n") == 1 and not judge.requests
    answers = runner_answers(tmp_path, [0])
    assert llava_bench.main(args(judge, files, answers, "--save_path", str(files["question"]))) == 2
    assert "would overwrite an input file" in capsys.readouterr().err


def test_help_and_layers() -> None:
    """``--help`` answers; the scorer imports no runner code, the judge client only the files layer."""
    result = subprocess.run([sys.executable, "-m", "eval.llava_bench", "--help"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--answer-list REFERENCE ANSWERS" in result.stdout
    assert "--zip-by-position" in result.stdout and "--average-unparsable" in result.stdout
    check = ("import sys, eval.llava_bench, eval.clair\n"
             "runner = {'eval.runner', 'eval.run', 'eval.cli', 'eval.generation_setup', 'eval.benchmarks'}\n"
             "assert not runner & set(sys.modules), runner & set(sys.modules)\n"
             "import ast, pathlib\n"
             "tree = ast.parse(pathlib.Path('eval/judge.py').read_text())\n"
             "own = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module.startswith('eval')}\n"
             "assert own == {'eval.files'}, own\n")
    result = subprocess.run([sys.executable, "-c", check], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    assert result.returncode == 0, result.stderr


def test_the_report_has_a_llava_bench_row(judge: FakeJudge, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """``eval.report`` shows LLaVA-Bench in a table of its own: the relative score per category and in all (the
    hand-worked numbers above), with footnotes for the unparsable reply and the unanswered question."""
    from eval import report

    files = bench(tmp_path)
    full = runner_answers(tmp_path, [0, 1, 2, 3, 4, 5, 6], "llava-1.5_avisc_seed42")
    partial = runner_answers(tmp_path, [0, 1, 2, 3, 5, 6], "llava-1.5_baseline_seed42")
    for answers in (full, partial):
        assert llava_bench.main(args(judge, files, answers)) == 0
    capsys.readouterr()
    assert report.main([str(tmp_path / "results")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("### LLaVA-Bench (In-the-Wild): relative score") for line in lines), lines
    assert "| Model | Method | Source | Runs | Conv | Detail | Complex | All |" in lines
    assert "| LLaVA-1.5 | baseline | ours | 1 (seed 42) [1] [2] | 75.00 | 50.00 | 66.60 | 63.00 |" in lines
    assert "| LLaVA-1.5 | AvisC | ours | 1 (seed 42) [3] | 75.00 | 71.10 | 66.60 | 71.20 |" in lines
    assert "[1] incomplete: 1 of 7 questions have no answer: not the benchmark's result" in lines
    for number, run in ((2, "baseline"), (3, "avisc")):
        review = tmp_path / "results" / f"llava-1.5_{run}_seed42_llava_bench.jsonl"
        assert f"[{number}] LLaVA-Bench: 1 unparsable judge replies (see {review})" in lines
